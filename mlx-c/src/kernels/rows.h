// Row bodies of the fused norm / rope / attention / SwiGLU kernels (fused.cpp), shared with the decoder-block
// primitives (block.cpp). One out-of-line definition each, so both paths run the same code and agree bit for bit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "pool.h"

namespace mlxk::rows {

// y = x / sqrt(mean(x²) + eps) · w (w null = 1), one row of D.
void rms_norm(const float* x, const float* w, float* y, int D, float eps, bool avx2);

// cos/sin of (offs[b] + l)·scale·inv_freq[i] for every batch offset b, position l < L and i < dims/2
// (inv_freq = exp(-i·ln(base)/half), or 1/freqs[i]); laid out [b][l][i].
void rope_table(const std::vector<int>& offs, int L, int dims, float base, float scale, const float* freqs,
                std::vector<float>& cs, std::vector<float>& sn);

// One row of D rotated with table entries c, s (dims/2 each); features past dims copied.
void rope(const float* x, float* y, int D, int dims, bool trad, const float* c, const float* s);

// Softmax attention of one query row over n keys kb[s·kst] / values vb[s·vst] → y[0..Dv).
void attend(const float* q, const float* kb, int64_t kst, const float* vb, int64_t vst, int n, int D, int Dv, float scale,
            float* y, bool avx2);

// Whether the AVX-512 rows (attend.cpp) run now: MLXK_ISA / set_isa at avx512 and the CPU has it.
bool attend512_active();

// attend for G ≤ 8 query rows q[g] over keys / values from the same first key kb / vb, row g over its first n[g]
// (nondecreasing in g) → y[g]; D, Dv multiples of 8, AVX-512. Each row bit for bit what attend's AVX2 path gives
// it, each key and value row loaded once for all G.
void attend512(const float* const* q, const int* n, int G, const float* kb, int64_t kst, const float* vb, int64_t vst,
               int D, int Dv, float scale, float* const* y);

// The keys query l of batch entry b attends to, [first, first + count): entry b's keys start at starts[b] (left
// padding before them: a decode batch; empty = 0) and end at ends[b] (right padding after: an encoder batch;
// empty = Lk); causal, query l of Lq sees keys up to (end - Lq) + l, MLX's end-aligned mask.
struct KeyRange {
  int first, count;
};
inline KeyRange key_range(const std::vector<int>& starts, const std::vector<int>& ends, bool causal, int Lk, int Lq, size_t b,
                          int l) {
  const int s0 = starts.empty() ? 0 : starts[b], e = ends.empty() ? Lk : ends[b];
  return {s0, causal ? std::clamp(e - Lq + l + 1 - s0, 0, e - s0) : e - s0};
}

// Geometry of attention over per-entry key ranges: q [B, Hq, Lq, D] over keys [B, Hkv, ·, D] / values [·, Dv].
struct RangeAttn {
  size_t B;
  int Hq, Hkv, Lq, Lk, D, Dv;
  float scale;
  bool causal;
};

// y = silu(g)·u over n elements.
void swiglu(const float* g, const float* u, float* y, size_t n, bool avx2);

// Runs fn(row) for rows [0, n): inline when the whole job is small, else in chunks on the pool.
template <class F>
void for_rows(size_t n, double work, F&& fn) {
  if (work < 65536.0 || n < 2) {
    for (size_t i = 0; i < n; i++) fn(i);
    return;
  }
  const int chunks = static_cast<int>(std::min<size_t>(n, 256));
  struct Ctx {
    F* fn;
    size_t n;
    int chunks;
  } ctx{&fn, n, chunks};
  kern::parallel_for_work(chunks, [](void* c, int t) {
    auto& x = *static_cast<Ctx*>(c);
    for (size_t i = x.n * t / x.chunks; i < x.n * (t + 1) / x.chunks; i++) (*x.fn)(i);
  }, &ctx, work);
}

// Every query row r = (b·Hq + h)·Lq + l of an attention over per-entry key ranges (key_range), grouped KV heads:
// reads q_row(r), keys from k_at(b, kv head, first key) and values from v_at(…) with row strides kst / vst, writes
// out_row(b, h, l). The single-op attention (fused.cpp) and the decoder block (block.cpp) both run this loop, so
// a row's sums are the same in either. With AVX-512 the unit of work is (b, kv head, a piece of its GQA group, a
// block of consecutive positions l), up to 8 rows that share the first key (attend512 loads each key and value
// once for them); a group over 8 is split evenly, and further while there are fewer units than threads (decode).
// AVX2 / scalar: one row at a time.
template <class QRow, class KAt, class VAt, class OutRow>
void attend_ranges(const RangeAttn& a, const std::vector<int>& starts, const std::vector<int>& ends, QRow&& q_row,
                   KAt&& k_at, int64_t kst, VAt&& v_at, int64_t vst, OutRow&& out_row, bool avx2) {
  const int group = a.Hq / a.Hkv;
  const bool zmm = avx2 && a.D % 8 == 0 && a.Dv % 8 == 0 && attend512_active();
  int pieces = zmm ? (group + 7) / 8 : group, per = 1, R = 1, lblocks = a.Lq;
  const auto shape = [&] {
    per = (group + pieces - 1) / pieces;
    R = zmm ? std::max(1, std::min(a.Lq, 8 / per)) : 1;
    lblocks = (a.Lq + R - 1) / R;
    return a.B * a.Hkv * pieces * lblocks;
  };
  size_t n = shape();
  while (zmm && pieces < group && n < static_cast<size_t>(kern::pool_threads())) pieces++, n = shape();
  for_rows(n, static_cast<double>(a.B) * a.Hq * a.Lq * a.Lk * (a.D + a.Dv), [&](size_t u) {
    const int l0 = static_cast<int>(u % lblocks) * R, l1 = std::min(a.Lq, l0 + R);
    const size_t bp = u / lblocks, b = bp / (a.Hkv * pieces);
    const int kvh = static_cast<int>(bp % (a.Hkv * pieces)) / pieces, h0 = kvh * group + static_cast<int>(bp % pieces) * per;
    const int h1 = std::min(h0 + per, (kvh + 1) * group);
    const int first = key_range(starts, ends, a.causal, a.Lk, a.Lq, b, l0).first; // the same for every l
    const float* kb = k_at(b, kvh, first);
    const float* vb = v_at(b, kvh, first);
    if (zmm) {
      const float* q[8];
      float* y[8];
      int cnt[8], G = 0;
      for (int l = l0; l < l1; l++) { // rows in position order: their key counts nondecreasing
        const int c = key_range(starts, ends, a.causal, a.Lk, a.Lq, b, l).count;
        for (int h = h0; h < h1; h++, G++) q[G] = q_row((b * a.Hq + h) * a.Lq + l), y[G] = out_row(b, h, l), cnt[G] = c;
      }
      attend512(q, cnt, G, kb, kst, vb, vst, a.D, a.Dv, a.scale, y);
      return;
    }
    for (int h = h0; h < h1; h++) {
      const KeyRange kr = key_range(starts, ends, a.causal, a.Lk, a.Lq, b, l0);
      attend(q_row((b * a.Hq + h) * a.Lq + l0), kb, kst, vb, vst, kr.count, a.D, a.Dv, a.scale, out_row(b, h, l0), avx2);
    }
  });
}

} // namespace mlxk::rows

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

} // namespace mlxk::rows

// AVX-512 attention rows, up to 8 query rows at once over keys from the same first key (the query heads of a GQA
// group, and in a causal prefill consecutive positions too, whose ranges differ only in their ends): scored
// against the keys in one pass per 4 rows and summed over the values in one pass, so each key row is loaded once
// per 4 rows and each value row once for all (loads from L2, not FMAs, bound the row-at-a-time kernel). Every row gets
// exactly the AVX2 row's values (rows::attend in fused.cpp): the same FMAs per element in the same order, the
// same reduction tree, the same exp polynomial.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "qmm.h"
#include "rows.h"
#include "simd.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_A512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#endif

namespace mlxk::rows {

#ifdef MLXK_A512
namespace {

MLXK_A512 inline __m256 lo256(__m512 v) {
  return _mm512_castps512_ps256(v);
}
MLXK_A512 inline __m256 hi256(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

// The 16 (row, key) sums of a 4-row × 4-key block (dots4's accumulators) at once, in the same order as dot4_avx2's
// reduction: a key's sum does not depend on the keys or rows reduced with it, so any grouping gives the same
// values. (8 rows × 2 keys with a per-4-sums hadd reduction ran 1.4–2.1× slower, bound by its shuffles and by GCC
// folding each row's load into both of its FMAs.)
MLXK_A512 inline __m512 reduce16(const __m512 (&a)[16]) {
  // dot4_avx2's reduction per (row, key): x_i = lo_i + hi_i, then ((x0+x1)+(x2+x3)) + ((x4+x5)+(x6+x7)), here
  // across the 16 accumulators by lane shuffles: the same adds of the same operands. Tree slot P ends in lane
  // [0,2,4,6,1,3,5,7,8,10,12,14,9,11,13,15][P]; fed so that lane p holds a[p]'s sum.
  constexpr int slot[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
  __m512 x[8];
#pragma GCC unroll 8
  for (int m = 0; m < 8; m++) {
    const __m512 p = a[slot[2 * m]], q = a[slot[2 * m + 1]];
    x[m] = _mm512_add_ps(_mm512_shuffle_f32x4(p, q, 0x44), _mm512_shuffle_f32x4(p, q, 0xEE)); // [x_p | x_q]
  }
  __m512 y[4];
#pragma GCC unroll 4
  for (int m = 0; m < 4; m++)
    y[m] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * m], x[2 * m + 1], 0x88), _mm512_shuffle_ps(x[2 * m], x[2 * m + 1], 0xDD));
  __m512 z[2];
#pragma GCC unroll 2
  for (int m = 0; m < 2; m++)
    z[m] = _mm512_add_ps(_mm512_shuffle_ps(y[2 * m], y[2 * m + 1], 0x88), _mm512_shuffle_ps(y[2 * m], y[2 * m + 1], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88), _mm512_shuffle_f32x4(z[0], z[1], 0xDD));
}

// a[4g + j] = q_g·k_j over D for RB rows and 4 keys, as dot4_avx2's two 8-lane accumulators side by side in one
// zmm (elements i..i+7 of each 16 in the low half, i+8..i+15 in the high half; a D % 16 tail of 8 in the low half).
template <int RB>
MLXK_A512 inline void dots4(const float* const (&q)[RB], const float* const (&k)[4], int D, __m512 (&a)[4 * RB]) {
#pragma GCC unroll 16
  for (int p = 0; p < 4 * RB; p++) a[p] = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= D; i += 16) {
    __m512 kv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) kv[j] = _mm512_loadu_ps(k[j] + i);
#pragma GCC unroll 4
    for (int g = 0; g < RB; g++) {
      __m512 qv = _mm512_loadu_ps(q[g] + i);
      asm("" : "+v"(qv)); // a register: one load for the row's 4 FMAs, not one each
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) a[4 * g + j] = _mm512_fmadd_ps(qv, kv[j], a[4 * g + j]);
    }
  }
  if (i < D) {
    constexpr __mmask16 lo = 0x00FF;
    __m512 kv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) kv[j] = _mm512_maskz_loadu_ps(lo, k[j] + i);
#pragma GCC unroll 4
    for (int g = 0; g < RB; g++) {
      const __m512 qv = _mm512_maskz_loadu_ps(lo, q[g] + i);
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) a[4 * g + j] = _mm512_mask3_fmadd_ps(qv, kv[j], a[4 * g + j], lo);
    }
  }
}

// dot4_avx2's reduction of 4 (row, key) accumulators, as reduce16 per accumulator: low + high half, then hadds.
MLXK_A512 inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m256 x0 = _mm256_add_ps(lo256(a0), hi256(a0)), x1 = _mm256_add_ps(lo256(a1), hi256(a1));
  const __m256 x2 = _mm256_add_ps(lo256(a2), hi256(a2)), x3 = _mm256_add_ps(lo256(a3), hi256(a3));
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(x0, x1), _mm256_hadd_ps(x2, x3));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

// sc[g·ld + s] = (q_g·k_s)·scale for RB rows (R ≤ RB of them; a missing row repeats the last and is not stored) and
// keys s < n, 4 keys per pass (past n the last key repeats). 4 rows reduce their 16 sums together (reduce16); 1 or
// 2 rows (the decode of GQA groups of 1–2) per row (reduce4): a 4-row block there would compute repeated rows,
// measured 0.9–1.0× of this.
template <int RB, int R>
MLXK_A512 void scores_block(const float* const* qr, const float* kb, int64_t kst, int n, int D, float scale, float* sc, int ld) {
  const float* q[RB];
  for (int g = 0; g < RB; g++) q[g] = qr[std::min(g, R - 1)];
  for (int s = 0; s < n; s += 4) {
    const float* k[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) k[j] = kb + std::min(s + j, n - 1) * kst;
    __m512 a[4 * RB];
    dots4<RB>(q, k, D, a);
    const __mmask8 m = static_cast<__mmask8>(s + 4 <= n ? 0xF : (1u << (n - s)) - 1);
    if constexpr (RB == 4) {
      const __m512 d = _mm512_mul_ps(reduce16(a), _mm512_set1_ps(scale));
      _mm_mask_storeu_ps(sc + s, m, _mm512_castps512_ps128(d));
      if constexpr (R > 1) _mm_mask_storeu_ps(sc + ld + s, m, _mm512_extractf32x4_ps(d, 1));
      if constexpr (R > 2) _mm_mask_storeu_ps(sc + 2 * ld + s, m, _mm512_extractf32x4_ps(d, 2));
      if constexpr (R > 3) _mm_mask_storeu_ps(sc + 3 * ld + s, m, _mm512_extractf32x4_ps(d, 3));
    } else {
#pragma GCC unroll 2
      for (int g = 0; g < R; g++)
        _mm_mask_storeu_ps(sc + g * ld + s, m, _mm_mul_ps(reduce4(a[4 * g], a[4 * g + 1], a[4 * g + 2], a[4 * g + 3]), _mm_set1_ps(scale)));
    }
  }
}

// max of x[0..n) (n ≥ 1): the same value whatever the order.
MLXK_A512 float max_of(const float* x, int n) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int s = 0;
  for (; s + 16 <= n; s += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + s));
  float r = _mm512_reduce_max_ps(m);
  for (; s < n; s++) r = std::max(r, x[s]);
  return r;
}

// sc[s] = exp(sc[s] - m), returns Σ: exp_shift_sum_avx2's 8-lane accumulator, fed 8 lanes at a time in key order.
MLXK_A512 float exp_shift_sum512(float* sc, int n, float m) {
  const __m512 mv = _mm512_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  int s = 0;
  for (; s + 16 <= n; s += 16) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(sc + s), mv));
    _mm512_storeu_ps(sc + s, e);
    acc = _mm256_add_ps(_mm256_add_ps(acc, lo256(e)), hi256(e));
  }
  if (s + 8 <= n) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(sc + s), _mm256_set1_ps(m)));
    _mm256_storeu_ps(sc + s, e);
    acc = _mm256_add_ps(acc, e);
    s += 8;
  }
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  float sum = _mm_cvtss_f32(t);
  for (; s < n; s++) {
    sc[s] = std::exp(sc[s] - m);
    sum += sc[s];
  }
  return sum;
}

// y_g[c0..c0+cols) += Σ_{s0 ≤ s < s1} p_g[s]·v_s for G rows, cols ≤ 16·W (a multiple of 8): each value row loaded
// once for all G, the sums in registers; per element the same fma(p, v, acc) in key order as weighted_rows_avx2
// (the sums start from y, so a row's keys can be summed in consecutive ranges without changing a bit).
template <int G, int W>
MLXK_A512 void weighted_rows512(const float* const* p, int s0, int s1, const float* vbase, int64_t vstride, float* const* y,
                                int c0, int cols) {
  const int nv = (cols + 15) / 16;
  const __mmask16 last = cols % 16 ? 0x00FF : 0xFFFF;
  __m512 acc[G][W];
#pragma GCC unroll 8
  for (int g = 0; g < G; g++)
#pragma GCC unroll 4
    for (int j = 0; j < W; j++)
      if (j < nv) acc[g][j] = _mm512_maskz_loadu_ps(j + 1 == nv ? last : 0xFFFF, y[g] + c0 + 16 * j);
  for (int s = s0; s < s1; s++) {
    const float* vr = vbase + s * vstride + c0;
    __m512 v[W];
#pragma GCC unroll 4
    for (int j = 0; j < W; j++)
      if (j < nv) v[j] = _mm512_maskz_loadu_ps(j + 1 == nv ? last : 0xFFFF, vr + 16 * j);
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) {
      const __m512 ps = _mm512_set1_ps(p[g][s]);
#pragma GCC unroll 4
      for (int j = 0; j < W; j++)
        if (j < nv) acc[g][j] = _mm512_fmadd_ps(ps, v[j], acc[g][j]);
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < G; g++)
#pragma GCC unroll 4
    for (int j = 0; j < W; j++)
      if (j < nv) _mm512_mask_storeu_ps(y[g] + c0 + 16 * j, j + 1 == nv ? last : 0xFFFF, acc[g][j]);
}

template <int G>
MLXK_A512 void weighted_all(const float* const* p, int s0, int s1, const float* vb, int64_t vst, float* const* y, int Dv) {
  constexpr int W = G <= 4 ? 4 : 2;
  for (int c = 0; c < Dv; c += 16 * W) weighted_rows512<G, W>(p, s0, s1, vb, vst, y, c, std::min(16 * W, Dv - c));
}

MLXK_A512 void weighted(int G, const float* const* p, int s0, int s1, const float* vb, int64_t vst, float* const* y, int Dv) {
  switch (G) {
    case 8: return weighted_all<8>(p, s0, s1, vb, vst, y, Dv);
    case 7: return weighted_all<7>(p, s0, s1, vb, vst, y, Dv);
    case 6: return weighted_all<6>(p, s0, s1, vb, vst, y, Dv);
    case 5: return weighted_all<5>(p, s0, s1, vb, vst, y, Dv);
    case 4: return weighted_all<4>(p, s0, s1, vb, vst, y, Dv);
    case 3: return weighted_all<3>(p, s0, s1, vb, vst, y, Dv);
    case 2: return weighted_all<2>(p, s0, s1, vb, vst, y, Dv);
    default: return weighted_all<1>(p, s0, s1, vb, vst, y, Dv);
  }
}

// G ≤ 8 rows: blocks of 4 (7 = 4 + 3 with a repeated row), then 1 or 2 left (6 = 4 + 2, 5 = 4 + 1); each block
// one pass over the keys (key blocks sized for L1 under both row blocks measured no faster).
MLXK_A512 void scores(int G, const float* const* q, const float* kb, int64_t kst, int n, int D, float scale, float* sc, int ld) {
  for (int g = 0; g < G;) {
    float* o = sc + static_cast<size_t>(g) * ld;
    switch (G - g) {
      case 1: scores_block<1, 1>(q + g, kb, kst, n, D, scale, o, ld), g += 1; break;
      case 2: scores_block<2, 2>(q + g, kb, kst, n, D, scale, o, ld), g += 2; break;
      case 3: scores_block<4, 3>(q + g, kb, kst, n, D, scale, o, ld), g += 3; break;
      default: scores_block<4, 4>(q + g, kb, kst, n, D, scale, o, ld), g += 4; break;
    }
  }
}

MLXK_A512 void scale_row(float* y, int Dv, float inv) {
  const __m512 vi = _mm512_set1_ps(inv);
  int i = 0;
  for (; i + 16 <= Dv; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), vi));
  for (; i < Dv; i++) y[i] *= inv;
}

bool cpu_has_avx512() {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vl");
  return cpu;
}

} // namespace
#endif

bool attend512_active() {
#ifdef MLXK_A512
  return kern::active_isa() >= kern::kIsaAvx512 && cpu_has_avx512();
#else
  return false;
#endif
}

void attend512(const float* const* q, const int* n, int G, const float* kb, int64_t kst, const float* vb, int64_t vst,
               int D, int Dv, float scale, float* const* y) {
#ifdef MLXK_A512
  const int nmax = n[G - 1];
  for (int g = 0; g < G; g++) std::fill(y[g], y[g] + Dv, 0.f);
  if (nmax == 0) return;
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(G) * nmax);
  float* sc = buf.data();
  // every row scored over the longest range (a row's extra scores are never read), then each over its own
  scores(G, q, kb, kst, nmax, D, scale, sc, nmax);
  const float* p[8];
  float inv[8];
  for (int g = 0; g < G; g++) {
    p[g] = sc + static_cast<size_t>(g) * nmax;
    inv[g] = n[g] > 0 ? 1.0f / exp_shift_sum512(sc + static_cast<size_t>(g) * nmax, n[g], max_of(p[g], n[g])) : 0.f;
  }
  // keys [n[a-1], n[a]) go to rows a.. (the rows whose ranges reach that far)
  for (int a = 0, s0 = 0; a < G; a++) {
    if (n[a] > s0) weighted(G - a, p + a, s0, n[a], vb, vst, y + a, Dv);
    s0 = std::max(s0, n[a]);
  }
  for (int g = 0; g < G; g++) scale_row(y[g], Dv, inv[g]);
#else
  (void)q, (void)n, (void)G, (void)kb, (void)kst, (void)vb, (void)vst, (void)D, (void)Dv, (void)scale, (void)y;
#endif
}

} // namespace mlxk::rows

// AVX-512 attention rows, up to 8 query rows at once over keys from the same first key (the query heads of a GQA
// group, and in a causal prefill consecutive positions too, whose ranges differ only in their ends): scored
// against each key in one pass over the keys and summed over the values in one pass, so each key and value row
// is loaded once for all of them (loads from L2, not FMAs, bound the row-at-a-time kernel). Every row gets
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

// dot4_avx2's reduction of 4 keys' [a0 | a1] sums: low + high half, then its hadd tree.
MLXK_A512 inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m256 x0 = _mm256_add_ps(lo256(a0), hi256(a0)), x1 = _mm256_add_ps(lo256(a1), hi256(a1));
  const __m256 x2 = _mm256_add_ps(lo256(a2), hi256(a2)), x3 = _mm256_add_ps(lo256(a3), hi256(a3));
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(x0, x1), _mm256_hadd_ps(x2, x3));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

// sc[g·ld + s] = (q_g·k_s)·scale for G rows and keys s < n, NK keys per pass (G·NK sums in registers). One zmm per
// (row, key) holds dot4_avx2's two accumulators side by side (elements i..i+7 of each 16 in the low half,
// i+8..i+15 in the high half; a D % 16 tail of 8 in the low half only), then reduce4: the same sums in the same
// order. A key's sum does not depend on the keys reduced with it, so any grouping of keys gives the same values.
template <int G, int NK>
MLXK_A512 void scores_rows(const float* const* q, const float* kb, int64_t kst, int n, int D, float scale, float* sc, int ld) {
  const __m128 vs = _mm_set1_ps(scale);
  for (int s = 0; s < n; s += NK) {
    const float* k[NK];
#pragma GCC unroll 4
    for (int j = 0; j < NK; j++) k[j] = kb + std::min(s + j, n - 1) * kst; // past n: repeat the last key
    __m512 a[G][NK];
#pragma GCC unroll 8
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
      for (int j = 0; j < NK; j++) a[g][j] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= D; i += 16) {
      __m512 kv[NK];
#pragma GCC unroll 4
      for (int j = 0; j < NK; j++) kv[j] = _mm512_loadu_ps(k[j] + i);
#pragma GCC unroll 8
      for (int g = 0; g < G; g++) {
        const __m512 qv = _mm512_loadu_ps(q[g] + i);
#pragma GCC unroll 4
        for (int j = 0; j < NK; j++) a[g][j] = _mm512_fmadd_ps(qv, kv[j], a[g][j]);
      }
    }
    if (i < D) {
      constexpr __mmask16 lo = 0x00FF;
      __m512 kv[NK];
#pragma GCC unroll 4
      for (int j = 0; j < NK; j++) kv[j] = _mm512_maskz_loadu_ps(lo, k[j] + i);
#pragma GCC unroll 8
      for (int g = 0; g < G; g++) {
        const __m512 qv = _mm512_maskz_loadu_ps(lo, q[g] + i);
#pragma GCC unroll 4
        for (int j = 0; j < NK; j++) a[g][j] = _mm512_mask3_fmadd_ps(qv, kv[j], a[g][j], lo);
      }
    }
    alignas(16) float t[4];
    if constexpr (NK == 4) {
#pragma GCC unroll 8
      for (int g = 0; g < G; g++) {
        const __m128 d = _mm_mul_ps(reduce4(a[g][0], a[g][1], a[g][2], a[g][3]), vs);
        if (s + 4 <= n) {
          _mm_storeu_ps(sc + g * ld + s, d);
        } else {
          _mm_store_ps(t, d);
          for (int j = 0; s + j < n; j++) sc[g * ld + s + j] = t[j];
        }
      }
    } else {
      static_assert(NK == 2);
#pragma GCC unroll 8
      for (int g = 0; g < G; g += 2) {
        const int g1 = g + 1 < G ? g + 1 : g;
        _mm_store_ps(t, _mm_mul_ps(reduce4(a[g][0], a[g][1], a[g1][0], a[g1][1]), vs));
        for (int j = 0; j < 2 && s + j < n; j++) {
          sc[g * ld + s + j] = t[j];
          sc[g1 * ld + s + j] = t[2 + j];
        }
      }
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

MLXK_A512 void scores(int G, const float* const* q, const float* kb, int64_t kst, int n, int D, float scale, float* sc, int ld) {
  switch (G) {
    case 8: return scores_rows<8, 2>(q, kb, kst, n, D, scale, sc, ld);
    case 7: return scores_rows<7, 2>(q, kb, kst, n, D, scale, sc, ld);
    case 6: return scores_rows<6, 2>(q, kb, kst, n, D, scale, sc, ld);
    case 5: return scores_rows<5, 2>(q, kb, kst, n, D, scale, sc, ld);
    case 4: return scores_rows<4, 4>(q, kb, kst, n, D, scale, sc, ld);
    case 3: return scores_rows<3, 4>(q, kb, kst, n, D, scale, sc, ld);
    case 2: return scores_rows<2, 4>(q, kb, kst, n, D, scale, sc, ld);
    default: return scores_rows<1, 4>(q, kb, kst, n, D, scale, sc, ld);
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

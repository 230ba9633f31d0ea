// AVX-512 attention rows for the query heads of one GQA group: up to kGroupRows query rows that share a key range
// are scored against each key in one pass over the keys and summed over the values in one pass, so each key and
// value row is loaded once for all of them. Every row gets exactly the AVX2 row's values (rows::attend in
// fused.cpp): the same FMAs per element in the same order, the same reduction tree, the same exp polynomial.
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

// exp_avx2's operations on 16 lanes (each lane the same IEEE op sequence, so the same value per lane).
MLXK_A512 inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

MLXK_A512 inline __m256 lo256(__m512 v) {
  return _mm512_castps512_ps256(v);
}
MLXK_A512 inline __m256 hi256(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

// q_g·k_j for G rows × 4 keys. One zmm per (row, key) holds dot4_avx2's two accumulators side by side (elements
// i..i+7 of each 16 in the low half, i+8..i+15 in the high half; a D % 16 tail of 8 in the low half only), then
// low + high and dot4_avx2's hadd tree: the same sums in the same order.
template <int G>
MLXK_A512 void dot4_rows(const float* const* q, const float* const* k, int D, __m128* out) {
  __m512 a[G][4];
#pragma GCC unroll 8
  for (int g = 0; g < G; g++)
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) a[g][j] = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= D; i += 16) {
    __m512 kv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) kv[j] = _mm512_loadu_ps(k[j] + i);
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) {
      const __m512 qv = _mm512_loadu_ps(q[g] + i);
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) a[g][j] = _mm512_fmadd_ps(qv, kv[j], a[g][j]);
    }
  }
  if (i < D) {
    constexpr __mmask16 lo = 0x00FF;
    __m512 kv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) kv[j] = _mm512_maskz_loadu_ps(lo, k[j] + i);
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) {
      const __m512 qv = _mm512_maskz_loadu_ps(lo, q[g] + i);
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) a[g][j] = _mm512_mask3_fmadd_ps(qv, kv[j], a[g][j], lo);
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < G; g++) {
    __m256 x[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) x[j] = _mm256_add_ps(lo256(a[g][j]), hi256(a[g][j]));
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(x[0], x[1]), _mm256_hadd_ps(x[2], x[3]));
    out[g] = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  }
}

// sc[g·n + s] = (q_g·k_s)·scale; m[g] = the row's maximum (scores_avx2 per row).
template <int G>
MLXK_A512 void scores_rows(const float* const* q, const float* kb, int64_t kst, int n, int D, float scale, float* sc, float* m) {
  const __m128 vs = _mm_set1_ps(scale);
  __m128 vm[G], d[G];
#pragma GCC unroll 8
  for (int g = 0; g < G; g++) vm[g] = _mm_set1_ps(-std::numeric_limits<float>::infinity());
  int s = 0;
  for (; s + 4 <= n; s += 4) {
    const float* k[4] = {kb + s * kst, kb + (s + 1) * kst, kb + (s + 2) * kst, kb + (s + 3) * kst};
    dot4_rows<G>(q, k, D, d);
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) {
      const __m128 v = _mm_mul_ps(d[g], vs);
      _mm_storeu_ps(sc + g * n + s, v);
      vm[g] = _mm_max_ps(vm[g], v);
    }
  }
  for (int g = 0; g < G; g++) m[g] = std::max(std::max(vm[g][0], vm[g][1]), std::max(vm[g][2], vm[g][3]));
  if (s < n) {
    // a tail key's sum does not depend on its neighbours: repeat the last key, as scores_avx2 does
    const float* k[4];
    for (int j = 0; j < 4; j++) k[j] = kb + std::min(s + j, n - 1) * kst;
    dot4_rows<G>(q, k, D, d);
    for (int g = 0; g < G; g++) {
      alignas(16) float t[4];
      _mm_store_ps(t, _mm_mul_ps(d[g], vs));
      for (int j = 0; s + j < n; j++) {
        sc[g * n + s + j] = t[j];
        m[g] = std::max(m[g], t[j]);
      }
    }
  }
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

// y_g[0..cols) = Σ_s p_g[s]·v_s for G rows, cols ≤ 64 (a multiple of 8): each value row loaded once for all G,
// the sums in registers; per element the same fma(p, v, acc) in key order as weighted_rows_avx2.
template <int G>
MLXK_A512 void weighted_rows512(const float* p, int n, const float* vbase, int64_t vstride, float* const* y, int c0, int cols) {
  const int nv = (cols + 15) / 16;
  const __mmask16 last = cols % 16 ? 0x00FF : 0xFFFF;
  __m512 acc[G][4];
#pragma GCC unroll 8
  for (int g = 0; g < G; g++)
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) acc[g][j] = _mm512_setzero_ps();
  for (int s = 0; s < n; s++) {
    const float* vr = vbase + s * vstride + c0;
    __m512 v[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
      if (j < nv) v[j] = _mm512_maskz_loadu_ps(j + 1 == nv ? last : 0xFFFF, vr + 16 * j);
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) {
      const __m512 ps = _mm512_set1_ps(p[g * n + s]);
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++)
        if (j < nv) acc[g][j] = _mm512_fmadd_ps(ps, v[j], acc[g][j]);
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < G; g++)
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
      if (j < nv) _mm512_mask_storeu_ps(y[g] + c0 + 16 * j, j + 1 == nv ? last : 0xFFFF, acc[g][j]);
}

template <int G>
MLXK_A512 void attend_rows(const float* const* q, const float* kb, int64_t kst, const float* vb, int64_t vst, int n, int D,
                           int Dv, float scale, float* const* y) {
  if (n == 0) {
    for (int g = 0; g < G; g++) std::fill(y[g], y[g] + Dv, 0.f);
    return;
  }
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(G) * n);
  float* sc = buf.data();
  float m[G], inv[G];
  scores_rows<G>(q, kb, kst, n, D, scale, sc, m);
  for (int g = 0; g < G; g++) inv[g] = 1.0f / exp_shift_sum512(sc + g * n, n, m[g]);
  for (int c = 0; c < Dv; c += 64) weighted_rows512<G>(sc, n, vb, vst, y, c, std::min(64, Dv - c));
  for (int g = 0; g < G; g++) {
    const __m512 vi = _mm512_set1_ps(inv[g]);
    int i = 0;
    for (; i + 16 <= Dv; i += 16) _mm512_storeu_ps(y[g] + i, _mm512_mul_ps(_mm512_loadu_ps(y[g] + i), vi));
    for (; i < Dv; i++) y[g][i] *= inv[g];
  }
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

void attend512(const float* const* q, int G, const float* kb, int64_t kst, const float* vb, int64_t vst, int n, int D,
               int Dv, float scale, float* const* y) {
#ifdef MLXK_A512
  switch (G) {
    case 4: return attend_rows<4>(q, kb, kst, vb, vst, n, D, Dv, scale, y);
    case 3: return attend_rows<3>(q, kb, kst, vb, vst, n, D, Dv, scale, y);
    case 2: return attend_rows<2>(q, kb, kst, vb, vst, n, D, Dv, scale, y);
    default: return attend_rows<1>(q, kb, kst, vb, vst, n, D, Dv, scale, y);
  }
#else
  (void)q, (void)G, (void)kb, (void)kst, (void)vb, (void)vst, (void)n, (void)D, (void)Dv, (void)scale, (void)y;
#endif
}

} // namespace mlxk::rows

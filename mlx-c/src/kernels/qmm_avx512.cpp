// AVX-512 quantized-matmul tiles, compiled for any x86-64 and picked at run time (qmm.cpp checks the CPU):
//  - f32: the AVX2 tiles' algorithm on 16-float vectors (one 32-weight chunk = two vectors), up to 16 rows
//    of x per unpacked chunk in prefill (32 zmm registers), decode through qmm_decode.h (up to 8 rows);
//  - int8 activations (opt-in, Affine4): x rounded to int8 per 32-element block, u4 codes × s8 x summed by
//    vpdpbusd (64 products per instruction), rescaled per block in f32 — llama.cpp's Q4×Q8 scheme.
#include <algorithm>
#include <cmath>

#include "qmm_isa.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define MLXK_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define MLXK_QMM_TARGET MLXK_512
#include "qmm_decode.h"
#endif

namespace mlxk::kern {

void quantize_x_int8(const float* x, int M, int K, int gs, int8_t* q, float* d16, float* xsum, float* xerr) {
  const int Kp = (K + 127) / 128 * 128, G = K / gs;
  for (int m = 0; m < M; m++) {
    const float* xr = x + static_cast<size_t>(m) * K;
    int8_t* qr = q + static_cast<size_t>(m) * Kp;
    float* dr = d16 + static_cast<size_t>(m) * (Kp / 8);
    for (int b = 0; b < Kp / 32; b++) {
      const int c = b / 4, j = b % 4;
      int8_t* even = qr + c * 128 + j * 16;
      int8_t* odd = even + 64;
      float amax = 0.f;
      if (b * 32 < K)
        for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(xr[b * 32 + i]));
      const float dd = amax / 127.f, inv = amax > 0.f ? 127.f / amax : 0.f;
      for (int i = 0; i < 16; i++) {
        even[i] = b * 32 < K ? static_cast<int8_t>(std::nearbyint(xr[b * 32 + 2 * i] * inv)) : 0;
        odd[i] = b * 32 < K ? static_cast<int8_t>(std::nearbyint(xr[b * 32 + 2 * i + 1] * inv)) : 0;
      }
      for (int l = 0; l < 4; l++) dr[c * 16 + j * 4 + l] = dd;
    }
    float* sr = xsum + static_cast<size_t>(m) * G;
    float* er = xerr + static_cast<size_t>(m) * G;
    for (int g = 0; g < G; g++) {
      float s = 0.f, e = 0.f;
      for (int k = g * gs; k < (g + 1) * gs; k++) {
        const int b = k / 32, c = b / 4, j = b % 4, i = k % 32;
        const int8_t v = qr[c * 128 + (i & 1) * 64 + j * 16 + i / 2];
        s += xr[k];
        e += static_cast<float>(v) * dr[c * 16 + j * 4] - xr[k];
      }
      sr[g] = s;
      er[g] = 7.5f * e;
    }
  }
}

#if defined(__x86_64__)
namespace {

// Unpacks 32 weights from element k0 into two vectors (4-bit: [even | odd] elements, as x is permuted).
template <QFormat F>
MLXK_512 inline void unpack32(const uint8_t* w, int k0, __m512 q[2]) {
  if constexpr (F == QFormat::Affine8) {
    q[0] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k0))));
    q[1] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k0 + 16))));
  } else {
    __m128i lo, hi;
    nibbles<F>(w, k0, lo, hi);
    if constexpr (F == QFormat::Mxfp4) {
      q[0] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo));
      q[1] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi));
    } else {
      q[0] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo));
      q[1] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi));
    }
  }
}

// Σ_g b[g]·xsum[g] (the affine bias term of one output).
MLXK_512 inline float bias_dot(const float* b, const float* xsum, int G) {
  __m512 acc = _mm512_setzero_ps();
  int g = 0;
  for (; g + 16 <= G; g += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(b + g), _mm512_loadu_ps(xsum + g), acc);
  if (g < G) {
    const __mmask16 m = static_cast<__mmask16>((1u << (G - g)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b + g), _mm512_maskz_loadu_ps(m, xsum + g), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// The AVX-512 vector traits of the decode template (qmm_decode.h): 2 zmm per 32-weight chunk; up to 8 rows
// per block (3 accumulators per row + 2 weight vectors in the 32 zmm registers), column pairs up to 4 rows
// (8-bit: 2; one 8-bit row's two chains alone measured ~10 % slower than a pair's four, 1–2 rows at 576 → 2048
// 0.85–1.0x of single columns, the 49152-column head no slower).
struct V16 {
  using reg = __m512;
  static constexpr int width = 16, max_rows = kDecodeRows512, pair_rows = 4, pair_rows8 = 2;
  static constexpr bool prefetch8 = true; // software prefetch of 8-bit rows too (qmm_decode.h)
  MLXK_512 static reg zero() { return _mm512_setzero_ps(); }
  MLXK_512 static reg load(const float* x) { return _mm512_loadu_ps(x); }
  MLXK_512 static reg set1(float v) { return _mm512_set1_ps(v); }
  MLXK_512 static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  MLXK_512 static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  MLXK_512 static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  // 4-bit codes in decode: looked up by code in a 16-float table (vpermps reads the low 4 bits of each dword
  // lane, so the zero-extended bytes need no masking): a zero-extension, a shift and 2 lookups per 32 weights
  // instead of masks, 2 zero-extensions and 2 conversions. The values are the same floats.
  template <QFormat F>
  MLXK_512 static void lookup(const uint8_t* w, int k0, __m512 table, reg q[2]) {
    const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k0 / 2)));
    q[0] = _mm512_permutexvar_ps(idx, table);
    q[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), table);
  }
  MLXK_512 static __m512 code_values(QFormat f) {
    return f == QFormat::Mxfp4 ? _mm512_setr_ps(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)
                               : _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  template <QFormat F>
  MLXK_512 static void unpack(const uint8_t* w, int k0, reg q[2]) {
    if constexpr (F == QFormat::Affine8) unpack32<F>(w, k0, q);
    else lookup<F>(w, k0, code_values(F), q);
  }
  // 32 weights dequantised: s·q + b (mxfp4: s·q), one rounding per weight as unpacking then one FMA gives;
  // 4-bit codes: the group's 16 possible values computed once (one FMA for 32 weights instead of two), then
  // looked up.
  template <QFormat F>
  MLXK_512 static void dequant32(const uint8_t* w, int k0, float s, float b, reg q[2]) {
    if constexpr (F == QFormat::Affine8) {
      unpack32<F>(w, k0, q);
      q[0] = _mm512_fmadd_ps(q[0], set1(s), set1(b));
      q[1] = _mm512_fmadd_ps(q[1], set1(s), set1(b));
    } else {
      const __m512 codes = code_values(F);
      lookup<F>(w, k0, F == QFormat::Mxfp4 ? _mm512_mul_ps(codes, set1(s)) : _mm512_fmadd_ps(codes, set1(s), set1(b)), q);
    }
  }
  // N ≤ 8 horizontal sums, each with the addition tree of GCC's _mm512_reduce_add_ps (256-bit halves, 128-bit
  // halves, then elements {2,3} onto {0,1}, then element 1 onto 0): bit-identical to reducing each vector alone,
  // but 2–8 vectors share each shuffle and add (~23 ops for 8 instead of ~72), which was ~15 % of an 8-row tile.
  template <int N>
  MLXK_512 static void reduce_n(const reg* a, float* o) {
    static_assert(N >= 1 && N <= 8);
    if constexpr (N == 1) {
      o[0] = reduce1(a[0]);
    } else {
      constexpr int P = N <= 2 ? 2 : (N <= 4 ? 4 : 8); // vectors, padded with zeros
      reg v[P], y[P / 2];
#pragma GCC unroll 8
      for (int i = 0; i < P; i++) v[i] = i < N ? a[i] : zero();
      // y[i] = [lo256 + hi256 of v[2i] | of v[2i+1]]
#pragma GCC unroll 4
      for (int i = 0; i < P / 2; i++) y[i] = add(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
      // x: 128-bit lane k = lo128 + hi128 of that of vector k (x1: vectors 4..7; P = 2: lanes 2, 3 repeat 0, 1)
      const reg y1 = P >= 4 ? y[1 % (P / 2)] : y[0];
      const reg x0 = add(_mm512_shuffle_f32x4(y[0], y1, 0x88), _mm512_shuffle_f32x4(y[0], y1, 0xDD));
      reg x1 = x0;
      if constexpr (P == 8) x1 = add(_mm512_shuffle_f32x4(y[2 % (P / 2)], y[3 % (P / 2)], 0x88), _mm512_shuffle_f32x4(y[2 % (P / 2)], y[3 % (P / 2)], 0xDD));
      // per lane: [e0 + e2, e1 + e3] of x0 then of x1, then the two added: vector k at element 4k (x0), 4k + 2 (x1)
      const reg s = add(_mm512_shuffle_ps(x0, x1, 0x44), _mm512_shuffle_ps(x0, x1, 0xEE));
      alignas(64) float t[16];
      _mm512_store_ps(t, add(s, _mm512_movehdup_ps(s)));
#pragma GCC unroll 8
      for (int i = 0; i < N; i++) o[i] = t[i < 4 ? 4 * i : 4 * (i - 4) + 2];
    }
  }
  // The same tree for one vector (what _mm512_reduce_add_ps compiles to under GCC, spelled out so that every
  // compiler gives the batched reduce_n's result).
  MLXK_512 static float reduce1(reg a) {
    const __m256 h = _mm256_add_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)), _mm512_castps512_ps256(a));
    const __m128 q = _mm_add_ps(_mm256_extractf128_ps(h, 1), _mm256_castps256_ps128(h));
    const __m128 e = _mm_add_ps(q, _mm_permute_ps(q, 0x4E));
    return _mm_cvtss_f32(_mm_add_ss(e, _mm_movehdup_ps(e)));
  }
  // A decode_tile's R × C results (row-major): the group sums tot reduced, plus the affine bias term
  // Σ_g b[g]·Σx(g) per output (16 groups per FMA, a masked tail), the bias loads shared by the rows.
  template <QFormat F, int R, int C>
  MLXK_512 static void finish_tile(const QmmProblem& p, const reg* tot, const float* xsum, int G, int n, float* o) {
    reduce_n<R * C>(tot, o);
    if constexpr (F != QFormat::Mxfp4) {
      reg acc[R * C];
#pragma GCC unroll 16
      for (int i = 0; i < R * C; i++) acc[i] = zero();
      const float* b = p.biases + static_cast<size_t>(n) * G;
      int g = 0;
      for (; g + 16 <= G; g += 16)
#pragma GCC unroll 2
        for (int c = 0; c < C; c++) {
          const reg bv = load(b + static_cast<size_t>(c) * G + g);
#pragma GCC unroll 8
          for (int r = 0; r < R; r++) acc[r * C + c] = fmadd(bv, load(xsum + static_cast<size_t>(r) * G + g), acc[r * C + c]);
        }
      if (g < G) {
        const __mmask16 m = static_cast<__mmask16>((1u << (G - g)) - 1);
#pragma GCC unroll 2
        for (int c = 0; c < C; c++) {
          const reg bv = _mm512_maskz_loadu_ps(m, b + static_cast<size_t>(c) * G + g);
#pragma GCC unroll 8
          for (int r = 0; r < R; r++) acc[r * C + c] = fmadd(bv, _mm512_maskz_loadu_ps(m, xsum + static_cast<size_t>(r) * G + g), acc[r * C + c]);
        }
      }
      float ob[R * C];
      reduce_n<R * C>(acc, ob);
#pragma GCC unroll 16
      for (int i = 0; i < R * C; i++) o[i] += ob[i];
    }
  }
};

// R rows of x against weight row n: each chunk dequantised once (s·q + b), FMA'd into every row.
template <QFormat F, int R>
MLXK_512 void rows512(const QmmProblem& p, const float* xp, int n) {
  constexpr int NA = R <= 2 ? 2 : 1;
  const int K = p.K, gs = p.gs, G = K / gs;
  const uint8_t* w = p.w + static_cast<size_t>(n) * K * bits_of(F) / 8;
  __m512 acc[R][NA];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
#pragma GCC unroll 2
    for (int a = 0; a < NA; a++) acc[r][a] = _mm512_setzero_ps();
  for (int g = 0; g < G; g++) {
    const size_t gi = static_cast<size_t>(n) * G + g;
    const __m512 s = _mm512_set1_ps(decode_scale<F>(p, gi));
    const __m512 b = F == QFormat::Mxfp4 ? _mm512_setzero_ps() : _mm512_set1_ps(p.biases[gi]);
    for (int k0 = g * gs; k0 < (g + 1) * gs; k0 += 32) {
      __m512 q[2];
      unpack32<F>(w, k0, q);
      if constexpr (F == QFormat::Mxfp4) {
        q[0] = _mm512_mul_ps(q[0], s);
        q[1] = _mm512_mul_ps(q[1], s);
      } else {
        q[0] = _mm512_fmadd_ps(q[0], s, b);
        q[1] = _mm512_fmadd_ps(q[1], s, b);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        const float* xr = xp + static_cast<size_t>(r) * K + k0;
        acc[r][0] = _mm512_fmadd_ps(q[0], _mm512_loadu_ps(xr), acc[r][0]);
        acc[r][NA - 1] = _mm512_fmadd_ps(q[1], _mm512_loadu_ps(xr + 16), acc[r][NA - 1]);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) p.out[static_cast<size_t>(r) * p.N + n] = _mm512_reduce_add_ps(NA == 2 ? _mm512_add_ps(acc[r][0], acc[r][NA - 1]) : acc[r][0]);
}

// rows512 over C columns from n at once: column pairs share each x load between the two columns; every
// (row, column) runs exactly rows512's arithmetic for the same R.
template <QFormat F, int R, int C>
MLXK_512 void rows512_cols(const QmmProblem& p, const float* xp, int n) {
  constexpr int NA = R <= 2 ? 2 : 1;
  const int K = p.K, gs = p.gs, G = K / gs;
  const size_t row_bytes = static_cast<size_t>(K) * bits_of(F) / 8;
  __m512 acc[R][C][NA];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
#pragma GCC unroll 2
    for (int c = 0; c < C; c++)
#pragma GCC unroll 2
      for (int a = 0; a < NA; a++) acc[r][c][a] = _mm512_setzero_ps();
  for (int g = 0; g < G; g++) {
    __m512 s[C], b[C];
#pragma GCC unroll 2
    for (int c = 0; c < C; c++) {
      const size_t gi = static_cast<size_t>(n + c) * G + g;
      s[c] = _mm512_set1_ps(decode_scale<F>(p, gi));
      b[c] = F == QFormat::Mxfp4 ? _mm512_setzero_ps() : _mm512_set1_ps(p.biases[gi]);
    }
    for (int k0 = g * gs; k0 < (g + 1) * gs; k0 += 32) {
      __m512 q[C][2];
#pragma GCC unroll 2
      for (int c = 0; c < C; c++) {
        unpack32<F>(p.w + static_cast<size_t>(n + c) * row_bytes, k0, q[c]);
        if constexpr (F == QFormat::Mxfp4) {
          q[c][0] = _mm512_mul_ps(q[c][0], s[c]);
          q[c][1] = _mm512_mul_ps(q[c][1], s[c]);
        } else {
          q[c][0] = _mm512_fmadd_ps(q[c][0], s[c], b[c]);
          q[c][1] = _mm512_fmadd_ps(q[c][1], s[c], b[c]);
        }
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        const float* xr = xp + static_cast<size_t>(r) * K + k0;
        const __m512 x0 = _mm512_loadu_ps(xr), x1 = _mm512_loadu_ps(xr + 16);
#pragma GCC unroll 2
        for (int c = 0; c < C; c++) {
          acc[r][c][0] = _mm512_fmadd_ps(q[c][0], x0, acc[r][c][0]);
          acc[r][c][NA - 1] = _mm512_fmadd_ps(q[c][1], x1, acc[r][c][NA - 1]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
#pragma GCC unroll 2
    for (int c = 0; c < C; c++)
      p.out[static_cast<size_t>(r) * p.N + n + c] = _mm512_reduce_add_ps(NA == 2 ? _mm512_add_ps(acc[r][c][0], acc[r][c][NA - 1]) : acc[r][c][0]);
}

// Rows are blocked by 16 (which rows get two chains: a block of 1–2). Long rows (K ≥ 1024: 16 rows of x are
// past L1) run column pairs, which halve the x loads; a pair holds 2 accumulators per row, so the block runs as
// sub-blocks of at most 8 rows (each at least 3 rows when the block has 3, so every row's arithmetic stays that
// of its 16-row block). Short rows keep single columns over all 16 rows: measured (one thread, SmolLM2 prefill
// shapes) pairs were ~12 % slower at K = 576 (twice the unpacking per row) and ~20 % faster at K = 1536.
constexpr int kRows512 = 16, kPairRows512 = 8, kPairMinK = 1024;

template <QFormat F, int R, int C>
MLXK_512 void rows_block(const QmmProblem& p, const float* xr, int c0, int c1) {
  int n = c0;
  if constexpr (C == 2)
    for (; n + 2 <= c1; n += 2) rows512_cols<F, R, 2>(p, xr, n);
  for (; n < c1; n++) rows512<F, R>(p, xr, n);
}

template <QFormat F>
MLXK_512 void tile_f32(const QmmProblem& p, const float* xp, const float* xsum, int r0, int r1, int c0, int c1) {
  if (xsum != nullptr) return decode_block<V16, F>(p, xp, xsum, r0, r1, c0, c1);
  using Fn = void (*)(const QmmProblem&, const float*, int, int);
  static constexpr Fn singles[kRows512] = {
      rows_block<F, 1, 1>,  rows_block<F, 2, 1>,  rows_block<F, 3, 1>,  rows_block<F, 4, 1>,  rows_block<F, 5, 1>,  rows_block<F, 6, 1>,
      rows_block<F, 7, 1>,  rows_block<F, 8, 1>,  rows_block<F, 9, 1>,  rows_block<F, 10, 1>, rows_block<F, 11, 1>, rows_block<F, 12, 1>,
      rows_block<F, 13, 1>, rows_block<F, 14, 1>, rows_block<F, 15, 1>, rows_block<F, 16, 1>};
  static constexpr Fn pairs[kPairRows512] = {rows_block<F, 1, 2>, rows_block<F, 2, 2>, rows_block<F, 3, 2>, rows_block<F, 4, 2>,
                                             rows_block<F, 5, 2>, rows_block<F, 6, 2>, rows_block<F, 7, 2>, rows_block<F, 8, 2>};
  const bool paired = p.K >= kPairMinK;
  for (int r = r0; r < r1; r += kRows512) {
    const int R0 = std::min(kRows512, r1 - r);
    const int parts = paired ? (R0 + kPairRows512 - 1) / kPairRows512 : 1;
    for (int k = 0, rr = r; k < parts; k++) {
      const int R = (r + R0 - rr) / (parts - k); // near-equal sub-blocks: 16 → 8 + 8, 13 → 6 + 7, 9 → 4 + 5
      QmmProblem q = p;
      q.out = p.out + static_cast<size_t>(rr) * p.N;
      (paired ? pairs : singles)[R - 1](q, xp + static_cast<size_t>(rr) * p.K, c0, c1);
      rr += R;
    }
  }
}

// ------------------------------------------------------------------------------------ int8 activations

// Lane l of a 128-weight chunk belongs to block l/4; its group's scale is element (l/4)·32/gs of the
// chunk's scales (loaded from group c·128/gs on).
MLXK_VNNI inline __m512i group_index(int gs) {
  alignas(64) int idx[16];
  for (int l = 0; l < 16; l++) idx[l] = (l / 4) * 32 / gs;
  return _mm512_load_si512(idx);
}

// One weight row's 64-byte chunk c (128 codes; fewer bytes valid in a tail chunk) as low/high nibbles.
MLXK_VNNI inline void codes(const uint8_t* w, int c, __mmask64 m, __m512i& lo, __m512i& hi) {
  const __m512i v = _mm512_maskz_loadu_epi8(m, w + static_cast<size_t>(c) * 64);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  lo = _mm512_and_si512(v, m4);
  hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
}

// Weight scales of chunk c spread over its 16 lanes.
MLXK_VNNI inline __m512 chunk_scales(const float* s, int c, int per, int G, __m512i gidx) {
  const int g0 = c * per, cnt = std::min(per, G - g0);
  const __m128 v = _mm_maskz_loadu_ps(static_cast<__mmask8>((1u << cnt) - 1), s + g0);
  return _mm512_permutexvar_ps(gidx, _mm512_castps128_ps512(v));
}

template <int R>
MLXK_VNNI void rows_vnni(const QmmProblem& p, const Int8X& x, int r0, int n, __m512i gidx) {
  const int K = p.K, G = K / p.gs, per = std::max(1, 128 / p.gs), chunks = x.Kp / 128, ahead = groups_ahead<QFormat::Affine4>(p.gs);
  const uint8_t* w = p.w + static_cast<size_t>(n) * (K / 2);
  const float* s = p.scales + static_cast<size_t>(n) * G;
  __m512 acc[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
  for (int c = 0; c < chunks; c++) {
    const int valid = std::min(64, (K - c * 128) / 2);
    const __mmask64 m = valid == 64 ? ~0ULL : ((1ULL << valid) - 1);
    __m512i lo, hi;
    // the f32 decode tiles' software prefetch of the code, scale and bias streams: without it this tile read
    // the weights at the hardware prefetcher's pace and decoded slower than the f32 tiles on large matrices
    if (c * 128 < K) prefetch_ahead<QFormat::Affine4, 1>(p, &w, n, G, c * 128, c * 128, c * 128 / p.gs, ahead);
    codes(w, c, m, lo, hi);
    const __m512 sw = chunk_scales(s, c, per, G, gidx);
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const int8_t* xq = x.q + static_cast<size_t>(r0 + r) * x.Kp + c * 128;
      __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(xq));
      t = _mm512_dpbusd_epi32(t, hi, _mm512_loadu_si512(xq + 64));
      const __m512 dx = _mm512_loadu_ps(x.d16 + static_cast<size_t>(r0 + r) * (x.Kp / 8) + c * 16);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(sw, dx), acc[r]);
    }
  }
  const float* b = p.biases + static_cast<size_t>(n) * G;
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) {
    const size_t xr = static_cast<size_t>(r0 + r) * G;
    p.out[static_cast<size_t>(r0 + r) * p.N + n] =
        _mm512_reduce_add_ps(acc[r]) + bias_dot(b, x.xsum + xr, G) - bias_dot(s, x.xerr + xr, G);
  }
}

template <int R>
MLXK_VNNI void vnni_block(const QmmProblem& p, const Int8X& x, int r, int c0, int c1, __m512i gidx) {
  for (int n = c0; n < c1; n++) rows_vnni<R>(p, x, r, n, gidx);
}

} // namespace

MLXK_512 void tile_avx512(const QmmProblem& p, const float* xp, const float* xsum, int r0, int r1, int c0, int c1) {
  switch (p.fmt) {
    case QFormat::Affine4: return tile_f32<QFormat::Affine4>(p, xp, xsum, r0, r1, c0, c1);
    case QFormat::Affine8: return tile_f32<QFormat::Affine8>(p, xp, xsum, r0, r1, c0, c1);
    case QFormat::Mxfp4: return tile_f32<QFormat::Mxfp4>(p, xp, xsum, r0, r1, c0, c1);
  }
}

MLXK_VNNI void tile_vnni(const QmmProblem& p, const Int8X& x, int r0, int r1, int c0, int c1) {
  const __m512i gidx = group_index(p.gs);
  using Fn = void (*)(const QmmProblem&, const Int8X&, int, int, int, __m512i);
  static constexpr Fn by_rows[8] = {vnni_block<1>, vnni_block<2>, vnni_block<3>, vnni_block<4>,
                                    vnni_block<5>, vnni_block<6>, vnni_block<7>, vnni_block<8>};
  for (int r = r0; r < r1; r += 8) by_rows[std::min(8, r1 - r) - 1](p, x, r, c0, c1, gidx);
}

#else
void tile_avx512(const QmmProblem&, const float*, const float*, int, int, int, int) {}
void tile_vnni(const QmmProblem&, const Int8X&, int, int, int, int) {}
#endif

} // namespace mlxk::kern

// K-quant scalar and AVX2 tiles straight from the GGUF blocks (the driver is kquant_run.cpp, the AVX-512 tiles
// kquant512.cpp). Every block type is, per 16 values, value = A·code + B
// (Q4_K/Q5_K: A = d·sc, B = −dmin·m per 32; Q6_K: A = d·sc, B = −32·A per 16), so one loop serves all three:
// decode (M = 1) dots the raw codes with x per 16 values and adds Σ B·Σx once per block; prefill dequantizes a
// weight row once into a float buffer and FMAs it against a tile of x rows. The scalar path dequantizes exactly
// as llama.cpp's dequantize_row_q*_K does (same operations, same order).
#include "kquant.h"
#include "kquant512.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "qmm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_KQ_X86 1
#define MLXK_KQ_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace mlxk::kern {
namespace {

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes.
inline void scale_min_k4(int j, const uint8_t* q, int& d, int& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// ---------------------------------------------------------------- exact scalar dequantization (llama.cpp's)

void deq_q4k(const uint8_t* b, float* y) {
  const float d = kq_h2f(b), min = kq_h2f(b + 2);
  const uint8_t* q = b + 16;
  int is = 0, sc, m;
  for (int j = 0; j < 256; j += 64) {
    scale_min_k4(is + 0, b + 4, sc, m);
    const float d1 = d * sc, m1 = min * m;
    scale_min_k4(is + 1, b + 4, sc, m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

void deq_q5k(const uint8_t* b, float* y) {
  const float d = kq_h2f(b), min = kq_h2f(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  int is = 0, sc, m;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < 256; j += 64) {
    scale_min_k4(is + 0, b + 4, sc, m);
    const float d1 = d * sc, m1 = min * m;
    scale_min_k4(is + 1, b + 4, sc, m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 <<= 2;
    u2 <<= 2;
  }
}

void deq_q6k(const uint8_t* b, float* y) {
  const float d = kq_h2f(b + 208);
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int8_t q1 = static_cast<int8_t>((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int8_t q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int8_t q3 = static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int8_t q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

void deq_block(KType t, const uint8_t* b, float* y) {
  switch (t) {
    case KType::Q4K: deq_q4k(b, y); return;
    case KType::Q5K: deq_q5k(b, y); return;
    case KType::Q6K: deq_q6k(b, y); return;
  }
}

inline size_t row_bytes(KType t, int K) {
  return static_cast<size_t>(K / 256) * kq_block_bytes(t);
}

void deq_row_scalar(KType t, const uint8_t* w, float* y, int K) {
  const int bb = kq_block_bytes(t);
  for (int blk = 0; blk < K / 256; blk++) deq_block(t, w + static_cast<size_t>(blk) * bb, y + blk * 256);
}

// ---------------------------------------------------------------- AVX2/FMA

#ifdef MLXK_KQ_X86
// Per 16 values of one block: value = A·code + B (vectorised: this runs once per block per row).
template <KType T>
MLXK_KQ_AVX2 inline void block_params(const uint8_t* b, float* A, float* B) {
  if constexpr (T == KType::Q6K) {
    const __m256 d = _mm256_set1_ps(kq_h2f(b + 208));
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192));
    const __m256 a0 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
    const __m256 a1 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
    const __m256 k = _mm256_set1_ps(-32.f);
    _mm256_store_ps(A, a0);
    _mm256_store_ps(A + 8, a1);
    _mm256_store_ps(B, _mm256_mul_ps(k, a0));
    _mm256_store_ps(B + 8, _mm256_mul_ps(k, a1));
  } else {
    const __m128i v = kq_unpack_scales_v(b + 4);
    const __m256 a = _mm256_mul_ps(_mm256_set1_ps(kq_h2f(b)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)));
    const __m256 m = _mm256_mul_ps(_mm256_set1_ps(-kq_h2f(b + 2)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8))));
    // per 32 → per 16: each value twice, in order
    const __m256 alo = _mm256_unpacklo_ps(a, a), ahi = _mm256_unpackhi_ps(a, a);
    const __m256 mlo = _mm256_unpacklo_ps(m, m), mhi = _mm256_unpackhi_ps(m, m);
    _mm256_store_ps(A, _mm256_permute2f128_ps(alo, ahi, 0x20));
    _mm256_store_ps(A + 8, _mm256_permute2f128_ps(alo, ahi, 0x31));
    _mm256_store_ps(B, _mm256_permute2f128_ps(mlo, mhi, 0x20));
    _mm256_store_ps(B + 8, _mm256_permute2f128_ps(mlo, mhi, 0x31));
  }
}

// The 32 codes (unsigned, as bytes) of values 32j..32j+31 of block b.
template <KType T>
MLXK_KQ_AVX2 inline __m256i codes(const uint8_t* b, int j) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  if constexpr (T == KType::Q6K) {
    const int h = j >> 2, i = j & 3;
    const __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * h + 32 * (i & 1)));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h));
    const __m256i lo = (i >> 1) ? _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4) : _mm256_and_si256(ql, m4);
    const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i)), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)); // hi < 4, so the 16-bit shift cannot cross bytes
  } else {
    const uint8_t* qs = b + (T == KType::Q5K ? 48 : 16);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (j >> 1)));
    __m256i c = (j & 1) ? _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) : _mm256_and_si256(v, m4);
    if constexpr (T == KType::Q5K) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
      const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << j));
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
      c = _mm256_or_si256(c, _mm256_and_si256(set, _mm256_set1_epi8(16)));
    }
    return c;
  }
}

MLXK_KQ_AVX2 inline void to_floats(__m256i v, __m256 f[4]) {
  const __m128i a = _mm256_castsi256_si128(v), c = _mm256_extracti128_si256(v, 1);
  f[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(a));
  f[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)));
  f[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
  f[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)));
}

MLXK_KQ_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Decode: C weight rows (n..n+C-1) against one x row; xs16 = Σx per 16 values. Columns share the x loads.
template <KType T, int C>
MLXK_KQ_AVX2 void dot_rows(const KqProblem& p, const float* x, const float* xs16, int n) {
  const int nb = p.K / 256, bb = kq_block_bytes(T);
  const uint8_t* w[C];
  __m256 acc[C][2], bacc[C];
  #pragma GCC unroll 8
  for (int c = 0; c < C; c++) {
    w[c] = p.w + static_cast<size_t>(n + c) * nb * bb;
    acc[c][0] = acc[c][1] = bacc[c] = _mm256_setzero_ps();
  }
  alignas(32) float A[C][16], B[C][16];
  for (int blk = 0; blk < nb; blk++) {
    #pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
      const uint8_t* b = w[c] + static_cast<size_t>(blk) * bb;
      block_params<T>(b, A[c], B[c]);
      const float* xs = xs16 + blk * 16;
      bacc[c] = _mm256_fmadd_ps(_mm256_load_ps(B[c]), _mm256_loadu_ps(xs), bacc[c]);
      bacc[c] = _mm256_fmadd_ps(_mm256_load_ps(B[c] + 8), _mm256_loadu_ps(xs + 8), bacc[c]);
    }
    const float* xb = x + blk * 256;
    #pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      const __m256 x0 = _mm256_loadu_ps(xb + 32 * j), x1 = _mm256_loadu_ps(xb + 32 * j + 8);
      const __m256 x2 = _mm256_loadu_ps(xb + 32 * j + 16), x3 = _mm256_loadu_ps(xb + 32 * j + 24);
      #pragma GCC unroll 8
      for (int c = 0; c < C; c++) {
        __m256 f[4];
        to_floats(codes<T>(w[c] + static_cast<size_t>(blk) * bb, j), f);
        const __m256 lo = _mm256_fmadd_ps(f[1], x1, _mm256_mul_ps(f[0], x0));
        const __m256 hi = _mm256_fmadd_ps(f[3], x3, _mm256_mul_ps(f[2], x2));
        acc[c][0] = _mm256_fmadd_ps(lo, kq_bcast8(&A[c][2 * j]), acc[c][0]);
        acc[c][1] = _mm256_fmadd_ps(hi, kq_bcast8(&A[c][2 * j + 1]), acc[c][1]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int c = 0; c < C; c++) p.out[n + c] = hsum(_mm256_add_ps(_mm256_add_ps(acc[c][0], acc[c][1]), bacc[c]));
}

// Prefill: one weight row → floats (A·code + B per value).
template <KType T>
MLXK_KQ_AVX2 void deq_row_avx2(const uint8_t* w, float* y, int K) {
  const int bb = kq_block_bytes(T);
  alignas(32) float A[16], B[16];
  for (int blk = 0; blk < K / 256; blk++) {
    const uint8_t* b = w + static_cast<size_t>(blk) * bb;
    block_params<T>(b, A, B);
    #pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      __m256 f[4];
      to_floats(codes<T>(b, j), f);
      float* out = y + blk * 256 + 32 * j;
      #pragma GCC unroll 8
      for (int q = 0; q < 4; q++) {
        const int s = 2 * j + (q >> 1);
        _mm256_storeu_ps(out + 8 * q, _mm256_fmadd_ps(f[q], kq_bcast8(&A[s]), kq_bcast8(&B[s])));
      }
    }
  }
}

// R rows of x against C dequantized weight rows: out[r][c] = Σ x[r]·w[c].
template <int C, int R>
MLXK_KQ_AVX2 void tile(const float* const* wr, const float* x, int K, float* out, int ldo) {
  __m256 acc[R][C];
  #pragma GCC unroll 8
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
  for (int k = 0; k < K; k += 8) {
    __m256 wv[C];
    #pragma GCC unroll 8
    for (int c = 0; c < C; c++) wv[c] = _mm256_loadu_ps(wr[c] + k);
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m256 xv = _mm256_loadu_ps(x + static_cast<size_t>(r) * K + k);
      #pragma GCC unroll 8
      for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(wv[c], xv, acc[r][c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) out[static_cast<size_t>(r) * ldo + c] = hsum(acc[r][c]);
}

template <int C>
MLXK_KQ_AVX2 void tile_rows(const float* const* wr, const float* x, int rows, int K, float* out, int ldo) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) tile<C, 4>(wr, x + static_cast<size_t>(r) * K, K, out + static_cast<size_t>(r) * ldo, ldo);
  for (; r < rows; r++) tile<C, 1>(wr, x + static_cast<size_t>(r) * K, K, out + static_cast<size_t>(r) * ldo, ldo);
}

template <KType T>
MLXK_KQ_AVX2 void prefill_avx2(const KqProblem& p, int r0, int r1, int c0, int c1) {
  thread_local std::vector<float> buf;
  const size_t K = static_cast<size_t>(p.K);
  buf.resize(2 * K);
  const size_t rb = row_bytes(T, p.K);
  const float* x = p.x + r0 * K;
  int n = c0;
  for (; n + 2 <= c1; n += 2) {
    deq_row_avx2<T>(p.w + n * rb, buf.data(), p.K);
    deq_row_avx2<T>(p.w + (n + 1) * rb, buf.data() + K, p.K);
    const float* wr[2] = {buf.data(), buf.data() + K};
    tile_rows<2>(wr, x, r1 - r0, p.K, p.out + static_cast<size_t>(r0) * p.ldo + n, p.ldo);
  }
  for (; n < c1; n++) {
    deq_row_avx2<T>(p.w + n * rb, buf.data(), p.K);
    const float* wr[1] = {buf.data()};
    tile_rows<1>(wr, x, r1 - r0, p.K, p.out + static_cast<size_t>(r0) * p.ldo + n, p.ldo);
  }
}

// ---- opt-in int8 activations (q8_K)

// x rows → int8 per 256 values: q = round(x / d), d = max|x| / 127; bsums = Σq per 16 values.
void quantize_q8(const float* x, int rows, int K, const KqQ8& o) {
  const int nb = K / 256;
  for (size_t b = 0; b < static_cast<size_t>(rows) * nb; b++) {
    const float* xb = x + b * 256;
    float amax = 0.f;
    for (int i = 0; i < 256; i++) amax = std::max(amax, std::fabs(xb[i]));
    const float d = amax / 127.f, id = amax > 0.f ? 127.f / amax : 0.f;
    o.d[b] = d;
    int8_t* q = o.q + b * 256;
    for (int i = 0; i < 256; i++) q[i] = static_cast<int8_t>(std::lrintf(std::min(127.f, std::max(-127.f, xb[i] * id))));
    for (int g = 0; g < 16; g++) {
      int s = 0;
      for (int i = 0; i < 16; i++) s += q[16 * g + i];
      o.bsums[b * 16 + g] = s;
    }
  }
}

// Integer scales and mins per 16 values of one block, and the float factors: value = dA·S·code − dB·M.
template <KType T>
inline void int_params(const uint8_t* b, int16_t* S, int16_t* M, float& dA, float& dB) {
  if constexpr (T == KType::Q6K) {
    dA = kq_h2f(b + 208);
    dB = dA;
    for (int i = 0; i < 16; i++) {
      S[i] = static_cast<int8_t>(b[192 + i]);
      M[i] = static_cast<int16_t>(32 * S[i]); // code − 32
    }
  } else {
    dA = kq_h2f(b);
    dB = kq_h2f(b + 2);
    uint8_t sm[16];
    kq_unpack_scales(b + 4, sm);
    for (int j = 0; j < 8; j++) {
      S[2 * j] = S[2 * j + 1] = sm[j];
      M[2 * j] = M[2 * j + 1] = sm[8 + j];
    }
  }
}

// R int8 x rows (stride K) against weight row n: out[r·ldo] = Σ blocks dx·(dA·Σ S·(c·q) − dB·Σ M·bsum).
template <KType T, int R>
MLXK_KQ_AVX2 void dot_q8(const KqProblem& p, const KqQ8& x, int r0, int n) {
  const int nb = p.K / 256, bb = kq_block_bytes(T);
  const uint8_t* w = p.w + static_cast<size_t>(n) * nb * bb;
  __m256 acc[R], accm[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) acc[r] = accm[r] = _mm256_setzero_ps();
  alignas(32) int16_t S[16], M[16];
  for (int blk = 0; blk < nb; blk++) {
    const uint8_t* b = w + static_cast<size_t>(blk) * bb;
    float dA, dB;
    int_params<T>(b, S, M, dA, dB);
    __m256i isum[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      const __m256i c = codes<T>(b, j);
      const __m256i sv = _mm256_set_m128i(_mm_set1_epi16(S[2 * j + 1]), _mm_set1_epi16(S[2 * j]));
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) {
        const size_t xb = (static_cast<size_t>(r0 + r) * nb + blk) * 256 + 32 * j;
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + xb));
        isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(_mm256_maddubs_epi16(c, q), sv));
      }
    }
    const __m256i mv = _mm256_load_si256(reinterpret_cast<const __m256i*>(M));
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const size_t bi = static_cast<size_t>(r0 + r) * nb + blk;
      const __m256i bs = _mm256_packs_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsums + bi * 16)),
                                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsums + bi * 16 + 8)));
      // packs interleaves 128-bit lanes: bsums order [0..3, 8..11, 4..7, 12..15]; permute back before pairing with M
      const __m256i mm = _mm256_madd_epi16(_mm256_permute4x64_epi64(bs, 0xD8), mv);
      const float dx = x.d[bi];
      // vector accumulators per row; one horizontal sum at the end (llama.cpp's order of work)
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(dx * dA), acc[r]);
      accm[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mm), _mm256_set1_ps(dx * dB), accm[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) p.out[static_cast<size_t>(r0 + r) * p.ldo + n] = hsum(_mm256_sub_ps(acc[r], accm[r]));
}

template <KType T>
MLXK_KQ_AVX2 void tile_q8(const KqProblem& p, const KqQ8& x, int r0, int r1, int c0, int c1) {
  for (int n = c0; n < c1; n++) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) dot_q8<T, 4>(p, x, r, n);
    for (; r < r1; r++) dot_q8<T, 1>(p, x, r, n);
  }
}

template <KType T>
MLXK_KQ_AVX2 void decode_avx2(const KqProblem& p, const float* xs16, int r, int c0, int c1) {
  KqProblem q = p;
  q.out = p.out + static_cast<size_t>(r) * p.ldo;
  const float* x = p.x + static_cast<size_t>(r) * p.K;
  int n = c0;
  for (; n + 2 <= c1; n += 2) dot_rows<T, 2>(q, x, xs16, n);
  for (; n < c1; n++) dot_rows<T, 1>(q, x, xs16, n);
}
#endif

void tile_scalar(const KqProblem& p, int r0, int r1, int c0, int c1) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(p.K));
  const size_t rb = row_bytes(p.t, p.K);
  for (int n = c0; n < c1; n++) {
    deq_row_scalar(p.t, p.w + n * rb, buf.data(), p.K);
    for (int r = r0; r < r1; r++) {
      const float* x = p.x + static_cast<size_t>(r) * p.K;
      float acc = 0.f;
      for (int k = 0; k < p.K; k++) acc += x[k] * buf[k];
      p.out[static_cast<size_t>(r) * p.ldo + n] = acc;
    }
  }
}

} // namespace

int kq_block_bytes(KType t) {
  switch (t) {
    case KType::Q4K: return 144;
    case KType::Q5K: return 176;
    case KType::Q6K: return 210;
  }
  return 0;
}

bool kq_supported(int K) {
  return K > 0 && K % 256 == 0;
}

void kq_deq_row(KType t, const uint8_t* w, float* y, int K) {
#ifdef MLXK_KQ_X86
  if (avx2_active()) {
    switch (t) {
      case KType::Q4K: return deq_row_avx2<KType::Q4K>(w, y, K);
      case KType::Q5K: return deq_row_avx2<KType::Q5K>(w, y, K);
      case KType::Q6K: return deq_row_avx2<KType::Q6K>(w, y, K);
    }
  }
#endif
  deq_row_scalar(t, w, y, K);
}

void kq_dequant_rows(KType t, const uint8_t* w, float* out, size_t rows, int K) {
  const size_t rb = row_bytes(t, K);
  for (size_t r = 0; r < rows; r++) deq_row_scalar(t, w + r * rb, out + r * static_cast<size_t>(K), K);
}

void kq_quantize_q8(const float* x, int rows, int K, const KqQ8& out) {
  quantize_q8(x, rows, K, out);
}

void kq_tile_avx2(const KqProblem& p, const float* xs16, const KqQ8* q8, int r0, int r1, int c0, int c1) {
#ifdef MLXK_KQ_X86
  if (q8) {
    switch (p.t) {
      case KType::Q4K: return tile_q8<KType::Q4K>(p, *q8, r0, r1, c0, c1);
      case KType::Q5K: return tile_q8<KType::Q5K>(p, *q8, r0, r1, c0, c1);
      case KType::Q6K: return tile_q8<KType::Q6K>(p, *q8, r0, r1, c0, c1);
    }
  }
  if (xs16) {
    switch (p.t) {
      case KType::Q4K: return decode_avx2<KType::Q4K>(p, xs16, r0, c0, c1);
      case KType::Q5K: return decode_avx2<KType::Q5K>(p, xs16, r0, c0, c1);
      case KType::Q6K: return decode_avx2<KType::Q6K>(p, xs16, r0, c0, c1);
    }
  }
  switch (p.t) {
    case KType::Q4K: return prefill_avx2<KType::Q4K>(p, r0, r1, c0, c1);
    case KType::Q5K: return prefill_avx2<KType::Q5K>(p, r0, r1, c0, c1);
    case KType::Q6K: return prefill_avx2<KType::Q6K>(p, r0, r1, c0, c1);
  }
#else
  (void)xs16;
  (void)q8;
  tile_scalar(p, r0, r1, c0, c1);
#endif
}

void kq_tile_scalar(const KqProblem& p, int r0, int r1, int c0, int c1) {
  tile_scalar(p, r0, r1, c0, c1);
}

} // namespace mlxk::kern

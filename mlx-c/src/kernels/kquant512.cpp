// AVX-512 K-quant tiles (see kquant512.h). Decode, per 64 values of a block: the codes as 64 bytes (Q4_K/Q5_K:
// nibble + high bit; Q6_K: nibble + 2 high bits), each 16-bit word's low byte looked up as bf16 (vpermw; the odd
// bytes after a shift by 8), three vdpbf16ps against the x pieces laid out in that word order, then one FMA with
// the sub-block scales (Q4_K/Q5_K: value = A·code + B per 32, the B part once per block as B·Σx; Q6_K: the table
// holds code − 32, value = A·entry per 16).
#include "kquant512.h"

#include <algorithm>
#include <vector>

#include "gemm512.h"
#include "kquant512_codes.h"
#include "qmm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_KQ512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,avx2,fma")))
#endif

namespace mlxk::kern {
namespace kq512 {

#if defined(__x86_64__)
namespace {

inline uint16_t bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Value index (0..255 in the block) of word w of the (h, c, odd) code vector: the byte it reads is 2w + odd.
inline int value_of(KType t, int h, int c, int odd, int w) {
  const int beta = 2 * w + odd;
  if (t == KType::Q6K) return 128 * h + 64 * c + beta;
  return 64 * (2 * h + (beta >> 5)) + 32 * c + (beta & 31);
}

// Prefetch distances in bytes of one weight row (int8 tiles: measured on Zen 4, they run ~2× faster per byte;
// f32 decode: 2 KiB → 6 KiB on this VM's Zen 5 took Q6_K 1.6–1.9×, Q4_K 1.14× (bench/decode-stream.cpp))
constexpr size_t kAhead = 6144, kAheadQ8 = 8192;

constexpr int kVec(int h, int c, int odd) { return ((h * 2 + c) * 2 + odd) * 96; } // word offset in a block

// bf16 words of the integers lo..lo+31 (exact: at most 6 significant bits).
MLXK_KQ512 inline __m512i int_table(int lo) {
  alignas(64) uint16_t t[32];
  for (int i = 0; i < 32; i++) t[i] = bf16_rne(static_cast<float>(lo + i));
  return _mm512_load_si512(t);
}

// Per-lane scale index of the (h, c) accumulator: lane i sums bytes 4i..4i+3 of the code vector.
inline int scale_lane(KType t, int h, int c, int i) {
  if (t == KType::Q6K) return 8 * h + 4 * c + i / 4;   // per 16 values
  return 4 * h + 2 * (i >> 3) + c;                      // per 32 values: group 2h + i/8, nibble c
}

struct ScaleIdx {
  alignas(64) int32_t v[4][16];
  alignas(64) int16_t w[4][32]; // the same per 16-bit word (both words of lane i)
  explicit ScaleIdx(KType t) {
    for (int h = 0; h < 2; h++)
      for (int c = 0; c < 2; c++)
        for (int i = 0; i < 16; i++) w[h * 2 + c][2 * i] = w[h * 2 + c][2 * i + 1] = static_cast<int16_t>(v[h * 2 + c][i] = scale_lane(t, h, c, i));
  }
};

// C weight rows from w0 (row stride rb bytes) against the prepared x: out[0..C).
template <KType T, int C>
MLXK_KQ512 void dot_rows(const uint8_t* w0, size_t rb, int nb, const uint16_t* xw, const float* xs32, float* out) {
  constexpr int bb = T == KType::Q4K ? 144 : T == KType::Q5K ? 176 : 210;
  static const ScaleIdx sidx(T);
  // Q6_K: entries code − 32 over two tables (codes 0..31, 32..63); Q4_K/Q5_K: the code itself
  const __m512i tab0 = int_table(T == KType::Q6K ? -32 : 0), tab1 = int_table(0);
  __m512i si[4];
  for (int i = 0; i < 4; i++) si[i] = _mm512_load_si512(sidx.v[i]);
  __m512 acc[C];
  __m256 bacc[C];
#pragma GCC unroll 4
  for (int c = 0; c < C; c++) {
    acc[c] = _mm512_setzero_ps();
    bacc[c] = _mm256_setzero_ps();
  }
  for (int blk = 0; blk < nb; blk++) {
    const uint16_t* xb = xw + static_cast<size_t>(blk) * 768;
    __m512 A[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
      const uint8_t* b = w0 + c * rb + static_cast<size_t>(blk) * bb;
      if constexpr (T == KType::Q6K) {
        const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
        A[c] = _mm512_mul_ps(_mm512_set1_ps(kq_h2f(b + 208)), _mm512_cvtepi32_ps(sc));
      } else {
        const __m128i v = kq_unpack_scales_v(b + 4);
        A[c] = _mm512_mul_ps(_mm512_set1_ps(kq_h2f(b)), _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)));
        const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
        const __m256 B = _mm256_mul_ps(_mm256_set1_ps(-kq_h2f(b + 2)), m);
        bacc[c] = _mm256_fmadd_ps(B, _mm256_loadu_ps(xs32 + blk * 8), bacc[c]);
      }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
      // weights stream past once: fetch ahead (the hardware prefetcher stops at 4 KiB pages)
      const char* ahead = reinterpret_cast<const char*>(w0 + c * rb + static_cast<size_t>(blk) * bb) + kAhead;
      for (int l = 0; l < bb; l += 64) _mm_prefetch(ahead + l, _MM_HINT_T0);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
#pragma GCC unroll 2
      for (int cv = 0; cv < 2; cv++) {
        __m512i code[C];
        __m512 t[C][3]; // one chain per x piece: the dot products' latency, not their throughput, bounds one chain
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
          code[c] = code_vec<T>(w0 + c * rb + static_cast<size_t>(blk) * bb, h, cv);
          t[c][0] = t[c][1] = t[c][2] = _mm512_setzero_ps();
        }
#pragma GCC unroll 2
        for (int odd = 0; odd < 2; odd++) {
          const uint16_t* xp = xb + kVec(h, cv, odd);
          const __m512bh x0 = (__m512bh)_mm512_loadu_si512(xp);
          const __m512bh x1 = (__m512bh)_mm512_loadu_si512(xp + 32);
          const __m512bh x2 = (__m512bh)_mm512_loadu_si512(xp + 64);
#pragma GCC unroll 4
          for (int c = 0; c < C; c++) {
            const __m512i idx = odd ? _mm512_srli_epi16(code[c], 8) : code[c];
            const __m512bh wv = (__m512bh)(T == KType::Q6K ? _mm512_permutex2var_epi16(tab0, idx, tab1)
                                                             : _mm512_permutexvar_epi16(idx, tab0));
            t[c][0] = _mm512_dpbf16_ps(t[c][0], wv, x0);
            t[c][1] = _mm512_dpbf16_ps(t[c][1], wv, x1);
            t[c][2] = _mm512_dpbf16_ps(t[c][2], wv, x2);
          }
        }
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
          const __m512 sum = _mm512_add_ps(_mm512_add_ps(t[c][2], t[c][1]), t[c][0]); // small pieces first
          acc[c] = _mm512_fmadd_ps(sum, _mm512_permutexvar_ps(si[h * 2 + cv], A[c]), acc[c]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int c = 0; c < C; c++) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(acc[c]), _mm512_extractf32x8_ps(acc[c], 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 bs = _mm_add_ps(_mm256_castps256_ps128(bacc[c]), _mm256_extractf128_ps(bacc[c], 1));
    s = _mm_add_ps(s, bs);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    out[c] = _mm_cvtss_f32(s);
  }
}

template <KType T>
MLXK_KQ512 void decode_t(const KqProblem& p, const uint16_t* xw, const float* xs32, float* out, int c0, int c1) {
  const int nb = p.K / 256;
  const size_t rb = static_cast<size_t>(nb) * kq_block_bytes(T);
  int n = c0;
  for (; n + 2 <= c1; n += 2) dot_rows<T, 2>(p.w + n * rb, rb, nb, xw, xs32, out + n);
  for (; n < c1; n++) dot_rows<T, 1>(p.w + n * rb, rb, nb, xw, xs32, out + n);
}

// Opt-in int8: R x rows × C weight rows. Per 64 codes (the decode path's byte order, x permuted to match):
// vpmaddubsw pairs of code·q (≤ 2·63·127, no saturation), then vpdpwssd with the sub-block's integer scale in
// both words of each lane (every 4 bytes lie in one sub-block); per block dx·(dA·Σ S·Σ code·q − dB·Σ M·bsum),
// as llama.cpp's ggml_vec_dot_q*_K_q8_K.
template <KType T, int R, int C>
MLXK_KQ512 void q8_tile(const KqProblem& p, const KqQ8& x, int r0, int n0) {
  constexpr int bb = T == KType::Q4K ? 144 : T == KType::Q5K ? 176 : 210;
  static const ScaleIdx sidx(T);
  const int nb = p.K / 256;
  const size_t rb = static_cast<size_t>(nb) * bb;
  const uint8_t* w0 = p.w + n0 * rb;
  __m512i si[4];
  for (int i = 0; i < 4; i++) si[i] = _mm512_load_si512(sidx.w[i]);
  const __m512i half = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8); // mins per 16
  __m512 acc[R][C];
#pragma GCC unroll 4
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
  for (int blk = 0; blk < nb; blk++) {
    __m512i S[C], M[C];
    float dA[C], dB[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
      const uint8_t* b = w0 + c * rb + static_cast<size_t>(blk) * bb;
      if (R == 1) { // decode streams the weights once; prefill re-reads them from cache for every row quad
        const char* ahead = reinterpret_cast<const char*>(b) + kAheadQ8;
        for (int l = 0; l < bb; l += 64) _mm_prefetch(ahead + l, _MM_HINT_T0);
      }
      // S: the scales as 16-bit words; M: per 16 values, the mins (32·S for Q6_K's code offset) as int32
      if constexpr (T == KType::Q6K) {
        const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192));
        S[c] = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc));
        M[c] = _mm512_slli_epi32(_mm512_cvtepi8_epi32(sc), 5);
        dA[c] = dB[c] = kq_h2f(b + 208);
      } else {
        const __m128i v = kq_unpack_scales_v(b + 4);
        S[c] = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(v));
        M[c] = _mm512_permutexvar_epi32(half, _mm512_cvtepu8_epi32(v));
        dA[c] = kq_h2f(b);
        dB[c] = kq_h2f(b + 2);
      }
    }
    __m512i isum[R][C];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
      for (int c = 0; c < C; c++) isum[r][c] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
      __m512i code[C], sl[C];
#pragma GCC unroll 4
      for (int c = 0; c < C; c++) {
        code[c] = code_vec<T>(w0 + c * rb + static_cast<size_t>(blk) * bb, v >> 1, v & 1);
        sl[c] = _mm512_permutexvar_epi16(si[v], S[c]);
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; r++) {
        const __m512i xv = _mm512_loadu_si512(x.q + static_cast<size_t>(r0 + r) * p.K + blk * 256 + v * 64);
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
          isum[r][c] = _mm512_dpwssd_epi32(isum[r][c], _mm512_maddubs_epi16(code[c], xv), sl[c]);
      }
    }
    // dx·(dA·isum − dB·Σ M·bsum): the weight factors broadcast once per block, x's once per row
    __m512 dAv[C], dBv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
      dAv[c] = _mm512_set1_ps(dA[c]);
      dBv[c] = _mm512_set1_ps(dB[c]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      const size_t bi = static_cast<size_t>(r0 + r) * nb + blk;
      const __m512i bs = _mm512_loadu_si512(x.bsums + bi * 16);
      const __m512 dx = _mm512_set1_ps(x.d[bi]);
#pragma GCC unroll 4
      for (int c = 0; c < C; c++) {
        const __m512 t = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_mullo_epi32(bs, M[c])), dBv[c],
                                          _mm512_mul_ps(_mm512_cvtepi32_ps(isum[r][c]), dAv[c]));
        acc[r][c] = _mm512_fmadd_ps(t, dx, acc[r][c]);
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) p.out[static_cast<size_t>(r0 + r) * p.ldo + n0 + c] = _mm512_reduce_add_ps(acc[r][c]);
}

template <KType T>
MLXK_KQ512 void q8_t(const KqProblem& p, const KqQ8& x, int r0, int r1, int c0, int c1) {
  int n = c0;
  for (; n + 2 <= c1; n += 2) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) q8_tile<T, 4, 2>(p, x, r, n);
    for (; r < r1; r++) q8_tile<T, 1, 2>(p, x, r, n);
  }
  for (; n < c1; n++) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) q8_tile<T, 4, 1>(p, x, r, n);
    for (; r < r1; r++) q8_tile<T, 1, 1>(p, x, r, n);
  }
}

} // namespace

bool available() {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return cpu && avx2_active() && active_isa() >= kIsaAvx512;
}

bool bf16() {
  static const bool cpu = __builtin_cpu_supports("avx512bf16");
  return cpu && available();
}

bool vnni() {
  return available() && int8_available();
}

namespace {
// Position → value index of one block's x in the tiles' word order, per layout (Q4_K/Q5_K, Q6_K).
struct Perm {
  int16_t v[2][256];
  Perm() {
    for (int l = 0; l < 2; l++)
      for (int h = 0; h < 2; h++)
        for (int c = 0; c < 2; c++)
          for (int odd = 0; odd < 2; odd++)
            for (int w = 0; w < 32; w++)
              v[l][((h * 2 + c) * 2 + odd) * 32 + w] = static_cast<int16_t>(value_of(l ? KType::Q6K : KType::Q4K, h, c, odd, w));
  }
};

MLXK_KQ512 inline __m512 bf16_lo(__m512i v) { // words 0..15 → floats
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)), 16));
}
MLXK_KQ512 inline __m512 bf16_hi(__m512i v) { // words 16..31 → floats
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1)), 16));
}
MLXK_KQ512 void prep_x512(KType t, const float* x, int K, uint16_t* words, float* xs32) {
  static const Perm perm;
  const int16_t* pv = perm.v[t == KType::Q6K ? 1 : 0];
  alignas(64) float tmp[256];
  for (int blk = 0; blk < K / 256; blk++) {
    const float* xb = x + blk * 256;
    for (int i = 0; i < 256; i++) tmp[i] = xb[pv[i]];
    uint16_t* o = words + static_cast<size_t>(blk) * 768;
    for (int v = 0; v < 8; v++) {
      // x = hi + mid + lo exactly (RNE to bf16 three times: each piece takes the next 8 significant bits)
      const __m512 a = _mm512_load_ps(tmp + 32 * v), b = _mm512_load_ps(tmp + 32 * v + 16);
      const __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(b, a);
      const __m512 ra = _mm512_sub_ps(a, bf16_lo(hi)), rb = _mm512_sub_ps(b, bf16_hi(hi));
      const __m512i mid = (__m512i)_mm512_cvtne2ps_pbh(rb, ra);
      const __m512i lo = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(rb, bf16_hi(mid)), _mm512_sub_ps(ra, bf16_lo(mid)));
      _mm512_storeu_si512(o + v * 96, hi);
      _mm512_storeu_si512(o + v * 96 + 32, mid);
      _mm512_storeu_si512(o + v * 96 + 64, lo);
    }
    for (int s = 0; s < 8; s++)
      xs32[blk * 8 + s] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_loadu_ps(xb + 32 * s), _mm512_loadu_ps(xb + 32 * s + 16)));
  }
}

} // namespace

// (target attributes stay on internal functions: on an exported one GCC makes a multiversioned function)
void prep_x(KType t, const float* x, int K, uint16_t* words, float* xs32) {
  prep_x512(t, x, K, words, xs32);
}

void decode(const KqProblem& p, const uint16_t* words, const float* xs32, float* out, int c0, int c1) {
  switch (p.t) {
    case KType::Q4K: return decode_t<KType::Q4K>(p, words, xs32, out, c0, c1);
    case KType::Q5K: return decode_t<KType::Q5K>(p, words, xs32, out, c0, c1);
    case KType::Q6K: return decode_t<KType::Q6K>(p, words, xs32, out, c0, c1);
  }
}

void permute_q8(KType t, const int8_t* q, int rows, int K, int8_t* out) {
  for (size_t blk = 0; blk < static_cast<size_t>(rows) * (K / 256); blk++) {
    const int8_t* src = q + blk * 256;
    int8_t* dst = out + blk * 256;
    for (int v = 0; v < 4; v++)
      for (int beta = 0; beta < 64; beta++) dst[v * 64 + beta] = src[value_of(t, v >> 1, v & 1, beta & 1, beta >> 1)];
  }
}

void tile_q8(const KqProblem& p, const KqQ8& x, int r0, int r1, int c0, int c1) {
  switch (p.t) {
    case KType::Q4K: return q8_t<KType::Q4K>(p, x, r0, r1, c0, c1);
    case KType::Q5K: return q8_t<KType::Q5K>(p, x, r0, r1, c0, c1);
    case KType::Q6K: return q8_t<KType::Q6K>(p, x, r0, r1, c0, c1);
  }
}

void prefill(const KqProblem& p, int r0, int r1, int c0, int c1) {
  constexpr int kPanel = 16; // weight rows dequantized at a time (16 · K floats stay in L2 for K ≤ 8192)
  thread_local std::vector<float> buf;
  const size_t K = static_cast<size_t>(p.K);
  buf.resize(kPanel * K);
  const size_t rb = static_cast<size_t>(p.K / 256) * kq_block_bytes(p.t);
  for (int n0 = c0; n0 < c1; n0 += kPanel) {
    const int n1 = std::min(c1, n0 + kPanel);
    for (int n = n0; n < n1; n++) kq_deq_row(p.t, p.w + n * rb, buf.data() + (n - n0) * K, p.K);
    gemm512::panel(p.x + r0 * K, buf.data(), p.out + static_cast<size_t>(r0) * p.ldo + n0, r1 - r0, p.K, n1 - n0, p.ldo);
  }
}

#else
bool available() { return false; }
bool bf16() { return false; }
bool vnni() { return false; }
void prep_x(KType, const float*, int, uint16_t*, float*) {}
void decode(const KqProblem&, const uint16_t*, const float*, float*, int, int) {}
void prefill(const KqProblem&, int, int, int, int) {}
void permute_q8(KType, const int8_t*, int, int, int8_t*) {}
void tile_q8(const KqProblem&, const KqQ8&, int, int, int, int) {}
#endif

} // namespace kq512
} // namespace mlxk::kern

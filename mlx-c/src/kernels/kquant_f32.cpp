// AVX-512 f32 K-quant decode (see kquant512.h): 1..8 x rows × 1–4 weight rows per tile, every weight
// dequantized once into a register exactly as kq_deq_row (fma(code, A, B)) and FMA'd into each row's two
// chains. Why not the bf16 tiles here: on Intel (Sapphire Rapids class) vdpbf16ps zmm issues one per two cycles
// and the bf16 tiles need six per 64 weights; this runs ~3.5 (Q4_K) to ~6 (Q6_K) vector ops per 16 weights.
// - Q4_K: 32 code bytes broadcast to both halves, a per-lane shift brings one nibble to bits 0..3, and vpermps
//   (which reads only those 4 bits) looks it up in the sub-block's 16-entry table of dequantized values;
// - Q5_K/Q6_K: the 64 codes of kq512 code_vec as bytes, vpermb spreads 16 of them into dword lanes, then
//   cvt and fma(code, A, B).
// x is permuted per block to the order the tiles read values (Q6_K's is the natural one).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kquant512.h"
#include "kquant512_codes.h"
#include "qmm.h"

#if defined(__x86_64__)
#define MLXK_KQF __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma,f16c")))
#endif

namespace mlxk::kern {
namespace kq512 {

#if defined(__x86_64__)
namespace {

constexpr size_t kAheadF = 6144; // bytes of a weight row prefetched ahead (as the bf16 decode)

// Value index (0..255 in the block) read at position p of the tiles' order.
inline int f32_value(KType t, int p) {
  if (t == KType::Q6K) return p;
  if (t == KType::Q4K) {
    const int j = p >> 6, k = (p >> 4) & 3, i = p & 15;
    return 64 * j + 32 * (k >> 1) + 4 * (i & 7) + 2 * (i >> 3) + (k & 1);
  }
  const int h = p >> 7, c = (p >> 6) & 1, s = (p >> 4) & 3, i = p & 15; // Q5_K: code_vec (h, c), bytes 16s + i
  return 64 * (2 * h + (s >> 1)) + 32 * c + 16 * (s & 1) + i;
}

struct Order {
  int16_t v[2][256]; // Q4_K, Q5_K
  Order() {
    for (int p = 0; p < 256; p++) {
      v[0][p] = static_cast<int16_t>(f32_value(KType::Q4K, p));
      v[1][p] = static_cast<int16_t>(f32_value(KType::Q5K, p));
    }
  }
};

// Per sub-block (Q4_K/Q5_K: 8 of 32 values; Q6_K: 16 of 16) A and B of value = fma(code, A, B), rounded as
// kquant.cpp's block_params (A = d·sc, B = −dmin·m; Q6_K B = −32·A).
// (always inlined: GCC made it a call, with a vzeroupper, per block and column; fp16 by F16C, as kq_h2f)
MLXK_KQF __attribute__((always_inline)) inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
template <KType T>
MLXK_KQF __attribute__((always_inline)) inline void params(const uint8_t* b, float* A, [[maybe_unused]] float* B) {
  if constexpr (T == KType::Q6K) {
    const __m512 a = _mm512_mul_ps(_mm512_set1_ps(h2f(b + 208)),
                                   _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)))));
    _mm512_store_ps(A, a);
    _mm512_store_ps(B, _mm512_mul_ps(_mm512_set1_ps(-32.f), a));
  } else {
    // Q4_K/Q5_K: A → A[0..8), B → A[8..16) (B unused)
    const __m128i sm = kq_unpack_scales_v(b + 4);
    uint32_t dd;
    std::memcpy(&dd, b, 4);
    const __m512 dm = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dd)))); // d, dmin
    const __m512 f = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), dm);
    const __m512 neg = _mm512_castsi512_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN));
    _mm512_store_ps(A, _mm512_mul_ps(_mm512_xor_ps(f, neg), _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sm))));
  }
}

// R x rows (xp: permuted, row stride K) × C weight rows from n; two chains per (row, column), alternating per
// 16 values, whatever R and C (so a batch row is bit-identical to the row alone).
template <KType T, int R, int C>
MLXK_KQF void tile(const KqProblem& p, const float* xp, int r0, int n) {
  constexpr int bb = T == KType::Q4K ? 144 : T == KType::Q5K ? 176 : 210;
  const int K = p.K, nb = K / 256;
  const size_t rb = static_cast<size_t>(nb) * bb;
  const uint8_t* w[C];
  __m512 acc[R][C][2];
#pragma GCC unroll 8
  for (int c = 0; c < C; c++) w[c] = p.w + static_cast<size_t>(n + c) * rb;
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = _mm512_setzero_ps();
  const __m512 iota = _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  alignas(64) float A[C][16], B[C][16];
  for (int blk = 0; blk < nb; blk++) {
    const float* xb = xp + static_cast<size_t>(blk) * 256;
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
      const uint8_t* b = w[c] + static_cast<size_t>(blk) * bb;
      // weights stream past once: fetch ahead (the hardware prefetcher stops at 4 KiB pages)
      for (int l = 0; l < bb; l += 64) _mm_prefetch(reinterpret_cast<const char*>(b) + kAheadF + l, _MM_HINT_T0);
      params<T>(b, A[c], B[c]);
    }
    if constexpr (T == KType::Q4K) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) {
        __m512i bc[C];
        __m512 tab[C][2];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
          const uint8_t* qs = w[c] + static_cast<size_t>(blk) * bb + 16 + 32 * j;
          bc[c] = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)));
          tab[c][0] = _mm512_fmadd_ps(iota, kq_bcast16(&A[c][2 * j]), kq_bcast16(&A[c][8 + 2 * j]));
          tab[c][1] = _mm512_fmadd_ps(iota, kq_bcast16(&A[c][2 * j + 1]), kq_bcast16(&A[c][8 + 2 * j + 1]));
        }
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
          // lane i: byte 4(i mod 8) + 2(i div 8) + (k & 1) of the 32, its high nibble for k ≥ 2
          const int s = 8 * (k & 1) + 4 * (k >> 1);
          const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi32(s), _mm256_set1_epi32(s + 16), 1);
          __m512 wv[C];
#pragma GCC unroll 8
          for (int c = 0; c < C; c++) wv[c] = _mm512_permutexvar_ps(_mm512_srlv_epi32(bc[c], sh), tab[c][k >> 1]);
#pragma GCC unroll 8
          for (int r = 0; r < R; r++) {
            const __m512 xv = _mm512_loadu_ps(xb + static_cast<size_t>(r0 + r) * K + 64 * j + 16 * k);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) acc[r][c][k & 1] = _mm512_fmadd_ps(wv[c], xv, acc[r][c][k & 1]);
          }
        }
      }
    } else {
#pragma GCC unroll 2
      for (int h = 0; h < 2; h++) {
#pragma GCC unroll 2
        for (int cv = 0; cv < 2; cv++) {
          __m512i code[C];
#pragma GCC unroll 8
          for (int c = 0; c < C; c++) code[c] = code_vec<T>(w[c] + static_cast<size_t>(blk) * bb, h, cv);
#pragma GCC unroll 4
          for (int s = 0; s < 4; s++) {
            // sub-block of these 16 values: Q6_K 8h + 4cv + s (per 16), Q5_K 2(2h + s/2) + cv (per 32)
            const int sb = T == KType::Q6K ? 8 * h + 4 * cv + s : 2 * (2 * h + (s >> 1)) + cv;
            const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(16 * s), _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
            __m512 wv[C];
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
              const __m512i q = _mm512_maskz_permutexvar_epi8(0x1111111111111111ull, idx, code[c]);
              wv[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), kq_bcast16(&A[c][sb]), kq_bcast16(T == KType::Q6K ? &B[c][sb] : &A[c][8 + sb]));
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
              const __m512 xv = _mm512_loadu_ps(xb + static_cast<size_t>(r0 + r) * K + 128 * h + 64 * cv + 16 * s);
#pragma GCC unroll 8
              for (int c = 0; c < C; c++) acc[r][c][s & 1] = _mm512_fmadd_ps(wv[c], xv, acc[r][c][s & 1]);
            }
          }
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
      p.out[static_cast<size_t>(r0 + r) * p.ldo + n + c] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][c][0], acc[r][c][1]));
}

// Rows [r0, r0 + R) × columns [c0, c1): one row 4 columns at a time (Q4_K 1.03–1.16× pairs, one thread), up to
// 4 rows pairs, more rows single columns (the accumulators fill the registers).
template <KType T, int R>
MLXK_KQF void cols(const KqProblem& p, const float* xp, int r0, int c0, int c1) {
  int n = c0;
  if constexpr (R == 1)
    for (; n + 4 <= c1; n += 4) tile<T, R, 4>(p, xp, r0, n);
  if constexpr (R <= 4)
    for (; n + 2 <= c1; n += 2) tile<T, R, 2>(p, xp, r0, n);
  for (; n < c1; n++) tile<T, R, 1>(p, xp, r0, n);
}

template <KType T>
MLXK_KQF void decode_rows(const KqProblem& p, const float* xp, int r0, int r1, int c0, int c1) {
  using Fn = void (*)(const KqProblem&, const float*, int, int, int);
  static constexpr Fn by_rows[8] = {cols<T, 1>, cols<T, 2>, cols<T, 3>, cols<T, 4>, cols<T, 5>, cols<T, 6>, cols<T, 7>, cols<T, 8>};
  for (int r = r0; r < r1; r += 8) by_rows[std::min(8, r1 - r) - 1](p, xp, r, c0, c1);
}

std::atomic<int> g_mode{-1}; // decode tiles: -1 not read yet, 1 f32, 2 bf16, 0 neither (tests/benches set it)

int auto_mode() {
  const char* e = std::getenv("MLXK_KQ_DECODE");
  if (e && std::strcmp(e, "f32") == 0 && f32_available()) return 1;
  if (e && std::strcmp(e, "bf16") == 0 && bf16()) return 2;
  // measured (bench/kquant-ops.ts, one thread): on Intel Sapphire Rapids class the f32 tiles ran 2–4× the bf16
  // ones; on AMD Zen 4/5, whose vdpbf16ps keeps pace with its FMAs, the bf16 tiles stay (not re-measured there)
  if (!bf16() || __builtin_cpu_is("intel")) return f32_available() ? 1 : 0;
  return 2;
}

} // namespace

bool f32_available() {
  static const bool cpu = __builtin_cpu_supports("avx512vbmi");
  return cpu && available();
}

bool f32_decode() {
  if (g_mode.load(std::memory_order_relaxed) < 0) g_mode.store(auto_mode(), std::memory_order_relaxed);
  return g_mode.load(std::memory_order_relaxed) == 1;
}

int set_decode_mode(int mode) {
  const int prev = f32_decode() ? 1 : bf16() ? 2 : 0;
  if (mode == 0) g_mode.store(auto_mode(), std::memory_order_relaxed);
  else if (mode == 1 && f32_available()) g_mode.store(1, std::memory_order_relaxed);
  else if (mode == 2 && bf16()) g_mode.store(2, std::memory_order_relaxed);
  return prev;
}

const float* prep_xf(KType t, const float* x, int M, int K, float* buf) {
  if (t == KType::Q6K) return x; // the tiles read Q6_K values in order
  static const Order order;
  const int16_t* pv = order.v[t == KType::Q4K ? 0 : 1];
  for (size_t blk = 0; blk < static_cast<size_t>(M) * (K / 256); blk++)
    for (int i = 0; i < 256; i++) buf[blk * 256 + i] = x[blk * 256 + pv[i]];
  return buf;
}

void decode_f32(const KqProblem& p, const float* xp, int r0, int r1, int c0, int c1) {
  switch (p.t) {
    case KType::Q4K: return decode_rows<KType::Q4K>(p, xp, r0, r1, c0, c1);
    case KType::Q5K: return decode_rows<KType::Q5K>(p, xp, r0, r1, c0, c1);
    case KType::Q6K: return decode_rows<KType::Q6K>(p, xp, r0, r1, c0, c1);
  }
}

#else
bool f32_available() { return false; }
bool f32_decode() { return false; }
int set_decode_mode(int) { return 0; }
const float* prep_xf(KType, const float* x, int, int, float*) { return x; }
void decode_f32(const KqProblem&, const float*, int, int, int, int) {}
#endif

} // namespace kq512
} // namespace mlxk::kern

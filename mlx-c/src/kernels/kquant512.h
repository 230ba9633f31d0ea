// AVX-512 K-quant tiles (internal to kquant*.cpp), chosen at run time by kquant_run.cpp (AVX2 and scalar kept):
// - f32 decode (kquant_f32.cpp, the default on Intel): weights dequantized in registers, f32 FMAs, 1..8 rows;
// - bf16 decode (the default on AMD): x split exactly into three bf16 pieces (hi + mid + lo == x), the codes
//   turned into bf16 by a table lookup (vpermw), and vdpbf16ps: every product code·piece is exact in f32, so
//   the result is an f32 dot product of the exact dequantized values, within f32 rounding, at 32 weights per
//   instruction;
// - f32 prefill: a panel of weight rows dequantized once, then gemm512's 6×4 tiles over the x rows;
// - int8 activations (opt-in, MLXK_INT8_ACT=1): llama.cpp's q8_K x and vpdpbusd dot products (VNNI).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kquant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mlxk::kern {

inline float kq_h2f(const uint8_t* p) {
  const uint32_t h = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8);
  const uint32_t s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f); // m · 2^-24 (zero or subnormal)
    return s ? -v : v;
  }
  const uint32_t f = e == 31 ? (s | 0x7f800000u | (m << 13)) : (s | ((e + 112) << 23) | (m << 13));
  float out;
  std::memcpy(&out, &f, sizeof out);
  return out;
}

// The 6-bit scales and mins of a Q4_K/Q5_K block as 8 + 8 bytes (llama.cpp's kmask unpacking of the 12 bytes).
inline void kq_unpack_scales(const uint8_t* q, uint8_t out[16]) {
  uint32_t u[4];
  std::memcpy(u, q, 12);
  constexpr uint32_t m1 = 0x3f3f3f3f, m2 = 0x0f0f0f0f, m3 = 0x03030303;
  u[3] = ((u[2] >> 4) & m2) | (((u[1] >> 6) & m3) << 4);
  const uint32_t mins_lo = u[1] & m1;
  u[1] = (u[2] & m2) | (((u[0] >> 6) & m3) << 4);
  u[2] = mins_lo;
  u[0] &= m1;
  std::memcpy(out, u, 16); // scales 0..7, mins 0..7
}

#if defined(__x86_64__)
// kq_unpack_scales in a vector (SSSE3 shuffles), the same 16 bytes: the decode tiles unpack once per block and
// weight row, and the scalar version's 4-byte stores read back by a 16-byte load stall store forwarding there.
// Reads 16 bytes at q: the 12 scale bytes and the 4 code bytes after them.
__attribute__((target("avx2"), always_inline)) inline __m128i kq_unpack_scales_v(const uint8_t* q) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i P = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
  const __m128i Q = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
  const __m128i lo = _mm_and_si128(P, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(P, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
  const __m128i top = _mm_and_si128(_mm_srli_epi16(Q, 2), _mm_set1_epi8(0x30)); // bits 6..7 → 4..5
  return _mm_or_si128(_mm_or_si128(lo, hi), top);                                // scales 0..7, mins 0..7
}

// A float broadcast straight from memory, a load op, for the tiles' per-block constants. Given them in registers,
// GCC extracted each lane with valignd/vshufps and broadcast it from a register: three shuffle-port ops per value,
// on the port the tiles' permutes need.
__attribute__((target("avx2"), always_inline)) inline __m256 kq_bcast8(const float* p) {
  __m256 r;
  asm("vbroadcastss %1, %0" : "=x"(r) : "m"(*p));
  return r;
}
__attribute__((target("avx512f"), always_inline)) inline __m512 kq_bcast16(const float* p) {
  __m512 r;
  asm("vbroadcastss %1, %0" : "=v"(r) : "m"(*p));
  return r;
}
#endif

// x rounded to int8 per 256 values as llama.cpp's q8_K: q = round(x / d), d = max|x| / 127; bsums = Σq per 16.
struct KqQ8 {
  int8_t* q;       // [rows][K]
  float* d;        // [rows][K/256]
  int32_t* bsums;  // [rows][K/16]
};

// kquant.cpp: the scalar and AVX2 tiles and the shared row work.
void kq_quantize_q8(const float* x, int rows, int K, const KqQ8& out);
// AVX2: q8 set = int8 tiles; else xs16 (Σx per 16 of the one x row) set = decode; else the f32 prefill tiles.
void kq_tile_avx2(const KqProblem& p, const float* xs16, const KqQ8* q8, int r0, int r1, int c0, int c1);
void kq_tile_scalar(const KqProblem& p, int r0, int r1, int c0, int c1);
// One weight row → K floats, exactly the dequantized values (AVX2 where it runs, else scalar).
void kq_deq_row(KType t, const uint8_t* w, float* y, int K);

namespace kq512 {

// The CPU has AVX-512 F/BW/VL/DQ and the ISA in use is avx512 (MLXK_ISA / forceIsa cap it): the f32 prefill.
bool available();
// And AVX512_BF16, for the bf16 decode; and VNNI, for the int8 path.
bool bf16();
bool vnni();

// Decode x layout: 3·K bf16 words (the pieces in the order the tiles read them) + K/32 floats of Σx per 32.
void prep_x(KType t, const float* x, int K, uint16_t* words, float* xs32);

// One x row (prepared) against weight rows [c0, c1): out[n] for n in [c0, c1).
void decode(const KqProblem& p, const uint16_t* words, const float* xs32, float* out, int c0, int c1);

// f32 decode tiles (kquant_f32.cpp; AVX-512 with VBMI): 1..8 x rows, weights dequantized in registers as
// kq_deq_row does, f32 FMAs; a row's result does not depend on the other rows. f32_decode: they are the decode
// path in use (default on Intel, where vdpbf16ps is slow; MLXK_KQ_DECODE=f32|bf16 picks). set_decode_mode: 0
// back to the default, 1 f32, 2 bf16 (where available); returns the previous mode (1 f32, 2 bf16, 0 neither).
bool f32_available();
bool f32_decode();
int set_decode_mode(int mode);
// x [M, K] in the order the tiles read type t's values: buf (M·K floats) filled, or x itself (Q6_K).
const float* prep_xf(KType t, const float* x, int M, int K, float* buf);
// Rows [r0, r1) of the prepared x against weight rows [c0, c1): out[r·ldo + n].
void decode_f32(const KqProblem& p, const float* xp, int r0, int r1, int c0, int c1);

// Rows [r0, r1) × columns [c0, c1) of the f32 problem (dequantized weight panels, gemm512 tiles).
void prefill(const KqProblem& p, int r0, int r1, int c0, int c1);

// Opt-in int8 (VNNI): q8_K codes of x (natural order) → the order the tiles read them for type t.
void permute_q8(KType t, const int8_t* q, int rows, int K, int8_t* out);

// Rows [r0, r1) × columns [c0, c1) with x in q8_K form, its codes permuted by permute_q8.
void tile_q8(const KqProblem& p, const KqQ8& x, int r0, int r1, int c0, int c1);

} // namespace kq512
} // namespace mlxk::kern

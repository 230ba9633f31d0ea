// Per-ISA quantized-matmul tiles (internal to qmm*.cpp). qmm.cpp prepares x and splits the work; each tile
// computes out rows [r0, r1) × columns [c0, c1) of one problem.
#pragma once

#include <cstdint>
#include <cstring>

#include "qmm.h"

namespace mlxk::kern {

// E8M0 exponent → 2^(e-127); e = 0 is the subnormal 2^-127, e = 255 is NaN, as the OCP MX spec defines.
inline float e8m0(uint8_t e) {
  uint32_t bits = e == 0 ? 0x00400000u : (e == 255 ? 0x7fc00000u : static_cast<uint32_t>(e) << 23);
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline int bits_of(QFormat f) {
  return f == QFormat::Affine8 ? 8 : 4;
}

// x as the int8-activation path reads it: per row, K padded to a multiple of 128, each 128-element chunk
// stored as the 64 even elements (4 × 16, one per 32-element block) then the 64 odd ones (matching the
// low/high nibbles of 16 packed bytes); one scale per 32-element block (q = round(x / d), |q| ≤ 127), stored
// once per 16-float lane of the chunk (lanes 4j..4j+3 = block j), the exact f32 Σx per quantization group
// (for the affine bias term) and 7.5·(Σx̂ − Σx) per group: the rounding error's component along the codes'
// mean, subtracted as 7.5·s·that (codes are 0..15, so without it the error grows with their mean).
struct Int8X {
  const int8_t* q;    // [M][Kp]
  const float* d16;   // [M][Kp/8]
  const float* xsum;  // [M][K/gs]
  const float* xerr;  // [M][K/gs]
  int Kp;
};

// Rounds x to the int8 layout above (buffers sized by the caller: Kp = round_up(K, 128)).
void quantize_x_int8(const float* x, int M, int K, int gs, int8_t* q, float* d16, float* xsum, float* xerr);

// Rows per block of the decode tiles (qmm_decode.h: V16::max_rows, V8::max_rows): a decode batch's x comes to
// the tiles with each block's rows interleaved per 32-element chunk ([K/32][R][32], R ≤ this; qmm.cpp).
constexpr int kDecodeRows512 = 8, kDecodeRowsAvx2 = 4;

// AVX-512F/BW/VL f32 path: same x layout and numerics class as the AVX2 path (x permuted per 32 for 4-bit
// formats; xsum per group for M == 1).
void tile_avx512(const QmmProblem& p, const float* xp, const float* xsum, int r0, int r1, int c0, int c1);

// AVX-512 VNNI int8-activation path (Affine4 only): u4 codes × s8 activations with vpdpbusd.
void tile_vnni(const QmmProblem& p, const Int8X& x, int r0, int r1, int c0, int c1);

} // namespace mlxk::kern

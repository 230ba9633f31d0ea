// Quantized matmul kernels for x86-64 (AVX2/FMA with a scalar fallback): out[M,N] = x[M,K] · dequant(w)[N,K]^T.
// Layout is MLX's transposed quantized Linear: w packed LSB-first in uint32 words, one row per output column.
#pragma once

#include <cstdint>

namespace mlxk::kern {

enum class QFormat { Affine4, Affine8, Mxfp4 };

struct QmmProblem {
  const float* x;        // [M, K] row-major
  const uint8_t* w;      // [N, K*bits/8] bytes (the uint32 words viewed as bytes, little endian)
  const float* scales;   // affine: [N, K/gs] float32; unused for mxfp4
  const float* biases;   // affine: [N, K/gs] float32; unused for mxfp4
  const uint8_t* escale; // mxfp4: [N, K/32] E8M0 exponents
  float* out;            // [M, N]
  int M, K, N, gs;
  QFormat fmt;
  // The M rows are separate sequences decoding one token each (a batch): every row is computed exactly as a
  // one-row problem would be (bit-identical to decoding it alone), the weights still read once for all rows.
  bool independent_rows = false;
};

// ISA levels of the kernels.
constexpr int kIsaScalar = 1, kIsaAvx2 = 2, kIsaAvx512 = 3;

// The best level this CPU runs: 0 = no kernels on this architecture, 1 = portable scalar kernels,
// 2 = AVX2/FMA, 3 = AVX-512 F/BW/VL/DQ (quantized matmul, GEMMs, attention rows; the rest use AVX2 there).
int kernels_level();

// The level in use: MLXK_ISA=scalar|avx2|avx512 caps it, set_isa overrides it (tests).
int active_isa();

// Sets the level in use (capped at kernels_level(); 0 = back to the MLXK_ISA default); returns the previous one.
int set_isa(int level);

// Forces the scalar path even where AVX2 exists (tests compare both); returns the previous setting.
bool set_force_scalar(bool on);

// The opt-in int8-activation path for affine 4-bit (AVX-512 VNNI): whether the CPU has it, whether it is on
// (MLXK_INT8_ACT=1 or set_int8, and the ISA in use is avx512), and the switch (returns the previous setting).
// On Intel the affine matmuls keep the f32 tiles under the setting (faster there; int8_affine_active says
// whether the int8 ones run), unless set_int8(2) asks for them on every CPU.
bool int8_available();
bool int8_active();
bool int8_affine_active();
bool set_int8(int on);

// Whether the AVX2 path runs now (CPU support and not forced scalar).
bool avx2_active();

// Whether (fmt, gs, K) is a problem these kernels handle.
bool qmm_supported(QFormat fmt, int gs, int K);

// Runs the whole problem on the kernel pool. Blocking; call from the MLX stream thread.
void qmm(const QmmProblem& p);

// With MLXK_KERNEL_PROFILE=1: [calls, total ms, multiply-adds] of qmm so far (zeros otherwise).
void qmm_profile(double out[3]);

} // namespace mlxk::kern

// ggml K-quant matmul kernels (Q4_K, Q5_K, Q6_K) reading the GGUF blocks as they are in the file:
// out[M,N] = x[M,K] · dequant(w)[N,K]^T, x in float32 (activations not quantized unless MLXK_INT8_ACT=1),
// dequantization exactly llama.cpp's dequantize_row_q{4,5,6}_K. Each weight row is K/256 consecutive blocks.
// Files: kquant_run.cpp (driver), kquant.cpp (scalar, AVX2), kquant512.cpp (AVX-512 BF16 / VNNI).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlxk::kern {

enum class KType { Q4K = 0, Q5K = 1, Q6K = 2 };

// Bytes of one 256-value block (144, 176, 210).
int kq_block_bytes(KType t);

struct KqProblem {
  const float* x;    // [M, K] row-major
  const uint8_t* w;  // [N, K/256 blocks]
  float* out;        // [M, N] row-major (row stride ldo)
  int M, K, N;
  int ldo;           // out row stride (elements); N when packed
  KType t;
  // A decode batch's rows (one token of B sequences), each to be computed as if alone: kqgemm8 leaves these.
  bool independent_rows = false;
};

// Whether K is a problem these kernels handle (a positive multiple of 256).
bool kq_supported(int K);

// Runs the whole problem on the kernel pool (or inline when small). Blocking; call from the MLX stream thread.
void kqmm(const KqProblem& p);

// Several problems (e.g. the chosen experts of a MoE layer) in one pool call; problems that read the same x
// rows prepare them once.
void kqmm_many(const KqProblem* ps, int n);

// Opt-in int8 activations (AVX2, AVX-512 VNNI): x rounded to int8 per 256 values (llama.cpp's q8_K: one scale, sums per 16) and
// integer dot products with the codes, as llama.cpp's ggml_vec_dot_q*_K_q8_K does (prefill rows on VNNI: the int8
// GEMM of kqgemm8.h). Off unless MLXK_INT8_ACT=1 or
// kq_set_int8(1); the default path keeps x in float32. kq_set_int8 returns the previous setting.
bool kq_int8_active();
bool kq_set_int8(bool on);

// Rows [0, rows) of K values each → float32, exactly as llama.cpp dequantizes them (portable scalar code).
void kq_dequant_rows(KType t, const uint8_t* w, float* out, size_t rows, int K);

} // namespace mlxk::kern

/*
 * Our own CPU kernels as MLX custom primitives (x86-64 AVX2/FMA, scalar fallback, one thread pool).
 * C ABI in the conventions of mlxk.h; on any unsupported case (GPU stream, transpose=false, batched w,
 * other bit widths or modes) the fast entry points fall back to MLX's own op, so callers never branch.
 */
#ifndef MLXK_KERNELS_H
#define MLXK_KERNELS_H

#include "mlxk.h"

/* Best ISA level of this CPU: 0 = no kernels on this architecture (always MLX ops), 1 = scalar kernels,
   2 = AVX2/FMA kernels, 3 = AVX-512 (quantized matmul; the other kernels use AVX2 there). */
MLXK_API int mlxk_kernels_available(void);
/* Threads the kernel pool uses (including the MLX stream thread that calls it); MLXK_THREADS pins it. */
MLXK_API int mlxk_kernels_threads(void);
/* Tests only: 1 forces the scalar path on AVX2 machines; returns the previous setting. */
MLXK_API int mlxk_kernels_force_scalar(int on);
/* The ISA level in use (MLXK_ISA=scalar|avx2|avx512 caps it) and the override (0 = back to the default);
   set returns the previous level. */
MLXK_API int mlxk_kernels_isa(void);
MLXK_API int mlxk_kernels_set_isa(int level);
/* int8-activation path (affine 4-bit, AVX-512 VNNI, opt-in: MLXK_INT8_ACT=1): on < 0 queries (-1 = the CPU
   lacks VNNI, else 0/1 whether it is on); on = 0/1 switches it (on Intel affine matmuls keep f32 under it), 2 also
   runs the affine int8 tiles on Intel (tests); returns the previous setting. */
MLXK_API int mlxk_kernels_int8(int on);
/* Thread policy: the threads an op of `work` multiply-adds gets, and a test override (0 = policy). */
MLXK_API int mlxk_kernels_threads_for(double work);
MLXK_API int mlxk_kernels_set_threads(int n);
/* Cores other processes kept busy lately, as the thread policy sees it (Linux /proc; 0 elsewhere), and a test
   pin of that value (cores < 0: measure again); pin returns the previous pin (-1: none). */
MLXK_API float mlxk_kernels_others_load(void);
MLXK_API float mlxk_kernels_pin_others_load(float cores);
/* With MLXK_KERNEL_PROFILE=1: out3 = [calls, total ms, multiply-adds] of the quantized matmul so far. */
MLXK_API void mlxk_kernels_qmm_profile(double* out3);

/* Same arguments and result as mlxk_quantized_matmul. */
MLXK_API int mlxk_fast_quantized_matmul(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array scales,
                                        mlxk_array biases, bool transpose, int group_size, int bits, int mode,
                                        mlxk_stream s);

/* Same arguments and result as mlxk_fast_rms_norm / mlxk_fast_rope / mlxk_fast_sdpa (float32 on CPU; other
   cases — offset arrays, mask arrays, sinks, other dtypes — go to MLX's own op). */
MLXK_API int mlxk_kernel_rms_norm(mlxk_array* out, mlxk_array x, mlxk_array weight, float eps, mlxk_stream s);
MLXK_API int mlxk_kernel_rope(mlxk_array* out, mlxk_array x, int dims, bool traditional, bool has_base, float base,
                              float scale, int offset, mlxk_array offset_arr, mlxk_array freqs, mlxk_stream s);
MLXK_API int mlxk_kernel_sdpa(mlxk_array* out, mlxk_array q, mlxk_array k, mlxk_array v, float scale, int mask_mode,
                              mlxk_array mask, mlxk_array sinks, mlxk_stream s);
/* A decode batch (q [B,H,1,D]): rope with one position per batch entry (offsets[B]), and attention where
   entry b sees keys [starts[b], Lk) of its left-padded cache. Each entry is computed exactly as alone. */
MLXK_API int mlxk_kernel_rope_rows(mlxk_array* out, mlxk_array x, int dims, bool traditional, bool has_base, float base,
                                   float scale, const int32_t* offsets, int n, mlxk_array freqs, mlxk_stream s);
MLXK_API int mlxk_kernel_sdpa_rows(mlxk_array* out, mlxk_array q, mlxk_array k, mlxk_array v, float scale,
                                   const int32_t* starts, int n, mlxk_stream s);
/* A right-padded encoder batch (q [B,H,L,D]): entry b attends to keys [0, lens[b]), no causal mask. */
MLXK_API int mlxk_kernel_sdpa_keys(mlxk_array* out, mlxk_array q, mlxk_array k, mlxk_array v, float scale,
                                   const int32_t* lens, int n, mlxk_stream s);
/* x · wᵀ for float32 x [..., K] and w [N, K] on CPU (else MLX's matmul(x, swapaxes(w))). */
MLXK_API int mlxk_fast_linear(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_stream s);
/* w's pack for the packed float32 kernel (float32 [N, K] on CPU with kernels, else an error): an array of its own,
   [ceil(N/32), K, 32], that the caller keeps beside w and frees with it. fast_linear_packed is fast_linear that
   reads it for inputs of many rows (a pack of another shape is ignored; packed may be null). */
MLXK_API int mlxk_linear_pack(mlxk_array* out, mlxk_array w, mlxk_stream s);
MLXK_API int mlxk_fast_linear_packed(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array packed, mlxk_stream s);
/* silu(gate)·up, float32 on CPU (else MLX's multiply(silu(gate), up)). */
MLXK_API int mlxk_kernel_swiglu(mlxk_array* out, mlxk_array gate, mlxk_array up, mlxk_stream s);
/* act(x + bias) over the last axis (encoder.cpp), bias [N] optional; act 0 identity, 1 GELU (erf), 2 GELU (tanh),
   3 ReLU, 4 SiLU. Float32 on CPU; else MLX's ops. */
MLXK_API int mlxk_kernel_bias_act(mlxk_array* out, mlxk_array x, mlxk_array bias, int act, mlxk_stream s);

/* Gated DeltaNet (gated_delta.cpp), float32 on CPU only (callers use MLX ops otherwise):
   the gated delta rule over T tokens, q, k [B,T,Hk,Dk], v [B,T,Hv,Dv], g, beta [B,T,Hv], state [B,Hv,Dv,Dk]
   → outs[0] y [B,T,Hv,Dv], outs[1] the new state; and silu(depthwise causal conv) of x [B,L,C] with
   weight [C,K,1] → [B,L-K+1,C]. */
MLXK_API int mlxk_kernel_gated_delta(mlxk_array* outs, mlxk_array q, mlxk_array k, mlxk_array v, mlxk_array g,
                                     mlxk_array beta, mlxk_array state, mlxk_stream s);
MLXK_API int mlxk_kernel_conv_silu(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_stream s);

/* The dense decoder block in two primitives (block.cpp), float32 on CPU. They return 0 with null outputs when
   they decline (anything not covered: the caller builds the unfused graph). ins are the inputs in order, each
   quantized Linear as w, scales, biases[, bias]; ic/fc the integer/float settings (layout: src/mlx/block.ts).
   qkv: x [1,L,Dm], norm → q [1,Hq,L,D], k [1,Hkv,L,D] (rotated), v [1,Hkv,L,Dv].
   attn_mlp: q, K, V cache buffers [1,Hkv,cap,·] (positions < ic[12] attended), x, o_proj, norm, gate, up, down
   → the block's output [1,L,Dm]. */
MLXK_API int mlxk_block_qkv(mlxk_array* outs, const mlxk_array* ins, const int32_t* ic, const float* fc, mlxk_stream s);
MLXK_API int mlxk_block_attn_mlp(mlxk_array* out, const mlxk_array* ins, const int32_t* ic, const float* fc, mlxk_stream s);

#endif

// Float32 x · wᵀ with AVX-512 (gemm512.cpp): the path fastLinear takes on CPUs that have it.
#pragma once

namespace mlxk::gemm512 {

// The CPU has AVX-512F and the kernels are not forced scalar.
bool available();

// out[M,N] = x[M,K] · w[N,K]ᵀ, row-major, on the kernel pool.
void run(const float* x, const float* w, float* out, int M, int K, int N);

// out[M,N] (row stride ldo) = x[M,K] · w[N,K]ᵀ on the calling thread, for callers that split the work
// themselves (kquant512.cpp's prefill over dequantized weight panels).
void panel(const float* x, const float* w, float* out, int M, int K, int N, int ldo);

} // namespace mlxk::gemm512

// Float32 x · wᵀ from a weight packed once (gemm_packed.cpp): the path FastLinear takes for many-row inputs when
// the caller (a Linear with packOnUse) holds the pack.
#pragma once

#include <cstddef>

namespace mlxk::gemm_packed {

// Output columns per panel: the pack is ceil(N / kCols) panels of [K][kCols] floats, padded columns zero.
constexpr int kCols = 32;

// Below this many x rows the unpacked kernels win (nothing to amortise the x packing and tile edges over).
constexpr int kMinRows = 8;

inline int panels(int N) {
  return (N + kCols - 1) / kCols;
}

// w [N, K] row-major → dst [panels(N)][K][kCols].
void pack(const float* w, int N, int K, float* dst);

// out[M, N] = x[M, K] · wᵀ from the pack, on the kernel pool, at the ISA in use (AVX-512, AVX2 or scalar:
// every output is one fused multiply-add chain over k in order, so the three paths are bitwise equal).
void run(const float* x, const float* packed, float* out, int M, int K, int N);

} // namespace mlxk::gemm_packed

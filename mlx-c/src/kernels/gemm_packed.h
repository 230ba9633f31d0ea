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

// The pieces run() is built from, for callers that make panels themselves (qgemm.cpp dequantizes them):
// x rows per tile, x in tile order, and the micro-kernel of the ISA in use.
constexpr int kRows = 14;

// The rows of x tile t: M rows make ceil(M / kRows) tiles of nearly equal size (⌊M / tiles⌋ or one more), so
// no tile is left with a few rows (the FMA chains' latency, not their throughput, bounds a 1–4-row tile). A
// row's result does not depend on its tile.
struct TileRows {
  int m0, rows;
};
inline TileRows tile_rows(int M, int t) {
  const int tiles = (M + kRows - 1) / kRows;
  if (tiles == 0) return {0, 0};
  const int base = M / tiles, extra = M % tiles;
  return {t * base + (t < extra ? t : extra), base + (t < extra ? 1 : 0)};
}

// x [M, K] → dst [ceil(M / kRows)][K][kRows]: tile t holds tile_rows(M, t), its slots past them zero (on the pool).
void pack_x(const float* x, int M, int K, float* dst);

// Several x matrices packed in one pool call (each as pack_x): MoE experts, whose x are too small to split alone.
struct PackJob {
  const float* x;
  int M, K;
  float* dst;
};
void pack_x_many(const PackJob* jobs, int n);

// One output tile: rows [0, R) × columns [0, nc) of `o` (row stride ldo) += a (a tile's k block, stride kRows)
// times b (a panel's k block, stride kCols) over kc steps; `first` starts the chains at 0 instead of `o`.
using TileFn = void (*)(const float* a, const float* b, int kc, int R, float* o, int ldo, int nc, bool first);
TileFn tile_fn();

} // namespace mlxk::gemm_packed

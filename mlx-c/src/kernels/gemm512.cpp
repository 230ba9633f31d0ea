// Float32 x[M,K] · w[N,K]ᵀ with AVX-512 in dot-product form: both operands are read along K as they lie (no
// weight packing per call, so one short text costs no more than its own rows), 6 rows × 4 outputs per tile —
// 24 zmm accumulators, 4 weight vectors and one x vector live, 24 FMAs per 10 loads — and one horizontal sum
// per output at the end. Each task owns 16 output columns and walks x in blocks that stay in L2.
// gemm.cpp's AVX2 6×16 tiles reached ~15 GFLOP/s a core here where torch's sgemm did ~40.
#include "gemm512.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "pool.h"
#include "qmm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#endif

namespace mlxk::gemm512 {

#if defined(__x86_64__)
namespace {

constexpr int kRows = 6;         // x rows per tile
constexpr int kOuts = 4;         // outputs per tile
constexpr int kTaskCols = 16;    // outputs per pool task
constexpr size_t kBlockBytes = 256 * 1024;  // x rows walked per block (L2-sized)

struct Job {
  const float* x;
  const float* w;
  float* out;
  int M, K, N, block; // N: the out row stride (the problem's N for run)
};

// [Σa, Σb, Σc, Σd] of four vectors' lanes.
MLXK_512 inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
  const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
  const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
  const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// R rows × C (≤ 4) outputs at (m, n); missing outputs read the last real weight row and are not stored.
template <int R>
MLXK_512 void tile(const Job& j, int m, int n, int C) {
  __m512 acc[R][kOuts];
#pragma GCC unroll 6
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int c = 0; c < kOuts; c++) acc[r][c] = _mm512_setzero_ps();
  const float* xr[R];
  const float* wr[kOuts];
  for (int r = 0; r < R; r++) xr[r] = j.x + static_cast<size_t>(m + r) * j.K;
  for (int c = 0; c < kOuts; c++) wr[c] = j.w + static_cast<size_t>(n + std::min(c, C - 1)) * j.K;
  const int K = j.K, K16 = K & ~15;
  for (int k = 0; k < K16; k += 16) {
    __m512 b[kOuts];
#pragma GCC unroll 4
    for (int c = 0; c < kOuts; c++) b[c] = _mm512_loadu_ps(wr[c] + k);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      const __m512 a = _mm512_loadu_ps(xr[r] + k);
#pragma GCC unroll 4
      for (int c = 0; c < kOuts; c++) acc[r][c] = _mm512_fmadd_ps(a, b[c], acc[r][c]);
    }
  }
  if (K16 < K) {
    const __mmask16 mk = static_cast<__mmask16>((1u << (K - K16)) - 1);
    __m512 b[kOuts];
    for (int c = 0; c < kOuts; c++) b[c] = _mm512_maskz_loadu_ps(mk, wr[c] + K16);
    for (int r = 0; r < R; r++) {
      const __m512 a = _mm512_maskz_loadu_ps(mk, xr[r] + K16);
      for (int c = 0; c < kOuts; c++) acc[r][c] = _mm512_fmadd_ps(a, b[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; r++) {
    const __m128 s = hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    float* o = j.out + static_cast<size_t>(m + r) * j.N + n;
    if (C == kOuts) {
      _mm_storeu_ps(o, s);
    } else {
      alignas(16) float t[4];
      _mm_store_ps(t, s);
      for (int c = 0; c < C; c++) o[c] = t[c];
    }
  }
}

MLXK_512 void rows(const Job& j, int m0, int m1, int n, int C) {
  int m = m0;
  for (; m + kRows <= m1; m += kRows) tile<6>(j, m, n, C);
  switch (m1 - m) {
    case 5: return tile<5>(j, m, n, C);
    case 4: return tile<4>(j, m, n, C);
    case 3: return tile<3>(j, m, n, C);
    case 2: return tile<2>(j, m, n, C);
    case 1: return tile<1>(j, m, n, C);
    default: return;
  }
}

void task(void* ctx, int t) {
  const Job& j = *static_cast<const Job*>(ctx);
  const int n0 = t * kTaskCols, n1 = std::min(j.N, n0 + kTaskCols);
  for (int b0 = 0; b0 < j.M; b0 += j.block) {
    const int b1 = std::min(j.M, b0 + j.block);
    for (int n = n0; n < n1; n += kOuts) rows(j, b0, b1, n, std::min(kOuts, n1 - n));
  }
}

} // namespace

bool available() {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vl");
  return cpu && kern::avx2_active();
}

void run(const float* x, const float* w, float* out, int M, int K, int N) {
  Job j{x, w, out, M, K, N, 0};
  const size_t fit = kBlockBytes / (static_cast<size_t>(std::max(K, 1)) * sizeof(float));
  j.block = std::max(kRows, static_cast<int>(fit / kRows) * kRows);
  kern::parallel_for((N + kTaskCols - 1) / kTaskCols, task, &j);
}

void panel(const float* x, const float* w, float* out, int M, int K, int N, int ldo) {
  const Job j{x, w, out, M, K, ldo, 0};
  const size_t fit = kBlockBytes / (static_cast<size_t>(std::max(K, 1)) * sizeof(float));
  const int block = std::max(kRows, static_cast<int>(fit / kRows) * kRows);
  for (int b0 = 0; b0 < M; b0 += block)
    for (int n = 0; n < N; n += kOuts) rows(j, b0, std::min(M, b0 + block), n, std::min(kOuts, N - n));
}

#else
bool available() { return false; }
void run(const float*, const float*, float*, int, int, int) {}
void panel(const float*, const float*, float*, int, int, int, int) {}
#endif

} // namespace mlxk::gemm512

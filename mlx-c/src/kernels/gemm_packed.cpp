// Float32 x[M,K] · w[N,K]ᵀ in outer-product form from a weight packed once (the caller keeps the pack):
// w as 32-column panels [K][32], x repacked per call into 14-row tiles [K][14]. The AVX-512 micro-kernel holds
// a 14 × 32 output tile in 28 zmm accumulators; each k step loads two weight vectors and broadcasts 14 x values
// straight from memory into the FMAs (28 FMAs per 2 loads), where gemm512.cpp's dot-product form reads both
// operands from L2 and ends every output with a horizontal sum. K runs in blocks of 256 so a task's x block
// stays in L2 and the panel slice in L1; partial sums go through `out` between blocks.
// Every output is one fused multiply-add chain over k = 0..K-1 in order, whatever the tile or the ISA, so the
// AVX-512, AVX2 and scalar paths give the same bits (and a row's result does not depend on its neighbours).
#include "gemm_packed.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "pool.h"
#include "qmm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_GP512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#define MLXK_GP256 __attribute__((target("avx2,fma")))
#endif

namespace mlxk::gemm_packed {
namespace {

constexpr int kBlockK = 256;      // k per block
constexpr int kTilesPerTask = 18; // x tiles per task: 252 rows × 256 k × 4 B ≈ 250 KB of x per block (L2)
constexpr int kPanelsPerTask = 4; // weight panels per task (128 output columns)

struct Job {
  const float* xp;  // [tiles][K][kRows], rows past M zero
  const float* w;   // [panels][K][kCols]
  float* out;       // [M, N]
  const float* x;   // [M, K] (for packing x)
  int M, K, N, tiles, groups;
};

void tile_scalar(const float* a, const float* b, int kc, int R, float* o, int ldo, int nc, bool first) {
  for (int r = 0; r < R; r++) {
    for (int c = 0; c < nc; c++) {
      float s = first ? 0.f : o[static_cast<size_t>(r) * ldo + c];
      for (int k = 0; k < kc; k++) s = std::fma(a[k * kRows + r], b[k * kCols + c], s);
      o[static_cast<size_t>(r) * ldo + c] = s;
    }
  }
}

#ifdef MLXK_GP512
template <int R>
MLXK_GP512 void tile512_rows(const float* a, const float* b, int kc, float* o, int ldo, int nc, bool first) {
  const __mmask16 m0 = nc >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nc) - 1);
  const __mmask16 m1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : static_cast<__mmask16>((1u << (nc - 16)) - 1);
  __m512 c0[R], c1[R];
#pragma GCC unroll 14
  for (int r = 0; r < R; r++) {
    if (first) {
      c0[r] = c1[r] = _mm512_setzero_ps();
    } else {
      c0[r] = _mm512_maskz_loadu_ps(m0, o + static_cast<size_t>(r) * ldo);
      c1[r] = _mm512_maskz_loadu_ps(m1, o + static_cast<size_t>(r) * ldo + 16);
    }
  }
  for (int k = 0; k < kc; k++, a += kRows, b += kCols) {
    const __m512 w0 = _mm512_loadu_ps(b), w1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
    for (int r = 0; r < R; r++) {
      const __m512 v = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(v, w0, c0[r]);
      c1[r] = _mm512_fmadd_ps(v, w1, c1[r]);
    }
  }
#pragma GCC unroll 14
  for (int r = 0; r < R; r++) {
    _mm512_mask_storeu_ps(o + static_cast<size_t>(r) * ldo, m0, c0[r]);
    _mm512_mask_storeu_ps(o + static_cast<size_t>(r) * ldo + 16, m1, c1[r]);
  }
}

template <int... Rs>
MLXK_GP512 void tile512_dispatch(std::integer_sequence<int, Rs...>, const float* a, const float* b, int kc, int R,
                                 float* o, int ldo, int nc, bool first) {
  using Fn = void (*)(const float*, const float*, int, float*, int, int, bool);
  static constexpr Fn fns[] = {tile512_rows<Rs + 1>...};
  fns[R - 1](a, b, kc, o, ldo, nc, first);
}

MLXK_GP512 void tile512(const float* a, const float* b, int kc, int R, float* o, int ldo, int nc, bool first) {
  tile512_dispatch(std::make_integer_sequence<int, kRows>{}, a, b, kc, R, o, ldo, nc, first);
}
#endif

#ifdef MLXK_GP256
// R (≤ 6) rows × 16 columns: 12 ymm accumulators.
template <int R>
MLXK_GP256 void tile256_rows(const float* a, const float* b, int kc, float* o, int ldo, int nc, bool first) {
  __m256 c0[R], c1[R];
  alignas(32) float t[16];
  for (int r = 0; r < R; r++) {
    if (first) {
      c0[r] = c1[r] = _mm256_setzero_ps();
    } else if (nc == 16) {
      c0[r] = _mm256_loadu_ps(o + static_cast<size_t>(r) * ldo);
      c1[r] = _mm256_loadu_ps(o + static_cast<size_t>(r) * ldo + 8);
    } else {
      for (int c = 0; c < 16; c++) t[c] = c < nc ? o[static_cast<size_t>(r) * ldo + c] : 0.f;
      c0[r] = _mm256_load_ps(t);
      c1[r] = _mm256_load_ps(t + 8);
    }
  }
  for (int k = 0; k < kc; k++, a += kRows, b += kCols) {
    const __m256 w0 = _mm256_loadu_ps(b), w1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      const __m256 v = _mm256_broadcast_ss(a + r);
      c0[r] = _mm256_fmadd_ps(v, w0, c0[r]);
      c1[r] = _mm256_fmadd_ps(v, w1, c1[r]);
    }
  }
  for (int r = 0; r < R; r++) {
    float* d = o + static_cast<size_t>(r) * ldo;
    if (nc == 16) {
      _mm256_storeu_ps(d, c0[r]);
      _mm256_storeu_ps(d + 8, c1[r]);
    } else {
      _mm256_store_ps(t, c0[r]);
      _mm256_store_ps(t + 8, c1[r]);
      for (int c = 0; c < nc; c++) d[c] = t[c];
    }
  }
}

MLXK_GP256 void tile256(const float* a, const float* b, int kc, int R, float* o, int ldo, int nc, bool first) {
  for (int h = 0; h < kCols && h < nc; h += 16) {
    const int hc = std::min(16, nc - h);
    for (int r0 = 0; r0 < R; r0 += 6) {
      const float* ar = a + r0;
      float* orow = o + static_cast<size_t>(r0) * ldo + h;
      switch (std::min(6, R - r0)) {
        case 6: tile256_rows<6>(ar, b + h, kc, orow, ldo, hc, first); break;
        case 5: tile256_rows<5>(ar, b + h, kc, orow, ldo, hc, first); break;
        case 4: tile256_rows<4>(ar, b + h, kc, orow, ldo, hc, first); break;
        case 3: tile256_rows<3>(ar, b + h, kc, orow, ldo, hc, first); break;
        case 2: tile256_rows<2>(ar, b + h, kc, orow, ldo, hc, first); break;
        default: tile256_rows<1>(ar, b + h, kc, orow, ldo, hc, first); break;
      }
    }
  }
}
#endif

bool has_avx512() {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vl");
  return cpu;
}

TileFn tile_for_isa() {
#ifdef MLXK_GP512
  if (kern::active_isa() >= kern::kIsaAvx512 && has_avx512()) return tile512;
#endif
#ifdef MLXK_GP256
  if (kern::avx2_active()) return tile256;
#endif
  return tile_scalar;
}

struct RunCtx {
  Job j;
  TileFn tile;
};

// One x tile: its rows tile_rows(M, t) of x (the slots past them zero) → dst [K][kRows].
void pack_tile_scalar(const float* x, int M, int K, int t, float* dst) {
  const TileRows tr = tile_rows(M, t);
  for (int r = 0; r < kRows; r++) {
    const float* src = x + static_cast<size_t>(tr.m0 + r) * K;
    if (r < tr.rows) {
      for (int k = 0; k < K; k++) dst[static_cast<size_t>(k) * kRows + r] = src[k];
    } else {
      for (int k = 0; k < K; k++) dst[static_cast<size_t>(k) * kRows + r] = 0.f;
    }
  }
}

#ifdef MLXK_GP512
// The same tile by 16 × 16 register transposes (rows 14, 15 and rows past M zero), each k's 14 values one
// masked store: ~4× the scalar loop's speed, which wrote one float per cycle at a 56-byte stride (pack_x was
// 4–10% of a K-quant prefill). The values are copies, so the pack is the same bits either way.
MLXK_GP512 void pack_tile512(const float* x, int M, int K, int t, float* dst) {
  const TileRows tr = tile_rows(M, t);
  const int m0 = tr.m0, rows = tr.rows;
  int k0 = 0;
  for (; k0 + 16 <= K; k0 += 16) {
    __m512 v[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++)
      v[r] = r < rows ? _mm512_loadu_ps(x + static_cast<size_t>(m0 + r) * K + k0) : _mm512_setzero_ps();
    // stage 1: interleave row pairs per 32-bit lane
    __m512 a[16];
#pragma GCC unroll 8
    for (int r = 0; r < 16; r += 2) {
      a[r] = _mm512_unpacklo_ps(v[r], v[r + 1]);
      a[r + 1] = _mm512_unpackhi_ps(v[r], v[r + 1]);
    }
    // stage 2: 64-bit pairs of row pairs → each 128-bit lane holds 4 rows of one k
#pragma GCC unroll 4
    for (int r = 0; r < 16; r += 4) {
      v[r] = _mm512_shuffle_ps(a[r], a[r + 2], 0x44);
      v[r + 1] = _mm512_shuffle_ps(a[r], a[r + 2], 0xEE);
      v[r + 2] = _mm512_shuffle_ps(a[r + 1], a[r + 3], 0x44);
      v[r + 3] = _mm512_shuffle_ps(a[r + 1], a[r + 3], 0xEE);
    }
    // stages 3, 4: 128-bit lanes across the four groups of 4 rows
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
      a[i] = _mm512_shuffle_f32x4(v[i], v[4 + i], 0x88);
      a[4 + i] = _mm512_shuffle_f32x4(v[i], v[4 + i], 0xDD);
      a[8 + i] = _mm512_shuffle_f32x4(v[8 + i], v[12 + i], 0x88);
      a[12 + i] = _mm512_shuffle_f32x4(v[8 + i], v[12 + i], 0xDD);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
      v[i] = _mm512_shuffle_f32x4(a[i], a[8 + i], 0x88);
      v[8 + i] = _mm512_shuffle_f32x4(a[i], a[8 + i], 0xDD);
      v[4 + i] = _mm512_shuffle_f32x4(a[4 + i], a[12 + i], 0x88);
      v[12 + i] = _mm512_shuffle_f32x4(a[4 + i], a[12 + i], 0xDD);
    }
    // v[j] now holds rows 0..15 of k0 + j
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(dst + static_cast<size_t>(k0 + j) * kRows, 0x3FFF, v[j]);
  }
  for (int k = k0; k < K; k++)
    for (int r = 0; r < kRows; r++) dst[static_cast<size_t>(k) * kRows + r] = r < rows ? x[static_cast<size_t>(m0 + r) * K + k] : 0.f;
}
#endif

void pack_tile(const float* x, int M, int K, int t, float* dst) {
#ifdef MLXK_GP512
  if (kern::active_isa() >= kern::kIsaAvx512 && has_avx512()) return pack_tile512(x, M, K, t, dst);
#endif
  pack_tile_scalar(x, M, K, t, dst);
}

void pack_x_task(void* ctx, int t) {
  const Job& j = static_cast<RunCtx*>(ctx)->j;
  pack_tile(j.x, j.M, j.K, t, const_cast<float*>(j.xp) + static_cast<size_t>(t) * j.K * kRows);
}

// Task = (panel group, x tile block); tasks of one block come together so the cores share x in L3.
void gemm_task(void* ctx, int i) {
  const auto& rc = *static_cast<RunCtx*>(ctx);
  const Job& j = rc.j;
  const int g = i % j.groups, tb = i / j.groups;
  const int p0 = g * kPanelsPerTask, p1 = std::min(panels(j.N), p0 + kPanelsPerTask);
  const int t0 = tb * kTilesPerTask, t1 = std::min(j.tiles, t0 + kTilesPerTask);
  for (int k0 = 0; k0 < j.K; k0 += kBlockK) {
    const int kc = std::min(kBlockK, j.K - k0);
    for (int p = p0; p < p1; p++) {
      const float* b = j.w + (static_cast<size_t>(p) * j.K + k0) * kCols;
      const int nc = std::min(kCols, j.N - p * kCols);
      for (int t = t0; t < t1; t++) {
        const float* a = j.xp + (static_cast<size_t>(t) * j.K + k0) * kRows;
        const TileRows tr = tile_rows(j.M, t);
        float* o = j.out + static_cast<size_t>(tr.m0) * j.N + static_cast<size_t>(p) * kCols;
        rc.tile(a, b, kc, tr.rows, o, j.N, nc, k0 == 0);
      }
    }
  }
}

struct PackCtx {
  const float* w;
  float* dst;
  int N, K;
};

void pack_task(void* ctx, int p) {
  const auto& c = *static_cast<PackCtx*>(ctx);
  float* d = c.dst + static_cast<size_t>(p) * c.K * kCols;
  for (int col = 0; col < kCols; col++) {
    const int n = p * kCols + col;
    const float* src = c.w + static_cast<size_t>(n) * c.K;
    if (n < c.N) {
      for (int k = 0; k < c.K; k++) d[static_cast<size_t>(k) * kCols + col] = src[k];
    } else {
      for (int k = 0; k < c.K; k++) d[static_cast<size_t>(k) * kCols + col] = 0.f;
    }
  }
}

} // namespace

TileFn tile_fn() {
  return tile_for_isa();
}

void pack_x(const float* x, int M, int K, float* dst) {
  RunCtx rc{{dst, nullptr, nullptr, x, M, K, 0, (M + kRows - 1) / kRows, 0}, nullptr};
  kern::parallel_for_work(rc.j.tiles, pack_x_task, &rc, static_cast<double>(M) * K);
}

void pack_x_many(const PackJob* jobs, int n) {
  struct Ctx {
    const PackJob* jobs;
    std::vector<int> first; // task index where each job's tiles start (n + 1 entries)
  };
  thread_local Ctx c;
  c.jobs = jobs;
  c.first.assign(n + 1, 0);
  double work = 0;
  for (int i = 0; i < n; i++) {
    c.first[i + 1] = c.first[i] + (jobs[i].M + kRows - 1) / kRows;
    work += static_cast<double>(jobs[i].M) * jobs[i].K;
  }
  if (c.first.back() == 0) return;
  kern::parallel_for_work(c.first.back(), [](void* vc, int t) {
    const Ctx& c = *static_cast<const Ctx*>(vc);
    const int i = static_cast<int>(std::upper_bound(c.first.begin(), c.first.end(), t) - c.first.begin()) - 1;
    const PackJob& j = c.jobs[i];
    const int local = t - c.first[i];
    pack_tile(j.x, j.M, j.K, local, j.dst + static_cast<size_t>(local) * j.K * kRows);
  }, &c, work);
}

void pack(const float* w, int N, int K, float* dst) {
  PackCtx c{w, dst, N, K};
  kern::parallel_for_work(panels(N), pack_task, &c, static_cast<double>(N) * K);
}

void run(const float* x, const float* packed, float* out, int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    std::fill(out, out + static_cast<size_t>(M) * N, 0.f);
    return;
  }
  const int tiles = (M + kRows - 1) / kRows;
  // x in tile order: reused per calling thread (one per MLX stream), grown only
  thread_local std::vector<float> xbuf;
  xbuf.resize(std::max(xbuf.size(), static_cast<size_t>(tiles) * K * kRows));
  RunCtx rc{{xbuf.data(), packed, out, x, M, K, N, tiles, (panels(N) + kPanelsPerTask - 1) / kPanelsPerTask},
            tile_for_isa()};
  kern::parallel_for_work(tiles, pack_x_task, &rc, static_cast<double>(M) * K);
  const int blocks = (tiles + kTilesPerTask - 1) / kTilesPerTask;
  kern::parallel_for_work(rc.j.groups * blocks, gemm_task, &rc, static_cast<double>(M) * N * K);
}

} // namespace mlxk::gemm_packed

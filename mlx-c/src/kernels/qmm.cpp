// Quantized matmul: dequantise a 32-element chunk of one weight row into 4 float vectors once, then FMA it
// against up to 8 rows of x (prefill reuses each unpacked block across rows); decode (one row, or a batch of
// independent rows) runs the shared template of qmm_decode.h. Work is split into (row block × column chunk)
// tasks claimed dynamically by the pool threads.
#include "qmm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pool.h"
#include "qgemm.h"
#include "qmm_isa.h"

#include "simd.h"

#if defined(__x86_64__)
#define MLXK_QMM_TARGET MLXK_AVX2
#include "qmm_decode.h"
#endif
#ifndef MLXK_MAX_ROWS
#define MLXK_MAX_ROWS 8
#endif

namespace mlxk::kern {
namespace {

bool cpu_has_avx2() {
#ifdef MLXK_X86
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return v;
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#ifdef MLXK_X86
  static const bool v = cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return v;
#else
  return false;
#endif
}

bool cpu_has_vnni() {
#ifdef MLXK_X86
  static const bool v = cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
  return v;
#else
  return false;
#endif
}

int best_isa() {
#ifdef MLXK_X86
  return cpu_has_avx512() ? kIsaAvx512 : (cpu_has_avx2() ? kIsaAvx2 : kIsaScalar);
#else
  return 0;
#endif
}

// MLXK_ISA=scalar|avx2|avx512 caps the ISA (never above what the CPU has); unset or unknown = the best.
int default_isa() {
  const int best = best_isa();
  const char* v = std::getenv("MLXK_ISA");
  if (v == nullptr || best == 0) return best;
  const std::string s(v);
  const int want = s == "scalar" ? kIsaScalar : s == "avx2" ? kIsaAvx2 : s == "avx512" ? kIsaAvx512 : best;
  return std::min(want, best);
}

std::atomic<int> g_isa{-1};
std::atomic<int> g_int8{-1};

int isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = default_isa();
    g_isa.store(v, std::memory_order_relaxed);
  }
  return v;
}

bool use_avx2() {
  return isa() >= kIsaAvx2;
}

// E2M1 code → value (sign is bit 3).
constexpr float kFp4[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

// ---------------------------------------------------------------- scalar fallback (natural x order)

float dot_scalar(const QmmProblem& p, const float* x, int n) {
  const int K = p.K, gs = p.gs, G = K / gs;
  const size_t row_bytes = static_cast<size_t>(K) * bits_of(p.fmt) / 8;
  const uint8_t* w = p.w + static_cast<size_t>(n) * row_bytes;
  float acc = 0.f;
  for (int g = 0; g < G; g++) {
    const int k0 = g * gs;
    if (p.fmt == QFormat::Mxfp4) {
      const float s = e8m0(p.escale[static_cast<size_t>(n) * G + g]);
      for (int k = k0; k < k0 + gs; k++) acc += x[k] * (kFp4[(w[k >> 1] >> ((k & 1) * 4)) & 15] * s);
    } else {
      const float s = p.scales[static_cast<size_t>(n) * G + g], b = p.biases[static_cast<size_t>(n) * G + g];
      if (p.fmt == QFormat::Affine8) {
        for (int k = k0; k < k0 + gs; k++) acc += x[k] * (s * static_cast<float>(w[k]) + b);
      } else {
        for (int k = k0; k < k0 + gs; k++) acc += x[k] * (s * static_cast<float>((w[k >> 1] >> ((k & 1) * 4)) & 15) + b);
      }
    }
  }
  return acc;
}

#ifdef MLXK_X86
// ---------------------------------------------------------------- AVX2/FMA

MLXK_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Reorders each 32-element chunk of x to [even elements | odd elements], matching low/high nibbles of 16 bytes.
void permute_x_nibbles(const float* x, float* xp, int M, int K) {
  for (size_t c = 0; c < static_cast<size_t>(M) * K; c += 32) {
    for (int i = 0; i < 16; i++) {
      xp[c + i] = x[c + 2 * i];
      xp[c + 16 + i] = x[c + 2 * i + 1];
    }
  }
}

// Unpacks 32 weights starting at element k0 of row `w` into q[0..3] (raw codes as floats, or 2×fp4 values).
template <QFormat F>
MLXK_AVX2 inline void unpack32(const uint8_t* w, int k0, __m256 q[4]) {
  if constexpr (F == QFormat::Affine8) {
    #pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
      __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + k0 + 8 * j));
      q[j] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    }
  } else {
    __m128i lo, hi;
    nibbles<F>(w, k0, lo, hi);
    if constexpr (F == QFormat::Mxfp4) {
      q[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
      q[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo)));
      q[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
      q[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi)));
    } else {
      q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
      q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(lo, lo)));
      q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
      q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(hi, hi)));
    }
  }
}

// R rows of x (stride K, already in the format's chunk order) against weight row n → out[r*N + n].
template <QFormat F, int R>
MLXK_AVX2 void rows_avx2(const QmmProblem& p, const float* xp, int n) {
  constexpr int NA = R == 1 ? 4 : (R <= 4 ? 2 : 1); // independent accumulator chains per row
  const int K = p.K, gs = p.gs, G = K / gs;
  const size_t row_bytes = static_cast<size_t>(K) * bits_of(F) / 8;
  const uint8_t* w = p.w + static_cast<size_t>(n) * row_bytes;
  __m256 acc[R][NA];
  #pragma GCC unroll 16
  for (int r = 0; r < R; r++)
    #pragma GCC unroll 16
    for (int a = 0; a < NA; a++) acc[r][a] = _mm256_setzero_ps();
  for (int g = 0; g < G; g++) {
    __m256 s, b;
    if constexpr (F == QFormat::Mxfp4) {
      s = _mm256_set1_ps(0.5f * e8m0(p.escale[static_cast<size_t>(n) * G + g]));
      b = _mm256_setzero_ps();
    } else {
      s = _mm256_set1_ps(p.scales[static_cast<size_t>(n) * G + g]);
      b = _mm256_set1_ps(p.biases[static_cast<size_t>(n) * G + g]);
    }
    for (int k0 = g * gs; k0 < (g + 1) * gs; k0 += 32) {
      __m256 q[4];
      unpack32<F>(w, k0, q);
      #pragma GCC unroll 16
      for (int j = 0; j < 4; j++) {
        if constexpr (F == QFormat::Mxfp4) q[j] = _mm256_mul_ps(q[j], s);
        else q[j] = _mm256_fmadd_ps(q[j], s, b);
      }
      #pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        const float* xr = xp + static_cast<size_t>(r) * K + k0;
        #pragma GCC unroll 16
        for (int j = 0; j < 4; j++) acc[r][j % NA] = _mm256_fmadd_ps(q[j], _mm256_loadu_ps(xr + 8 * j), acc[r][j % NA]);
      }
    }
  }
  #pragma GCC unroll 16
  for (int r = 0; r < R; r++) {
    __m256 t = acc[r][0];
    #pragma GCC unroll 16
    for (int a = 1; a < NA; a++) t = _mm256_add_ps(t, acc[r][a]);
    p.out[static_cast<size_t>(r) * p.N + n] = hsum(t);
  }
}

// A decode column's result: the group sums tot, plus the affine bias as bias·Σx(group) (shared by the one-row
// and the batch kernels so both round alike).
template <QFormat F>
MLXK_AVX2 inline float finish_col(const QmmProblem& p, __m256 tot, const float* xsum, int n) {
  float r = hsum(tot);
  if constexpr (F != QFormat::Mxfp4) {
    const int G = p.K / p.gs;
    const float* b = p.biases + static_cast<size_t>(n) * G;
    __m256 bacc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= G; g += 8) bacc = _mm256_fmadd_ps(_mm256_loadu_ps(b + g), _mm256_loadu_ps(xsum + g), bacc);
    r += hsum(bacc);
    for (; g < G; g++) r += b[g] * xsum[g];
  }
  return r;
}

// The AVX2 vector traits of the decode template (qmm_decode.h): 4 ymm per 32-weight chunk; rows in blocks of 4
// (3 accumulators per row + 4 weight vectors fill the 16 ymm registers), column pairs for one row only.
struct V8 {
  using reg = __m256;
  static constexpr int width = 8, max_rows = kDecodeRowsAvx2, pair_rows = 1, pair_rows8 = 0;
  static constexpr bool prefetch8 = false;
  MLXK_AVX2 static reg zero() { return _mm256_setzero_ps(); }
  MLXK_AVX2 static reg load(const float* x) { return _mm256_loadu_ps(x); }
  MLXK_AVX2 static reg set1(float v) { return _mm256_set1_ps(v); }
  MLXK_AVX2 static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  MLXK_AVX2 static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  MLXK_AVX2 static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  template <int N>
  MLXK_AVX2 static void reduce_n(const reg* a, float* o) {
#pragma GCC unroll 8
    for (int i = 0; i < N; i++) o[i] = hsum(a[i]);
  }
  template <QFormat F>
  MLXK_AVX2 static void unpack(const uint8_t* w, int k0, reg q[4]) { unpack32<F>(w, k0, q); }
  // 32 weights dequantised: s·q + b (mxfp4: s·q), one rounding per weight.
  template <QFormat F>
  MLXK_AVX2 static void dequant32(const uint8_t* w, int k0, float s, float b, reg q[4]) {
    unpack32<F>(w, k0, q);
    const reg sv = set1(s), bv = set1(b);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) q[j] = F == QFormat::Mxfp4 ? mul(q[j], sv) : fmadd(q[j], sv, bv);
  }
  // R × C results (row-major), xsum the tile's first row's Σx per group (rows G apart)
  template <QFormat F, int R, int C>
  MLXK_AVX2 static void finish_tile(const QmmProblem& p, const reg* tot, const float* xsum, int G, int n, float* o) {
#pragma GCC unroll 8
    for (int i = 0; i < R * C; i++) o[i] = finish_col<F>(p, tot[i], xsum + static_cast<size_t>(i / C) * G, n + i % C);
  }
};

// Prefill: rows of x sharing each unpacked weight chunk (8 accumulators + 4 weight vectors fit the 16 ymm registers).
constexpr int kMaxRows = MLXK_MAX_ROWS;

template <QFormat F>
void tile_avx2(const QmmProblem& p, const float* xp, const float* xsum, int r0, int r1, int c0, int c1) {
  if (xsum != nullptr) return decode_block<V8, F>(p, xp, xsum, r0, r1, c0, c1);
  for (int r = r0; r < r1; r += kMaxRows) {
    const int R = std::min(kMaxRows, r1 - r);
    const float* xr = xp + static_cast<size_t>(r) * p.K;
    QmmProblem q = p;
    q.out = p.out + static_cast<size_t>(r) * p.N;
    for (int n = c0; n < c1; n++) {
      switch (R) {
        case 1: rows_avx2<F, 1>(q, xr, n); break;
        case 2: rows_avx2<F, 2>(q, xr, n); break;
        case 3: rows_avx2<F, 3>(q, xr, n); break;
        case 4: rows_avx2<F, 4>(q, xr, n); break;
        case 5: rows_avx2<F, 5>(q, xr, n); break;
        case 6: rows_avx2<F, 6>(q, xr, n); break;
        case 7: rows_avx2<F, 7>(q, xr, n); break;
        default: rows_avx2<F, 8>(q, xr, n); break;
      }
    }
  }
}
#endif

struct Job {
  const QmmProblem* p;
  const float* xp; // x in the order the chosen path reads it
  const float* xsum; // decode path (M == 1 or independent rows): Σx per group of each row [M, G], else null
  const Int8X* x8; // the int8-activation path's x, else null
  int isa;
  int row_block, col_chunk, n_col_chunks;
};

void run_task(void* ctx, int i) {
  const Job& j = *static_cast<const Job*>(ctx);
  const QmmProblem& p = *j.p;
  const int rb = i / j.n_col_chunks, cc = i % j.n_col_chunks;
  const int r0 = rb * j.row_block, r1 = std::min(p.M, r0 + j.row_block);
  const int c0 = cc * j.col_chunk, c1 = std::min(p.N, c0 + j.col_chunk);
#ifdef MLXK_X86
  if (j.x8 != nullptr) return tile_vnni(p, *j.x8, r0, r1, c0, c1);
  // decode (j.xsum set: M == 1 or independent rows): every row with the one-row arithmetic, each unpacked
  // weight chunk shared by all rows of the task (qmm_decode.h)
  if (j.isa >= kIsaAvx512) return tile_avx512(p, j.xp, j.xsum, r0, r1, c0, c1);
  if (j.isa >= kIsaAvx2) {
    switch (p.fmt) {
      case QFormat::Affine4: tile_avx2<QFormat::Affine4>(p, j.xp, j.xsum, r0, r1, c0, c1); return;
      case QFormat::Affine8: tile_avx2<QFormat::Affine8>(p, j.xp, j.xsum, r0, r1, c0, c1); return;
      case QFormat::Mxfp4: tile_avx2<QFormat::Mxfp4>(p, j.xp, j.xsum, r0, r1, c0, c1); return;
    }
  }
#endif
  for (int r = r0; r < r1; r++)
    for (int n = c0; n < c1; n++) p.out[static_cast<size_t>(r) * p.N + n] = dot_scalar(p, j.xp + static_cast<size_t>(r) * p.K, n);
}

} // namespace

int kernels_level() {
  return best_isa();
}

int active_isa() {
  return isa();
}

int set_isa(int level) {
  const int prev = isa();
  g_isa.store(level <= 0 ? default_isa() : std::min(level, best_isa()), std::memory_order_relaxed);
  return prev;
}

bool int8_available() {
  return cpu_has_vnni();
}

bool int8_active() {
  int v = g_int8.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv("MLXK_INT8_ACT");
    v = e != nullptr && std::string(e) == "1" ? 1 : 0;
    g_int8.store(v, std::memory_order_relaxed);
  }
  return v >= 1 && cpu_has_vnni() && isa() >= kIsaAvx512;
}

// Measured on Intel (Sapphire Rapids class, SmolLM2 Q4_1 decode, one thread): the int8 affine tiles plus x's
// quantization ran 20.6–23.0 ms per token where the f32 tiles ran 18.5, so there the setting leaves affine
// matmuls on the f32 path (exact, and faster); on AMD Zen 4, where they were written and won, they stay.
// set_int8(2) runs them on every CPU (tests).
bool int8_affine_active() {
  static const bool intel = __builtin_cpu_is("intel");
  return int8_active() && (g_int8.load(std::memory_order_relaxed) == 2 || !intel);
}

bool set_int8(int on) {
  const bool prev = int8_active();
  g_int8.store(on == 2 ? 2 : on ? 1 : 0, std::memory_order_relaxed);
  return prev;
}

bool avx2_active() {
  return use_avx2();
}

bool set_force_scalar(bool on) {
  return set_isa(on ? kIsaScalar : 0) == kIsaScalar;
}

bool qmm_supported(QFormat fmt, int gs, int K) {
  if (fmt == QFormat::Mxfp4) return gs == 32 && K > 0 && K % 32 == 0;
  return (gs == 32 || gs == 64 || gs == 128) && K > 0 && K % gs == 0;
}

namespace {
// MLXK_KERNEL_PROFILE=1: calls, wall time and multiply-adds of every qmm (bench/decode-profile.ts reads them).
const bool kProfile = [] {
  const char* v = std::getenv("MLXK_KERNEL_PROFILE");
  return v != nullptr && std::string(v) == "1";
}();
std::atomic<uint64_t> g_prof_calls{0}, g_prof_ns{0};
std::atomic<double> g_prof_macs{0};
} // namespace

void qmm_profile(double out[3]) {
  out[0] = static_cast<double>(g_prof_calls.load());
  out[1] = static_cast<double>(g_prof_ns.load()) * 1e-6;
  out[2] = g_prof_macs.load();
}

void qmm_run(const QmmProblem& p);

#ifdef MLXK_X86
namespace {
// n floats of v from a 64-byte boundary: a decode tile reads each x row as whole 16-float vectors (K is a multiple
// of 32, so every row starts on a line when the first does), and a load straddling two cache lines costs two: the
// 8-row tile (16 such loads per 32 weights) measured 1.2-1.8x slower with x 16 bytes off a line (Xeon, AVX-512).
float* line_aligned(std::vector<float>& v, size_t n) {
  v.resize(n + 16);
  const auto a = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float*>((a + 63) & ~static_cast<uintptr_t>(63));
}
} // namespace
#endif

void qmm(const QmmProblem& p) {
  if (!kProfile) return qmm_run(p);
  const auto t0 = std::chrono::steady_clock::now();
  qmm_run(p);
  g_prof_ns.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count()));
  g_prof_calls.fetch_add(1);
  double m = g_prof_macs.load();
  while (!g_prof_macs.compare_exchange_weak(m, m + static_cast<double>(p.M) * p.N * p.K)) {
  }
}

void qmm_run(const QmmProblem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  if (qgemm::takes(p)) return qgemm::run(p); // many rows: the dequantized-panel GEMM (qgemm.cpp)
  Job j{&p, p.x, nullptr, nullptr, isa(), 64, 0, 0};
#ifdef MLXK_X86
  // Scratch for the reordered x lives on the calling (MLX stream) thread and is reused across calls.
  thread_local std::vector<float> xbuf;
  thread_local std::vector<float> xibuf;
  thread_local std::vector<float> xsum;
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> xd;
  thread_local std::vector<float> xe;
  Int8X x8{};
  if (p.fmt == QFormat::Affine4 && int8_affine_active()) {
    x8.Kp = (p.K + 127) / 128 * 128;
    xq.resize(static_cast<size_t>(p.M) * x8.Kp);
    xd.resize(static_cast<size_t>(p.M) * (x8.Kp / 8));
    xsum.resize(static_cast<size_t>(p.M) * (p.K / p.gs));
    xe.resize(xsum.size());
    quantize_x_int8(p.x, p.M, p.K, p.gs, xq.data(), xd.data(), xsum.data(), xe.data());
    x8.q = xq.data();
    x8.d16 = xd.data();
    x8.xsum = xsum.data();
    x8.xerr = xe.data();
    j.x8 = &x8;
  } else {
    const int xrows = p.M == 1 ? 1 : (p.independent_rows ? p.M : 0);
    if (j.isa >= kIsaAvx2 && p.fmt != QFormat::Affine8) {
      float* xp = line_aligned(xbuf, static_cast<size_t>(p.M) * p.K);
      permute_x_nibbles(p.x, xp, p.M, p.K);
      j.xp = xp;
    }
    if (j.isa >= kIsaAvx2 && xrows > 1) {
      // a decode batch: each block of the tiles' rows interleaved per 32-element chunk (qmm_decode.h), once per
      // call rather than per task (a task's copy of 8 rows × K 1536 was ~5 % of its work)
      const int blk = j.isa >= kIsaAvx512 ? kDecodeRows512 : kDecodeRowsAvx2;
      float* xi = line_aligned(xibuf, static_cast<size_t>(p.M) * p.K);
      for (int r0 = 0; r0 < p.M; r0 += blk) {
        const int R = std::min(blk, p.M - r0);
        const float* src = j.xp + static_cast<size_t>(r0) * p.K;
        float* dst = xi + static_cast<size_t>(r0) * p.K;
        for (int c = 0; c < p.K / 32; c++)
          for (int r = 0; r < R; r++) std::memcpy(dst + (static_cast<size_t>(c) * R + r) * 32, src + static_cast<size_t>(r) * p.K + c * 32, 128);
      }
      j.xp = xi;
    }
    if (j.isa >= kIsaAvx2 && xrows > 0) {
      const int G = p.K / p.gs;
      // Σx per group for the bias term; groups of 32 decode through decode_tile32, which folds the biases into
      // the dequantised weights and never reads it (the buffer still marks the decode path)
      if (p.gs == 32) {
        xsum.resize(static_cast<size_t>(G) * xrows);
      } else {
        xsum.assign(static_cast<size_t>(G) * xrows, 0.f);
        for (int r = 0; r < xrows; r++) {
          const float* xr = p.x + static_cast<size_t>(r) * p.K;
          for (int g = 0; g < G; g++)
            for (int k = g * p.gs; k < (g + 1) * p.gs; k++) xsum[static_cast<size_t>(r) * G + g] += xr[k];
        }
      }
      j.xsum = xsum.data();
      // all rows in one task per column chunk, so the chunk's weights are read from memory once per step
      if (p.independent_rows) j.row_block = p.M;
    }
  }
#endif
  const int threads = pool_threads();
  // Enough column chunks for dynamic balancing on a noisy shared machine, but each big enough to amortise a claim.
  j.col_chunk = std::clamp(p.N / (threads * 8), 8, 64);
  j.n_col_chunks = (p.N + j.col_chunk - 1) / j.col_chunk;
  const int n_row_blocks = (p.M + j.row_block - 1) / j.row_block;
  const int tasks = n_row_blocks * j.n_col_chunks;
  parallel_for_work(tasks, run_task, &j, static_cast<double>(p.M) * p.N * p.K);
}

} // namespace mlxk::kern

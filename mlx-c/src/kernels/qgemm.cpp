// Quantized prefill through the packed f32 GEMM (qgemm.h). A task owns one 32-column weight panel and a block
// of x tiles; per K block of 256 it dequantizes the panel's [256][32] slice into a per-thread buffer (L1) and
// runs gemm_packed's micro-kernel over the block's tiles. Affine / mxfp4 panels are dequantized straight into
// the panel layout (16 or 8 weight rows per vector, their codes gathered 4 bytes at a time); K-quant rows go
// through kq_deq_row (one 256-value block per row) and a transpose, or on AVX-512 straight into the panel
// layout the same way as affine.
#include "qgemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gemm_packed.h"
#include "kquant512.h"
#include "pool.h"
#include "qmm_isa.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_QG512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define MLXK_QG256 __attribute__((target("avx2,fma")))
#endif

namespace mlxk::qgemm {
namespace {
using kern::KType;
using kern::QFormat;

constexpr int kC = gemm_packed::kCols;  // 32 output columns per panel
constexpr int kR = gemm_packed::kRows;  // 14 x rows per tile
constexpr int kBK = 256;                // k per dequantized slice: 32 KB, stays in L1 while the tiles run
constexpr int kMaxTiles = 36;           // x tiles per task at most: 504 rows, 516 KB of x per K block (L2);
                                        // the slice is dequantized once per task

// Measured (bench/qgemm.ts, BENCHMARKS.md): from this many rows the panel GEMM beats the per-row kernels;
// K-quant slices cost more to dequantize (kq_deq_row + a transpose) and the AVX-512 K-quant prefill they
// replace is already a dequantized-panel tile, so they cross later (Xeon SPR-class: 1.1-1.2x at 24 rows,
// 1.3-1.8x at 32; was 64, measured on Zen 4).
constexpr int kAffineRows = 16, kKquantRows = 24;

std::atomic<int> g_rows{-2}; // -2: MLXK_QGEMM_ROWS not read yet; -1: the defaults above; else both kinds

// MLXK_QGEMM_ROWS=N (N >= 0; 0 = never); -1 (the defaults) when unset or not a number, as MLXK_THREADS.
int env_rows() {
  const char* v = std::getenv("MLXK_QGEMM_ROWS");
  if (v == nullptr || *v == 0) return -1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end != nullptr && *end == 0 && n >= 0 && n <= (1 << 30)) ? static_cast<int>(n) : -1;
}

int rows_setting() {
  int v = g_rows.load(std::memory_order_relaxed);
  if (v == -2) {
    v = env_rows();
    g_rows.store(v, std::memory_order_relaxed);
  }
  return v;
}

// E2M1 code → value (sign is bit 3), as qmm.cpp.
constexpr float kFp4[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

struct Prob {
  const float* xp;  // x packed by gemm_packed::pack_x
  float* out;
  int ldo, M, K, N, tiles, tblocks, tpt, panels;  // tpt: x tiles per task (blocks of equal size)
  // weights: an MLX quantized matrix (q) or GGUF K-quant rows (kq)
  bool kq;
  QFormat fmt;
  KType t;
  const uint8_t* w;
  const float* scales;
  const float* biases;
  const uint8_t* escale;
  int gs;
};

// Scale and bias of group g for columns [n0, n0 + nv) into s[], b[] (zero past nv).
inline void group_params(const Prob& q, int n0, int nv, int width, int g, float* s, float* b) {
  const int G = q.K / q.gs;
  for (int i = 0; i < width; i++) {
    const size_t gi = static_cast<size_t>(n0 + i) * G + g;
    if (i >= nv) s[i] = b[i] = 0.f;
    else if (q.fmt == QFormat::Mxfp4) s[i] = kern::e8m0(q.escale[gi]), b[i] = 0.f;
    else s[i] = q.scales[gi], b[i] = q.biases[gi];
  }
}

inline size_t row_bytes(const Prob& q) {
  return static_cast<size_t>(q.K) * (q.fmt == QFormat::Affine8 ? 8 : 4) / 8;
}

// ---------------------------------------------------------------- affine / mxfp4 panel slices

void deq_scalar(const Prob& q, int n0, int k0, int kc, float* buf) {
  const size_t rb = row_bytes(q);
  const int G = q.K / q.gs;
  for (int c = 0; c < kC; c++) {
    const int n = n0 + c;
    if (n >= q.N) {
      for (int k = 0; k < kc; k++) buf[k * kC + c] = 0.f;
      continue;
    }
    const uint8_t* w = q.w + static_cast<size_t>(n) * rb;
    for (int k = k0; k < k0 + kc; k++) {
      const size_t gi = static_cast<size_t>(n) * G + k / q.gs;
      float v;
      if (q.fmt == QFormat::Mxfp4) v = kFp4[(w[k >> 1] >> ((k & 1) * 4)) & 15] * kern::e8m0(q.escale[gi]);
      else if (q.fmt == QFormat::Affine8) v = std::fma(static_cast<float>(w[k]), q.scales[gi], q.biases[gi]);
      else v = std::fma(static_cast<float>((w[k >> 1] >> ((k & 1) * 4)) & 15), q.scales[gi], q.biases[gi]);
      buf[(k - k0) * kC + c] = v;
    }
  }
}

#ifdef MLXK_QG512
// 16 weight rows per vector: 4 code bytes of each gathered per step (8 nibbles or 4 bytes), then fma(q, s, b).
template <QFormat F>
MLXK_QG512 void deq512(const Prob& q, int n0, int k0, int kc, float* buf) {
  const size_t rb = row_bytes(q);
  const __m512 fp4 = _mm512_loadu_ps(kFp4);
  alignas(64) float s[16], b[16];
  for (int h = 0; h < kC; h += 16) {
    const int nv = std::clamp(q.N - n0 - h, 0, 16);
    float* d = buf + h;
    if (nv == 0) {
      for (int k = 0; k < kc; k++) _mm512_storeu_ps(d + k * kC, _mm512_setzero_ps());
      continue;
    }
    const __mmask16 m = static_cast<__mmask16>((1u << nv) - 1);
    const __m512i idx = _mm512_mullo_epi32(_mm512_set1_epi32(static_cast<int>(rb)), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const uint8_t* w = q.w + static_cast<size_t>(n0 + h) * rb;
    for (int g = k0 / q.gs; g < (k0 + kc) / q.gs; g++) {
      group_params(q, n0 + h, nv, 16, g, s, b);
      const __m512 sv = _mm512_load_ps(s), bv = _mm512_load_ps(b);
      for (int k = g * q.gs; k < (g + 1) * q.gs; k += F == QFormat::Affine8 ? 4 : 8) {
        const void* base = w + (F == QFormat::Affine8 ? k : k / 2);
        const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base, 1);
        float* o = d + (k - k0) * kC;
        if constexpr (F == QFormat::Affine8) {
#pragma GCC unroll 4
          for (int j = 0; j < 4; j++) {
            const __m512 c = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, 8 * j), _mm512_set1_epi32(255)));
            _mm512_storeu_ps(o + j * kC, _mm512_fmadd_ps(c, sv, bv));
          }
        } else {
#pragma GCC unroll 8
          for (int j = 0; j < 8; j++) {
            const __m512i c = _mm512_and_si512(_mm512_srli_epi32(v, 4 * j), _mm512_set1_epi32(15));
            if constexpr (F == QFormat::Mxfp4) _mm512_storeu_ps(o + j * kC, _mm512_mul_ps(_mm512_permutexvar_ps(c, fp4), sv));
            else _mm512_storeu_ps(o + j * kC, _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), sv, bv));
          }
        }
      }
    }
  }
}
#endif

#ifdef MLXK_QG256
// The same with 8 weight rows per vector.
template <QFormat F>
MLXK_QG256 void deq256(const Prob& q, int n0, int k0, int kc, float* buf) {
  const size_t rb = row_bytes(q);
  alignas(32) float s[8], b[8];
  alignas(32) float tab[16];
  std::memcpy(tab, kFp4, sizeof tab);
  const __m256 fp4lo = _mm256_load_ps(tab), fp4hi = _mm256_load_ps(tab + 8);
  for (int h = 0; h < kC; h += 8) {
    const int nv = std::clamp(q.N - n0 - h, 0, 8);
    float* d = buf + h;
    if (nv == 0) {
      for (int k = 0; k < kc; k++) _mm256_storeu_ps(d + k * kC, _mm256_setzero_ps());
      continue;
    }
    alignas(32) int mk[8];
    for (int i = 0; i < 8; i++) mk[i] = i < nv ? -1 : 0;
    const __m256i m = _mm256_load_si256(reinterpret_cast<const __m256i*>(mk));
    const __m256i idx = _mm256_mullo_epi32(_mm256_set1_epi32(static_cast<int>(rb)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const uint8_t* w = q.w + static_cast<size_t>(n0 + h) * rb;
    for (int g = k0 / q.gs; g < (k0 + kc) / q.gs; g++) {
      group_params(q, n0 + h, nv, 8, g, s, b);
      const __m256 sv = _mm256_load_ps(s), bv = _mm256_load_ps(b);
      for (int k = g * q.gs; k < (g + 1) * q.gs; k += F == QFormat::Affine8 ? 4 : 8) {
        const int* base = reinterpret_cast<const int*>(w + (F == QFormat::Affine8 ? k : k / 2));
        const __m256i v = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), base, idx, m, 1);
        float* o = d + (k - k0) * kC;
        if constexpr (F == QFormat::Affine8) {
#pragma GCC unroll 4
          for (int j = 0; j < 4; j++) {
            const __m256 c = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 8 * j), _mm256_set1_epi32(255)));
            _mm256_storeu_ps(o + j * kC, _mm256_fmadd_ps(c, sv, bv));
          }
        } else {
#pragma GCC unroll 8
          for (int j = 0; j < 8; j++) {
            const __m256i c = _mm256_and_si256(_mm256_srli_epi32(v, 4 * j), _mm256_set1_epi32(15));
            if constexpr (F == QFormat::Mxfp4) {
              // 16-entry table from two 8-entry permutes, picked by bit 3
              const __m256 lo = _mm256_permutevar8x32_ps(fp4lo, c), hi = _mm256_permutevar8x32_ps(fp4hi, c);
              const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));
              _mm256_storeu_ps(o + j * kC, _mm256_mul_ps(_mm256_blendv_ps(lo, hi, sel), sv));
            } else {
              _mm256_storeu_ps(o + j * kC, _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), sv, bv));
            }
          }
        }
      }
    }
  }
}
#endif

bool has_avx512() {
#if defined(__x86_64__)
  static const bool v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return v;
#else
  return false;
#endif
}

using DeqFn = void (*)(const Prob&, int, int, int, float*);

template <QFormat F>
DeqFn deq_for_isa() {
#ifdef MLXK_QG512
  if (kern::active_isa() >= kern::kIsaAvx512 && has_avx512()) return deq512<F>;
#endif
#ifdef MLXK_QG256
  if (kern::avx2_active()) return deq256<F>;
#endif
  return deq_scalar;
}

DeqFn deq_fn(QFormat f) {
  switch (f) {
    case QFormat::Affine4: return deq_for_isa<QFormat::Affine4>();
    case QFormat::Affine8: return deq_for_isa<QFormat::Affine8>();
    case QFormat::Mxfp4: return deq_for_isa<QFormat::Mxfp4>();
  }
  return deq_scalar;
}

// ---------------------------------------------------------------- K-quant panel slices

#ifdef MLXK_QG512
// Per 16 values of each column's block: value = fma(code, A, B), A and B rounded exactly as kquant.cpp's AVX2
// block_params (so this equals kq_deq_row bitwise); stored [16 sub-blocks][16 columns]. 16 columns at once: the
// header bytes gathered 4 at a time, the 6-bit unpacking lane-wise (one column at a time it was ~3% of a Q4_K_M
// prefill, `perf`).
template <KType T>
MLXK_QG512 void kq_params512(const uint8_t* base, __mmask16 m, __m512i idx, float (*A)[16], float (*B)[16]) {
#define gath(at) _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + (at), 1)
  if constexpr (T == KType::Q6K) {
    // bytes 206..209: the last two scales and d (a gather at 208 would read past the block)
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(gath(206), 16)));
    const __m512 m32 = _mm512_set1_ps(-32.f);
    for (int g = 0; g < 4; g++) {
      const __m512i v = gath(192 + 4 * g);
      for (int i = 0; i < 4; i++) {
        const __m512 a = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * i), 24)));
        _mm512_store_ps(A[4 * g + i], a);
        _mm512_store_ps(B[4 * g + i], _mm512_mul_ps(m32, a));
      }
    }
  } else {
    const __m512i dd = gath(0); // d | dmin << 16
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
    // −dmin by the sign bit (as the scalar negation: −0 stays −0)
    const __m512 nmin = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)))), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
    const __m512i u0 = gath(4), u1 = gath(8), u2 = gath(12);
    const __m512i m1 = _mm512_set1_epi32(0x3f3f3f3f), m2 = _mm512_set1_epi32(0x0f0f0f0f), m3 = _mm512_set1_epi32(0x03030303);
    const __m512i ff = _mm512_set1_epi32(0xff);
    const __m512i sc[2] = {_mm512_and_si512(u0, m1), _mm512_or_si512(_mm512_and_si512(u2, m2), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), m3), 4))};
    const __m512i mn[2] = {_mm512_and_si512(u1, m1), _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m2), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), m3), 4))};
    for (int j = 0; j < 8; j++) {
      const __m512 a = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(sc[j / 4], 8 * (j % 4)), ff)));
      const __m512 b = _mm512_mul_ps(nmin, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(mn[j / 4], 8 * (j % 4)), ff)));
      _mm512_store_ps(A[2 * j], a);
      _mm512_store_ps(A[2 * j + 1], a);
      _mm512_store_ps(B[2 * j], b);
      _mm512_store_ps(B[2 * j + 1], b);
    }
  }
#undef gath
}

// One 256-value block of 16 columns straight into the panel layout: codes gathered 4 bytes per column.
template <KType T>
MLXK_QG512 void deq_kq512(const Prob& q, int n0, int k0, float* buf) {
  const int bb = kern::kq_block_bytes(T);
  const size_t rb = static_cast<size_t>(q.K / 256) * bb, off = static_cast<size_t>(k0 / 256) * bb;
  alignas(64) float A[16][16], B[16][16];
  const __m512i m4 = _mm512_set1_epi32(15);
  for (int h = 0; h < kC; h += 16) {
    const int nv = std::clamp(q.N - n0 - h, 0, 16);
    float* d = buf + h;
    if (nv == 0) {
      for (int k = 0; k < kBK; k++) _mm512_storeu_ps(d + k * kC, _mm512_setzero_ps());
      continue;
    }
    const uint8_t* base = q.w + static_cast<size_t>(n0 + h) * rb + off;
    const __mmask16 m = static_cast<__mmask16>((1u << nv) - 1);
    const __m512i idx = _mm512_mullo_epi32(_mm512_set1_epi32(static_cast<int>(rb)), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    kq_params512<T>(base, m, idx, A, B);
#define gather(at) _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + (at), 1)
#define put(e, code) _mm512_storeu_ps(d + (e) * kC, _mm512_fmadd_ps(_mm512_cvtepi32_ps(code), _mm512_load_ps(A[(e) / 16]), _mm512_load_ps(B[(e) / 16])))
    if constexpr (T == KType::Q6K) {
      for (int h6 = 0; h6 < 2; h6++)
        for (int l0 = 0; l0 < 32; l0 += 4) {
          const __m512i qa = gather(64 * h6 + l0), qb = gather(64 * h6 + 32 + l0), qh = gather(128 + 32 * h6 + l0);
#pragma GCC unroll 4
          for (int t = 0; t < 4; t++) {
            const int e = 128 * h6 + l0 + t;
            const __m512i a = _mm512_srli_epi32(qa, 8 * t), b = _mm512_srli_epi32(qb, 8 * t), hb = _mm512_srli_epi32(qh, 8 * t);
            const __m512i m3 = _mm512_set1_epi32(3);
            put(e, _mm512_or_si512(_mm512_and_si512(a, m4), _mm512_slli_epi32(_mm512_and_si512(hb, m3), 4)));
            put(e + 32, _mm512_or_si512(_mm512_and_si512(b, m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 2), m3), 4)));
            put(e + 64, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a, 4), m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 4), m3), 4)));
            put(e + 96, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(b, 4), m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 6), m3), 4)));
          }
        }
    } else {
      const int qs = T == KType::Q5K ? 48 : 16;
      for (int j2 = 0; j2 < 4; j2++)
        for (int l0 = 0; l0 < 32; l0 += 4) {
          const __m512i v = gather(qs + 32 * j2 + l0);
          __m512i qh = _mm512_setzero_si512();
          if constexpr (T == KType::Q5K) qh = gather(16 + l0);
#pragma GCC unroll 4
          for (int t = 0; t < 4; t++) {
            const int e = 64 * j2 + l0 + t;
            __m512i lo = _mm512_and_si512(_mm512_srli_epi32(v, 8 * t), m4), hi = _mm512_and_si512(_mm512_srli_epi32(v, 8 * t + 4), m4);
            if constexpr (T == KType::Q5K) {
              const __m512i one = _mm512_set1_epi32(1);
              lo = _mm512_or_si512(lo, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 8 * t + 2 * j2), one), 4));
              hi = _mm512_or_si512(hi, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 8 * t + 2 * j2 + 1), one), 4));
            }
            put(e, lo);
            put(e + 32, hi);
          }
        }
    }
  }
}
#undef gather
#undef put
#endif

void transpose_scalar(const float* rows, float* buf) {
  for (int k = 0; k < kBK; k += 8)
    for (int c = 0; c < kC; c++)
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++) buf[(k + j) * kC + c] = rows[c * kBK + k + j];
}

// One 256-value block of each of the panel's rows (kq_deq_row: the exact values), transposed into [256][32]
// (AVX2 and scalar; AVX-512 dequantizes straight into the panel layout, bitwise the same values as AVX2).
void deq_kq(const Prob& q, int n0, int k0, float* buf, float* rows) {
#ifdef MLXK_QG512
  if (kern::active_isa() >= kern::kIsaAvx512 && has_avx512()) {
    switch (q.t) {
      case KType::Q4K: return deq_kq512<KType::Q4K>(q, n0, k0, buf);
      case KType::Q5K: return deq_kq512<KType::Q5K>(q, n0, k0, buf);
      case KType::Q6K: return deq_kq512<KType::Q6K>(q, n0, k0, buf);
    }
  }
#endif
  const size_t rb = static_cast<size_t>(q.K / 256) * kern::kq_block_bytes(q.t);
  const size_t off = static_cast<size_t>(k0 / 256) * kern::kq_block_bytes(q.t);
  const int nv = std::clamp(q.N - n0, 0, kC);
  for (int c = 0; c < nv; c++) kern::kq_deq_row(q.t, q.w + static_cast<size_t>(n0 + c) * rb + off, rows + c * kBK, kBK);
  for (int c = nv; c < kC; c++) std::memset(rows + c * kBK, 0, sizeof(float) * kBK);
  transpose_scalar(rows, buf);
}

// ---------------------------------------------------------------- driver

struct Ctx {
  const Prob* probs;
  const int* first;  // task index where each problem starts (n + 1 entries)
  int n;
  gemm_packed::TileFn tile;
  DeqFn deq[3];
};

void task(void* vc, int i) {
  const Ctx& c = *static_cast<const Ctx*>(vc);
  const int pi = static_cast<int>(std::upper_bound(c.first, c.first + c.n + 1, i) - c.first) - 1;
  const Prob& q = c.probs[pi];
  const int local = i - c.first[pi], panel = local % q.panels, tb = local / q.panels;
  const int n0 = panel * kC, nc = std::min(kC, q.N - n0);
  const int t0 = tb * q.tpt, t1 = std::min(q.tiles, t0 + q.tpt);
  thread_local std::vector<float> buf, rows;
  buf.resize(static_cast<size_t>(kBK) * kC);
  if (q.kq) rows.resize(static_cast<size_t>(kBK) * kC);
  for (int k0 = 0; k0 < q.K; k0 += kBK) {
    const int kc = std::min(kBK, q.K - k0);
    if (q.kq) deq_kq(q, n0, k0, buf.data(), rows.data());
    else c.deq[static_cast<int>(q.fmt)](q, n0, k0, kc, buf.data());
    for (int t = t0; t < t1; t++) {
      const float* a = q.xp + (static_cast<size_t>(t) * q.K + k0) * kR;
      const gemm_packed::TileRows tr = gemm_packed::tile_rows(q.M, t);
      float* o = q.out + static_cast<size_t>(tr.m0) * q.ldo + n0;
      c.tile(a, buf.data(), kc, tr.rows, o, q.ldo, nc, k0 == 0);
    }
  }
}

void finish(Prob& q) {
  q.tiles = (q.M + kR - 1) / kR;
  q.tblocks = (q.tiles + kMaxTiles - 1) / kMaxTiles;
  q.tpt = (q.tiles + q.tblocks - 1) / q.tblocks;
  q.panels = (q.N + kC - 1) / kC;
}

void run_probs(std::vector<Prob>& probs) {
  thread_local std::vector<int> first;
  first.assign(probs.size() + 1, 0);
  double work = 0;
  for (size_t k = 0; k < probs.size(); k++) {
    first[k + 1] = first[k] + probs[k].panels * probs[k].tblocks;
    work += static_cast<double>(probs[k].M) * probs[k].N * probs[k].K;
  }
  if (first.back() == 0) return;
  Ctx c{probs.data(), first.data(), static_cast<int>(probs.size()), gemm_packed::tile_fn(),
        {deq_fn(QFormat::Affine4), deq_fn(QFormat::Affine8), deq_fn(QFormat::Mxfp4)}};
  kern::parallel_for_work(first.back(), task, &c, work);
}

} // namespace

int min_rows(bool kquant) {
  const int v = rows_setting();
  return v >= 0 ? v : kquant ? kKquantRows : kAffineRows;
}

int setting() {
  return rows_setting();
}

int set_min_rows(int n) {
  const int prev = rows_setting();
  g_rows.store(n < 0 ? env_rows() : n, std::memory_order_relaxed);
  return prev;
}

// Affine prefill takes this path with the opt-in int8 activations too: from the threshold the f32 panel GEMM is
// faster than the int8 dot tiles (SmolLM2 Q4_1 prefill 2.7x) and exact besides; fewer rows keep the int8 tiles.
bool takes(const kern::QmmProblem& p) {
  const int r = min_rows(false);
  return r > 0 && p.M >= r && p.N > 0 && !p.independent_rows && kern::active_isa() > 0;
}

// K-quant prefill takes this path with the opt-in int8 activations too where kqgemm8 (VNNI) does not run (AVX2):
// from this many rows the f32 panel GEMM is faster than the q8_K tiles and exact besides.
bool takes(const kern::KqProblem& p) {
  const int r = min_rows(true);
  return r > 0 && p.M >= r && p.N > 0 && kern::active_isa() > 0;
}

void run(const kern::QmmProblem& p) {
  thread_local std::vector<float> xp;
  thread_local std::vector<Prob> probs;
  Prob q{};
  q.out = p.out;
  q.ldo = p.N;
  q.M = p.M;
  q.K = p.K;
  q.N = p.N;
  q.fmt = p.fmt;
  q.w = p.w;
  q.scales = p.scales;
  q.biases = p.biases;
  q.escale = p.escale;
  q.gs = p.gs;
  finish(q);
  xp.resize(std::max(xp.size(), static_cast<size_t>(q.tiles) * kR * p.K));
  gemm_packed::pack_x(p.x, p.M, p.K, xp.data());
  q.xp = xp.data();
  probs.assign(1, q);
  run_probs(probs);
}

void run_kq(const kern::KqProblem* ps, int n) {
  thread_local std::vector<float> xp;
  thread_local std::vector<Prob> probs;
  thread_local std::vector<const float*> xs;
  thread_local std::vector<size_t> at;
  probs.clear();
  xs.clear();
  at.clear();
  size_t total = 0;
  for (int k = 0; k < n; k++) {
    const kern::KqProblem& p = ps[k];
    if (p.M <= 0 || p.N <= 0) continue;
    Prob q{};
    q.out = p.out;
    q.ldo = p.ldo;
    q.M = p.M;
    q.K = p.K;
    q.N = p.N;
    q.kq = true;
    q.t = p.t;
    q.w = p.w;
    finish(q);
    // problems reading the same x rows (MoE gate/up of one expert) share one packed copy
    size_t off = total;
    for (size_t e = 0; e < probs.size(); e++)
      if (xs[e] == p.x && probs[e].M == p.M && probs[e].K == p.K) off = at[e];
    if (off == total) total += static_cast<size_t>(q.tiles) * kR * p.K;
    xs.push_back(p.x);
    at.push_back(off);
    probs.push_back(q);
  }
  xp.resize(std::max(xp.size(), total));
  thread_local std::vector<gemm_packed::PackJob> packs;
  packs.clear();
  for (size_t e = 0; e < probs.size(); e++) {
    probs[e].xp = xp.data() + at[e];
    bool first = true;
    for (size_t f = 0; f < e; f++) first = first && at[f] != at[e];
    if (first) packs.push_back({xs[e], probs[e].M, probs[e].K, xp.data() + at[e]});
  }
  // one pool call for every expert's x (each alone was too small to split, so they ran in turn on one thread)
  gemm_packed::pack_x_many(packs.data(), static_cast<int>(packs.size()));
  run_probs(probs);
}

bool take_kq(const kern::KqProblem* ps, int n) {
  // All or nothing: a call split between this path and kquant_run.cpp's would be two pool calls, each with
  // its own tail (with that split the MoE row of bench/llama.ts ran 0.88x the baseline, in a noisy run).
  // MoE experts: the call is taken when its largest problem reaches the threshold, the experts with a few
  // rows run here too (a decode batch never: its rows stay on the one-row kernels). Requiring every expert to
  // reach it left most MoE prefill calls to the 6-row tiles: MoE prefill CPU time −12% (BENCHMARKS #17).
  int most = 0;
  for (int k = 0; k < n; k++) {
    if (ps[k].M > 0 && ps[k].independent_rows) return false;
    if (ps[k].M > most && ps[k].N > 0) most = ps[k].M;
  }
  kern::KqProblem big{};
  big.M = most;
  big.N = 1;
  if (!takes(big)) return false;
  run_kq(ps, n);
  return true;
}

} // namespace mlxk::qgemm

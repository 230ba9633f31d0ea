// The decode tile of quantized matmul (one token per row of x: M = 1, or a batch of independent rows), one
// template for the AVX2 and the AVX-512 paths. V is the vector width's traits (qmm.cpp: 8 floats,
// qmm_avx512.cpp: 16 floats); the including file defines MLXK_QMM_TARGET as its ISA's target attribute first.
// Everything here is in an anonymous namespace, so each ISA's file gets its own instantiations.
//
// Why one template for 1..8 rows: every (row, column) pair runs the same instruction sequence whatever the
// number of rows, so a batch row is bit-identical to the row decoded alone (the R = 1 instance), while each
// chunk of 4-bit codes is unpacked once for all rows of the batch (the unpacking is most of the work).
// A block of R rows reads x interleaved per 32-element chunk ([K/32][R][32], qmm.cpp copies it): the tile's x
// loads are then one pointer plus constant offsets, where R row pointers made GCC index every FMA's memory
// operand off a counter (an indexed operand costs 2 uops): measured 8 rows 0.80x, 4 rows 0.94x (576 → 1536).
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>

#include "qmm_isa.h"

namespace mlxk::kern {
namespace {

// 16 packed bytes of 4-bit codes from element k0 as [low nibbles | high nibbles] (even | odd elements, the
// order x is permuted to); Mxfp4 codes mapped to their doubled E2M1 values (int8; the 0.5 goes into the scale).
template <QFormat F>
MLXK_QMM_TARGET inline void nibbles(const uint8_t* w, int k0, __m128i& lo, __m128i& hi) {
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k0 / 2));
  lo = _mm_and_si128(v, m4);
  hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
  if constexpr (F == QFormat::Mxfp4) {
    const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    lo = _mm_shuffle_epi8(lut, lo);
    hi = _mm_shuffle_epi8(lut, hi);
  }
}

// Software prefetch of the weight streams (codes, scales, biases or E8M0 exponents) kPrefetchBytes of codes
// ahead, one cache line per stream each time k0 crosses one: the hardware prefetcher alone kept one core at
// ~11 GB/s on matrices past the caches (its streams stop at 4 KiB pages); with this ~20 GB/s (measured on
// Zen 5, one thread, Qwen2.5-1.5B shapes; 4–8 KiB ahead were best, 1 KiB too short, 16 KiB into L2 slower).
// Columns are consecutive rows, so reading past a row's end prefetches the next columns' start.
constexpr int kPrefetchBytes = 6144;

// One cache line of each of the first C ≤ 2 streams at these byte offsets. Always inlined: GCC (12) takes a
// function whose body is only prefetches for one without side effects and deletes the calls.
template <int C, class T>
MLXK_QMM_TARGET __attribute__((always_inline)) inline void prefetch_rows(const T* a, const T* b, size_t off) {
  static_assert(C == 1 || C == 2);
  __builtin_prefetch(a + off, 0, 3);
  if constexpr (C == 2) __builtin_prefetch(b + off, 0, 3);
}

// Groups kPrefetchBytes of codes span (the per-group streams' prefetch distance); computed once per tile.
template <QFormat F>
inline int groups_ahead(int gs) {
  return kPrefetchBytes * (F == QFormat::Affine8 ? 1 : 2) / gs;
}

// k0 is the chunk's first element, g its group (k0 == g0 when the chunk starts it), ahead = groups_ahead(gs):
// the tiles pass what they already know, as a division here per chunk (k0 / gs with gs a run-time value) cost ~40 % of a one-row decode
// (measured on a Xeon: an idiv in the inner loop, 91 -> 44 µs at 576 -> 1536 with the weights in cache).
// 8-bit rows only where V::prefetch8 (AVX-512): measured on the Xeon, SmolLM2's 576 → 49152 Q8_0 head,
// 0.85–0.88x for 1 row, 0.80–0.83x for 2 (it had measured no gain for one 8-bit column per tile before).
template <QFormat F, int C>
MLXK_QMM_TARGET __attribute__((always_inline)) inline void prefetch_ahead(const QmmProblem& p, const uint8_t* const* w, int n, int G, int k0, int g0, int g, int ahead) {
  constexpr int per_byte = 8 / (F == QFormat::Affine8 ? 8 : 4); // codes per byte
  const int kb = k0 / per_byte;                                  // code byte offset within the row
  if ((kb & 63) < 32 / per_byte) prefetch_rows<C>(w[0], w[C - 1], static_cast<size_t>(kb) + kPrefetchBytes);
  // the per-group streams, one line (per_line groups) at a time, when k0 starts a group
  const int per_line = F == QFormat::Mxfp4 ? 64 : 16; // groups per cache line
  if (k0 == g0 && g % per_line == 0) {
    const size_t gi = static_cast<size_t>(n) * G + g + ahead, gj = gi + static_cast<size_t>(G) * (C - 1);
    if constexpr (F == QFormat::Mxfp4) {
      prefetch_rows<C>(p.escale + gi, p.escale + gj, 0);
    } else {
      prefetch_rows<C>(p.scales + gi, p.scales + gj, 0);
      prefetch_rows<C>(p.biases + gi, p.biases + gj, 0);
    }
  }
}

template <QFormat F>
inline float decode_scale(const QmmProblem& p, size_t gi) {
  return F == QFormat::Mxfp4 ? 0.5f * e8m0(p.escale[gi]) : p.scales[gi];
}

// A tile's R × C results (row-major) into out.
template <int R, int C>
inline void store_tile(const QmmProblem& p, const float* o, int r0, int n) {
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) p.out[static_cast<size_t>(r0 + r) * p.N + n + c] = o[r * C + c];
}

// R rows (from r0) × C columns (from n): per (row, column) the raw codes · x summed per group in two chains
// (chunk vector j into chain j % 2), the group sum scaled once into tot, the affine bias added at the end as
// bias·Σx(group) by V::finish_tile — half the FMAs of dequantising every weight.
//
// Groups [g0, g1) only: st (non-null when the tile's K is split into blocks, see decode_rows) carries the R × C
// tot vectors from one block to the next; the results are stored after the last group.
template <class V, QFormat F, int R, int C, bool KB>
MLXK_QMM_TARGET void decode_tile(const QmmProblem& p, const float* xp, const float* xsum, int r0, int n, int g0, int g1, typename V::reg* st) {
  using reg = typename V::reg;
  constexpr int J = 32 / V::width; // vectors per 32-element chunk
  const int K = p.K, gs = p.gs, G = K / gs, ahead = groups_ahead<F>(gs);
  const size_t row_bytes = static_cast<size_t>(K) * bits_of(F) / 8;
  const uint8_t* w[C];
  reg tot[R][C];
#pragma GCC unroll 8
  for (int c = 0; c < C; c++) w[c] = p.w + static_cast<size_t>(n + c) * row_bytes;
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) tot[r][c] = KB && g0 > 0 ? st[r * C + c] : V::zero();
  int ci = g0 * (gs / 32); // chunk index (x is interleaved per chunk: [K/32][R][32])
  for (int g = g0; g < g1; g++) {
    reg ga[R][C][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
      for (int c = 0; c < C; c++) ga[r][c][0] = ga[r][c][1] = V::zero();
    for (int k0 = g * gs; k0 < (g + 1) * gs; k0 += 32, ci++) {
      reg q[C][J];
      if constexpr (F != QFormat::Affine8 || V::prefetch8) prefetch_ahead<F, C>(p, w, n, G, k0, g * gs, g, ahead);
#pragma GCC unroll 8
      for (int c = 0; c < C; c++) V::template unpack<F>(w[c], k0, q[c]);
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) {
        const float* xr = xp + (static_cast<size_t>(ci) * R + r) * 32;
#pragma GCC unroll 8
        for (int j = 0; j < J; j++) {
          const reg xv = V::load(xr + j * V::width);
#pragma GCC unroll 8
          for (int c = 0; c < C; c++) ga[r][c][j % 2] = V::fmadd(q[c][j], xv, ga[r][c][j % 2]);
        }
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
      const reg s = V::set1(decode_scale<F>(p, static_cast<size_t>(n + c) * G + g));
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) tot[r][c] = V::fmadd(V::add(ga[r][c][0], ga[r][c][1]), s, tot[r][c]);
    }
  }
  reg t[R * C];
  float o[R * C];
#pragma GCC unroll 16
  for (int i = 0; i < R * C; i++) t[i] = tot[i / C][i % C];
  if (KB && g1 < G) {
#pragma GCC unroll 16
    for (int i = 0; i < R * C; i++) st[i] = t[i];
    return;
  }
  V::template finish_tile<F, R, C>(p, t, xsum + static_cast<size_t>(r0) * G, G, n, o);
  store_tile<R, C>(p, o, r0, n);
}

// Groups of 32 (one chunk per group: GGUF Q4_0/Q4_1/Q8_0 blocks, mxfp4): scaling each group's sum costs as much
// as dequantising, so each chunk is dequantised once (s·q + b, shared by the R rows) and FMA'd into each row's
// two chains: 2 FMAs per row per chunk instead of 3 and an add, and no bias term at the end. Measured with one
// thread (CPU time, SmolLM2 shapes): 10–20 % faster than decode_tile for one row, ~30 % for 8.
// Groups [g0, g1) only, st as decode_tile's (the R × C × 2 chains).
template <class V, QFormat F, int R, int C, bool KB>
MLXK_QMM_TARGET void decode_tile32(const QmmProblem& p, const float* xp, int r0, int n, int g0, int g1, typename V::reg* st) {
  using reg = typename V::reg;
  constexpr int J = 32 / V::width;
  const int K = p.K, G = K / 32;
  const size_t row_bytes = static_cast<size_t>(K) * bits_of(F) / 8;
  const uint8_t* w[C];
  reg acc[R][C][2];
#pragma GCC unroll 8
  for (int c = 0; c < C; c++) w[c] = p.w + static_cast<size_t>(n + c) * row_bytes;
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
      acc[r][c][0] = KB && g0 > 0 ? st[(r * C + c) * 2] : V::zero();
      acc[r][c][1] = KB && g0 > 0 ? st[(r * C + c) * 2 + 1] : V::zero();
    }
  // x and code pointers bumped per group and hidden from GCC's induction-variable rewrite (an empty asm), which
  // otherwise indexes the loads off one counter: indexed memory operands of the FMAs split into 2 uops each
  // (measured ~5–10 % slower for one row)
  constexpr int gb = 32 * (F == QFormat::Affine8 ? 8 : 4) / 8; // code bytes per group
  const float* xg = xp + static_cast<size_t>(g0) * R * 32;
  const uint8_t* wg[C];
  size_t gi[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; c++) {
    wg[c] = w[c] + static_cast<size_t>(g0) * gb;
    gi[c] = static_cast<size_t>(n + c) * G + g0;
  }
  for (int g = g0; g < g1; g++, xg += R * 32) {
    reg q[C][J];
    if constexpr (F != QFormat::Affine8 || V::prefetch8) prefetch_ahead<F, C>(p, w, n, G, g * 32, g * 32, g, groups_ahead<F>(32));
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
      V::template dequant32<F>(wg[c], 0, decode_scale<F>(p, gi[c]), F == QFormat::Mxfp4 ? 0.f : p.biases[gi[c]], q[c]);
      wg[c] += gb;
      asm("" : "+r"(wg[c]));
      gi[c]++;
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const float* xr = xg + r * 32;
#pragma GCC unroll 8
      for (int j = 0; j < J; j++) {
        const reg xv = V::load(xr + j * V::width);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c][j % 2] = V::fmadd(q[c][j], xv, acc[r][c][j % 2]);
      }
    }
    asm("" : "+r"(xg));
  }
  if (KB && g1 < G) {
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
      for (int c = 0; c < C; c++) {
        st[(r * C + c) * 2] = acc[r][c][0];
        st[(r * C + c) * 2 + 1] = acc[r][c][1];
      }
    return;
  }
  reg t[R * C];
  float o[R * C];
#pragma GCC unroll 16
  for (int i = 0; i < R * C; i++) t[i] = V::add(acc[i / C][i % C][0], acc[i / C][i % C][1]);
  V::template reduce_n<R * C>(t, o);
  store_tile<R, C>(p, o, r0, n);
}

// A row block without column pairs whose x is over kXMaxBytes runs its K in blocks of about kXBlockBytes of x:
// kBlockCols columns at a time, each block by block with its accumulators kept in memory in between
// (bit-identical: the same operations in the same order), so x stays in L1 (48 KiB) next to the weights instead of
// streaming from L2 for every column. Measured (Xeon, 1 thread, CPU time, against the same code unblocked): 8 rows
// × K 1536 → 576 (48 KiB of x) 0.81x (gs 32) / 0.76x (gs 64), 8 × 8960 → 256 0.63x; with column pairs (they halve
// the x loads) 4 rows × 8960 → 256 1.1x slower, so pairs never block.
constexpr int kXBlockBytes = 24576, kXMaxBytes = 45056, kBlockCols = 8;

template <class V, QFormat F, int R, int C, bool KB>
MLXK_QMM_TARGET void decode_span(const QmmProblem& p, const float* xi, const float* xsum, int r0, int n, int g0, int g1, typename V::reg* st) {
  if (p.gs == 32) decode_tile32<V, F, R, C, KB>(p, xi, r0, n, g0, g1, st);
  else decode_tile<V, F, R, C, KB>(p, xi, xsum, r0, n, g0, g1, st);
}

template <class V, QFormat F, int R>
MLXK_QMM_TARGET void decode_rows(const QmmProblem& p, const float* xp_rows, const float* xsum, int r0, int c0, int c1) {
  using reg = typename V::reg;
  const float* xi = xp_rows + static_cast<size_t>(r0) * p.K; // this block's rows, interleaved (qmm.cpp)
  // Column pairs share the x loads and run 4 chains instead of 2 (V::pair_rows: more rows in a block leave too few
  // registers for pairs; 8-bit rows in pairs up to V::pair_rows8 rows, see V16).
  constexpr bool pairs = R <= (F == QFormat::Affine8 ? V::pair_rows8 : V::pair_rows);
  const int G = p.K / p.gs;
  const int bg = std::max(1, kXBlockBytes / (R * p.gs * 4)); // groups per K block
  if (pairs || R * p.K * 4 <= kXMaxBytes || bg >= G) {
    int n = c0;
    if constexpr (pairs)
      for (; n + 2 <= c1; n += 2) decode_span<V, F, R, 2, false>(p, xi, xsum, r0, n, 0, G, nullptr);
    for (; n < c1; n++) decode_span<V, F, R, 1, false>(p, xi, xsum, r0, n, 0, G, nullptr);
    return;
  }
  // per column at most 2 R vectors of state (decode_tile32's two chains)
  reg st[kBlockCols * 2 * R];
  for (int n0 = c0; n0 < c1; n0 += kBlockCols) {
    const int n1 = std::min(c1, n0 + kBlockCols);
    for (int g0 = 0; g0 < G; g0 += bg) {
      const int g1 = std::min(G, g0 + bg);
      int n = n0;
      reg* s = st;
      if constexpr (pairs)
        for (; n + 2 <= n1; n += 2, s += 4 * R) decode_span<V, F, R, 2, true>(p, xi, xsum, r0, n, g0, g1, s);
      for (; n < n1; n++, s += 2 * R) decode_span<V, F, R, 1, true>(p, xi, xsum, r0, n, g0, g1, s);
    }
  }
}

// Decode over rows [r0, r1) × columns [c0, c1): rows in blocks of V::max_rows, each block sharing every
// unpacked weight chunk. xsum is Σx per group of every row ([M, G]).
template <class V, QFormat F>
MLXK_QMM_TARGET void decode_block(const QmmProblem& p, const float* xp, const float* xsum, int r0, int r1, int c0, int c1) {
  using Fn = void (*)(const QmmProblem&, const float*, const float*, int, int, int);
  constexpr int M = V::max_rows;
  static_assert(M >= 1 && M <= 8);
  // (blocks past max_rows are never called: capped so they are not compiled)
  static constexpr Fn by_rows[8] = {decode_rows<V, F, 1>,              decode_rows<V, F, std::min(2, M)>,
                                    decode_rows<V, F, std::min(3, M)>, decode_rows<V, F, std::min(4, M)>,
                                    decode_rows<V, F, std::min(5, M)>, decode_rows<V, F, std::min(6, M)>,
                                    decode_rows<V, F, std::min(7, M)>, decode_rows<V, F, std::min(8, M)>};
  for (int r = r0; r < r1; r += V::max_rows) by_rows[std::min(V::max_rows, r1 - r) - 1](p, xp, xsum, r, c0, c1);
}

} // namespace
} // namespace mlxk::kern
#endif

// Int8 K-quant GEMM (kqgemm8.h). Per (problem, 32-column panel, block of x rows) task and per 256-value block:
// the panel's codes are unpacked into a Slice (8 KB of u8: codes[quad][column][4], gathered 4 code bytes per
// column as qgemm.cpp's f32 panels are) with the block's scales, then each 6-row tile runs
//   Σ_k code·q  per sub-block (vpdpbusd: u8 codes × s8 x, 4 k per lane, exact in int32),
//   × d·scale   per sub-block and column (float FMA),
//   + mins      Σ_pairs (m_a, m_b)·(bsum_a, bsum_b) (vpdpwssd over the x sums per 16), × −dmin,
// and adds dx · that to the output (partial sums go through `out` between blocks). Q6_K: code − 32 is folded
// into the mins (m = 32·scale per 16 values). The integer sums are exact; the error is x's rounding to int8.
#include "kqgemm8.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "kquant512.h"
#include "pool.h"
#include "qgemm.h"
#include "qmm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_K8 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
#endif

namespace mlxk::kqgemm8 {

// Measured (bench/qgemm.ts --int8, BENCHMARKS #17): from this many rows of the call's largest problem
// unpacking a panel once is cheaper than the q8_K dot tiles' unpacking per 4 rows.
constexpr int kDefaultRows = 4;

#if defined(__x86_64__)
namespace {
using kern::KqProblem;
using kern::KType;

constexpr int kC = 32;            // output columns per panel (two zmm of int32 lanes)
constexpr int kR = 6;             // x rows per tile: 6 × 2 × (int sums + float sums) = 24 zmm accumulators
constexpr int kRowsPerTask = 512; // x rows per task: 128 KB of int8 x per block (L2), the slice stays in L1; the
                                  // panel is unpacked once per task, so fewer row blocks unpack it less often

// One 256-value block of a 32-column panel.
struct alignas(64) Slice {
  uint8_t codes[64][kC][4]; // quad j (k = 4j..4j+3) of each column: codes 0..15 / 0..31 / 0..63
  float scale[16][kC];      // d·scale per sub-block (8 of 32 values for Q4_K/Q5_K, 16 of 16 for Q6_K)
  int32_t minp[8][kC];      // int16 pairs (m per 16 values 2t, 2t+1)
  float minf[kC];           // −dmin (Q4_K/Q5_K), −d (Q6_K)
};

// x rows rounded to int8 per 256 values.
struct X8 {
  const int8_t* q;   // [M][K]
  const float* d;    // [M][K/256]
  const int32_t* bp; // [M][K/32]: Σq per 16 values as int16 pairs
};

inline int32_t pair16(int a, int b) {
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(a)) | (static_cast<uint32_t>(static_cast<uint16_t>(b)) << 16));
}

// The block's scales of 16 columns (lanes; past nv: zero) into s at column h: 32-bit gathers of the header
// bytes, the 6-bit unpacking of kq_unpack_scales done lane-wise.
template <KType T>
MLXK_K8 void params(const uint8_t* base, __mmask16 m, __m512i idx, int h, Slice& s) {
#define gath(at) _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + (at), 1)
  const __m512i ff = _mm512_set1_epi32(0xff), lo16 = _mm512_set1_epi32(0xffff);
#define byte(v, i) _mm512_and_si512(_mm512_srli_epi32(v, 8 * (i)), ff)
#define pair(a, b) _mm512_or_si512(_mm512_and_si512(a, lo16), _mm512_slli_epi32(b, 16))
  if constexpr (T == KType::Q6K) {
    // bytes 206..209: the last two scales and d (a gather at 208 would read past the block)
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(gath(206), 16)));
    __m512i sc[16];
    for (int g = 0; g < 4; g++) {
      const __m512i v = gath(192 + 4 * g);
      for (int i = 0; i < 4; i++) sc[4 * g + i] = _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * i), 24); // int8
    }
    for (int j = 0; j < 16; j++) _mm512_store_ps(s.scale[j] + h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc[j])));
    for (int t = 0; t < 8; t++) _mm512_store_si512(s.minp[t] + h, pair(_mm512_slli_epi32(sc[2 * t], 5), _mm512_slli_epi32(sc[2 * t + 1], 5)));
    _mm512_store_ps(s.minf + h, _mm512_sub_ps(_mm512_setzero_ps(), d));
  } else {
    const __m512i dd = gath(0); // d | dmin << 16
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)), dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
    const __m512i u0 = gath(4), u1 = gath(8), u2 = gath(12);
    const __m512i m1 = _mm512_set1_epi32(0x3f3f3f3f), m2 = _mm512_set1_epi32(0x0f0f0f0f), m3 = _mm512_set1_epi32(0x03030303);
    const __m512i sc_lo = _mm512_and_si512(u0, m1), mn_lo = _mm512_and_si512(u1, m1);
    const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(u2, m2), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), m3), 4));
    const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m2), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), m3), 4));
    for (int j = 0; j < 8; j++) {
      const __m512i sc = byte(j < 4 ? sc_lo : sc_hi, j & 3), mn = byte(j < 4 ? mn_lo : mn_hi, j & 3);
      _mm512_store_ps(s.scale[j] + h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
      _mm512_store_si512(s.minp[j] + h, pair(mn, mn));
    }
    for (int j = 8; j < 16; j++) _mm512_store_ps(s.scale[j] + h, _mm512_setzero_ps());
    _mm512_store_ps(s.minf + h, _mm512_sub_ps(_mm512_setzero_ps(), dmin));
  }
#undef gath
#undef byte
#undef pair
}

// Block b of columns [n0, n0 + 32) → s (columns past N: zero codes and scales).
template <KType T>
MLXK_K8 void unpack(const KqProblem& p, int n0, int b, Slice& s) {
  const int bb = kern::kq_block_bytes(T);
  const size_t rb = static_cast<size_t>(p.K / 256) * bb, off = static_cast<size_t>(b) * bb;
  const __m512i m4 = _mm512_set1_epi32(0x0f0f0f0f);
  for (int h = 0; h < kC; h += 16) {
    const int nv = std::clamp(p.N - n0 - h, 0, 16);
    const uint8_t* base = p.w + static_cast<size_t>(n0 + h) * rb + off;
    const __mmask16 m = nv >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << nv) - 1);
    const __m512i idx = _mm512_mullo_epi32(_mm512_set1_epi32(static_cast<int>(rb)), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    params<T>(base, m, idx, h, s);
#define gather(at) _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + (at), 1)
#define put(e, v) _mm512_store_si512(reinterpret_cast<__m512i*>(&s.codes[(e) / 4][h][0]), v)
    if constexpr (T == KType::Q6K) {
      const __m512i m2 = _mm512_set1_epi32(0x03030303);
      for (int h6 = 0; h6 < 2; h6++)
        for (int l0 = 0; l0 < 32; l0 += 4) {
          const __m512i qa = gather(64 * h6 + l0), qb = gather(64 * h6 + 32 + l0), qh = gather(128 + 32 * h6 + l0);
          const int e = 128 * h6 + l0;
          put(e, _mm512_or_si512(_mm512_and_si512(qa, m4), _mm512_slli_epi32(_mm512_and_si512(qh, m2), 4)));
          put(e + 32, _mm512_or_si512(_mm512_and_si512(qb, m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 2), m2), 4)));
          put(e + 64, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(qa, 4), m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 4), m2), 4)));
          put(e + 96, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(qb, 4), m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 6), m2), 4)));
        }
    } else {
      const int qs = T == KType::Q5K ? 48 : 16;
      const __m512i one = _mm512_set1_epi32(0x01010101);
      for (int l0 = 0; l0 < 32; l0 += 4) {
        __m512i qh = _mm512_setzero_si512();
        if constexpr (T == KType::Q5K) qh = gather(16 + l0);
        for (int j2 = 0; j2 < 4; j2++) {
          const __m512i v = gather(qs + 32 * j2 + l0);
          __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi32(v, 4), m4);
          if constexpr (T == KType::Q5K) {
            lo = _mm512_or_si512(lo, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 2 * j2), one), 4));
            hi = _mm512_or_si512(hi, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 2 * j2 + 1), one), 4));
          }
          put(64 * j2 + l0, lo);
          put(64 * j2 + 32 + l0, hi);
        }
      }
    }
#undef gather
#undef put
  }
}

inline int32_t load4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// R x rows (block pointers xq, xbp; scales dx) × the slice → o (row stride ldo, nc valid columns).
template <int NS, int R>
MLXK_K8 void tile(const Slice& s, const int8_t* const* xq, const int32_t* const* xbp, const float* dx, float* o,
                  int ldo, int nc, bool first) {
  constexpr int QPS = 64 / NS; // quads per sub-block
  __m512 acc[R][2];
  __m512i is[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int sb = 0; sb < NS; sb++) {
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) is[r][0] = is[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < QPS; j++) {
      const int quad = sb * QPS + j;
      const __m512i w0 = _mm512_load_si512(&s.codes[quad][0][0]), w1 = _mm512_load_si512(&s.codes[quad][16][0]);
#pragma GCC unroll 6
      for (int r = 0; r < R; r++) {
        const __m512i xv = _mm512_set1_epi32(load4(xq[r] + 4 * quad));
        is[r][0] = _mm512_dpbusd_epi32(is[r][0], w0, xv);
        is[r][1] = _mm512_dpbusd_epi32(is[r][1], w1, xv);
      }
    }
    const __m512 s0 = _mm512_load_ps(s.scale[sb]), s1 = _mm512_load_ps(s.scale[sb] + 16);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[r][0]), s0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[r][1]), s1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) is[r][0] = is[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int t = 0; t < 8; t++) {
    const __m512i m0 = _mm512_load_si512(s.minp[t]), m1 = _mm512_load_si512(s.minp[t] + 16);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      const __m512i xv = _mm512_set1_epi32(xbp[r][t]);
      is[r][0] = _mm512_dpwssd_epi32(is[r][0], m0, xv);
      is[r][1] = _mm512_dpwssd_epi32(is[r][1], m1, xv);
    }
  }
  const __m512 f0 = _mm512_load_ps(s.minf), f1 = _mm512_load_ps(s.minf + 16);
  const __mmask16 k0 = nc >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nc) - 1);
  const __mmask16 k1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : static_cast<__mmask16>((1u << (nc - 16)) - 1);
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) {
    const __m512 a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[r][0]), f0, acc[r][0]);
    const __m512 a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[r][1]), f1, acc[r][1]);
    const __m512 d = _mm512_set1_ps(dx[r]);
    float* row = o + static_cast<size_t>(r) * ldo;
    if (first) {
      _mm512_mask_storeu_ps(row, k0, _mm512_mul_ps(a0, d));
      _mm512_mask_storeu_ps(row + 16, k1, _mm512_mul_ps(a1, d));
    } else {
      _mm512_mask_storeu_ps(row, k0, _mm512_fmadd_ps(a0, d, _mm512_maskz_loadu_ps(k0, row)));
      _mm512_mask_storeu_ps(row + 16, k1, _mm512_fmadd_ps(a1, d, _mm512_maskz_loadu_ps(k1, row + 16)));
    }
  }
}

template <int NS>
void tile_rows(int R, const Slice& s, const int8_t* const* xq, const int32_t* const* xbp, const float* dx, float* o,
               int ldo, int nc, bool first) {
  switch (R) {
    case 6: return tile<NS, 6>(s, xq, xbp, dx, o, ldo, nc, first);
    case 5: return tile<NS, 5>(s, xq, xbp, dx, o, ldo, nc, first);
    case 4: return tile<NS, 4>(s, xq, xbp, dx, o, ldo, nc, first);
    case 3: return tile<NS, 3>(s, xq, xbp, dx, o, ldo, nc, first);
    case 2: return tile<NS, 2>(s, xq, xbp, dx, o, ldo, nc, first);
    default: return tile<NS, 1>(s, xq, xbp, dx, o, ldo, nc, first);
  }
}

// x [M][K] → int8 per 256 values: q = round(x / d) (to nearest even), d = max|x| / 127, as kquant.cpp's q8_K.
MLXK_K8 void quantize(const float* x, int M, int K, int8_t* q, float* d, int32_t* bp) {
  const size_t nb = static_cast<size_t>(M) * (K / 256);
  const __m512 sign = _mm512_set1_ps(-0.f);
  for (size_t b = 0; b < nb; b++) {
    const float* xb = x + b * 256;
    __m512 mx = _mm512_setzero_ps();
    for (int i = 0; i < 256; i += 16) mx = _mm512_max_ps(mx, _mm512_andnot_ps(sign, _mm512_loadu_ps(xb + i)));
    const float amax = _mm512_reduce_max_ps(mx);
    d[b] = amax / 127.f;
    const __m512 id = _mm512_set1_ps(amax > 0.f ? 127.f / amax : 0.f);
    const __m512 lim = _mm512_set1_ps(127.f);
    int sums[16];
    for (int g = 0; g < 16; g++) {
      const __m512 v = _mm512_min_ps(lim, _mm512_max_ps(-lim, _mm512_mul_ps(_mm512_loadu_ps(xb + 16 * g), id)));
      const __m512i qi = _mm512_cvtps_epi32(v);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * 256 + 16 * g), _mm512_cvtepi32_epi8(qi));
      sums[g] = _mm512_reduce_add_epi32(qi);
    }
    for (int t = 0; t < 8; t++) bp[b * 8 + t] = pair16(sums[2 * t], sums[2 * t + 1]);
  }
}

struct Prob {
  const KqProblem* p;
  X8 x;
  int panels, rblocks, rpt; // rpt: rows per task
};

struct Ctx {
  const Prob* probs;
  const int* first; // task index where each problem starts (n + 1 entries)
  int n;
};

template <KType T>
void run_task(const Prob& q, int local) {
  constexpr int NS = T == KType::Q6K ? 16 : 8;
  const KqProblem& p = *q.p;
  const int panel = local % q.panels, rbk = local / q.panels;
  const int n0 = panel * kC, nc = std::min(kC, p.N - n0);
  const int r0 = rbk * q.rpt, r1 = std::min(p.M, r0 + q.rpt);
  thread_local std::unique_ptr<Slice> slice;
  if (!slice) slice = std::make_unique<Slice>();
  Slice& s = *slice;
  const int nb = p.K / 256;
  for (int b = 0; b < nb; b++) {
    unpack<T>(p, n0, b, s);
    for (int r = r0; r < r1; r += kR) {
      const int R = std::min(kR, r1 - r);
      const int8_t* xq[kR];
      const int32_t* xbp[kR];
      float dx[kR];
      for (int i = 0; i < R; i++) {
        const size_t row = static_cast<size_t>(r + i);
        xq[i] = q.x.q + row * p.K + static_cast<size_t>(b) * 256;
        xbp[i] = q.x.bp + row * (p.K / 32) + static_cast<size_t>(b) * 8;
        dx[i] = q.x.d[row * nb + b];
      }
      tile_rows<NS>(R, s, xq, xbp, dx, p.out + static_cast<size_t>(r) * p.ldo + n0, p.ldo, nc, b == 0);
    }
  }
}

void task(void* vc, int i) {
  const Ctx& c = *static_cast<const Ctx*>(vc);
  const int k = static_cast<int>(std::upper_bound(c.first, c.first + c.n + 1, i) - c.first) - 1;
  const Prob& q = c.probs[k];
  switch (q.p->t) {
    case KType::Q4K: return run_task<KType::Q4K>(q, i - c.first[k]);
    case KType::Q5K: return run_task<KType::Q5K>(q, i - c.first[k]);
    case KType::Q6K: return run_task<KType::Q6K>(q, i - c.first[k]);
  }
}

bool cpu_ok() {
  static const bool v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512vnni");
  return v;
}

} // namespace

bool available() {
  return cpu_ok() && kern::active_isa() >= kern::kIsaAvx512 && kern::avx2_active();
}

void run(const KqProblem* ps, int n) {
  thread_local std::vector<Prob> probs;
  thread_local std::vector<int> first;
  thread_local std::vector<int8_t> qbuf;
  thread_local std::vector<float> dbuf;
  thread_local std::vector<int32_t> pbuf;
  struct Seen {
    const float* x;
    int M, K;
    size_t q, d, b;
  };
  thread_local std::vector<Seen> seen;
  thread_local std::vector<int> which;
  probs.clear();
  seen.clear();
  which.clear();
  size_t Q = 0, D = 0, B = 0;
  // problems reading the same x rows (MoE gate/up of one expert, q/k/v) share one rounding of them
  for (int k = 0; k < n; k++) {
    const KqProblem& p = ps[k];
    if (p.M <= 0 || p.N <= 0) continue;
    int f = -1;
    for (size_t e = 0; e < seen.size(); e++)
      if (seen[e].x == p.x && seen[e].M == p.M && seen[e].K == p.K) f = static_cast<int>(e);
    if (f < 0) {
      const size_t mk = static_cast<size_t>(p.M) * p.K;
      seen.push_back(Seen{p.x, p.M, p.K, Q, D, B});
      Q += mk;
      D += mk / 256;
      B += mk / 32;
      f = static_cast<int>(seen.size()) - 1;
    }
    which.push_back(f);
    Prob q{};
    q.p = &p;
    q.panels = (p.N + kC - 1) / kC;
    q.rblocks = (p.M + kRowsPerTask - 1) / kRowsPerTask;
    // equal row blocks, whole tiles
    q.rpt = ((p.M + q.rblocks - 1) / q.rblocks + kR - 1) / kR * kR;
    q.rblocks = (p.M + q.rpt - 1) / q.rpt;
    probs.push_back(q);
  }
  if (probs.empty()) return;
  qbuf.resize(std::max(qbuf.size(), Q));
  dbuf.resize(std::max(dbuf.size(), D));
  pbuf.resize(std::max(pbuf.size(), B));
  for (const Seen& e : seen) quantize(e.x, e.M, e.K, qbuf.data() + e.q, dbuf.data() + e.d, pbuf.data() + e.b);
  first.assign(probs.size() + 1, 0);
  double work = 0;
  for (size_t k = 0; k < probs.size(); k++) {
    const Seen& e = seen[which[k]];
    probs[k].x = X8{qbuf.data() + e.q, dbuf.data() + e.d, pbuf.data() + e.b};
    first[k + 1] = first[k] + probs[k].panels * probs[k].rblocks;
    work += static_cast<double>(probs[k].p->M) * probs[k].p->N * probs[k].p->K;
  }
  Ctx c{probs.data(), first.data(), static_cast<int>(probs.size())};
  kern::parallel_for_work(first.back(), task, &c, work);
}

#else
bool available() { return false; }
void run(const kern::KqProblem*, int) {}
#endif

int min_rows() {
  const int v = qgemm::setting();
  return v >= 0 ? v : kDefaultRows;
}

bool take(const kern::KqProblem* ps, int n) {
  if (!kern::kq_int8_active() || !available()) return false;
  const int r = min_rows();
  if (r <= 0) return false;
  int most = 0;
  for (int k = 0; k < n; k++) {
    if (ps[k].independent_rows) return false; // a decode batch keeps the one-row tiles: rows as if alone
    if (ps[k].N > 0) most = std::max(most, ps[k].M);
  }
  if (most < r) return false;
  run(ps, n);
  return true;
}

} // namespace mlxk::kqgemm8

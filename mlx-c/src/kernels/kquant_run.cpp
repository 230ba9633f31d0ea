// Driver of the K-quant matmuls: prepares x once per distinct activation (AVX-512 decode: bf16 pieces; AVX2
// decode: Σx per 16; opt-in int8: q8_K codes, permuted for the VNNI tiles), splits every problem of a call into
// (row block, column chunk) tasks and runs them all in one pool call, on the ISA path in use.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "kqgemm8.h"
#include "kquant.h"
#include "kquant512.h"
#include "pool.h"
#include "qgemm.h"
#include "qmm.h"

namespace mlxk::kern {
namespace {

enum class Path { Scalar, Avx2, Avx512 };

// Up to this many x rows a call runs the decode tiles (a server decode batch: each row computed as alone, so a
// batch row is bit-identical to the request decoded solo); from there the prefill tiles.
constexpr int kDecodeRows = 8;

struct Job {
  const KqProblem* p;
  Path path;
  const float* xs16;   // AVX2 decode: Σx per 16 values of each x row; else null
  const uint16_t* xw;  // AVX-512 bf16 decode: each x row as bf16 pieces (kq512::prep_x); else null
  const float* xs32;   //   and its Σx per 32
  const float* xf;     // AVX-512 f32 decode: the x rows permuted (kq512::prep_xf); else null
  KqQ8 q8;             // int8 activations (opt-in): q null when off
  bool q8_vnni;        //   q permuted for the VNNI tiles
  int row_block, col_chunk, n_col_chunks;
};

void run_job(const Job& j, int i) {
  const KqProblem& p = *j.p;
  const int rb = i / j.n_col_chunks, cc = i % j.n_col_chunks;
  const int r0 = rb * j.row_block, r1 = std::min(p.M, r0 + j.row_block);
  const int c0 = cc * j.col_chunk, c1 = std::min(p.N, c0 + j.col_chunk);
  if (j.path == Path::Scalar) return kq_tile_scalar(p, r0, r1, c0, c1);
  if (j.q8_vnni) return kq512::tile_q8(p, j.q8, r0, r1, c0, c1);
  if (j.q8.q) return kq_tile_avx2(p, nullptr, &j.q8, r0, r1, c0, c1);
  if (j.xf) return kq512::decode_f32(p, j.xf, r0, r1, c0, c1);
  // decode rows one at a time (each exactly as alone)
  const size_t K = static_cast<size_t>(p.K);
  if (j.xw) {
    for (int r = r0; r < r1; r++) kq512::decode(p, j.xw + r * 3 * K, j.xs32 + r * (K / 32), p.out + static_cast<size_t>(r) * p.ldo, c0, c1);
    return;
  }
  if (j.xs16) {
    for (int r = r0; r < r1; r++) kq_tile_avx2(p, j.xs16 + r * (K / 16), nullptr, r, r + 1, c0, c1);
    return;
  }
  if (j.path == Path::Avx512) return kq512::prefill(p, r0, r1, c0, c1);
  kq_tile_avx2(p, nullptr, nullptr, r0, r1, c0, c1); // AVX2 prefill (also on AVX-512 without BF16)
}

struct Many {
  const Job* jobs;
  const int* first; // task index where each job starts (n + 1 entries)
  int n;
};

void run_task(void* ctx, int i) {
  const Many& m = *static_cast<const Many*>(ctx);
  const int k = static_cast<int>(std::upper_bound(m.first, m.first + m.n + 1, i) - m.first) - 1;
  run_job(m.jobs[k], i - m.first[k]);
}

// One preparation of an x (several problems of a call may share it: MoE gate/up read the same token rows).
struct Prep {
  const float* x;
  int M, K, layout;
  size_t w, f, q, i; // offsets into the call's buffers
  const float* xf;    // f32 decode: the prepared rows
};

std::atomic<int> g_int8{-1}; // -1: not read from the environment yet

} // namespace

bool kq_int8_active() {
  int v = g_int8.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv("MLXK_INT8_ACT");
    v = e != nullptr && e[0] == '1' ? 1 : 0;
    g_int8.store(v);
  }
  return v == 1;
}

bool kq_set_int8(bool on) {
  const bool prev = kq_int8_active();
  g_int8.store(on ? 1 : 0);
  return prev;
}

void kqmm(const KqProblem& p) {
  kqmm_many(&p, 1);
}

void kqmm_many(const KqProblem* ps, int n) {
  if (kqgemm8::take(ps, n)) return;  // int8 activations on, prefill rows: the VNNI GEMM (kqgemm8.cpp)
  if (qgemm::take_kq(ps, n)) return; // many rows in every problem: the dequantized-panel GEMM (qgemm.cpp)
  const bool avx2 = avx2_active(), k512 = kq512::available(), bf16 = kq512::bf16();
  const bool int8 = avx2 && kq_int8_active(), vnni = int8 && kq512::vnni();
  const bool f32dec = k512 && kq512::f32_decode();
  const Path path = !avx2 ? Path::Scalar : k512 ? Path::Avx512 : Path::Avx2;
  thread_local std::vector<Job> jobs;
  thread_local std::vector<int> first, which;
  thread_local std::vector<Prep> preps;
  thread_local std::vector<uint16_t> wbuf;
  thread_local std::vector<float> fbuf;
  thread_local std::vector<int8_t> qbuf;
  thread_local std::vector<int32_t> ibuf;
  preps.clear();
  which.assign(n, -1);
  size_t W = 0, F = 0, Q = 0, I = 0;
  // what each problem's x needs; problems with the same x (and code order) share one preparation
  for (int k = 0; k < n; k++) {
    const KqProblem& p = ps[k];
    const bool decode = p.M <= kDecodeRows && path != Path::Scalar;
    if (p.M <= 0 || p.N <= 0 || !(int8 || decode)) continue;
    // the x order the tiles read: f32 decode one per type, the bf16 and VNNI tiles Q6_K's or the others'
    const int layout = !int8 && f32dec ? 2 + static_cast<int>(p.t) : (vnni || (!int8 && bf16)) && p.t == KType::Q6K ? 1 : 0;
    int found = -1;
    for (size_t e = 0; e < preps.size(); e++)
      if (preps[e].x == p.x && preps[e].M == p.M && preps[e].K == p.K && preps[e].layout == layout) found = static_cast<int>(e);
    if (found < 0) {
      const size_t mk = static_cast<size_t>(p.M) * p.K;
      preps.push_back(Prep{p.x, p.M, p.K, layout, W, F, Q, I, nullptr});
      if (int8) {
        Q += mk * (vnni ? 2 : 1); // natural codes, then the permuted copy
        F += mk / 256;
        I += mk / 16;
      } else if (f32dec) {
        F += p.t == KType::Q6K ? 0 : mk; // Q6_K: x as it is
      } else if (bf16) {
        W += 3 * mk;
        F += mk / 32;
      } else {
        F += mk / 16;
      }
      found = static_cast<int>(preps.size()) - 1;
    }
    which[k] = found;
  }
  wbuf.resize(W);
  fbuf.resize(F);
  qbuf.resize(Q);
  ibuf.resize(I);
  for (Prep& e : preps) {
    const size_t mk = static_cast<size_t>(e.M) * e.K;
    const KType t = e.layout ? KType::Q6K : KType::Q4K; // the code order of the tiles (Q4_K's = Q5_K's)
    if (int8) {
      const KqQ8 nat{qbuf.data() + e.q, fbuf.data() + e.f, ibuf.data() + e.i};
      kq_quantize_q8(e.x, e.M, e.K, nat);
      if (vnni) kq512::permute_q8(t, nat.q, e.M, e.K, qbuf.data() + e.q + mk);
    } else if (f32dec) {
      e.xf = kq512::prep_xf(static_cast<KType>(e.layout - 2), e.x, e.M, e.K, fbuf.data() + e.f);
    } else if (bf16) {
      for (int r = 0; r < e.M; r++)
        kq512::prep_x(t, e.x + static_cast<size_t>(r) * e.K, e.K, wbuf.data() + e.w + 3 * static_cast<size_t>(r) * e.K,
                      fbuf.data() + e.f + static_cast<size_t>(r) * (e.K / 32));
    } else {
      float* xs = fbuf.data() + e.f;
      for (size_t g = 0; g < mk / 16; g++) {
        float a = 0.f;
        for (size_t k = 16 * g; k < 16 * g + 16; k++) a += e.x[k];
        xs[g] = a;
      }
    }
  }
  jobs.assign(n, Job{});
  first.assign(n + 1, 0);
  const int threads = pool_threads();
  double work = 0;
  for (int k = 0; k < n; k++) {
    const KqProblem& p = ps[k];
    Job& j = jobs[k];
    j.p = &p;
    j.path = path;
    // a decode call: all its rows in one task per column chunk, so each weight is read from memory once
    j.row_block = p.M <= kDecodeRows && !int8 ? std::max(p.M, 1) : 64;
    j.col_chunk = std::clamp(p.N / (threads * 8), 8, 64);
    j.n_col_chunks = p.N > 0 ? (p.N + j.col_chunk - 1) / j.col_chunk : 0;
    const int tasks = p.M > 0 && p.N > 0 ? ((p.M + j.row_block - 1) / j.row_block) * j.n_col_chunks : 0;
    first[k + 1] = first[k] + tasks;
    work += static_cast<double>(std::max(p.M, 0)) * std::max(p.N, 0) * p.K;
    if (which[k] < 0) continue;
    const Prep& e = preps[which[k]];
    if (int8) {
      j.q8 = KqQ8{qbuf.data() + e.q + (vnni ? static_cast<size_t>(e.M) * e.K : 0), fbuf.data() + e.f, ibuf.data() + e.i};
      j.q8_vnni = vnni;
    } else if (f32dec) {
      j.xf = e.xf;
    } else if (bf16) {
      j.xw = wbuf.data() + e.w;
      j.xs32 = fbuf.data() + e.f;
    } else {
      j.xs16 = fbuf.data() + e.f;
    }
  }
  if (first[n] == 0) return;
  Many m{jobs.data(), first.data(), n};
  // the pool's thread policy (pool.h): small ops inline, MLXK_THREADS pins it
  parallel_for_work(first[n], run_task, &m, work);
}

} // namespace mlxk::kern

// gather_qmm for mixture-of-experts layers in our kernels: out[p] = x[row(p)] · dequant(w[idx[p]])ᵀ for every
// (token, slot) p. The routing is read inside the kernel's own task (no host round trip in the graph): the
// positions are grouped by expert, and each used expert runs one matmul over its rows, so decode reads only
// the chosen experts' weights and prefill reads each expert once for all its tokens.
// Weights: MLX affine 4/8-bit or mxfp4 ([E, N, K·bits/32] uint32 + scales [+ biases]) or GGUF K-quant blocks
// ([E, N, K/256·block bytes] uint8).
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

#include <algorithm>
#include <cstring>

#include "../common.h"
#include "inputs.h"
#include "kquant.h"
#include "pool.h"
#include "qmm.h"

namespace mlxk {
namespace {
using kern::KType;
using kern::QFormat;

struct Fmt {
  bool kquant;
  QFormat q; // when !kquant
  KType k;   // when kquant
  int gs;
};

struct Gather {
  const float* x;
  const uint8_t* w;
  const float* scales;
  const float* biases;
  const uint8_t* escale;
  const int32_t* idx;
  float* out;
  int P, k, R, E, N, K, G;
  size_t w_expert;  // bytes of one expert's weights
  Fmt f;
};

// One matmul of M rows against expert e (MLX affine/mxfp4): x [M, K] → out [M, N].
void expert_mm(const Gather& g, int e, const float* x, float* out, int M) {
  kern::QmmProblem p{};
  p.x = x;
  p.w = g.w + g.w_expert * e;
  const size_t sg = static_cast<size_t>(g.N) * g.G * e;
  if (g.f.q == QFormat::Mxfp4) p.escale = g.escale + sg;
  else {
    p.scales = g.scales + sg;
    p.biases = g.biases + sg;
  }
  p.out = out;
  p.M = M;
  p.K = g.K;
  p.N = g.N;
  p.gs = g.f.gs;
  p.fmt = g.f.q;
  kern::qmm(p);
}

void run_gather(const Gather& g) {
  // Counting sort of the positions by expert; an index out of range gives a zero row (never a wild read).
  std::vector<int> count(g.E + 1, 0), start(g.E + 2, 0), order(g.P);
  for (int p = 0; p < g.P; p++) {
    const int e = g.idx[p];
    count[e >= 0 && e < g.E ? e : g.E]++;
  }
  for (int e = 0; e <= g.E; e++) start[e + 1] = start[e] + count[e];
  std::vector<int> fill(start.begin(), start.end() - 1);
  for (int p = 0; p < g.P; p++) {
    const int e = g.idx[p];
    order[fill[e >= 0 && e < g.E ? e : g.E]++] = p;
  }
  const bool shared = g.R != g.P; // gate/up: one x row per token for all k slots
  auto xrow = [&](int p) { return g.x + static_cast<size_t>(shared ? p / g.k : p) * g.K; };
  // Experts with several positions run on gathered copies of their rows; one position reads x and writes out
  // in place.
  size_t rows = 0;
  for (int e = 0; e < g.E; e++)
    if (count[e] > 1) rows += count[e];
  thread_local std::vector<float> xb, ob;
  xb.resize(rows * g.K);
  ob.resize(rows * g.N);
  // The gathered rows' slots: copy j moves position order[src[j]] to row j of xb / from row j of ob, split over
  // the pool (in turn on one thread they were ~6% of a MoE prefill while the other core waited).
  thread_local std::vector<int> src;
  src.clear();
  for (int e = 0; e < g.E; e++)
    if (count[e] > 1)
      for (int i = 0; i < count[e]; i++) src.push_back(start[e] + i);
  struct Copy {
    const Gather* g;
    const int* order;
    const int* src;
    float* xb;
    float* ob;
    int n, tasks;
    bool shared;
  } cp{&g, order.data(), src.data(), xb.data(), ob.data(), static_cast<int>(src.size()), 0, shared};
  cp.tasks = std::min(64, cp.n);
  const int tasks = cp.tasks;
  if (tasks > 0)
    kern::parallel_for_work(tasks, [](void* vc, int t) {
      const Copy& c = *static_cast<const Copy*>(vc);
      for (int j = c.n * t / c.tasks; j < c.n * (t + 1) / c.tasks; j++) {
        const int p = c.order[c.src[j]];
        std::memcpy(c.xb + static_cast<size_t>(j) * c.g->K, c.g->x + static_cast<size_t>(c.shared ? p / c.g->k : p) * c.g->K, sizeof(float) * c.g->K);
      }
    }, &cp, static_cast<double>(cp.n) * g.K);
  std::vector<kern::KqProblem> kq;
  size_t off = 0;
  for (int e = 0; e < g.E; e++) {
    const int c = count[e];
    if (c == 0) continue;
    const int* pos = order.data() + start[e];
    const float* x = xrow(pos[0]);
    float* out = g.out + static_cast<size_t>(pos[0]) * g.N;
    if (c > 1) {
      x = xb.data() + off * g.K;
      out = ob.data() + off * g.N;
      off += c;
    }
    // K-quant experts: all in one kqmm_many below (one pool call, x prepared once per token row)
    if (g.f.kquant) kq.push_back(kern::KqProblem{x, g.w + g.w_expert * e, out, c, g.K, g.N, g.N, g.f.k});
    else expert_mm(g, e, x, out, c);
  }
  if (!kq.empty()) kern::kqmm_many(kq.data(), static_cast<int>(kq.size()));
  if (tasks > 0)
    kern::parallel_for_work(tasks, [](void* vc, int t) {
      const Copy& c = *static_cast<const Copy*>(vc);
      for (int j = c.n * t / c.tasks; j < c.n * (t + 1) / c.tasks; j++)
        std::memcpy(c.g->out + static_cast<size_t>(c.order[c.src[j]]) * c.g->N, c.ob + static_cast<size_t>(j) * c.g->N, sizeof(float) * c.g->N);
    }, &cp, static_cast<double>(cp.n) * g.N);
  for (int i = start[g.E]; i < g.P; i++) std::memset(g.out + static_cast<size_t>(order[i]) * g.N, 0, sizeof(float) * g.N);
}

class GatherQmm : public UnaryPrimitive {
 public:
  GatherQmm(Stream s, Fmt f) : UnaryPrimitive(s), f_(f) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    std::vector<array> in;
    for (const auto& a : inputs) in.push_back(row_major(a, enc, copies));
    const array& x = in.front();
    const array& w = in[1];
    const array& idx = in.back();
    Gather g{};
    g.x = x.data<float>();
    g.w = w.data<uint8_t>();
    g.f = f_;
    g.E = w.shape(0);
    g.N = w.shape(1);
    g.K = x.shape(-1);
    if (!f_.kquant) {
      g.G = g.K / f_.gs;
      if (f_.q == QFormat::Mxfp4) g.escale = in[2].data<uint8_t>();
      else {
        g.scales = in[2].data<float>();
        g.biases = in[3].data<float>();
      }
    }
    g.w_expert = w.nbytes() / static_cast<size_t>(g.E);
    g.idx = idx.data<int32_t>();
    g.out = out.data<float>();
    g.P = static_cast<int>(idx.size());
    g.k = idx.ndim() > 0 ? idx.shape(-1) : 1;
    g.R = static_cast<int>(x.size() / g.K);
    enc.dispatch([g, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      run_gather(g);
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[mlxk] gather qmm has no GPU implementation");
  }

  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    Shape s = inputs.back().shape();
    s.push_back(inputs[1].shape(1));
    return {s};
  }

  bool is_equivalent(const Primitive& other) const override {
    auto* o = dynamic_cast<const GatherQmm*>(&other);
    return o && o->f_.kquant == f_.kquant && o->f_.q == f_.q && o->f_.k == f_.k && o->f_.gs == f_.gs;
  }

  const char* name() const override { return "MlxkGatherQmm"; }

 private:
  Fmt f_;
};

bool is_float(Dtype d) {
  return d == float32 || d == float16 || d == bfloat16;
}

// null when the kernels do not take this case (the caller keeps MLX's gather_qmm).
std::optional<array> gather_qmm(const array& x, const array& w, const std::optional<array>& sc,
                                const std::optional<array>& bi, const array& idx, int gs, int bits, int mode,
                                int ktype, const Stream& st) {
  if (kern::kernels_level() == 0 || st.device != Device::cpu) return std::nullopt;
  if (x.ndim() < 1 || !is_float(x.dtype()) || w.ndim() != 3 || idx.ndim() < 1 || !issubdtype(idx.dtype(), integer))
    return std::nullopt;
  const int K = x.shape(-1), N = w.shape(1);
  const size_t P = idx.size(), R = x.size() / K, k = idx.shape(-1);
  if (R != P && R * k != P) return std::nullopt;
  Fmt f{};
  std::vector<array> in{astype(x, float32, st), w};
  if (ktype >= 0) {
    if (ktype > 2) return std::nullopt;
    f.kquant = true;
    f.k = static_cast<KType>(ktype);
    if (w.dtype() != uint8 || !kern::kq_supported(K) || w.shape(2) != K / 256 * kern::kq_block_bytes(f.k)) return std::nullopt;
  } else {
    if (w.dtype() != uint32 || !sc || sc->ndim() != 3) return std::nullopt;
    if (mode == MLXK_Q_AFFINE && bits == 4) f.q = QFormat::Affine4;
    else if (mode == MLXK_Q_AFFINE && bits == 8) f.q = QFormat::Affine8;
    else if (mode == MLXK_Q_MXFP4 && bits == 4) f.q = QFormat::Mxfp4;
    else return std::nullopt;
    f.gs = gs;
    if (static_cast<int64_t>(w.shape(2)) * 32 / bits != K || !kern::qmm_supported(f.q, gs, K)) return std::nullopt;
    if (sc->shape(0) != w.shape(0) || sc->shape(1) != N || sc->shape(2) != K / gs) return std::nullopt;
    if (f.q == QFormat::Mxfp4) {
      if (bi || sc->dtype() != uint8) return std::nullopt;
      in.push_back(*sc);
    } else {
      if (!bi || bi->shape() != sc->shape() || !is_float(sc->dtype()) || !is_float(bi->dtype())) return std::nullopt;
      in.push_back(astype(*sc, float32, st));
      in.push_back(astype(*bi, float32, st));
    }
  }
  in.push_back(astype(idx, int32, st));
  Shape shape = idx.shape();
  shape.push_back(N);
  array out(std::move(shape), float32, std::make_shared<GatherQmm>(st, f), std::move(in));
  return x.dtype() == float32 ? out : astype(out, x.dtype(), st);
}

} // namespace
} // namespace mlxk

using namespace mlxk;

/* Mixture-of-experts matmul: x [R, K] (R = tokens, shared by the k slots, or tokens·k), indices [..., k] into
   the E experts of w → out [..., k, N]. Affine/mxfp4 weights (ktype < 0: w uint32 [E, N, K·bits/32], scales,
   biases) or K-quant blocks (ktype 0/1/2 = Q4_K/Q5_K/Q6_K: w uint8 [E, N, row bytes]). *out = null (rc 0) when
   the kernels do not take the case. */
MLXK_API int mlxk_kernel_gather_qmm(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array scales, mlxk_array biases,
                                    mlxk_array indices, int group_size, int bits, int mode, int ktype, mlxk_stream s) {
  MLXK_TRY
  auto r = gather_qmm(A(x), A(w), OA(scales), OA(biases), A(indices), group_size, bits, mode, ktype, to_stream(S(s)));
  *out = r ? new array(std::move(*r)) : nullptr;
  return 0;
  MLXK_END
}

// A softmax-routed SwiGLU mixture-of-experts layer in one primitive: from the router's probabilities, each token's
// top k (MLX's argpartition: the same strict order, so the same experts and slot order), their weights (optionally
// renormalised), the experts' gate and up K-quant matmuls in one pool call, silu(gate)·up, the down matmuls in a
// second, and the weighted sum. The op-by-op graph for this is ~15 nodes per layer (argpartition, slice, take, sum,
// divide, three gathers, SwiGLU, reshapes, multiply, sum), each with its own scheduling and buffers; here the same
// arithmetic in the same order, so the result equals that graph's. One token (decode) runs its k experts' rows as
// they are; several (prefill) are grouped by expert as gather.cpp groups them (positions t·k + j in order), so each
// expert's rows meet the same matmul as in the graph, with x gathered and packed once for gate and up, and no
// scatter of gate/up or gather of the activations between them.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "../common.h"
#include "inputs.h"
#include "kquant.h"
#include "pool.h"
#include "qmm.h"
#include "rows.h"

namespace mlxk {
namespace {
using kern::KqProblem;
using kern::KType;

struct MoeArgs {
  const float* x;     // [T, H]
  const float* p;     // [T, E] router probabilities
  const uint8_t* w[3]; // gate [E, I, ·], up [E, I, ·], down [E, H, ·] K-quant rows
  size_t wbytes[3];   // one expert's bytes of each
  KType t[3];
  float* out;         // [T, H]
  int T, E, k, H, I;
  bool norm;
};

// The experts argpartition(p, E - k)[E - k:] picks, in its order: std::nth_element over iota with MLX's comparator
// (value, then index; NaN largest), a strict order, so which k it leaves at the end does not depend on the algorithm.
void top_k(const float* p, int E, int k, std::vector<uint32_t>& idx) {
  idx.resize(E);
  std::iota(idx.begin(), idx.end(), 0u);
  std::nth_element(idx.begin(), idx.begin() + (E - k), idx.end(), [p](uint32_t a, uint32_t b) {
    const float v1 = p[a], v2 = p[b];
    if (std::isnan(v1)) return false;
    if (std::isnan(v2)) return true;
    return v1 < v2 || (v1 == v2 && a < b);
  });
}

// out = Σ_j y_j·w_j, rounded as MLX's multiply then sum over the slots (in slot order, from 0): no contraction.
__attribute__((optimize("fp-contract=off"))) void combine(const float* y, const float* w, int k, int H, float* out) {
  for (int h = 0; h < H; h++) out[h] = 0.f;
  for (int j = 0; j < k; j++) {
    const float wj = w[j];
    const float* yj = y + static_cast<size_t>(j) * H;
    for (int h = 0; h < H; h++) {
      const float t = yj[h] * wj;
      out[h] = out[h] + t;
    }
  }
}

// SwiGLU in FastSwiGLU's 4096-value pieces (I is a multiple of 256, so no piece has a scalar tail either way).
void swiglu_pieces(const float* g, const float* u, float* act, size_t n, bool avx2) {
  constexpr size_t kBlock = 4096;
  for (size_t i0 = 0; i0 < n; i0 += kBlock) rows::swiglu(g + i0, u + i0, act + i0, std::min(kBlock, n - i0), avx2);
}

// Several tokens: positions p = t·k + j grouped by expert in order of p (gather.cpp's counting sort), each expert one
// problem of its rows; the weighted sum per token in slot order.
void run_moe_tokens(const MoeArgs& a, bool avx2) {
  thread_local std::vector<uint32_t> idx, sel;
  thread_local std::vector<int> count, start, order, rank;
  thread_local std::vector<float> wt, xb, buf;
  thread_local std::vector<KqProblem> ps;
  const int P = a.T * a.k;
  sel.resize(P);
  wt.resize(P);
  for (int t = 0; t < a.T; t++) {
    const float* p = a.p + static_cast<size_t>(t) * a.E;
    top_k(p, a.E, a.k, idx);
    float s = 0.f;
    for (int j = 0; j < a.k; j++) {
      sel[t * a.k + j] = idx[a.E - a.k + j];
      s += (wt[t * a.k + j] = p[idx[a.E - a.k + j]]);
    }
    if (a.norm)
      for (int j = 0; j < a.k; j++) wt[t * a.k + j] = wt[t * a.k + j] / s;
  }
  count.assign(a.E, 0);
  for (int q = 0; q < P; q++) count[sel[q]]++;
  start.assign(a.E + 1, 0);
  for (int e = 0; e < a.E; e++) start[e + 1] = start[e] + count[e];
  order.resize(P);
  rank.resize(P);
  {
    std::vector<int> fill(start.begin(), start.end() - 1);
    for (int q = 0; q < P; q++) {
      const int r = fill[sel[q]]++;
      order[r] = q;
      rank[q] = r;
    }
  }
  const size_t PI = static_cast<size_t>(P) * a.I, PH = static_cast<size_t>(P) * a.H;
  xb.resize(PH);
  buf.resize(3 * PI + PH);
  float *g = buf.data(), *u = g + PI, *act = u + PI, *y = act + PI;
  // the copies and the weighted sums split over the pool (in turn on the stream thread they held the other core idle)
  struct Ctx {
    const MoeArgs* a;
    const int* order;
    const int* rank;
    const float* wt;
    float* xb;
    const float* y;
    int P;
  } cx{&a, order.data(), rank.data(), wt.data(), xb.data(), y, P};
  constexpr int kTasks = 32;
  kern::parallel_for_work(kTasks, [](void* vc, int i) {
    const Ctx& c = *static_cast<const Ctx*>(vc);
    for (int r = c.P * i / kTasks; r < c.P * (i + 1) / kTasks; r++)
      std::memcpy(c.xb + static_cast<size_t>(r) * c.a->H, c.a->x + static_cast<size_t>(c.order[r] / c.a->k) * c.a->H, sizeof(float) * c.a->H);
  }, &cx, static_cast<double>(PH));
  ps.clear();
  for (int e = 0; e < a.E; e++) {
    const int c = count[e];
    if (c == 0) continue;
    const size_t r0 = start[e];
    ps.push_back(KqProblem{xb.data() + r0 * a.H, a.w[0] + a.wbytes[0] * e, g + r0 * a.I, c, a.H, a.I, a.I, a.t[0]});
    ps.push_back(KqProblem{xb.data() + r0 * a.H, a.w[1] + a.wbytes[1] * e, u + r0 * a.I, c, a.H, a.I, a.I, a.t[1]});
  }
  kern::kqmm_many(ps.data(), static_cast<int>(ps.size())); // gate and up of every expert: x packed once per expert
  swiglu_pieces(g, u, act, PI, avx2);
  ps.clear();
  for (int e = 0; e < a.E; e++) {
    const int c = count[e];
    if (c == 0) continue;
    const size_t r0 = start[e];
    ps.push_back(KqProblem{act + r0 * a.I, a.w[2] + a.wbytes[2] * e, y + r0 * a.H, c, a.I, a.H, a.H, a.t[2]});
  }
  kern::kqmm_many(ps.data(), static_cast<int>(ps.size()));
  // the weighted sum per token: its k slots' rows (wherever their expert put them) in slot order
  kern::parallel_for_work(kTasks, [](void* vc, int i) {
    const Ctx& c = *static_cast<const Ctx*>(vc);
    const MoeArgs& a = *c.a;
    thread_local std::vector<float> ys;
    ys.resize(static_cast<size_t>(a.k) * a.H);
    for (int t = a.T * i / kTasks; t < a.T * (i + 1) / kTasks; t++) {
      for (int j = 0; j < a.k; j++)
        std::memcpy(ys.data() + static_cast<size_t>(j) * a.H, c.y + static_cast<size_t>(c.rank[t * a.k + j]) * a.H, sizeof(float) * a.H);
      combine(ys.data(), c.wt + static_cast<size_t>(t) * a.k, a.k, a.H, a.out + static_cast<size_t>(t) * a.H);
    }
  }, &cx, static_cast<double>(PH));
}

void run_moe(const MoeArgs& a, bool avx2) {
  if (a.T > 1) return run_moe_tokens(a, avx2);
  thread_local std::vector<uint32_t> idx;
  thread_local std::vector<float> buf;
  thread_local std::vector<KqProblem> ps;
  top_k(a.p, a.E, a.k, idx);
  const uint32_t* sel = idx.data() + (a.E - a.k);
  const size_t kI = static_cast<size_t>(a.k) * a.I, kH = static_cast<size_t>(a.k) * a.H;
  buf.resize(3 * kI + kH + a.k);
  float *g = buf.data(), *u = g + kI, *act = u + kI, *y = act + kI, *wt = y + kH;
  // weights: take(p, sel), then / sum over the k (MLX's sum: in order from 0)
  float s = 0.f;
  for (int j = 0; j < a.k; j++) s += (wt[j] = a.p[sel[j]]);
  if (a.norm)
    for (int j = 0; j < a.k; j++) wt[j] = wt[j] / s;
  ps.clear();
  for (int j = 0; j < a.k; j++) {
    const uint32_t e = sel[j];
    ps.push_back(KqProblem{a.x, a.w[0] + a.wbytes[0] * e, g + static_cast<size_t>(j) * a.I, 1, a.H, a.I, a.I, a.t[0]});
    ps.push_back(KqProblem{a.x, a.w[1] + a.wbytes[1] * e, u + static_cast<size_t>(j) * a.I, 1, a.H, a.I, a.I, a.t[1]});
  }
  kern::kqmm_many(ps.data(), static_cast<int>(ps.size())); // gate and up: x prepared once, one pool call
  swiglu_pieces(g, u, act, kI, avx2);
  ps.clear();
  for (int j = 0; j < a.k; j++)
    ps.push_back(KqProblem{act + static_cast<size_t>(j) * a.I, a.w[2] + a.wbytes[2] * sel[j], y + static_cast<size_t>(j) * a.H, 1,
                           a.I, a.H, a.H, a.t[2]});
  kern::kqmm_many(ps.data(), static_cast<int>(ps.size()));
  combine(y, wt, a.k, a.H, a.out);
}

class MoeGlu : public UnaryPrimitive {
 public:
  MoeGlu(Stream s, int k, bool norm, KType tg, KType tu, KType td) : UnaryPrimitive(s), k_(k), norm_(norm), t_{tg, tu, td} {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    std::vector<array> in;
    for (const auto& a : inputs) in.push_back(row_major(a, enc, copies));
    MoeArgs a{};
    a.x = in[0].data<float>();
    a.p = in[1].data<float>();
    for (int m = 0; m < 3; m++) {
      a.w[m] = in[2 + m].data<uint8_t>();
      a.wbytes[m] = in[2 + m].nbytes() / static_cast<size_t>(in[2 + m].shape(0));
      a.t[m] = t_[m];
    }
    a.out = out.data<float>();
    a.E = in[1].shape(-1);
    a.k = k_;
    a.H = in[0].shape(-1);
    a.T = static_cast<int>(in[0].size() / a.H);
    a.I = in[2].shape(1);
    a.norm = norm_;
    const bool avx2 = kern::avx2_active();
    enc.dispatch([a, avx2, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      run_moe(a, avx2);
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] moe glu has no GPU implementation"); }

  bool is_equivalent(const Primitive& other) const override {
    auto* o = dynamic_cast<const MoeGlu*>(&other);
    return o && o->k_ == k_ && o->norm_ == norm_ && o->t_[0] == t_[0] && o->t_[1] == t_[1] && o->t_[2] == t_[2];
  }

  const char* name() const override { return "MlxkMoeGlu"; }

 private:
  int k_;
  bool norm_;
  KType t_[3];
};

// null when the kernels do not take this case (the caller builds the graph).
std::optional<array> moe_glu(const array& x, const array& p, const array& wg, const array& wu, const array& wd, int k, bool norm,
                             const int* kt, const Stream& st) {
  if (kern::kernels_level() == 0 || st.device != Device::cpu) return std::nullopt;
  if (x.dtype() != float32 || p.dtype() != float32 || x.ndim() < 1 || p.ndim() < 1) return std::nullopt;
  const int H = x.shape(-1), E = p.shape(-1);
  if (H <= 0 || E <= 0 || x.size() % H != 0 || p.size() != x.size() / H * E || k < 1 || k > E) return std::nullopt;
  const array* w[3] = {&wg, &wu, &wd};
  for (int m = 0; m < 3; m++)
    if (kt[m] < 0 || kt[m] > 2 || w[m]->dtype() != uint8 || w[m]->ndim() != 3 || w[m]->shape(0) != E) return std::nullopt;
  const int I = wg.shape(1);
  const auto row_bytes = [&](int m, int K) { return static_cast<int64_t>(K / 256) * kern::kq_block_bytes(static_cast<KType>(kt[m])); };
  if (!kern::kq_supported(H) || !kern::kq_supported(I) || wu.shape(1) != I || wd.shape(1) != H) return std::nullopt;
  if (wg.shape(2) != row_bytes(0, H) || wu.shape(2) != row_bytes(1, H) || wd.shape(2) != row_bytes(2, I)) return std::nullopt;
  auto prim = std::make_shared<MoeGlu>(st, k, norm, static_cast<KType>(kt[0]), static_cast<KType>(kt[1]), static_cast<KType>(kt[2]));
  return array(x.shape(), float32, std::move(prim), {x, p, wg, wu, wd});
}

} // namespace
} // namespace mlxk

using namespace mlxk;

/* Softmax-top-k SwiGLU MoE of T tokens: x [..., H] (T rows, float32), router probabilities p [..., E] (T rows, float32,
   softmax already applied), K-quant experts gate/up [E, I, H/256·block] and down [E, H, I/256·block] (ktypes
   0/1/2 = Q4_K/Q5_K/Q6_K, one per matrix) → [..., H] = Σ over the top k of w_j·down(silu(gate x)·(up x)), w = p of
   the chosen, divided by their sum when norm. *out = null (rc 0) when the kernels do not take the case. */
MLXK_API int mlxk_kernel_moe_glu(mlxk_array* out, mlxk_array x, mlxk_array probs, mlxk_array wg, mlxk_array wu, mlxk_array wd, int k,
                                 int norm, int kt_gate, int kt_up, int kt_down, mlxk_stream s) {
  MLXK_TRY
  const int kt[3] = {kt_gate, kt_up, kt_down};
  auto r = moe_glu(A(x), A(probs), A(wg), A(wu), A(wd), k, norm != 0, kt, to_stream(S(s)));
  *out = r ? new array(std::move(*r)) : nullptr;
  return 0;
  MLXK_END
}

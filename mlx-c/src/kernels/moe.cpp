// A softmax-routed SwiGLU mixture-of-experts layer for one decode token in one primitive: from the router's
// probabilities, the top k (MLX's argpartition: the same strict order, so the same experts and slot order), their
// weights (optionally renormalised), the k experts' gate and up K-quant matmuls in one pool call, silu(gate)·up,
// the k down matmuls in a second, and the weighted sum. The op-by-op graph for this is ~15 nodes per layer per
// token (argpartition, slice, take, sum, divide, three gathers, SwiGLU, reshapes, multiply, sum), each with its
// own scheduling and buffers; here the same arithmetic in the same order, so the result equals that graph's.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../common.h"
#include "inputs.h"
#include "kquant.h"
#include "qmm.h"
#include "rows.h"

namespace mlxk {
namespace {
using kern::KqProblem;
using kern::KType;

struct MoeArgs {
  const float* x;     // [H]
  const float* p;     // [E] router probabilities
  const uint8_t* w[3]; // gate [E, I, ·], up [E, I, ·], down [E, H, ·] K-quant rows
  size_t wbytes[3];   // one expert's bytes of each
  KType t[3];
  float* out;         // [H]
  int E, k, H, I;
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

void run_moe(const MoeArgs& a, bool avx2) {
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
  // SwiGLU in FastSwiGLU's 4096-value pieces (the vector body and scalar tail cover the same elements)
  constexpr size_t kBlock = 4096;
  for (size_t i0 = 0; i0 < kI; i0 += kBlock) rows::swiglu(g + i0, u + i0, act + i0, std::min(kBlock, kI - i0), avx2);
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
  if (H <= 0 || x.size() != static_cast<size_t>(H) || p.size() != static_cast<size_t>(E) || k < 1 || k > E) return std::nullopt;
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

/* One token's softmax-top-k SwiGLU MoE: x [..., H] (one row, float32), router probabilities p [..., E] (float32,
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

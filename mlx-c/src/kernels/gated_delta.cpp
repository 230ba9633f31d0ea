// Gated DeltaNet kernels (qwen3_5 / qwen3_next linear attention) as MLX custom primitives for the CPU:
//  - the gated delta rule over T tokens (mlx-lm gated_delta_ops: per token decay the state, read it with k,
//    write the beta-scaled error back along k, read out with q), one pass per state row with the row kept
//    in L1 across all T tokens instead of ~10 MLX ops (each a full pass over the state) per token;
//  - the short depthwise causal conv + SiLU the layer runs on [conv state; new inputs].
// MLX's op path is the reference (src/models/gated_delta.ts); results agree within f32 rounding.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

#include <cmath>

#include "../common.h"
#include "inputs.h"
#include "kernels.h"
#include "pool.h"
#include "qmm.h"
#include "simd.h"

namespace mlxk {
namespace {

struct DeltaProblem {
  const float *q, *k, *v, *g, *beta, *s_in;
  float *y, *s_out;
  int B, T, Hk, Hv, Dk, Dv;
};

// One state row (b, hv, dv) through all T tokens; s is the row (Dk floats) in a scratch buffer.
void delta_row_scalar(const DeltaProblem& p, int b, int hv, int dv, float* s) {
  const int hk = hv / (p.Hv / p.Hk);
  const size_t row = (static_cast<size_t>(b) * p.Hv + hv) * p.Dv + dv;
  const float* src = p.s_in + row * p.Dk;
  for (int i = 0; i < p.Dk; i++) s[i] = src[i];
  for (int t = 0; t < p.T; t++) {
    const size_t bt = static_cast<size_t>(b) * p.T + t;
    const float* kp = p.k + (bt * p.Hk + hk) * p.Dk;
    const float* qp = p.q + (bt * p.Hk + hk) * p.Dk;
    const float gt = p.g[bt * p.Hv + hv], be = p.beta[bt * p.Hv + hv];
    const float vv = p.v[(bt * p.Hv + hv) * p.Dv + dv];
    float m = 0.f;
    for (int i = 0; i < p.Dk; i++) {
      s[i] *= gt;
      m += s[i] * kp[i];
    }
    const float d = (vv - m) * be;
    float o = 0.f;
    for (int i = 0; i < p.Dk; i++) {
      s[i] += kp[i] * d;
      o += s[i] * qp[i];
    }
    p.y[(bt * p.Hv + hv) * p.Dv + dv] = o;
  }
  float* dst = p.s_out + row * p.Dk;
  for (int i = 0; i < p.Dk; i++) dst[i] = s[i];
}

#ifdef MLXK_X86
MLXK_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Dk a multiple of 8.
MLXK_AVX2 void delta_row_avx2(const DeltaProblem& p, int b, int hv, int dv, float* s) {
  const int hk = hv / (p.Hv / p.Hk);
  const size_t row = (static_cast<size_t>(b) * p.Hv + hv) * p.Dv + dv;
  const float* src = p.s_in + row * p.Dk;
  for (int i = 0; i < p.Dk; i += 8) _mm256_storeu_ps(s + i, _mm256_loadu_ps(src + i));
  for (int t = 0; t < p.T; t++) {
    const size_t bt = static_cast<size_t>(b) * p.T + t;
    const float* kp = p.k + (bt * p.Hk + hk) * p.Dk;
    const float* qp = p.q + (bt * p.Hk + hk) * p.Dk;
    const __m256 gt = _mm256_set1_ps(p.g[bt * p.Hv + hv]);
    const float be = p.beta[bt * p.Hv + hv];
    const float vv = p.v[(bt * p.Hv + hv) * p.Dv + dv];
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= p.Dk; i += 16) {
      const __m256 a = _mm256_mul_ps(_mm256_loadu_ps(s + i), gt);
      const __m256 c = _mm256_mul_ps(_mm256_loadu_ps(s + i + 8), gt);
      _mm256_storeu_ps(s + i, a);
      _mm256_storeu_ps(s + i + 8, c);
      m0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(kp + i), m0);
      m1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(kp + i + 8), m1);
    }
    for (; i < p.Dk; i += 8) {
      const __m256 a = _mm256_mul_ps(_mm256_loadu_ps(s + i), gt);
      _mm256_storeu_ps(s + i, a);
      m0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(kp + i), m0);
    }
    const __m256 d = _mm256_set1_ps((vv - hsum(_mm256_add_ps(m0, m1))) * be);
    __m256 o0 = _mm256_setzero_ps(), o1 = _mm256_setzero_ps();
    for (i = 0; i + 16 <= p.Dk; i += 16) {
      const __m256 a = _mm256_fmadd_ps(_mm256_loadu_ps(kp + i), d, _mm256_loadu_ps(s + i));
      const __m256 c = _mm256_fmadd_ps(_mm256_loadu_ps(kp + i + 8), d, _mm256_loadu_ps(s + i + 8));
      _mm256_storeu_ps(s + i, a);
      _mm256_storeu_ps(s + i + 8, c);
      o0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(qp + i), o0);
      o1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(qp + i + 8), o1);
    }
    for (; i < p.Dk; i += 8) {
      const __m256 a = _mm256_fmadd_ps(_mm256_loadu_ps(kp + i), d, _mm256_loadu_ps(s + i));
      _mm256_storeu_ps(s + i, a);
      o0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(qp + i), o0);
    }
    p.y[(bt * p.Hv + hv) * p.Dv + dv] = hsum(_mm256_add_ps(o0, o1));
  }
  float* dst = p.s_out + row * p.Dk;
  for (int i = 0; i < p.Dk; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(s + i));
}
#endif

void run_delta(const DeltaProblem& p, bool avx2) {
  const int rows = p.B * p.Hv * p.Dv;
  const double work = static_cast<double>(rows) * p.T * p.Dk * 4;
  const int tasks = work < 65536.0 ? 1 : std::min(rows, 64);
  struct Ctx {
    const DeltaProblem* p;
    bool avx2;
    int rows, tasks;
  } ctx{&p, avx2, rows, tasks};
  auto body = [](void* c, int task) {
    auto& x = *static_cast<Ctx*>(c);
    const DeltaProblem& p = *x.p;
    std::vector<float> s(static_cast<size_t>(p.Dk));
    for (int r = x.rows * task / x.tasks; r < x.rows * (task + 1) / x.tasks; r++) {
      const int dv = r % p.Dv, hv = (r / p.Dv) % p.Hv, b = r / (p.Dv * p.Hv);
#ifdef MLXK_X86
      if (x.avx2) {
        delta_row_avx2(p, b, hv, dv, s.data());
        continue;
      }
#endif
      delta_row_scalar(p, b, hv, dv, s.data());
    }
  };
  if (tasks == 1) body(&ctx, 0);
  else kern::parallel_for(tasks, body, &ctx);
}

class GatedDelta : public Primitive {
 public:
  explicit GatedDelta(Stream s) : Primitive(s) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    for (auto& o : outputs) o.set_data(allocator::malloc(o.nbytes()));
    auto& enc = cpu::get_command_encoder(stream());
    for (const auto& in : inputs) enc.set_input_array(in);
    for (auto& o : outputs) enc.set_output_array(o);
    std::vector<StridedCopy> copies;
    std::vector<array> in;
    for (const auto& a : inputs) in.push_back(row_major(a, enc, copies));
    DeltaProblem p{in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), in[3].data<float>(),
                   in[4].data<float>(), in[5].data<float>(), outputs[0].data<float>(), outputs[1].data<float>(),
                   inputs[0].shape(0), inputs[0].shape(1), inputs[0].shape(2), inputs[2].shape(2),
                   inputs[0].shape(3), inputs[2].shape(3)};
    const bool avx2 = kern::avx2_active() && p.Dk % 8 == 0;
    enc.dispatch([p, avx2, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      run_delta(p, avx2);
    });
  }
  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error("[mlxk] CPU kernel only");
  }
  const char* name() const override { return "MlxkGatedDelta"; }
  bool is_equivalent(const Primitive& other) const override { return dynamic_cast<const GatedDelta*>(&other) != nullptr; }
};

// y[b, t, c] = silu(Σ_j x[b, t + j, c] · w[c, j]) for t < T = L - K + 1 (summed in j order, as the op path).
class ConvSilu : public UnaryPrimitive {
 public:
  explicit ConvSilu(Stream s) : UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    const float* x = row_major(inputs[0], enc, copies).data<float>();
    const float* w = row_major(inputs[1], enc, copies).data<float>();
    float* y = out.data<float>();
    const int B = out.shape(0), T = out.shape(1), C = out.shape(2), K = inputs[1].shape(1);
    const int L = inputs[0].shape(1);
    enc.dispatch([=, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      std::vector<float> wt(static_cast<size_t>(K) * C);
      for (int c = 0; c < C; c++)
        for (int j = 0; j < K; j++) wt[static_cast<size_t>(j) * C + c] = w[static_cast<size_t>(c) * K + j];
      for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
          float* yr = y + (static_cast<size_t>(b) * T + t) * C;
          const float* x0 = x + (static_cast<size_t>(b) * L + t) * C;
          for (int c = 0; c < C; c++) yr[c] = x0[c] * wt[c];
          for (int j = 1; j < K; j++) {
            const float* xj = x0 + static_cast<size_t>(j) * C;
            const float* wj = wt.data() + static_cast<size_t>(j) * C;
            for (int c = 0; c < C; c++) yr[c] = yr[c] + xj[c] * wj[c];
          }
          for (int c = 0; c < C; c++) yr[c] = yr[c] * (1.0f / (1.0f + std::exp(-yr[c])));
        }
      }
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return "MlxkConvSilu"; }
};

bool f32_cpu(const Stream& st, std::initializer_list<const array*> as) {
  if (kern::kernels_level() == 0 || st.device != Device::cpu) return false;
  for (const array* a : as)
    if (a->dtype() != float32) return false;
  return true;
}

} // namespace
} // namespace mlxk

using namespace mlxk;

MLXK_API int mlxk_kernel_gated_delta(mlxk_array* outs, mlxk_array q, mlxk_array k, mlxk_array v, mlxk_array g,
                                     mlxk_array beta, mlxk_array state, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array &qa = A(q), &ka = A(k), &va = A(v), &ga = A(g), &ba = A(beta), &sa = A(state);
  if (!f32_cpu(st, {&qa, &ka, &va, &ga, &ba, &sa})) throw std::invalid_argument("[mlxk] gated_delta: float32 CPU only");
  if (qa.ndim() != 4 || ka.shape() != qa.shape() || va.ndim() != 4 || sa.ndim() != 4) {
    throw std::invalid_argument("[mlxk] gated_delta: q, k [B,T,Hk,Dk], v [B,T,Hv,Dv], state [B,Hv,Dv,Dk]");
  }
  const int B = qa.shape(0), T = qa.shape(1), Hk = qa.shape(2), Dk = qa.shape(3), Hv = va.shape(2), Dv = va.shape(3);
  if (va.shape(0) != B || va.shape(1) != T || Hk <= 0 || Hv % Hk != 0 || ga.shape() != Shape{B, T, Hv} ||
      ba.shape() != Shape{B, T, Hv} || sa.shape() != Shape{B, Hv, Dv, Dk}) {
    throw std::invalid_argument("[mlxk] gated_delta: shapes do not agree");
  }
  auto res = array::make_arrays({Shape{B, T, Hv, Dv}, sa.shape()}, {float32, float32}, std::make_shared<GatedDelta>(st),
                                {qa, ka, va, ga, ba, sa});
  outs[0] = new array(std::move(res[0]));
  outs[1] = new array(std::move(res[1]));
  return 0;
  MLXK_END
}

MLXK_API int mlxk_kernel_conv_silu(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array &xa = A(x), &wa = A(w);
  if (!f32_cpu(st, {&xa, &wa})) throw std::invalid_argument("[mlxk] conv_silu: float32 CPU only");
  if (xa.ndim() != 3 || wa.ndim() != 3 || wa.shape(2) != 1 || wa.shape(0) != xa.shape(2) || xa.shape(1) < wa.shape(1)) {
    throw std::invalid_argument("[mlxk] conv_silu: x [B, L, C], weight [C, K, 1] with L >= K");
  }
  Shape shape{xa.shape(0), xa.shape(1) - wa.shape(1) + 1, xa.shape(2)};
  return put(out, array(std::move(shape), float32, std::make_shared<ConvSilu>(st), {xa, wa}));
  MLXK_END
}

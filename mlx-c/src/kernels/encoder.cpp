// Encoder (embedding model) epilogue as one MLX custom primitive for the CPU: act(x + bias) over the rows of a
// Linear's output. MLX's CPU erf-GELU runs ~100× slower than a vectorised one (it dominated a BERT-base layer at
// batch 16), and bias + activation as separate ops are two more passes over the [tokens, 3072] intermediate.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>
#include <mlx/utils.h>

#include <algorithm>
#include <cmath>

#include "../common.h"
#include "inputs.h"
#include "kernels.h"
#include "pool.h"
#include "qmm.h"
#include "simd.h"

#if defined(__x86_64__)
#define MLXK_ENC_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace mlxk {
namespace {

// The activations transformers' ACT2FN names for BERT-family encoders.
enum Act : int { kIdentity = 0, kGeluErf = 1, kGeluTanh = 2, kRelu = 3, kSilu = 4 };

float act_scalar(float x, int act) {
  switch (act) {
    case kGeluErf: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case kGeluTanh: return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case kRelu: return x > 0.f ? x : 0.f;
    case kSilu: return x / (1.0f + std::exp(-x));
    default: return x;
  }
}

#ifdef MLXK_ENC_AVX2
// erf for 8 floats: Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7), odd symmetry by the sign bit.
MLXK_ENC_AVX2 inline __m256 erf_avx2(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, _mm256_set1_ps(1.0f)));
  __m256 p = _mm256_set1_ps(1.061405429f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
  p = _mm256_mul_ps(p, t);
  const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
  const __m256 r = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
  return _mm256_or_ps(r, sign);
}

// tanh(z) = 1 − 2 / (exp(2z) + 1), saturating cleanly through exp_avx2's clamp.
MLXK_ENC_AVX2 inline __m256 tanh_avx2(__m256 z) {
  const __m256 e = exp_avx2(_mm256_add_ps(z, z));
  return _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
}

MLXK_ENC_AVX2 inline __m256 act_avx2(__m256 x, int act) {
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  switch (act) {
    case kGeluErf:
      return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, erf_avx2(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)))));
    case kGeluTanh: {
      const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
      const __m256 z = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
      return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, tanh_avx2(z)));
    }
    case kRelu: return _mm256_max_ps(x, _mm256_setzero_ps());
    case kSilu: return _mm256_div_ps(x, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    default: return x;
  }
}

MLXK_ENC_AVX2 void row_avx2(const float* x, const float* b, float* y, int N, int act) {
  int i = 0;
  for (; i + 8 <= N; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
    _mm256_storeu_ps(y + i, act_avx2(v, act));
  }
  for (; i < N; i++) y[i] = act_scalar(x[i] + (b ? b[i] : 0.f), act);
}
#endif

struct BiasActJob {
  const float* x;
  const float* b;
  float* y;
  size_t rows;
  int N, act, chunks;
  bool avx2;
};

void bias_act_task(void* ctx, int t) {
  const auto& j = *static_cast<const BiasActJob*>(ctx);
  for (size_t r = j.rows * t / j.chunks; r < j.rows * (t + 1) / j.chunks; r++) {
    const float* xr = j.x + r * j.N;
    float* yr = j.y + r * j.N;
#ifdef MLXK_ENC_AVX2
    if (j.avx2) {
      row_avx2(xr, j.b, yr, j.N, j.act);
      continue;
    }
#endif
    for (int i = 0; i < j.N; i++) yr[i] = act_scalar(xr[i] + (j.b ? j.b[i] : 0.f), j.act);
  }
}

class FastBiasAct : public UnaryPrimitive {
 public:
  FastBiasAct(Stream s, int act) : UnaryPrimitive(s), act_(act) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    BiasActJob j{};
    j.x = row_major(inputs[0], enc, copies).data<float>();
    j.b = inputs.size() > 1 ? row_major(inputs[1], enc, copies).data<float>() : nullptr;
    j.y = out.data<float>();
    j.N = out.shape(-1);
    j.rows = out.size() / static_cast<size_t>(j.N);
    j.act = act_;
    j.avx2 = kern::avx2_active();
    // small outputs (a decode-sized row) are not worth waking the pool for
    j.chunks = static_cast<int>(std::clamp<size_t>(out.size() / 16384, 1, std::min<size_t>(j.rows, 64)));
    enc.dispatch([j, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      if (j.chunks == 1) bias_act_task(const_cast<BiasActJob*>(&j), 0);
      else kern::parallel_for(j.chunks, bias_act_task, const_cast<BiasActJob*>(&j));
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  bool is_equivalent(const Primitive& o) const override {
    auto* p = dynamic_cast<const FastBiasAct*>(&o);
    return p && p->act_ == act_;
  }
  const char* name() const override { return "MlxkFastBiasAct"; }

 private:
  int act_;
};

array act_ops(const array& x, int act, const Stream& st) {
  switch (act) {
    case kGeluErf: return multiply(multiply(x, array(0.5f), st), add(array(1.0f), erf(multiply(x, array(0.70710678118654752f), st), st), st), st);
    case kGeluTanh: {
      const array inner = multiply(array(0.7978845608028654f), add(x, multiply(array(0.044715f), power(x, array(3.0f), st), st), st), st);
      return multiply(multiply(x, array(0.5f), st), add(array(1.0f), tanh(inner, st), st), st);
    }
    case kRelu: return maximum(x, array(0.0f), st);
    case kSilu: return multiply(x, sigmoid(x, st), st);
    default: return x;
  }
}

} // namespace
} // namespace mlxk

using namespace mlxk;

MLXK_API int mlxk_kernel_bias_act(mlxk_array* out, mlxk_array x, mlxk_array bias, int act, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array& a = A(x);
  auto b = OA(bias);
  if (act < kIdentity || act > kSilu) throw std::invalid_argument("[mlxk] bias_act: unknown activation");
  const bool ok = kern::kernels_level() > 0 && st.device == Device::cpu && a.dtype() == float32 && a.ndim() >= 1 &&
                  a.shape(-1) > 0 && (!b || (b->dtype() == float32 && b->ndim() == 1 && b->shape(0) == a.shape(-1)));
  if (!ok) return put(out, act_ops(b ? add(a, *b, st) : a, act, st));
  std::vector<array> in{a};
  if (b) in.push_back(*b);
  return put(out, array(a.shape(), float32, std::make_shared<FastBiasAct>(st, act), std::move(in)));
  MLXK_END
}

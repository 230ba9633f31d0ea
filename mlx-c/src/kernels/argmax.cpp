// Argmax over the last axis of float32 rows (a decode step's greedy tokens over [B, vocab] logits) with MLX's
// answer: the first NaN if a row has one, else the first index of the maximum (-0 and 0 tie). MLX's CPU argmax is
// a scalar loop on the stream thread: ~0.75 ms of an 8-row SmolLM2 step (393k logits); 8 lanes and the pool
// make it a small fraction of that.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "../common.h"
#include "inputs.h"
#include "kernels.h"
#include "qmm.h"
#include "rows.h"
#include "simd.h"

namespace mlxk {
namespace {

// MLX's rule, one element at a time.
uint32_t argmax_scalar(const float* x, int64_t n) {
  uint32_t best = 0;
  float v = x[0];
  if (std::isnan(v)) return 0;
  for (int64_t i = 1; i < n; i++) {
    if (std::isnan(x[i])) return static_cast<uint32_t>(i);
    if (x[i] > v) {
      v = x[i];
      best = static_cast<uint32_t>(i);
    }
  }
  return best;
}

#ifdef MLXK_X86
// Each lane keeps the first index of its maximum (strict >), lanes merge by value then the smaller index: the
// first index of the row's maximum. A NaN anywhere sends the row to the scalar rule.
MLXK_AVX2 uint32_t argmax_avx2(const float* x, int64_t n) {
  if (n < 16) return argmax_scalar(x, n);
  __m256 best = _mm256_loadu_ps(x);
  __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i cur = idx;
  const __m256i step = _mm256_set1_epi32(8);
  __m256 nan = _mm256_cmp_ps(best, best, _CMP_UNORD_Q);
  int64_t i = 8;
  for (; i + 8 <= n; i += 8) {
    cur = _mm256_add_epi32(cur, step);
    const __m256 v = _mm256_loadu_ps(x + i);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256 gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
    best = _mm256_blendv_ps(best, v, gt);
    idx = _mm256_blendv_epi8(idx, cur, _mm256_castps_si256(gt));
  }
  if (_mm256_movemask_ps(nan)) return argmax_scalar(x, n);
  alignas(32) float bv[8];
  alignas(32) int32_t bi[8];
  _mm256_store_ps(bv, best);
  _mm256_store_si256(reinterpret_cast<__m256i*>(bi), idx);
  float v = bv[0];
  int64_t b = bi[0];
  for (int j = 1; j < 8; j++) {
    if (bv[j] > v || (bv[j] == v && bi[j] < b)) {
      v = bv[j];
      b = bi[j];
    }
  }
  for (; i < n; i++) {
    if (std::isnan(x[i])) return static_cast<uint32_t>(i);
    if (x[i] > v) {
      v = x[i];
      b = i;
    }
  }
  return static_cast<uint32_t>(b);
}
#endif

class ArgmaxRows : public UnaryPrimitive {
 public:
  explicit ArgmaxRows(Stream s) : UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    const float* x = row_major(inputs[0], enc, copies).data<float>();
    uint32_t* y = out.data<uint32_t>();
    const int64_t n = inputs[0].shape(-1);
    const size_t rows = out.size();
    const bool avx2 = kern::avx2_active();
    enc.dispatch([x, y, n, rows, avx2, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      rows::for_rows(rows, static_cast<double>(rows) * n / 4, [&](size_t r) {
#ifdef MLXK_X86
        if (avx2) {
          y[r] = argmax_avx2(x + r * n, n);
          return;
        }
#endif
        y[r] = argmax_scalar(x + r * n, n);
      });
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return "MlxkArgmaxRows"; }
};

} // namespace
} // namespace mlxk

using namespace mlxk;

// out = argmax(x, -1) as uint32, exactly as MLX's argmax; MLX's own op off the CPU kernels or for other dtypes.
MLXK_API int mlxk_kernel_argmax_rows(mlxk_array* out, mlxk_array x, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array& a = A(x);
  if (kern::kernels_level() <= 0 || st.device != Device::cpu || a.dtype() != float32 || a.ndim() < 1 || a.shape(-1) < 1)
    return put(out, argmax(a, -1, false, st));
  Shape shape(a.shape().begin(), a.shape().end() - 1);
  return put(out, array(std::move(shape), uint32, std::make_shared<ArgmaxRows>(st), {a}));
  MLXK_END
}

// Float32 linear layer for x86-64: out[M,N] = x[M,K] · w[N,K]^T (MLX's transposed Linear layout), AVX2/FMA with a
// scalar fallback, as an MLX custom primitive. MLX's own CPU matmul goes through the reference BLAS its Linux wheel
// bundles (~1–2 GFLOP/s). Here each task takes 64 output columns, transposes that weight panel once into [K][64]
// (it stays in L2 while every row of x passes by) and computes 6×16 output tiles with 12 vector accumulators.
// On AVX-512 CPUs gemm512.cpp runs instead; a caller that holds the weight's pack (PackLinear, made once) gets
// gemm_packed.cpp for inputs of many rows.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>
#include <mlx/utils.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../common.h"
#include "gemm512.h"
#include "gemm_packed.h"
#include "inputs.h"
#include "kernels.h"
#include "pool.h"
#include "qmm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MLXK_GEMM_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace mlxk {
namespace {

struct GemmProblem {
  const float* x;
  const float* w;
  float* out;
  int M, K, N;
};

constexpr int kPanel = 64;

void block_scalar(const GemmProblem& p, int m0, int m1, int n0, int n1) {
  for (int m = m0; m < m1; m++) {
    const float* xr = p.x + static_cast<size_t>(m) * p.K;
    for (int n = n0; n < n1; n++) {
      const float* wr = p.w + static_cast<size_t>(n) * p.K;
      float s = 0.f;
      for (int k = 0; k < p.K; k++) s += xr[k] * wr[k];
      p.out[static_cast<size_t>(m) * p.N + n] = s;
    }
  }
}

#ifdef MLXK_GEMM_AVX2
// The panel's 64 weight rows, transposed to [K][64] so one k step reads 16 consecutive outputs' weights.
MLXK_GEMM_AVX2 void pack_panel(const GemmProblem& p, int n0, int nc, float* dst) {
  for (int k = 0; k < p.K; k++) {
    float* d = dst + static_cast<size_t>(k) * kPanel;
    for (int c = 0; c < nc; c++) d[c] = p.w[static_cast<size_t>(n0 + c) * p.K + k];
    for (int c = nc; c < kPanel; c++) d[c] = 0.f;
  }
}

// R rows (≤ 6) × 16 outputs: 2·R accumulators, each k step two weight vectors and R broadcasts of x.
template <int R>
MLXK_GEMM_AVX2 void tile(const GemmProblem& p, const float* packed, int m, int n0, int col, int ncols) {
  __m256 acc[R][2];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const float* xr[R];
  for (int r = 0; r < R; r++) xr[r] = p.x + static_cast<size_t>(m + r) * p.K;
  const float* b = packed + col;
  for (int k = 0; k < p.K; k++, b += kPanel) {
    const __m256 w0 = _mm256_loadu_ps(b), w1 = _mm256_loadu_ps(b + 8);
    for (int r = 0; r < R; r++) {
      const __m256 xv = _mm256_broadcast_ss(xr[r] + k);
      acc[r][0] = _mm256_fmadd_ps(xv, w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(xv, w1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; r++) {
    float* o = p.out + static_cast<size_t>(m + r) * p.N + n0 + col;
    if (ncols == 16) {
      _mm256_storeu_ps(o, acc[r][0]);
      _mm256_storeu_ps(o + 8, acc[r][1]);
    } else {
      alignas(32) float tmp[16];
      _mm256_store_ps(tmp, acc[r][0]);
      _mm256_store_ps(tmp + 8, acc[r][1]);
      for (int c = 0; c < ncols; c++) o[c] = tmp[c];
    }
  }
}

MLXK_GEMM_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Few rows (decode-like): dot products straight from the [N][K] rows, 1 row × 4 outputs per step, no packing.
MLXK_GEMM_AVX2 void dots(const GemmProblem& p, int m, int n0, int n1) {
  const int K = p.K, K8 = K & ~7;
  const float* xr = p.x + static_cast<size_t>(m) * K;
  int n = n0;
  for (; n < n1; n += 4) {
    const int C = std::min(4, n1 - n);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const float* wr[4];
    for (int c = 0; c < 4; c++) wr[c] = p.w + static_cast<size_t>(n + std::min(c, C - 1)) * K;
    for (int k = 0; k < K8; k += 8) {
      const __m256 xv = _mm256_loadu_ps(xr + k);
      for (int c = 0; c < 4; c++) acc[c] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wr[c] + k), acc[c]);
    }
    for (int c = 0; c < C; c++) {
      float s = hsum(acc[c]);
      for (int k = K8; k < K; k++) s += xr[k] * wr[c][k];
      p.out[static_cast<size_t>(m) * p.N + n + c] = s;
    }
  }
}

MLXK_GEMM_AVX2 void block_avx2(const GemmProblem& p, int n0, int n1) {
  // packing a panel costs about what 8 rows of compute do: below that, read the weight rows as they are
  if (p.M < 8) {
    for (int m = 0; m < p.M; m++) dots(p, m, n0, n1);
    return;
  }
  thread_local std::vector<float> packed;
  packed.resize(static_cast<size_t>(p.K) * kPanel);
  pack_panel(p, n0, n1 - n0, packed.data());
  for (int col = 0; col < n1 - n0; col += 16) {
    const int nc = std::min(16, n1 - n0 - col);
    int m = 0;
    for (; m + 6 <= p.M; m += 6) tile<6>(p, packed.data(), m, n0, col, nc);
    for (; m + 2 <= p.M; m += 2) tile<2>(p, packed.data(), m, n0, col, nc);
    for (; m < p.M; m++) tile<1>(p, packed.data(), m, n0, col, nc);
  }
}
#endif

void run_task(void* ctx, int i) {
  const auto& p = *static_cast<const GemmProblem*>(ctx);
  const int n0 = i * kPanel, n1 = std::min(p.N, n0 + kPanel);
#ifdef MLXK_GEMM_AVX2
  if (kern::avx2_active()) {
    block_avx2(p, n0, n1);
    return;
  }
#endif
  block_scalar(p, 0, p.M, n0, n1);
}

void gemm(const GemmProblem& p) {
  if (gemm512::available()) return gemm512::run(p.x, p.w, p.out, p.M, p.K, p.N);
  kern::parallel_for_work((p.N + kPanel - 1) / kPanel, run_task, const_cast<GemmProblem*>(&p),
                          static_cast<double>(p.M) * p.N * p.K);
}

// x · wᵀ; with a third input (the weight's pack, gemm_packed.h) many-row x goes through the packed kernel.
class FastLinear : public UnaryPrimitive {
 public:
  explicit FastLinear(Stream s) : UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    const array x = row_major(inputs[0], enc, copies);
    const array w = row_major(inputs[1], enc, copies);
    GemmProblem p{};
    p.x = x.data<float>();
    p.w = w.data<float>();
    p.out = out.data<float>();
    p.K = x.shape(-1);
    p.M = static_cast<int>(x.size() / p.K);
    p.N = w.shape(0);
    const bool use_pack = inputs.size() > 2 && p.M >= gemm_packed::kMinRows;
    const float* packed = use_pack ? row_major(inputs[2], enc, copies).data<float>() : nullptr;
    enc.dispatch([p, packed, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      if (packed) {
        gemm_packed::run(p.x, packed, p.out, p.M, p.K, p.N);
      } else {
        gemm(p);
      }
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[mlxk] fast linear has no GPU implementation");
  }

  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    Shape s = inputs[0].shape();
    s.back() = inputs[1].shape(0);
    return {s};
  }

  bool is_equivalent(const Primitive& other) const override { return dynamic_cast<const FastLinear*>(&other) != nullptr; }

  const char* name() const override { return "MlxkFastLinear"; }
};

// w [N, K] → its pack [panels(N), K, 32] (gemm_packed.h).
class PackLinear : public UnaryPrimitive {
 public:
  explicit PackLinear(Stream s) : UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    const array w = row_major(inputs[0], enc, copies);
    const float* src = w.data<float>();
    float* dst = out.data<float>();
    const int N = w.shape(0), K = w.shape(1);
    enc.dispatch([src, dst, N, K, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      gemm_packed::pack(src, N, K, dst);
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[mlxk] linear pack has no GPU implementation");
  }

  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {pack_shape(inputs[0])};
  }

  bool is_equivalent(const Primitive& other) const override { return dynamic_cast<const PackLinear*>(&other) != nullptr; }

  const char* name() const override { return "MlxkPackLinear"; }

  static Shape pack_shape(const array& w) { return {gemm_packed::panels(w.shape(0)), w.shape(1), gemm_packed::kCols}; }
};

bool kernel_case(const array& x, const array& w, const Stream& st) {
  return kern::kernels_level() > 0 && st.device == Device::cpu && x.ndim() >= 1 && w.ndim() == 2 &&
         x.dtype() == float32 && w.dtype() == float32 && x.shape(-1) == w.shape(1) && x.size() > 0;
}

array fast_linear(const array& x, const array& w, const std::optional<array>& packed, StreamOrDevice sd) {
  Stream st = to_stream(sd);
  if (!kernel_case(x, w, st)) return matmul(x, swapaxes(w, -1, -2, st), st);
  Shape shape = x.shape();
  shape.back() = w.shape(0);
  std::vector<array> in{x, w};
  // a pack of another weight's shape (or dtype) is never read: the caller handed the wrong one
  if (packed && packed->dtype() == float32 && packed->shape() == PackLinear::pack_shape(w)) in.push_back(*packed);
  return array(std::move(shape), float32, std::make_shared<FastLinear>(st), std::move(in));
}

array pack_linear(const array& w, StreamOrDevice sd) {
  Stream st = to_stream(sd);
  if (kern::kernels_level() == 0 || st.device != Device::cpu || w.ndim() != 2 || w.dtype() != float32 || w.size() == 0) {
    throw std::invalid_argument("[mlxk] linear pack: needs a float32 [N, K] weight and the CPU kernels");
  }
  return array(PackLinear::pack_shape(w), float32, std::make_shared<PackLinear>(st), {w});
}

} // namespace
} // namespace mlxk

using namespace mlxk;

MLXK_API int mlxk_fast_linear(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_stream s) {
  MLXK_TRY return put(out, fast_linear(A(x), A(w), std::nullopt, S(s)));
  MLXK_END
}

MLXK_API int mlxk_fast_linear_packed(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array packed, mlxk_stream s) {
  MLXK_TRY return put(out, fast_linear(A(x), A(w), OA(packed), S(s)));
  MLXK_END
}

MLXK_API int mlxk_linear_pack(mlxk_array* out, mlxk_array w, mlxk_stream s) {
  MLXK_TRY return put(out, pack_linear(A(w), S(s)));
  MLXK_END
}

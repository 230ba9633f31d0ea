// MLX custom primitive wrapping the quantized-matmul kernels: built like any MLX op, evaluated lazily on the
// CPU stream through the CPU command encoder, so it mixes freely with MLX's own ops in one graph.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>
#include <mlx/utils.h>

#include <cstring>

#include "../common.h"
#include "inputs.h"
#include "kernels.h"
#include "pool.h"
#include "qgemm.h"
#include "qmm.h"

namespace mlxk {
namespace {
using kern::QFormat;

class FastQuantizedMatmul : public UnaryPrimitive {
 public:
  FastQuantizedMatmul(Stream s, QFormat fmt, int group_size) : UnaryPrimitive(s), fmt_(fmt), gs_(group_size) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    // Inputs are rarely strided (weights never are); when they are, our task copies them (no extra graph nodes).
    std::vector<StridedCopy> copies;
    const array x = row_major(inputs[0], enc, copies);
    const array w = row_major(inputs[1], enc, copies);
    const array sc = row_major(inputs[2], enc, copies);
    const std::optional<array> bi =
        inputs.size() > 3 ? std::optional<array>(row_major(inputs[3], enc, copies)) : std::nullopt;
    kern::QmmProblem p{};
    p.x = x.data<float>();
    p.w = reinterpret_cast<const uint8_t*>(w.data<uint32_t>());
    if (fmt_ == QFormat::Mxfp4) {
      p.escale = sc.data<uint8_t>();
    } else {
      p.scales = sc.data<float>();
      p.biases = bi->data<float>();
    }
    p.out = out.data<float>();
    p.K = x.shape(-1);
    p.M = static_cast<int>(x.size() / p.K);
    p.N = w.shape(0);
    p.gs = gs_;
    p.fmt = fmt_;
    // [B, 1, K] with B > 1 is a decode batch (prefill is [1, L, K]): rows are computed as if alone.
    p.independent_rows = p.M > 1 && x.ndim() >= 3 && x.shape(-2) == 1;
    // Input buffers stay alive until the dispatched task ran (MLX's CPU eval holds them), so raw pointers are safe.
    enc.dispatch([p, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      kern::qmm(p);
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[mlxk] fast quantized matmul has no GPU implementation");
  }

  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    Shape s = inputs[0].shape();
    s.back() = inputs[1].shape(0);
    return {s};
  }

  bool is_equivalent(const Primitive& other) const override {
    auto* o = dynamic_cast<const FastQuantizedMatmul*>(&other);
    return o && o->fmt_ == fmt_ && o->gs_ == gs_;
  }

  const char* name() const override { return "MlxkFastQuantizedMatmul"; }

 private:
  QFormat fmt_;
  int gs_;
};

bool is_float(Dtype d) {
  return d == float32 || d == float16 || d == bfloat16;
}

// The kernel's case: CPU stream, transposed 2-D uint32 weights whose shapes agree; anything else goes to MLX.
std::optional<QFormat> kernel_format(const array& x, const array& w, const array& sc, const std::optional<array>& b,
                                     bool transpose, int gs, int bits, int mode, const Stream& st) {
  if (kern::kernels_level() == 0 || st.device != Device::cpu || !transpose) return std::nullopt;
  if (x.ndim() < 1 || !is_float(x.dtype()) || w.ndim() != 2 || w.dtype() != uint32 || sc.ndim() != 2) return std::nullopt;
  QFormat f;
  if (mode == MLXK_Q_AFFINE && bits == 4) f = QFormat::Affine4;
  else if (mode == MLXK_Q_AFFINE && bits == 8) f = QFormat::Affine8;
  else if (mode == MLXK_Q_MXFP4 && bits == 4) f = QFormat::Mxfp4;
  else return std::nullopt;
  const int K = x.shape(-1), N = w.shape(0);
  if (static_cast<int64_t>(w.shape(1)) * 32 / bits != K || !kern::qmm_supported(f, gs, K)) return std::nullopt;
  if (sc.shape(0) != N || sc.shape(1) != K / gs) return std::nullopt;
  if (f == QFormat::Mxfp4) {
    if (b || sc.dtype() != uint8) return std::nullopt;
  } else {
    if (!b || b->shape() != sc.shape() || !is_float(sc.dtype()) || !is_float(b->dtype())) return std::nullopt;
  }
  return f;
}

array fast_qmm(const array& x, const array& w, const array& sc, const std::optional<array>& b, bool transpose,
               int group_size, int bits, int mode, StreamOrDevice sd) {
  Stream st = to_stream(sd);
  // mlxk passes 0 for "MLX default": 64/4 for affine, 32/4 for mxfp4.
  const int gs = group_size > 0 ? group_size : (mode == MLXK_Q_MXFP4 ? 32 : 64);
  const int nb = bits > 0 ? bits : 4;
  auto f = kernel_format(x, w, sc, b, transpose, gs, nb, mode, st);
  if (!f) return quantized_matmul(x, w, sc, b, transpose, opt_int(group_size), opt_int(bits), quant_mode(mode), st);
  // The kernel reads float32; astype returns the same array when it already is (no extra graph node).
  std::vector<array> in{astype(x, float32, st), w};
  if (*f == QFormat::Mxfp4) {
    in.push_back(sc);
  } else {
    in.push_back(astype(sc, float32, st));
    in.push_back(astype(*b, float32, st));
  }
  Shape shape = x.shape();
  shape.back() = w.shape(0);
  array out(std::move(shape), float32, std::make_shared<FastQuantizedMatmul>(st, *f, gs), std::move(in));
  return x.dtype() == float32 ? out : astype(out, x.dtype(), st);
}

} // namespace
} // namespace mlxk

using namespace mlxk;

MLXK_API int mlxk_kernels_available(void) {
  return kern::kernels_level();
}

MLXK_API int mlxk_kernels_threads(void) {
  return kern::pool_threads();
}

MLXK_API int mlxk_kernels_force_scalar(int on) {
  return kern::set_force_scalar(on != 0) ? 1 : 0;
}

MLXK_API int mlxk_kernels_isa(void) {
  return kern::active_isa();
}

MLXK_API int mlxk_kernels_set_isa(int level) {
  return kern::set_isa(level);
}

MLXK_API int mlxk_kernels_int8(int on) {
  if (on < 0) return kern::int8_available() ? (kern::int8_active() ? 1 : 0) : -1;
  return kern::set_int8(on) ? 1 : 0; // 2: the affine int8 tiles on every CPU (tests), see qmm.cpp
}

MLXK_API int mlxk_kernels_set_threads(int n) {
  return kern::set_threads_override(n);
}

/* Rows of x from which quantized matmuls (affine and K-quant) run as a dequantized-panel GEMM (qgemm.cpp): n ≥ 0
   sets it (0 = never), n < 0 back to MLXK_QGEMM_ROWS / the defaults; returns the previous setting (-1 = the
   defaults). */
MLXK_API int mlxk_kernels_qgemm_rows(int n) {
  return qgemm::set_min_rows(n);
}

MLXK_API void mlxk_kernels_qmm_profile(double* out3) {
  kern::qmm_profile(out3);
}

MLXK_API int mlxk_kernels_threads_for(double work) {
  return kern::threads_for(work);
}

MLXK_API float mlxk_kernels_others_load(void) {
  return kern::others_load_now();
}

MLXK_API float mlxk_kernels_pin_others_load(float cores) {
  return kern::set_others_load(cores);
}

MLXK_API int mlxk_fast_quantized_matmul(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array scales,
                                        mlxk_array biases, bool transpose, int group_size, int bits, int mode,
                                        mlxk_stream s) {
  MLXK_TRY return put(out, fast_qmm(A(x), A(w), A(scales), OA(biases), transpose, group_size, bits, mode, S(s)));
  MLXK_END
}

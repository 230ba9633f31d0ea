// MLX custom primitives over the K-quant kernels (kquant.cpp): x · dequant(w)ᵀ with w the GGUF blocks as a
// uint8 array [N, K/256·block bytes], and the plain dequantization of such rows (the path used when the
// kernels are switched off, and for embedding lookups). CPU streams only: GPU callers widen the weights at load.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

#include "../common.h"
#include "inputs.h"
#include "kquant.h"
#include "kquant512.h"
#include "qmm.h"

namespace mlxk {
namespace {
using kern::KType;

class KQuantMatmul : public UnaryPrimitive {
 public:
  KQuantMatmul(Stream s, KType t) : UnaryPrimitive(s), t_(t) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    const array x = row_major(inputs[0], enc, copies);
    const array w = row_major(inputs[1], enc, copies);
    kern::KqProblem p{};
    p.x = x.data<float>();
    p.w = w.data<uint8_t>();
    p.out = out.data<float>();
    p.N = w.shape(0);
    p.K = static_cast<int>(w.shape(1) / kern::kq_block_bytes(t_) * 256);
    p.M = static_cast<int>(x.size() / p.K);
    p.ldo = p.N;
    p.t = t_;
    // [B, 1, K] with B > 1 is a decode batch (as primitive.cpp's qmm): rows computed as if alone
    p.independent_rows = p.M > 1 && x.ndim() >= 3 && x.shape(-2) == 1;
    enc.dispatch([p, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      kern::kqmm(p);
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[mlxk] K-quant matmul has no GPU implementation");
  }

  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    Shape s = inputs[0].shape();
    s.back() = inputs[1].shape(0);
    return {s};
  }

  bool is_equivalent(const Primitive& other) const override {
    auto* o = dynamic_cast<const KQuantMatmul*>(&other);
    return o && o->t_ == t_;
  }

  const char* name() const override { return "MlxkKQuantMatmul"; }

 private:
  KType t_;
};

class KQuantDequantize : public UnaryPrimitive {
 public:
  KQuantDequantize(Stream s, KType t) : UnaryPrimitive(s), t_(t) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    const array w = row_major(inputs[0], enc, copies);
    const int K = out.shape(-1);
    const size_t rows = out.size() / K;
    const uint8_t* src = w.data<uint8_t>();
    float* dst = out.data<float>();
    const KType t = t_;
    enc.dispatch([=, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      kern::kq_dequant_rows(t, src, dst, rows, K);
    });
  }

  void eval_gpu(const std::vector<array>&, array&) override {
    throw std::runtime_error("[mlxk] K-quant dequantize has no GPU implementation");
  }

  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    Shape s = inputs[0].shape();
    s.back() = static_cast<int>(s.back() / kern::kq_block_bytes(t_) * 256);
    return {s};
  }

  bool is_equivalent(const Primitive& other) const override {
    auto* o = dynamic_cast<const KQuantDequantize*>(&other);
    return o && o->t_ == t_;
  }

  const char* name() const override { return "MlxkKQuantDequantize"; }

 private:
  KType t_;
};

KType ktype(int t) {
  if (t < 0 || t > 2) throw std::invalid_argument("[mlxk] unknown K-quant type");
  return static_cast<KType>(t);
}

// w: uint8 [..., K/256 · block bytes], 2-D or more, on a CPU stream.
void check_blocks(const array& w, KType t, const Stream& st) {
  if (st.device != Device::cpu) throw std::invalid_argument("[mlxk] K-quant weights run on the CPU only");
  if (w.dtype() != uint8 || w.ndim() < 1 || w.shape(-1) % kern::kq_block_bytes(t) != 0)
    throw std::invalid_argument("[mlxk] K-quant weight: expected uint8 rows of whole blocks");
}

array kquant_dequantize(const array& w, KType t, const Stream& st) {
  check_blocks(w, t, st);
  Shape s = w.shape();
  s.back() = static_cast<int>(s.back() / kern::kq_block_bytes(t) * 256);
  return array(std::move(s), float32, std::make_shared<KQuantDequantize>(st, t), {w});
}

array kquant_matmul(const array& x, const array& w, KType t, bool kernels, const Stream& st) {
  check_blocks(w, t, st);
  if (w.ndim() != 2) throw std::invalid_argument("[mlxk] K-quant matmul: weight must be [N, row bytes]");
  const int K = static_cast<int>(w.shape(1) / kern::kq_block_bytes(t) * 256);
  if (x.ndim() < 1 || x.shape(-1) != K) throw std::invalid_argument("[mlxk] K-quant matmul: x's last axis is not the weight's K");
  if (!kernels || kern::kernels_level() == 0) {
    // Kernels off: the exact f32 weights each call, then MLX's matmul (correct, slow, K·N floats transient).
    array wf = kquant_dequantize(w, t, st);
    array y = matmul(astype(x, float32, st), transpose(wf, {1, 0}, st), st);
    return x.dtype() == float32 ? y : astype(y, x.dtype(), st);
  }
  Shape shape = x.shape();
  shape.back() = w.shape(0);
  array out(std::move(shape), float32, std::make_shared<KQuantMatmul>(st, t), {astype(x, float32, st), w});
  return x.dtype() == float32 ? out : astype(out, x.dtype(), st);
}

} // namespace
} // namespace mlxk

using namespace mlxk;

/* K-quant (0 = Q4_K, 1 = Q5_K, 2 = Q6_K) weight w uint8 [N, K/256·block bytes]: out = x · dequant(w)ᵀ;
   kernels = 0 dequantizes per call and uses MLX's matmul. */
MLXK_API int mlxk_kquant_matmul(mlxk_array* out, mlxk_array x, mlxk_array w, int type, int kernels, mlxk_stream s) {
  MLXK_TRY return put(out, kquant_matmul(A(x), A(w), ktype(type), kernels != 0, to_stream(S(s))));
  MLXK_END
}

/* The float32 values of K-quant rows w uint8 [..., K/256·block bytes] → [..., K]. */
MLXK_API int mlxk_kquant_dequantize(mlxk_array* out, mlxk_array w, int type, mlxk_stream s) {
  MLXK_TRY return put(out, kquant_dequantize(A(w), ktype(type), to_stream(S(s))));
  MLXK_END
}

/* Opt-in int8 activations for K-quant matmuls (MLXK_INT8_ACT=1): on = 1/0 sets it, on < 0 queries; returns the
   previous (or current) setting. */
MLXK_API int mlxk_kquant_int8(int on) {
  if (on < 0) return kern::kq_int8_active() ? 1 : 0;
  return kern::kq_set_int8(on != 0) ? 1 : 0;
}

/* The AVX-512 K-quant decode tiles: mode 1 f32, 2 bf16 (where the CPU has them), 0 back to the default
   (MLXK_KQ_DECODE, else by CPU), < 0 queries; returns the previous (or current) mode, 0 when neither runs. */
MLXK_API int mlxk_kquant_decode(int mode) {
  if (mode < 0) return kern::kq512::f32_decode() ? 1 : kern::kq512::bf16() ? 2 : 0;
  return kern::kq512::set_decode_mode(mode);
}

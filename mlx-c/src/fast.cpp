// Fused kernels from mlx/fast.h: norms, rotary embeddings, scaled dot-product attention.
#include "common.h"

using namespace mlxk;

MLXK_API int mlxk_fast_rms_norm(mlxk_array* out, mlxk_array x, mlxk_array weight, float eps, mlxk_stream s) {
  MLXK_TRY return put(out, fast::rms_norm(A(x), OA(weight), eps, S(s)));
  MLXK_END
}

MLXK_API int mlxk_fast_layer_norm(mlxk_array* out, mlxk_array x, mlxk_array weight, mlxk_array bias, float eps,
                                  mlxk_stream s) {
  MLXK_TRY return put(out, fast::layer_norm(A(x), OA(weight), OA(bias), eps, S(s)));
  MLXK_END
}

MLXK_API int mlxk_fast_rope(mlxk_array* out, mlxk_array x, int dims, bool traditional, bool has_base, float base,
                            float scale, int offset, mlxk_array offset_arr, mlxk_array freqs, mlxk_stream s) {
  MLXK_TRY std::optional<float> b = has_base ? std::optional<float>(base) : std::nullopt;
  if (offset_arr) return put(out, fast::rope(A(x), dims, traditional, b, scale, A(offset_arr), OA(freqs), S(s)));
  return put(out, fast::rope(A(x), dims, traditional, b, scale, offset, OA(freqs), S(s)));
  MLXK_END
}

MLXK_API int mlxk_fast_sdpa(mlxk_array* out, mlxk_array q, mlxk_array k, mlxk_array v, float scale, int mask_mode,
                            mlxk_array mask, mlxk_array sinks, mlxk_stream s) {
  MLXK_TRY std::string mode;
  if (mask_mode == MLXK_MASK_CAUSAL) mode = "causal";
  else if (mask_mode == MLXK_MASK_ARRAY) mode = "array";
  else if (mask_mode != MLXK_MASK_NONE) throw std::invalid_argument("[mlxk] invalid sdpa mask mode");
  if (mask_mode == MLXK_MASK_ARRAY && !mask) throw std::invalid_argument("[mlxk] sdpa: mask mode 'array' needs a mask");
  // force_fused (new in 0.32.2) stays false: MLX picks the fused kernel when it applies.
  return put(out, fast::scaled_dot_product_attention(A(q), A(k), A(v), scale, mode,
                                                     mask_mode == MLXK_MASK_ARRAY ? OA(mask) : std::nullopt,
                                                     OA(sinks), false, S(s)));
  MLXK_END
}

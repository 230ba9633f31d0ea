// Quantization (affine / mx / nv fp modes), quantized and gathered matmuls, random numbers.
#include "common.h"

using namespace mlxk;

MLXK_API int mlxk_quantize(mlxk_array* outs, mlxk_array w, int group_size, int bits, int mode, mlxk_stream s) {
  MLXK_TRY std::vector<array> r = quantize(A(w), opt_int(group_size), opt_int(bits), quant_mode(mode), std::nullopt, S(s));
  outs[0] = outs[1] = outs[2] = nullptr;
  for (size_t i = 0; i < r.size() && i < 3; i++) outs[i] = new array(std::move(r[i]));
  return 0;
  MLXK_END
}

MLXK_API int mlxk_dequantize(mlxk_array* out, mlxk_array w, mlxk_array scales, mlxk_array biases, int group_size,
                             int bits, int mode, int dtype, mlxk_stream s) {
  MLXK_TRY std::optional<Dtype> dt = dtype < 0 ? std::nullopt : std::optional<Dtype>(to_dtype(dtype));
  return put(out, dequantize(A(w), A(scales), OA(biases), opt_int(group_size), opt_int(bits), quant_mode(mode),
                             std::nullopt, dt, S(s)));
  MLXK_END
}

MLXK_API int mlxk_quantized_matmul(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array scales, mlxk_array biases,
                                   bool transpose, int group_size, int bits, int mode, mlxk_stream s) {
  MLXK_TRY return put(out, quantized_matmul(A(x), A(w), A(scales), OA(biases), transpose, opt_int(group_size),
                                            opt_int(bits), quant_mode(mode), S(s)));
  MLXK_END
}

MLXK_API int mlxk_gather_qmm(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array scales, mlxk_array biases,
                             mlxk_array lhs_indices, mlxk_array rhs_indices, bool transpose, int group_size, int bits,
                             int mode, bool sorted_indices, mlxk_stream s) {
  MLXK_TRY return put(out, gather_qmm(A(x), A(w), A(scales), OA(biases), OA(lhs_indices), OA(rhs_indices), transpose,
                                      opt_int(group_size), opt_int(bits), quant_mode(mode), std::nullopt,
                                      sorted_indices, S(s)));
  MLXK_END
}

MLXK_API int mlxk_gather_mm(mlxk_array* out, mlxk_array a, mlxk_array b, mlxk_array lhs_indices, mlxk_array rhs_indices,
                            bool sorted_indices, mlxk_stream s) {
  MLXK_TRY return put(out, gather_mm(A(a), A(b), OA(lhs_indices), OA(rhs_indices), sorted_indices, S(s)));
  MLXK_END
}

MLXK_API int mlxk_random_seed(uint64_t seed) {
  MLXK_TRY random::seed(seed);
  return 0;
  MLXK_END
}

MLXK_API int mlxk_random_key(mlxk_array* out, uint64_t seed) {
  MLXK_TRY return put(out, random::key(seed));
  MLXK_END
}

MLXK_API int mlxk_random_split(mlxk_array* out, mlxk_array key, int num, mlxk_stream s) {
  MLXK_TRY return put(out, random::split(A(key), num, S(s)));
  MLXK_END
}

MLXK_API int mlxk_random_categorical(mlxk_array* out, mlxk_array logits, int axis, int num_samples, mlxk_array key,
                                     mlxk_stream s) {
  MLXK_TRY if (num_samples > 0) return put(out, random::categorical(A(logits), axis, num_samples, OA(key), S(s)));
  return put(out, random::categorical(A(logits), axis, OA(key), S(s)));
  MLXK_END
}

MLXK_API int mlxk_random_uniform(mlxk_array* out, mlxk_array low, mlxk_array high, const int* shape, int n, int dtype,
                                 mlxk_array key, mlxk_stream s) {
  MLXK_TRY return put(out, random::uniform(A(low), A(high), to_shape(shape, n), to_dtype(dtype), OA(key), S(s)));
  MLXK_END
}

MLXK_API int mlxk_random_normal(mlxk_array* out, const int* shape, int n, int dtype, float loc, float scale,
                                mlxk_array key, mlxk_stream s) {
  MLXK_TRY return put(out, random::normal(to_shape(shape, n), to_dtype(dtype), loc, scale, OA(key), S(s)));
  MLXK_END
}

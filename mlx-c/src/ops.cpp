// Elementwise ops, activations, reductions, sorting and shape manipulation.
#include <cmath>

#include "common.h"

using namespace mlxk;

#define UNARY(name, expr)                                                 \
  MLXK_API int mlxk_##name(mlxk_array* out, mlxk_array a, mlxk_stream s) { \
    MLXK_TRY const array& x = A(a);                                       \
    auto st = S(s);                                                       \
    return put(out, expr);                                                \
    MLXK_END                                                              \
  }
#define UNARY_MLX(name) UNARY(name, name(x, st))

UNARY_MLX(abs)
UNARY_MLX(negative)
UNARY_MLX(sign)
UNARY_MLX(exp)
UNARY_MLX(expm1)
UNARY_MLX(log)
UNARY_MLX(log1p)
UNARY_MLX(log2)
UNARY_MLX(sigmoid)
UNARY_MLX(tanh)
UNARY_MLX(erf)
UNARY_MLX(sqrt)
UNARY_MLX(rsqrt)
UNARY_MLX(square)
UNARY_MLX(reciprocal)
UNARY_MLX(sin)
UNARY_MLX(cos)
UNARY_MLX(floor)
UNARY_MLX(ceil)
UNARY_MLX(logical_not)
UNARY_MLX(isnan)
UNARY_MLX(isinf)
UNARY_MLX(stop_gradient)

namespace {
// Scalar constant in x's dtype so activations keep bf16/f16 inputs in their dtype (as mlx.nn does).
array k(double v, const array& x) {
  return array(v, issubdtype(x.dtype(), floating) ? x.dtype() : float32);
}
} // namespace

// Activations as defined by mlx.nn (silu, gelu, gelu_approx, gelu_fast_approx, relu, softplus).
UNARY(silu, multiply(x, sigmoid(x, st), st))
UNARY(gelu, multiply(multiply(x, k(0.5, x), st), add(k(1.0, x), erf(multiply(x, k(M_SQRT1_2, x), st), st), st), st))
UNARY(gelu_approx,
      multiply(multiply(x, k(0.5, x), st),
               add(k(1.0, x),
                   tanh(multiply(k(std::sqrt(2.0 / M_PI), x),
                                 add(x, multiply(k(0.044715, x), power(x, k(3.0, x), st), st), st), st),
                        st),
                   st),
               st))
UNARY(gelu_fast_approx, multiply(x, sigmoid(multiply(k(1.702, x), x, st), st), st))
UNARY(relu, maximum(x, k(0.0, x), st))
UNARY(softplus, logaddexp(x, k(0.0, x), st))

#define BINARY(name)                                                                    \
  MLXK_API int mlxk_##name(mlxk_array* out, mlxk_array a, mlxk_array b, mlxk_stream s) { \
    MLXK_TRY return put(out, name(A(a), A(b), S(s)));                                   \
    MLXK_END                                                                            \
  }

BINARY(add)
BINARY(subtract)
BINARY(multiply)
BINARY(divide)
BINARY(maximum)
BINARY(minimum)
BINARY(power)
BINARY(floor_divide)
BINARY(remainder)
BINARY(logaddexp)
BINARY(equal)
BINARY(not_equal)
BINARY(greater)
BINARY(greater_equal)
BINARY(less)
BINARY(less_equal)
BINARY(logical_and)
BINARY(logical_or)
BINARY(bitwise_and)
BINARY(bitwise_or)
BINARY(bitwise_xor)
BINARY(left_shift)
BINARY(right_shift)
BINARY(matmul)
BINARY(outer)

MLXK_API int mlxk_addmm(mlxk_array* out, mlxk_array c, mlxk_array a, mlxk_array b, float alpha, float beta,
                        mlxk_stream s) {
  MLXK_TRY return put(out, addmm(A(c), A(a), A(b), alpha, beta, S(s)));
  MLXK_END
}

MLXK_API int mlxk_where(mlxk_array* out, mlxk_array cond, mlxk_array x, mlxk_array y, mlxk_stream s) {
  MLXK_TRY return put(out, where(A(cond), A(x), A(y), S(s)));
  MLXK_END
}

MLXK_API int mlxk_clip(mlxk_array* out, mlxk_array a, mlxk_array lo, mlxk_array hi, mlxk_stream s) {
  MLXK_TRY return put(out, clip(A(a), OA(lo), OA(hi), S(s)));
  MLXK_END
}

#define REDUCE(name)                                                                              \
  MLXK_API int mlxk_##name(mlxk_array* out, mlxk_array a, const int* axes, int n, bool keepdims, \
                           mlxk_stream s) {                                                       \
    MLXK_TRY if (axes == nullptr) return put(out, name(A(a), keepdims, S(s)));                    \
    return put(out, name(A(a), to_ints(axes, n), keepdims, S(s)));                                \
    MLXK_END                                                                                      \
  }

REDUCE(sum)
REDUCE(mean)
REDUCE(max)
REDUCE(min)
REDUCE(prod)
REDUCE(logsumexp)
REDUCE(any)
REDUCE(all)

MLXK_API int mlxk_var(mlxk_array* out, mlxk_array a, const int* axes, int n, bool keepdims, int ddof, mlxk_stream s) {
  MLXK_TRY if (axes == nullptr) return put(out, var(A(a), keepdims, ddof, S(s)));
  return put(out, var(A(a), to_ints(axes, n), keepdims, ddof, S(s)));
  MLXK_END
}

MLXK_API int mlxk_argmax(mlxk_array* out, mlxk_array a, int axis, bool has_axis, bool keepdims, mlxk_stream s) {
  MLXK_TRY if (!has_axis) return put(out, argmax(A(a), keepdims, S(s)));
  return put(out, argmax(A(a), axis, keepdims, S(s)));
  MLXK_END
}

MLXK_API int mlxk_argmin(mlxk_array* out, mlxk_array a, int axis, bool has_axis, bool keepdims, mlxk_stream s) {
  MLXK_TRY if (!has_axis) return put(out, argmin(A(a), keepdims, S(s)));
  return put(out, argmin(A(a), axis, keepdims, S(s)));
  MLXK_END
}

MLXK_API int mlxk_softmax(mlxk_array* out, mlxk_array a, const int* axes, int n, bool precise, mlxk_stream s) {
  MLXK_TRY if (axes == nullptr) return put(out, softmax(A(a), precise, S(s)));
  return put(out, softmax(A(a), to_ints(axes, n), precise, S(s)));
  MLXK_END
}

#define SCAN(name)                                                                                          \
  MLXK_API int mlxk_##name(mlxk_array* out, mlxk_array a, int axis, bool reverse, bool inclusive,          \
                           mlxk_stream s) {                                                                 \
    MLXK_TRY return put(out, name(A(a), axis, reverse, inclusive, S(s)));                                   \
    MLXK_END                                                                                                \
  }
SCAN(cumsum)
SCAN(cumprod)
SCAN(cummax)

MLXK_API int mlxk_sort(mlxk_array* out, mlxk_array a, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, sort(A(a), axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_argsort(mlxk_array* out, mlxk_array a, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, argsort(A(a), axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_partition(mlxk_array* out, mlxk_array a, int kth, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, partition(A(a), kth, axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_argpartition(mlxk_array* out, mlxk_array a, int kth, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, argpartition(A(a), kth, axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_topk(mlxk_array* out, mlxk_array a, int k, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, topk(A(a), k, axis, S(s)));
  MLXK_END
}

MLXK_API int mlxk_reshape(mlxk_array* out, mlxk_array a, const int* shape, int n, mlxk_stream s) {
  MLXK_TRY return put(out, reshape(A(a), to_shape(shape, n), S(s)));
  MLXK_END
}
MLXK_API int mlxk_flatten(mlxk_array* out, mlxk_array a, int start_axis, int end_axis, mlxk_stream s) {
  MLXK_TRY return put(out, flatten(A(a), start_axis, end_axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_transpose(mlxk_array* out, mlxk_array a, const int* axes, int n, mlxk_stream s) {
  MLXK_TRY if (axes == nullptr) return put(out, transpose(A(a), S(s)));
  return put(out, transpose(A(a), to_ints(axes, n), S(s)));
  MLXK_END
}
MLXK_API int mlxk_swapaxes(mlxk_array* out, mlxk_array a, int axis1, int axis2, mlxk_stream s) {
  MLXK_TRY return put(out, swapaxes(A(a), axis1, axis2, S(s)));
  MLXK_END
}
MLXK_API int mlxk_expand_dims(mlxk_array* out, mlxk_array a, const int* axes, int n, mlxk_stream s) {
  MLXK_TRY return put(out, expand_dims(A(a), to_ints(axes, n), S(s)));
  MLXK_END
}
MLXK_API int mlxk_squeeze(mlxk_array* out, mlxk_array a, const int* axes, int n, mlxk_stream s) {
  MLXK_TRY if (axes == nullptr) return put(out, squeeze(A(a), S(s)));
  return put(out, squeeze(A(a), to_ints(axes, n), S(s)));
  MLXK_END
}
MLXK_API int mlxk_broadcast_to(mlxk_array* out, mlxk_array a, const int* shape, int n, mlxk_stream s) {
  MLXK_TRY return put(out, broadcast_to(A(a), to_shape(shape, n), S(s)));
  MLXK_END
}
MLXK_API int mlxk_repeat(mlxk_array* out, mlxk_array a, int repeats, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, repeat(A(a), repeats, axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_tile(mlxk_array* out, mlxk_array a, const int* reps, int n, mlxk_stream s) {
  MLXK_TRY return put(out, tile(A(a), to_ints(reps, n), S(s)));
  MLXK_END
}
MLXK_API int mlxk_pad(mlxk_array* out, mlxk_array a, const int* axes, const int* lo, const int* hi, int n,
                      mlxk_array value, mlxk_stream s) {
  MLXK_TRY const array& x = A(a);
  array v = value ? A(value) : array(0, x.dtype());
  return put(out, pad(x, to_ints(axes, n), to_shape(lo, n), to_shape(hi, n), v, "constant", S(s)));
  MLXK_END
}

MLXK_API int mlxk_concatenate(mlxk_array* out, const mlxk_array* arrs, int n, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, concatenate(to_arrays(arrs, n), axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_stack(mlxk_array* out, const mlxk_array* arrs, int n, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, stack(to_arrays(arrs, n), axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_split(mlxk_array* outs, mlxk_array a, int num, const int* indices, int n, int axis, mlxk_stream s) {
  MLXK_TRY std::vector<array> parts =
      indices == nullptr ? split(A(a), num, axis, S(s)) : split(A(a), to_shape(indices, n), axis, S(s));
  for (size_t i = 0; i < parts.size(); i++) outs[i] = new array(std::move(parts[i]));
  return 0;
  MLXK_END
}

MLXK_API int mlxk_slice(mlxk_array* out, mlxk_array a, const int* start, const int* stop, const int* strides, int n,
                        mlxk_stream s) {
  MLXK_TRY Shape st = strides ? to_shape(strides, n) : Shape(static_cast<size_t>(n), 1);
  return put(out, slice(A(a), to_shape(start, n), to_shape(stop, n), std::move(st), S(s)));
  MLXK_END
}
MLXK_API int mlxk_slice_update(mlxk_array* out, mlxk_array src, mlxk_array update, const int* start, const int* stop,
                               const int* strides, int n, mlxk_stream s) {
  MLXK_TRY Shape st = strides ? to_shape(strides, n) : Shape(static_cast<size_t>(n), 1);
  return put(out, slice_update(A(src), A(update), to_shape(start, n), to_shape(stop, n), std::move(st), S(s)));
  MLXK_END
}
MLXK_API int mlxk_slice_dynamic(mlxk_array* out, mlxk_array a, mlxk_array start, const int* axes, int naxes,
                                const int* slice_size, int nsize, mlxk_stream s) {
  MLXK_TRY return put(out, slice(A(a), A(start), to_ints(axes, naxes), to_shape(slice_size, nsize), S(s)));
  MLXK_END
}
MLXK_API int mlxk_slice_update_dynamic(mlxk_array* out, mlxk_array src, mlxk_array update, mlxk_array start,
                                       const int* axes, int naxes, mlxk_stream s) {
  MLXK_TRY return put(out, slice_update(A(src), A(update), A(start), to_ints(axes, naxes), S(s)));
  MLXK_END
}

MLXK_API int mlxk_take(mlxk_array* out, mlxk_array a, mlxk_array indices, int axis, bool has_axis, mlxk_stream s) {
  MLXK_TRY if (!has_axis) return put(out, take(A(a), A(indices), S(s)));
  return put(out, take(A(a), A(indices), axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_take_along_axis(mlxk_array* out, mlxk_array a, mlxk_array indices, int axis, mlxk_stream s) {
  MLXK_TRY return put(out, take_along_axis(A(a), A(indices), axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_put_along_axis(mlxk_array* out, mlxk_array a, mlxk_array indices, mlxk_array values, int axis,
                                 mlxk_stream s) {
  MLXK_TRY return put(out, put_along_axis(A(a), A(indices), A(values), axis, S(s)));
  MLXK_END
}
MLXK_API int mlxk_view(mlxk_array* out, mlxk_array a, int dtype, mlxk_stream s) {
  MLXK_TRY return put(out, view(A(a), to_dtype(dtype), S(s)));
  MLXK_END
}

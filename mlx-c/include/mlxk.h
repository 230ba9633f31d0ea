/*
 * mlxk — the project's C ABI over MLX (mlx/mlx.h, mlx/fast.h), loaded from TypeScript via bun:ffi.
 *
 * Conventions (kept uniform so the FFI layer stays mechanical):
 *  - Handles are opaque pointers: mlxk_array = heap mlx::core::array*, mlxk_stream = heap Stream*,
 *    mlxk_map = loaded tensor file. Every handle returned must be freed with its *_free function.
 *  - Functions that can fail return int: 0 = ok, non-zero = error; the message is then readable
 *    with mlxk_last_error() (thread-local). Results go to out-params (mlxk_array* out).
 *  - A NULL mlxk_stream means "the default stream of the default device" (on the calling thread).
 *  - Optional arrays are NULL when absent; optional ints are 0 when absent (group_size, bits).
 *  - Shapes/axes are (const int* p, int n); lists of arrays are (const mlxk_array* p, int n).
 *  - dtype ints follow mlx::core::Dtype::Val order (see MLXK_BOOL ... MLXK_COMPLEX64).
 *  - Sizes are returned as double so JS gets a Number (exact up to 2^53), never a BigInt.
 *  - No function calls exit(); every C++ exception is caught at this boundary.
 *  - MLX graphs and streams are thread-affine: call everything from one thread.
 */
#ifndef MLXK_H
#define MLXK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define MLXK_API extern "C" __attribute__((visibility("default")))
#else
#define MLXK_API __attribute__((visibility("default")))
#endif

typedef void* mlxk_array;
typedef void* mlxk_stream;
typedef void* mlxk_map;

enum {
  MLXK_BOOL = 0, MLXK_UINT8, MLXK_UINT16, MLXK_UINT32, MLXK_UINT64, MLXK_INT8, MLXK_INT16,
  MLXK_INT32, MLXK_INT64, MLXK_FLOAT16, MLXK_FLOAT32, MLXK_FLOAT64, MLXK_BFLOAT16, MLXK_COMPLEX64
};
enum { MLXK_CPU = 0, MLXK_GPU = 1 };
/* Quantization modes (strings in MLX). */
enum { MLXK_Q_AFFINE = 0, MLXK_Q_MXFP4 = 1, MLXK_Q_NVFP4 = 2, MLXK_Q_MXFP8 = 3 };
/* SDPA mask modes; with MLXK_MASK_ARRAY the mask array must be given. */
enum { MLXK_MASK_NONE = 0, MLXK_MASK_CAUSAL = 1, MLXK_MASK_ARRAY = 2 };
/* GGUF metadata value kinds (safetensors metadata is always MLXK_META_STRING). */
enum { MLXK_META_NONE = 0, MLXK_META_ARRAY = 1, MLXK_META_STRING = 2, MLXK_META_STRINGS = 3 };

/* ---- runtime.cpp: errors, version, eval, devices, streams, memory ---- */
MLXK_API const char* mlxk_version(void);     /* shim version (= pinned MLX version) */
MLXK_API const char* mlxk_mlx_version(void); /* version of the libmlx actually loaded */
MLXK_API const char* mlxk_last_error(void);
MLXK_API void mlxk_clear_error(void);
MLXK_API int mlxk_eval(const mlxk_array* arrs, int n);
MLXK_API int mlxk_async_eval(const mlxk_array* arrs, int n);
MLXK_API int mlxk_default_device_type(void);
MLXK_API int mlxk_set_default_device(int type);
MLXK_API int mlxk_device_available(int type);
MLXK_API int mlxk_device_count(int type);
/* MLX's device_info(device 0 of `type`): a numeric entry (-1 when absent) or a string entry (NULL when absent;
 * valid until the next call on this thread). Keys: device_name, architecture, memory_size / total_memory,
 * free_memory (CUDA, fresh per call), max_recommended_working_set_size (Metal). */
MLXK_API double mlxk_device_info_number(int type, const char* key);
MLXK_API const char* mlxk_device_info_string(int type, const char* key);
MLXK_API int mlxk_stream_default(mlxk_stream* out, int device_type);
MLXK_API int mlxk_stream_new(mlxk_stream* out, int device_type);
MLXK_API void mlxk_stream_free(mlxk_stream s);
MLXK_API int mlxk_stream_index(mlxk_stream s);
MLXK_API int mlxk_stream_device_type(mlxk_stream s);
MLXK_API int mlxk_set_default_stream(mlxk_stream s);
MLXK_API int mlxk_synchronize(mlxk_stream s);
MLXK_API double mlxk_get_active_memory(void);
MLXK_API double mlxk_get_peak_memory(void);
MLXK_API void mlxk_reset_peak_memory(void);
MLXK_API double mlxk_get_cache_memory(void);
MLXK_API double mlxk_set_cache_limit(double limit);   /* returns previous limit */
MLXK_API double mlxk_set_memory_limit(double limit);  /* returns previous limit */
MLXK_API double mlxk_get_memory_limit(void);
MLXK_API double mlxk_set_wired_limit(double limit);
MLXK_API void mlxk_clear_cache(void);

/* ---- array.cpp: creation, inspection, host transfer ---- */
MLXK_API int mlxk_array_from_data(mlxk_array* out, const void* data, const int* shape, int ndim, int dtype);
MLXK_API int mlxk_array_scalar(mlxk_array* out, double value, int dtype);
MLXK_API int mlxk_array_retain(mlxk_array* out, mlxk_array a); /* second handle on the same array */
MLXK_API void mlxk_array_free(mlxk_array a);
MLXK_API int mlxk_array_ndim(mlxk_array a);
MLXK_API int mlxk_array_shape(mlxk_array a, int* dst); /* writes ndim ints, returns ndim */
MLXK_API int mlxk_array_dtype(mlxk_array a);
MLXK_API double mlxk_array_size(mlxk_array a);
MLXK_API double mlxk_array_nbytes(mlxk_array a);
MLXK_API int mlxk_array_itemsize(mlxk_array a);
MLXK_API int mlxk_array_eval(mlxk_array a);
MLXK_API int mlxk_array_to_host(mlxk_array a, void* dst, double nbytes); /* evals, row-major copy */
MLXK_API int mlxk_array_item(mlxk_array a, double* out);                /* evals a 1-element array */
MLXK_API int mlxk_astype(mlxk_array* out, mlxk_array a, int dtype, mlxk_stream s);
MLXK_API int mlxk_contiguous(mlxk_array* out, mlxk_array a, bool allow_col_major, mlxk_stream s);
MLXK_API int mlxk_zeros(mlxk_array* out, const int* shape, int n, int dtype, mlxk_stream s);
MLXK_API int mlxk_ones(mlxk_array* out, const int* shape, int n, int dtype, mlxk_stream s);
MLXK_API int mlxk_full(mlxk_array* out, const int* shape, int n, double value, int dtype, mlxk_stream s);
MLXK_API int mlxk_arange(mlxk_array* out, double start, double stop, double step, int dtype, mlxk_stream s);
MLXK_API int mlxk_tri(mlxk_array* out, int n, int m, int k, int dtype, mlxk_stream s);
MLXK_API int mlxk_tril(mlxk_array* out, mlxk_array a, int k, mlxk_stream s);
MLXK_API int mlxk_triu(mlxk_array* out, mlxk_array a, int k, mlxk_stream s);

/* ---- ops.cpp: elementwise, reductions, shapes ---- */
#define MLXK_UNARY(name) MLXK_API int mlxk_##name(mlxk_array* out, mlxk_array a, mlxk_stream s);
#define MLXK_BINARY(name) MLXK_API int mlxk_##name(mlxk_array* out, mlxk_array a, mlxk_array b, mlxk_stream s);
MLXK_UNARY(abs) MLXK_UNARY(negative) MLXK_UNARY(sign) MLXK_UNARY(exp) MLXK_UNARY(expm1)
MLXK_UNARY(log) MLXK_UNARY(log1p) MLXK_UNARY(log2) MLXK_UNARY(sigmoid) MLXK_UNARY(tanh)
MLXK_UNARY(erf) MLXK_UNARY(sqrt) MLXK_UNARY(rsqrt) MLXK_UNARY(square) MLXK_UNARY(reciprocal)
MLXK_UNARY(sin) MLXK_UNARY(cos) MLXK_UNARY(floor) MLXK_UNARY(ceil) MLXK_UNARY(logical_not)
MLXK_UNARY(isnan) MLXK_UNARY(isinf) MLXK_UNARY(stop_gradient)
MLXK_UNARY(silu) MLXK_UNARY(gelu) MLXK_UNARY(gelu_approx) MLXK_UNARY(gelu_fast_approx) MLXK_UNARY(relu)
MLXK_UNARY(softplus)
MLXK_BINARY(add) MLXK_BINARY(subtract) MLXK_BINARY(multiply) MLXK_BINARY(divide)
MLXK_BINARY(maximum) MLXK_BINARY(minimum) MLXK_BINARY(power) MLXK_BINARY(floor_divide)
MLXK_BINARY(remainder) MLXK_BINARY(logaddexp) MLXK_BINARY(equal) MLXK_BINARY(not_equal)
MLXK_BINARY(greater) MLXK_BINARY(greater_equal) MLXK_BINARY(less) MLXK_BINARY(less_equal)
MLXK_BINARY(logical_and) MLXK_BINARY(logical_or) MLXK_BINARY(bitwise_and) MLXK_BINARY(bitwise_or)
MLXK_BINARY(bitwise_xor) MLXK_BINARY(left_shift) MLXK_BINARY(right_shift) MLXK_BINARY(matmul)
MLXK_BINARY(outer)
#undef MLXK_UNARY
#undef MLXK_BINARY
MLXK_API int mlxk_addmm(mlxk_array* out, mlxk_array c, mlxk_array a, mlxk_array b, float alpha, float beta, mlxk_stream s);
MLXK_API int mlxk_where(mlxk_array* out, mlxk_array cond, mlxk_array x, mlxk_array y, mlxk_stream s);
MLXK_API int mlxk_clip(mlxk_array* out, mlxk_array a, mlxk_array lo, mlxk_array hi, mlxk_stream s);
/* Reductions: axes == NULL reduces over all axes. */
#define MLXK_REDUCE(name) \
  MLXK_API int mlxk_##name(mlxk_array* out, mlxk_array a, const int* axes, int n, bool keepdims, mlxk_stream s);
MLXK_REDUCE(sum) MLXK_REDUCE(mean) MLXK_REDUCE(max) MLXK_REDUCE(min) MLXK_REDUCE(prod)
MLXK_REDUCE(logsumexp) MLXK_REDUCE(any) MLXK_REDUCE(all)
#undef MLXK_REDUCE
MLXK_API int mlxk_var(mlxk_array* out, mlxk_array a, const int* axes, int n, bool keepdims, int ddof, mlxk_stream s);
MLXK_API int mlxk_argmax(mlxk_array* out, mlxk_array a, int axis, bool has_axis, bool keepdims, mlxk_stream s);
MLXK_API int mlxk_argmin(mlxk_array* out, mlxk_array a, int axis, bool has_axis, bool keepdims, mlxk_stream s);
MLXK_API int mlxk_softmax(mlxk_array* out, mlxk_array a, const int* axes, int n, bool precise, mlxk_stream s);
MLXK_API int mlxk_cumsum(mlxk_array* out, mlxk_array a, int axis, bool reverse, bool inclusive, mlxk_stream s);
MLXK_API int mlxk_cumprod(mlxk_array* out, mlxk_array a, int axis, bool reverse, bool inclusive, mlxk_stream s);
MLXK_API int mlxk_cummax(mlxk_array* out, mlxk_array a, int axis, bool reverse, bool inclusive, mlxk_stream s);
MLXK_API int mlxk_sort(mlxk_array* out, mlxk_array a, int axis, mlxk_stream s);
MLXK_API int mlxk_argsort(mlxk_array* out, mlxk_array a, int axis, mlxk_stream s);
MLXK_API int mlxk_partition(mlxk_array* out, mlxk_array a, int kth, int axis, mlxk_stream s);
MLXK_API int mlxk_argpartition(mlxk_array* out, mlxk_array a, int kth, int axis, mlxk_stream s);
MLXK_API int mlxk_topk(mlxk_array* out, mlxk_array a, int k, int axis, mlxk_stream s);
MLXK_API int mlxk_reshape(mlxk_array* out, mlxk_array a, const int* shape, int n, mlxk_stream s);
MLXK_API int mlxk_flatten(mlxk_array* out, mlxk_array a, int start_axis, int end_axis, mlxk_stream s);
MLXK_API int mlxk_transpose(mlxk_array* out, mlxk_array a, const int* axes, int n, mlxk_stream s); /* axes NULL = reverse */
MLXK_API int mlxk_swapaxes(mlxk_array* out, mlxk_array a, int axis1, int axis2, mlxk_stream s);
MLXK_API int mlxk_expand_dims(mlxk_array* out, mlxk_array a, const int* axes, int n, mlxk_stream s);
MLXK_API int mlxk_squeeze(mlxk_array* out, mlxk_array a, const int* axes, int n, mlxk_stream s); /* axes NULL = all */
MLXK_API int mlxk_broadcast_to(mlxk_array* out, mlxk_array a, const int* shape, int n, mlxk_stream s);
MLXK_API int mlxk_repeat(mlxk_array* out, mlxk_array a, int repeats, int axis, mlxk_stream s);
MLXK_API int mlxk_tile(mlxk_array* out, mlxk_array a, const int* reps, int n, mlxk_stream s);
MLXK_API int mlxk_pad(mlxk_array* out, mlxk_array a, const int* axes, const int* lo, const int* hi, int n, mlxk_array value, mlxk_stream s);
MLXK_API int mlxk_concatenate(mlxk_array* out, const mlxk_array* arrs, int n, int axis, mlxk_stream s);
MLXK_API int mlxk_stack(mlxk_array* out, const mlxk_array* arrs, int n, int axis, mlxk_stream s);
/* split: with indices == NULL splits into `num` equal parts (outs has num slots), else at the n indices (n+1 outs). */
MLXK_API int mlxk_split(mlxk_array* outs, mlxk_array a, int num, const int* indices, int n, int axis, mlxk_stream s);
/* slice/slice_update: strides NULL = all 1. */
MLXK_API int mlxk_slice(mlxk_array* out, mlxk_array a, const int* start, const int* stop, const int* strides, int n, mlxk_stream s);
MLXK_API int mlxk_slice_update(mlxk_array* out, mlxk_array src, mlxk_array update, const int* start, const int* stop,
                               const int* strides, int n, mlxk_stream s);
MLXK_API int mlxk_slice_dynamic(mlxk_array* out, mlxk_array a, mlxk_array start, const int* axes, int naxes,
                                const int* slice_size, int nsize, mlxk_stream s);
MLXK_API int mlxk_slice_update_dynamic(mlxk_array* out, mlxk_array src, mlxk_array update, mlxk_array start,
                                       const int* axes, int naxes, mlxk_stream s);
/* take: has_axis false = over the flattened array. */
MLXK_API int mlxk_take(mlxk_array* out, mlxk_array a, mlxk_array indices, int axis, bool has_axis, mlxk_stream s);
MLXK_API int mlxk_take_along_axis(mlxk_array* out, mlxk_array a, mlxk_array indices, int axis, mlxk_stream s);
MLXK_API int mlxk_put_along_axis(mlxk_array* out, mlxk_array a, mlxk_array indices, mlxk_array values, int axis, mlxk_stream s);
MLXK_API int mlxk_view(mlxk_array* out, mlxk_array a, int dtype, mlxk_stream s);

/* ---- quant.cpp: quantization, MoE gathers, random ---- */
/* outs[0..2] = (weight, scales, biases); biases is NULL for the fp modes. group_size/bits 0 = mode default. */
MLXK_API int mlxk_quantize(mlxk_array* outs, mlxk_array w, int group_size, int bits, int mode, mlxk_stream s);
MLXK_API int mlxk_dequantize(mlxk_array* out, mlxk_array w, mlxk_array scales, mlxk_array biases, int group_size,
                             int bits, int mode, int dtype /* -1 = from scales */, mlxk_stream s);
MLXK_API int mlxk_quantized_matmul(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array scales, mlxk_array biases,
                                   bool transpose, int group_size, int bits, int mode, mlxk_stream s);
MLXK_API int mlxk_gather_qmm(mlxk_array* out, mlxk_array x, mlxk_array w, mlxk_array scales, mlxk_array biases,
                             mlxk_array lhs_indices, mlxk_array rhs_indices, bool transpose, int group_size, int bits,
                             int mode, bool sorted_indices, mlxk_stream s);
MLXK_API int mlxk_gather_mm(mlxk_array* out, mlxk_array a, mlxk_array b, mlxk_array lhs_indices, mlxk_array rhs_indices,
                            bool sorted_indices, mlxk_stream s);
MLXK_API int mlxk_random_seed(uint64_t seed);
MLXK_API int mlxk_random_key(mlxk_array* out, uint64_t seed);
MLXK_API int mlxk_random_split(mlxk_array* out, mlxk_array key, int num, mlxk_stream s);
/* num_samples 0 = one sample per distribution (the axis is removed). key may be NULL (global key sequence). */
MLXK_API int mlxk_random_categorical(mlxk_array* out, mlxk_array logits, int axis, int num_samples, mlxk_array key, mlxk_stream s);
MLXK_API int mlxk_random_uniform(mlxk_array* out, mlxk_array low, mlxk_array high, const int* shape, int n, int dtype,
                                 mlxk_array key, mlxk_stream s);
MLXK_API int mlxk_random_normal(mlxk_array* out, const int* shape, int n, int dtype, float loc, float scale,
                                mlxk_array key, mlxk_stream s);

/* ---- fast.cpp ---- */
MLXK_API int mlxk_fast_rms_norm(mlxk_array* out, mlxk_array x, mlxk_array weight, float eps, mlxk_stream s);
MLXK_API int mlxk_fast_layer_norm(mlxk_array* out, mlxk_array x, mlxk_array weight, mlxk_array bias, float eps, mlxk_stream s);
/* rope: has_base false requires freqs. offset_arr (if not NULL) overrides the int offset. */
MLXK_API int mlxk_fast_rope(mlxk_array* out, mlxk_array x, int dims, bool traditional, bool has_base, float base,
                            float scale, int offset, mlxk_array offset_arr, mlxk_array freqs, mlxk_stream s);
MLXK_API int mlxk_fast_sdpa(mlxk_array* out, mlxk_array q, mlxk_array k, mlxk_array v, float scale, int mask_mode,
                            mlxk_array mask, mlxk_array sinks, mlxk_stream s);

/* ---- io.cpp: safetensors / GGUF ---- */
MLXK_API int mlxk_load_safetensors(mlxk_map* out, const char* path, mlxk_stream s);
MLXK_API int mlxk_load_gguf(mlxk_map* out, const char* path, mlxk_stream s);
MLXK_API void mlxk_map_free(mlxk_map m);
MLXK_API int mlxk_map_size(mlxk_map m);
MLXK_API const char* mlxk_map_key(mlxk_map m, int i);     /* NULL if out of range */
MLXK_API int mlxk_map_array(mlxk_array* out, mlxk_map m, int i);
MLXK_API int mlxk_map_meta_size(mlxk_map m);
MLXK_API const char* mlxk_map_meta_key(mlxk_map m, int i);
MLXK_API int mlxk_map_meta_kind(mlxk_map m, int i);       /* MLXK_META_* */
MLXK_API const char* mlxk_map_meta_string(mlxk_map m, int i);
MLXK_API int mlxk_map_meta_array(mlxk_array* out, mlxk_map m, int i);
MLXK_API int mlxk_map_meta_strings_size(mlxk_map m, int i);
MLXK_API const char* mlxk_map_meta_strings_at(mlxk_map m, int i, int j);
/* keys / meta are NUL-separated strings: n keys; n_meta (key, value) pairs = 2*n_meta strings. */
MLXK_API int mlxk_save_safetensors(const char* path, const mlxk_array* arrs, const char* keys, int n,
                                   const char* meta, int n_meta);

/* ---- distributed.cpp: mlx::core::distributed (mlxk_group = heap Group*) ---- */
typedef void* mlxk_group;
/* 1 when libmlx has `backend` ("ring", "mpi", "nccl", "jaccl"; NULL/"" = any) usable here, else 0. */
MLXK_API int mlxk_distributed_is_available(const char* backend);
/* strict: fail (error returned) when the backend cannot start; else a size-1 group. */
MLXK_API int mlxk_distributed_init(mlxk_group* out, const char* backend, bool strict);
MLXK_API void mlxk_group_free(mlxk_group g);
MLXK_API int mlxk_group_rank(mlxk_group g);
MLXK_API int mlxk_group_size(mlxk_group g);
MLXK_API int mlxk_all_sum(mlxk_array* out, mlxk_array x, mlxk_group g, mlxk_stream s);
MLXK_API int mlxk_all_gather(mlxk_array* out, mlxk_array x, mlxk_group g, mlxk_stream s);
MLXK_API int mlxk_all_max(mlxk_array* out, mlxk_array x, mlxk_group g, mlxk_stream s);
MLXK_API int mlxk_send(mlxk_array* out, mlxk_array x, int dst, mlxk_group g, mlxk_stream s);
MLXK_API int mlxk_recv(mlxk_array* out, const int* shape, int ndim, int dtype, int src, mlxk_group g, mlxk_stream s);
MLXK_API int mlxk_recv_like(mlxk_array* out, mlxk_array x, int src, mlxk_group g, mlxk_stream s);

#endif

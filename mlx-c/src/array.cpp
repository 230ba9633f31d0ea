// Array creation from host memory, inspection, host transfer and constructors.
#include <cstring>

#include "common.h"

using namespace mlxk;

namespace {
template <typename T>
array from_typed(const void* data, Shape shape, Dtype dtype) {
  return array(static_cast<const T*>(data), std::move(shape), dtype);
}

// Copies host memory into an MLX-owned buffer (the JS buffer may move or die right after the call).
array from_host(const void* data, Shape shape, Dtype dtype) {
  size_t size = 1;
  for (auto d : shape) {
    if (d < 0) throw std::invalid_argument("[mlxk] negative dimension");
    size *= static_cast<size_t>(d);
  }
  if (size > 0 && data == nullptr) throw std::invalid_argument("[mlxk] null data pointer");
  static const float dummy[1] = {0};
  if (size == 0) data = dummy;
  switch (dtype.val()) {
    case Dtype::Val::bool_: return from_typed<bool>(data, std::move(shape), dtype);
    case Dtype::Val::uint8: return from_typed<uint8_t>(data, std::move(shape), dtype);
    case Dtype::Val::uint16: return from_typed<uint16_t>(data, std::move(shape), dtype);
    case Dtype::Val::uint32: return from_typed<uint32_t>(data, std::move(shape), dtype);
    case Dtype::Val::uint64: return from_typed<uint64_t>(data, std::move(shape), dtype);
    case Dtype::Val::int8: return from_typed<int8_t>(data, std::move(shape), dtype);
    case Dtype::Val::int16: return from_typed<int16_t>(data, std::move(shape), dtype);
    case Dtype::Val::int32: return from_typed<int32_t>(data, std::move(shape), dtype);
    case Dtype::Val::int64: return from_typed<int64_t>(data, std::move(shape), dtype);
    case Dtype::Val::float16: return from_typed<float16_t>(data, std::move(shape), dtype);
    case Dtype::Val::float32: return from_typed<float>(data, std::move(shape), dtype);
    case Dtype::Val::float64: return from_typed<double>(data, std::move(shape), dtype);
    case Dtype::Val::bfloat16: return from_typed<bfloat16_t>(data, std::move(shape), dtype);
    case Dtype::Val::complex64: return from_typed<complex64_t>(data, std::move(shape), dtype);
  }
  throw std::invalid_argument("[mlxk] unsupported dtype");
}

template <typename T>
double item_as_double(array& a) {
  return static_cast<double>(static_cast<float>(a.item<T>()));
}
} // namespace

MLXK_API int mlxk_array_from_data(mlxk_array* out, const void* data, const int* shape, int ndim, int dtype) {
  MLXK_TRY return put(out, from_host(data, to_shape(shape, ndim), to_dtype(dtype)));
  MLXK_END
}

MLXK_API int mlxk_array_scalar(mlxk_array* out, double value, int dtype) {
  MLXK_TRY Dtype dt = to_dtype(dtype);
  // Integers go through int64 so large ids (vocab, seeds) are not rounded through float.
  if (issubdtype(dt, integer) || dt == bool_) return put(out, array(static_cast<int64_t>(value), dt));
  return put(out, array(value, dt));
  MLXK_END
}

MLXK_API int mlxk_array_retain(mlxk_array* out, mlxk_array a) {
  MLXK_TRY return put(out, A(a));
  MLXK_END
}

MLXK_API void mlxk_array_free(mlxk_array a) {
  delete static_cast<array*>(a);
}

MLXK_API int mlxk_array_ndim(mlxk_array a) {
  return a ? static_cast<int>(static_cast<array*>(a)->ndim()) : -1;
}

MLXK_API int mlxk_array_shape(mlxk_array a, int* dst) {
  if (!a) return -1;
  const auto& sh = static_cast<array*>(a)->shape();
  for (size_t i = 0; i < sh.size(); i++) dst[i] = sh[i];
  return static_cast<int>(sh.size());
}

MLXK_API int mlxk_array_dtype(mlxk_array a) {
  return a ? from_dtype(static_cast<array*>(a)->dtype()) : -1;
}

MLXK_API double mlxk_array_size(mlxk_array a) {
  return a ? static_cast<double>(static_cast<array*>(a)->size()) : -1;
}

MLXK_API double mlxk_array_nbytes(mlxk_array a) {
  return a ? static_cast<double>(static_cast<array*>(a)->nbytes()) : -1;
}

MLXK_API int mlxk_array_itemsize(mlxk_array a) {
  return a ? static_cast<int>(static_cast<array*>(a)->itemsize()) : -1;
}

MLXK_API int mlxk_array_eval(mlxk_array a) {
  MLXK_TRY A(a).eval();
  return 0;
  MLXK_END
}

MLXK_API int mlxk_array_to_host(mlxk_array a, void* dst, double nbytes) {
  MLXK_TRY array x = A(a);
  if (static_cast<double>(x.nbytes()) != nbytes)
    throw std::invalid_argument("[mlxk] to_host: destination has " + std::to_string(static_cast<size_t>(nbytes)) +
                                " bytes, array has " + std::to_string(x.nbytes()));
  x.eval();
  if (!x.flags().row_contiguous) {
    x = contiguous(x);
    x.eval();
  }
  if (x.nbytes() > 0) std::memcpy(dst, x.data<char>(), x.nbytes());
  return 0;
  MLXK_END
}

MLXK_API int mlxk_array_item(mlxk_array a, double* out) {
  MLXK_TRY array& x = A(a);
  if (x.size() != 1) throw std::invalid_argument("[mlxk] item: array has " + std::to_string(x.size()) + " elements");
  x.eval();
  switch (x.dtype().val()) {
    case Dtype::Val::bool_: *out = x.item<bool>() ? 1 : 0; break;
    case Dtype::Val::uint8: *out = x.item<uint8_t>(); break;
    case Dtype::Val::uint16: *out = x.item<uint16_t>(); break;
    case Dtype::Val::uint32: *out = x.item<uint32_t>(); break;
    case Dtype::Val::uint64: *out = static_cast<double>(x.item<uint64_t>()); break;
    case Dtype::Val::int8: *out = x.item<int8_t>(); break;
    case Dtype::Val::int16: *out = x.item<int16_t>(); break;
    case Dtype::Val::int32: *out = x.item<int32_t>(); break;
    case Dtype::Val::int64: *out = static_cast<double>(x.item<int64_t>()); break;
    case Dtype::Val::float16: *out = item_as_double<float16_t>(x); break;
    case Dtype::Val::float32: *out = x.item<float>(); break;
    case Dtype::Val::float64: *out = x.item<double>(); break;
    case Dtype::Val::bfloat16: *out = item_as_double<bfloat16_t>(x); break;
    default: throw std::invalid_argument("[mlxk] item: unsupported dtype");
  }
  return 0;
  MLXK_END
}

MLXK_API int mlxk_astype(mlxk_array* out, mlxk_array a, int dtype, mlxk_stream s) {
  MLXK_TRY return put(out, astype(A(a), to_dtype(dtype), S(s)));
  MLXK_END
}

MLXK_API int mlxk_contiguous(mlxk_array* out, mlxk_array a, bool allow_col_major, mlxk_stream s) {
  MLXK_TRY return put(out, contiguous(A(a), allow_col_major, S(s)));
  MLXK_END
}

MLXK_API int mlxk_zeros(mlxk_array* out, const int* shape, int n, int dtype, mlxk_stream s) {
  MLXK_TRY return put(out, zeros(to_shape(shape, n), to_dtype(dtype), S(s)));
  MLXK_END
}

MLXK_API int mlxk_ones(mlxk_array* out, const int* shape, int n, int dtype, mlxk_stream s) {
  MLXK_TRY return put(out, ones(to_shape(shape, n), to_dtype(dtype), S(s)));
  MLXK_END
}

MLXK_API int mlxk_full(mlxk_array* out, const int* shape, int n, double value, int dtype, mlxk_stream s) {
  MLXK_TRY Dtype dt = to_dtype(dtype);
  return put(out, full(to_shape(shape, n), array(value, dt), dt, S(s)));
  MLXK_END
}

MLXK_API int mlxk_arange(mlxk_array* out, double start, double stop, double step, int dtype, mlxk_stream s) {
  MLXK_TRY return put(out, arange(start, stop, step, to_dtype(dtype), S(s)));
  MLXK_END
}

MLXK_API int mlxk_tri(mlxk_array* out, int n, int m, int k, int dtype, mlxk_stream s) {
  MLXK_TRY return put(out, tri(n, m, k, to_dtype(dtype), S(s)));
  MLXK_END
}

MLXK_API int mlxk_tril(mlxk_array* out, mlxk_array a, int k, mlxk_stream s) {
  MLXK_TRY return put(out, tril(A(a), k, S(s)));
  MLXK_END
}

MLXK_API int mlxk_triu(mlxk_array* out, mlxk_array a, int k, mlxk_stream s) {
  MLXK_TRY return put(out, triu(A(a), k, S(s)));
  MLXK_END
}

// Internal helpers shared by the shim sources: handle conversion, error capture, dtype/shape mapping.
#pragma once

#include <climits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/mlx.h"
#include "mlxk.h"

namespace mlxk {
using namespace mlx::core;

// Stores the message in the thread-local error slot and returns the non-zero error code.
int fail(const char* msg);

inline array& A(mlxk_array h) {
  if (h == nullptr) throw std::invalid_argument("[mlxk] null array handle");
  return *static_cast<array*>(h);
}
inline std::optional<array> OA(mlxk_array h) {
  return h ? std::optional<array>(*static_cast<array*>(h)) : std::nullopt;
}
inline StreamOrDevice S(mlxk_stream s) {
  return s ? StreamOrDevice(*static_cast<Stream*>(s)) : StreamOrDevice{};
}
inline int put(mlxk_array* out, array a) {
  *out = new array(std::move(a));
  return 0;
}
inline std::optional<int> opt_int(int v) {
  return v > 0 ? std::optional<int>(v) : std::nullopt;
}

Dtype to_dtype(int d);
int from_dtype(Dtype d);
const std::string& quant_mode(int mode);

inline Shape to_shape(const int* p, int n) {
  if (n > 0 && p == nullptr) throw std::invalid_argument("[mlxk] null shape pointer");
  return Shape(p, p + (n > 0 ? n : 0));
}
inline std::vector<int> to_ints(const int* p, int n) {
  if (n > 0 && p == nullptr) throw std::invalid_argument("[mlxk] null int list pointer");
  return std::vector<int>(p, p + (n > 0 ? n : 0));
}
inline std::vector<array> to_arrays(const mlxk_array* p, int n) {
  std::vector<array> v;
  v.reserve(n > 0 ? n : 0);
  for (int i = 0; i < n; i++) v.push_back(A(p[i]));
  return v;
}
} // namespace mlxk

// Every exported function body is wrapped in these so no C++ exception crosses the C ABI.
#define MLXK_TRY try {
#define MLXK_END                                                      \
  }                                                                   \
  catch (const std::exception& e) {                                   \
    return ::mlxk::fail(e.what());                                    \
  }                                                                   \
  catch (...) {                                                       \
    return ::mlxk::fail("[mlxk] unknown C++ exception");              \
  }

// Errors, version, evaluation, devices, streams and memory.
#include "common.h"

#include <algorithm>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#ifndef MLXK_VERSION
#define MLXK_VERSION "unknown"
#endif

namespace mlxk {
namespace {
thread_local std::string last_error;
}

int fail(const char* msg) {
  last_error = msg ? msg : "";
  return 1;
}

Dtype to_dtype(int d) {
  static const Dtype table[] = {bool_, uint8, uint16, uint32, uint64, int8, int16,
                                int32, int64, float16, float32, float64, bfloat16, complex64};
  if (d < 0 || d >= static_cast<int>(sizeof(table) / sizeof(table[0])))
    throw std::invalid_argument("[mlxk] invalid dtype code " + std::to_string(d));
  return table[d];
}

int from_dtype(Dtype d) {
  return static_cast<int>(d.val());
}

const std::string& quant_mode(int mode) {
  static const std::string modes[] = {"affine", "mxfp4", "nvfp4", "mxfp8"};
  if (mode < 0 || mode > 3) throw std::invalid_argument("[mlxk] invalid quantization mode " + std::to_string(mode));
  return modes[mode];
}

static Device::DeviceType device_type(int t) {
  if (t == MLXK_CPU) return Device::cpu;
  if (t == MLXK_GPU) return Device::gpu;
  throw std::invalid_argument("[mlxk] invalid device type " + std::to_string(t));
}
} // namespace mlxk

using namespace mlxk;

MLXK_API const char* mlxk_version(void) {
  return MLXK_VERSION;
}
MLXK_API const char* mlxk_mlx_version(void) {
  return mlx::core::version();
}
MLXK_API const char* mlxk_last_error(void) {
  return last_error.c_str();
}
MLXK_API void mlxk_clear_error(void) {
  last_error.clear();
}

MLXK_API int mlxk_eval(const mlxk_array* arrs, int n) {
  MLXK_TRY eval(to_arrays(arrs, n));
  return 0;
  MLXK_END
}
MLXK_API int mlxk_async_eval(const mlxk_array* arrs, int n) {
  MLXK_TRY async_eval(to_arrays(arrs, n));
  return 0;
  MLXK_END
}

MLXK_API int mlxk_default_device_type(void) {
  try {
    return default_device().type == Device::gpu ? MLXK_GPU : MLXK_CPU;
  } catch (...) {
    return MLXK_CPU;
  }
}
MLXK_API int mlxk_set_default_device(int type) {
  MLXK_TRY set_default_device(Device(device_type(type)));
  return 0;
  MLXK_END
}
MLXK_API int mlxk_device_available(int type) {
  try {
    return is_available(Device(device_type(type))) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

MLXK_API int mlxk_device_count(int type) {
  try {
    return device_count(device_type(type));
  } catch (...) {
    return 0;
  }
}

namespace {
// MLX's device_info (CUDA reads free memory fresh from NVML on each call); -1 / NULL when the key is absent.
const std::variant<std::string, size_t>* info_entry(int type, const char* key) {
  const auto& info = device_info(Device(mlxk::device_type(type), 0));
  auto it = info.find(key ? key : "");
  return it == info.end() ? nullptr : &it->second;
}
thread_local std::string info_string;
} // namespace

MLXK_API double mlxk_device_info_number(int type, const char* key) {
  try {
    const auto* e = info_entry(type, key);
    if (!e || !std::holds_alternative<size_t>(*e)) return -1;
    return static_cast<double>(std::get<size_t>(*e));
  } catch (...) {
    return -1;
  }
}
MLXK_API const char* mlxk_device_info_string(int type, const char* key) {
  try {
    const auto* e = info_entry(type, key);
    if (!e || !std::holds_alternative<std::string>(*e)) return nullptr;
    info_string = std::get<std::string>(*e);
    return info_string.c_str();
  } catch (...) {
    return nullptr;
  }
}

MLXK_API int mlxk_stream_default(mlxk_stream* out, int device_type) {
  MLXK_TRY * out = new Stream(default_stream(Device(mlxk::device_type(device_type))));
  return 0;
  MLXK_END
}
MLXK_API int mlxk_stream_new(mlxk_stream* out, int device_type) {
  MLXK_TRY * out = new Stream(new_stream(Device(mlxk::device_type(device_type))));
  return 0;
  MLXK_END
}
MLXK_API void mlxk_stream_free(mlxk_stream s) {
  delete static_cast<Stream*>(s);
}
MLXK_API int mlxk_stream_index(mlxk_stream s) {
  return s ? static_cast<Stream*>(s)->index : -1;
}
MLXK_API int mlxk_stream_device_type(mlxk_stream s) {
  return s && static_cast<Stream*>(s)->device.type == Device::gpu ? MLXK_GPU : MLXK_CPU;
}
MLXK_API int mlxk_set_default_stream(mlxk_stream s) {
  MLXK_TRY if (!s) throw std::invalid_argument("[mlxk] null stream");
  set_default_stream(*static_cast<Stream*>(s));
  return 0;
  MLXK_END
}
MLXK_API int mlxk_synchronize(mlxk_stream s) {
  MLXK_TRY if (s) synchronize(*static_cast<Stream*>(s));
  else synchronize();
  return 0;
  MLXK_END
}

// Host memory MLX frees is kept for reuse instead of handed back to the kernel, which would zero every page
// again on the next touch (prefill buffers of a few MB, freed and remade per layer: clear_page was 1.6–3.8% of a
// prefill's CPU). trim: free bytes kept at the top of a malloc arena; mmap: allocations from this size get
// their own mapping (glibc caps it at 32 MiB). Returns 1 if applied, 0 where the C library has no mallopt.
MLXK_API int mlxk_host_malloc_keep(double trim_bytes, double mmap_bytes) {
#if defined(__GLIBC__)
  const int a = mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min(trim_bytes, 2147483647.0)));
  const int b = mallopt(M_MMAP_THRESHOLD, static_cast<int>(std::min(mmap_bytes, 2147483647.0)));
  return a == 1 && b == 1 ? 1 : 0;
#else
  (void)trim_bytes;
  (void)mmap_bytes;
  return 0;
#endif
}
MLXK_API double mlxk_get_active_memory(void) {
  return static_cast<double>(get_active_memory());
}
MLXK_API double mlxk_get_peak_memory(void) {
  return static_cast<double>(get_peak_memory());
}
MLXK_API void mlxk_reset_peak_memory(void) {
  reset_peak_memory();
}
MLXK_API double mlxk_get_cache_memory(void) {
  return static_cast<double>(get_cache_memory());
}
MLXK_API double mlxk_set_cache_limit(double limit) {
  return static_cast<double>(set_cache_limit(static_cast<size_t>(limit)));
}
MLXK_API double mlxk_set_memory_limit(double limit) {
  return static_cast<double>(set_memory_limit(static_cast<size_t>(limit)));
}
MLXK_API double mlxk_get_memory_limit(void) {
  return static_cast<double>(get_memory_limit());
}
MLXK_API double mlxk_set_wired_limit(double limit) {
  try {
    return static_cast<double>(set_wired_limit(static_cast<size_t>(limit)));
  } catch (...) {
    return -1;
  }
}
MLXK_API void mlxk_clear_cache(void) {
  clear_cache();
}

// Kernel inputs as row-major buffers: strided views (slices, transposes) get a contiguous copy made inside
// the kernel's own task, so our primitives never add graph nodes for layout.
#pragma once

#include <mlx/backend/cpu/encoder.h>
#include <mlx/mlx.h>

#include <cstring>
#include <vector>

namespace mlxk {
using namespace mlx::core;

// A strided input (a slice or transpose feeding the kernel) to copy row-major before the kernel runs.
struct StridedCopy {
  const uint8_t* src;
  uint8_t* dst;
  std::vector<int> shape;
  std::vector<int64_t> strides;
  size_t itemsize;

  void run() const {
    const int nd = static_cast<int>(shape.size());
    size_t n = 1;
    for (int d : shape) n *= static_cast<size_t>(d);
    std::vector<int> idx(nd, 0);
    for (size_t i = 0; i < n; i++) {
      int64_t off = 0;
      for (int d = 0; d < nd; d++) off += static_cast<int64_t>(idx[d]) * strides[d];
      std::memcpy(dst + i * itemsize, src + off * static_cast<int64_t>(itemsize), itemsize);
      for (int d = nd - 1; d >= 0 && ++idx[d] == shape[d]; d--) idx[d] = 0;
    }
  }
};

// The input itself when row-contiguous; else a fresh buffer (kept alive by the encoder) plus the copy to do.
// Only buffers are set up here: input contents are produced by earlier dispatched tasks, so copies run in ours.
inline array row_major(const array& a, cpu::CommandEncoder& enc, std::vector<StridedCopy>& copies) {
  if (a.flags().row_contiguous) return a;
  array c(a.shape(), a.dtype(), nullptr, {});
  c.set_data(allocator::malloc(c.nbytes()));
  enc.add_temporary(c);
  copies.push_back({static_cast<const uint8_t*>(a.data<void>()), static_cast<uint8_t*>(c.data<void>()),
                    std::vector<int>(a.shape().begin(), a.shape().end()),
                    std::vector<int64_t>(a.strides().begin(), a.strides().end()), a.itemsize()});
  return c;
}

// The start every primitive's eval_cpu shares: allocate the output and register inputs/output with the
// stream's encoder (so MLX keeps them alive until the dispatched task ran). Returns that encoder.
inline cpu::CommandEncoder& begin_eval(const Stream& stream, const std::vector<array>& inputs, array& out) {
  out.set_data(allocator::malloc(out.nbytes()));
  auto& enc = cpu::get_command_encoder(stream);
  for (const auto& in : inputs) enc.set_input_array(in);
  enc.set_output_array(out);
  return enc;
}

} // namespace mlxk

// The buffers of a decode batch after rows join or leave (src/models/batch_cache.ts, BatchKVCache.compose) in one
// primitive: out [B, H, cap, D], row b's live keys copied from its source to positions [idx - len, idx), the left
// padding before them zeroed, the capacity after idx left as allocated. Built from MLX ops this was a zero fill of
// the whole capacity plus strided element copies: ~25–55 ms per join or leave at 8 rows of SmolLM2 (a step's worth),
// where only the live spans need copying. Nothing reads past idx before a decode step wrote it (every reader takes
// [start, idx) or a slice ending at the write position), so the tail needs no fill.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

#include <cstring>

#include "../common.h"
#include "inputs.h"
#include "kernels.h"
#include "qmm.h"
#include "rows.h"

namespace mlxk {
namespace {

// Row b of the output: `len` positions of source `src`, batch row `row`, from position `first`.
struct ComposeRow {
  int src, row, first, len;
};

class KvCompose : public UnaryPrimitive {
 public:
  KvCompose(Stream s, std::vector<ComposeRow> plan, int idx) : UnaryPrimitive(s), plan_(std::move(plan)), idx_(idx) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    out.set_data(allocator::malloc(out.nbytes()));
    auto& enc = cpu::get_command_encoder(stream());
    for (const auto& in : inputs) enc.set_input_array(in);
    enc.set_output_array(out);
    struct Src {
      const uint8_t* p;
      int64_t st[4];
    };
    std::vector<Src> srcs;
    for (const auto& in : inputs) {
      Src s{static_cast<const uint8_t*>(in.data<void>()), {}};
      for (int d = 0; d < 4; d++) s.st[d] = in.strides()[d];
      srcs.push_back(s);
    }
    const int H = out.shape(1), cap = out.shape(2), D = out.shape(3);
    const size_t item = out.itemsize();
    enc.dispatch([plan = plan_, idx = idx_, srcs = std::move(srcs), y = static_cast<uint8_t*>(out.data<void>()), H, cap, D,
                  item]() {
      const size_t pos_bytes = static_cast<size_t>(D) * item;
      rows::for_rows(plan.size() * H, static_cast<double>(plan.size()) * H * idx * D, [&](size_t r) {
        const ComposeRow& c = plan[r / H];
        const int h = static_cast<int>(r % H);
        uint8_t* dst = y + (r * cap) * pos_bytes;
        const int pad = idx - c.len;
        std::memset(dst, 0, static_cast<size_t>(pad) * pos_bytes);
        const Src& s = srcs[c.src];
        const uint8_t* from = s.p + (c.row * s.st[0] + h * s.st[1] + static_cast<int64_t>(c.first) * s.st[2]) * item;
        uint8_t* to = dst + static_cast<size_t>(pad) * pos_bytes;
        if (s.st[3] == 1 && s.st[2] == D) {
          std::memcpy(to, from, static_cast<size_t>(c.len) * pos_bytes);
        } else if (s.st[3] == 1) {
          for (int l = 0; l < c.len; l++) std::memcpy(to + l * pos_bytes, from + l * s.st[2] * item, pos_bytes);
        } else {
          for (int l = 0; l < c.len; l++)
            for (int d = 0; d < D; d++) std::memcpy(to + (l * D + d) * item, from + (l * s.st[2] + d * s.st[3]) * item, item);
        }
      });
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return "MlxkKvCompose"; }

 private:
  std::vector<ComposeRow> plan_;
  int idx_;
};

} // namespace
} // namespace mlxk

using namespace mlxk;

// out [B, H, cap, D] (B = n_rows): row b holds srcs[plan[4b]] row plan[4b+1], positions [plan[4b+2], +plan[4b+3])
// at [idx - len, idx); zeros before, [idx, cap) uninitialised. Sources: 4-d, one dtype, the same H and D.
// Refused (an error, the caller composes with MLX ops) off the CPU kernels.
MLXK_API int mlxk_kernel_kv_compose(mlxk_array* out, const mlxk_array* srcs, int n_srcs, const int32_t* plan, int n_rows,
                                    int idx, int cap, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  if (kern::kernels_level() <= 0 || st.device != Device::cpu) throw std::invalid_argument("kv_compose: CPU kernels only");
  if (n_srcs < 1 || n_rows < 1 || idx < 0 || cap < idx) throw std::invalid_argument("kv_compose: bad plan");
  std::vector<array> in;
  for (int i = 0; i < n_srcs; i++) in.push_back(A(srcs[i]));
  const array& a0 = in[0];
  for (const auto& a : in) {
    if (a.ndim() != 4 || a.dtype() != a0.dtype() || a.shape(1) != a0.shape(1) || a.shape(3) != a0.shape(3))
      throw std::invalid_argument("kv_compose: sources must be [B, H, L, D] of one dtype, H and D");
  }
  std::vector<ComposeRow> p;
  for (int b = 0; b < n_rows; b++) {
    ComposeRow c{plan[4 * b], plan[4 * b + 1], plan[4 * b + 2], plan[4 * b + 3]};
    if (c.src < 0 || c.src >= n_srcs || c.row < 0 || c.row >= in[c.src].shape(0) || c.first < 0 || c.len < 0 ||
        c.len > idx || c.first + c.len > in[c.src].shape(2))
      throw std::invalid_argument("kv_compose: a row outside its source");
    p.push_back(c);
  }
  Shape shape{n_rows, a0.shape(1), cap, a0.shape(3)};
  return put(out, array(std::move(shape), a0.dtype(), std::make_shared<KvCompose>(st, std::move(p), idx), std::move(in)));
  MLXK_END
}

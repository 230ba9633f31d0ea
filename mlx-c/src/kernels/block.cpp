// The dense decoder block (llama.py's TransformerBlock with pre-norms) as two MLX primitives, for the CPU:
//   qkv:      RMSNorm → q/k/v quantized matmuls (+ biases) → rope → q, k, v in the heads layout;
//   attn-mlp: attention over the KV cache buffers → o_proj → residual → RMSNorm → gate/up → SwiGLU → down
//             → residual.
// Between them MLX's own slice_update writes k, v into the cache (in place: MLX donates the buffer, which a
// multi-output primitive of ours could not get while the previous step is in flight). Unfused, a block is
// ~27 graph nodes, each costing MLX a few µs of scheduling and TypeScript an FFI call; at decode sizes (a
// 135M model: ~15 ms/token) that is a third of a step; fused it is 4. Each stage calls the very code the
// single-op kernels run (qmm.cpp, rows.h) in the same order on the same values, so the result is
// bit-identical to the unfused graph. Anything this does not cover is declined and the caller builds the graph.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>

#include "../common.h"
#include "inputs.h"
#include "kernels.h"
#include "kquant.h"
#include "qmm.h"
#include "rows.h"

namespace mlxk {
namespace {
using kern::QFormat;

// One quantized Linear: packed weights, f32 scales/biases, optional f32 output bias; or (kq) GGUF K-quant
// blocks (uint8 [N, K/256 · block bytes], no scales/biases), run by kquant.cpp as KQuantMatmul runs them.
struct QLin {
  QFormat fmt;
  int gs = 0;
  bool bias = false;
  int N = 0, K = 0;
  bool kq = false;
  kern::KType kt = kern::KType::Q4K;
};

// Pointers of one QLin's inputs, resolved at eval.
struct QLinData {
  const uint8_t* w;
  const float* scales;
  const float* biases;
  const float* bias;
};

// A Linear's bias, added as the graph adds it.
void add_bias(const QLin& l, const QLinData& d, int M, float* y) {
  if (d.bias)
    for (int r = 0; r < M; r++)
      for (int n = 0; n < l.N; n++) y[static_cast<size_t>(r) * l.N + n] = y[static_cast<size_t>(r) * l.N + n] + d.bias[n];
}

// The K-quant Linear: KQuantMatmul's kernel call (kquant_ops.cpp), then the graph's bias add.
void kq_linear(const QLin& l, const QLinData& d, const float* x, int M, bool independent, float* y) {
  kern::KqProblem p{};
  p.x = x;
  p.w = d.w;
  p.out = y;
  p.M = M;
  p.K = l.K;
  p.N = l.N;
  p.ldo = l.N;
  p.t = l.kt;
  p.independent_rows = independent && M > 1;
  kern::kqmm(p);
  add_bias(l, d, M, y);
}

// y[M, N] = x[M, K] · dequant(w)ᵀ (+ bias): the same kernel call and bias add as Linear.forward's graph.
// independent: the rows are a decode batch's (one token of each sequence), computed each as if alone, as the
// single-op kernel treats a [B, 1, K] input.
void linear(const QLin& l, const QLinData& d, const float* x, int M, bool independent, float* y) {
  if (l.kq) return kq_linear(l, d, x, M, independent, y);
  kern::QmmProblem p{};
  p.x = x;
  p.w = d.w;
  p.scales = d.scales;
  p.biases = d.biases;
  p.out = y;
  p.M = M;
  p.K = l.K;
  p.N = l.N;
  p.gs = l.gs;
  p.fmt = l.fmt;
  p.independent_rows = independent && M > 1;
  kern::qmm(p);
  if (d.bias)
    for (int r = 0; r < M; r++)
      for (int n = 0; n < l.N; n++) y[static_cast<size_t>(r) * l.N + n] = y[static_cast<size_t>(r) * l.N + n] + d.bias[n];
}

// Linears of one input x (q/k/v, gate/up): the K-quant ones in one kqmm_many call (one pool call, x prepared
// once; each problem's tiles and sums are exactly kqmm's alone), the others one by one.
struct LinOut {
  const QLin* l;
  const QLinData* d;
  float* y;
};
void linears(std::initializer_list<LinOut> outs, const float* x, int M, bool independent) {
  kern::KqProblem ps[4];
  int n = 0;
  for (const LinOut& o : outs) {
    if (!o.l->kq || n == 4) {
      linear(*o.l, *o.d, x, M, independent, o.y);
      continue;
    }
    kern::KqProblem& p = ps[n++];
    p = kern::KqProblem{};
    p.x = x;
    p.w = o.d->w;
    p.out = o.y;
    p.M = M;
    p.K = o.l->K;
    p.N = o.l->N;
    p.ldo = o.l->N;
    p.t = o.l->kt;
    p.independent_rows = independent && M > 1;
  }
  if (n > 0) kern::kqmm_many(ps, n);
  for (const LinOut& o : outs)
    if (o.l->kq) add_bias(*o.l, *o.d, M, o.y);
}

// Reads QLin l's inputs starting at inputs[i] (w, scales, biases[, bias]); advances i.
QLinData lin_data(const QLin& l, const std::vector<array>& in, size_t& i) {
  if (l.kq) {
    QLinData d{in[i++].data<uint8_t>(), nullptr, nullptr, nullptr};
    if (l.bias) d.bias = in[i++].data<float>();
    return d;
  }
  QLinData d{reinterpret_cast<const uint8_t*>(in[i].data<uint32_t>()), in[i + 1].data<float>(), in[i + 2].data<float>(), nullptr};
  i += 3;
  if (l.bias) d.bias = in[i++].data<float>();
  return d;
}

void rms_rows(const float* x, const float* w, float* y, int M, int D, float eps, bool avx2) {
  rows::for_rows(M, static_cast<double>(M) * D, [&](size_t r) { rows::rms_norm(x + r * D, w, y + r * D, D, eps, avx2); });
}

// Scratch reused across calls on the stream thread (no allocation per token).
float* scratch(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

struct QkvCfg {
  QLin q, k, v;
  int Hq, Hkv, D, Dv;
  bool has_rope, trad, has_freqs;
  int rope_dims;
  float base, rope_scale;
  std::vector<int> offsets; // position of each batch entry's first row
  float eps;
  bool q_norm = false, k_norm = false; // per-head RMSNorm of q / k before rope (qwen3)
  float qk_eps = 0;
};

// x [B, L, Dm] → q [B, Hq, L, D], k [B, Hkv, L, D] (both rotated, entry b from position offsets[b]),
// v [B, Hkv, L, Dv]: what the cache's slice_update and the attention take, in the layout heads() + rope give
// them. B > 1 is a decode batch (one row each, every entry at its own position, as ropeRows rotates it).
class BlockQkv : public Primitive {
 public:
  BlockQkv(Stream s, QkvCfg c) : Primitive(s), c_(c) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    const QkvCfg c = c_;
    for (auto& o : outputs) o.set_data(allocator::malloc(o.nbytes()));
    auto& enc = cpu::get_command_encoder(stream());
    std::vector<StridedCopy> copies;
    std::vector<array> in;
    for (const auto& a : inputs) in.push_back(row_major(a, enc, copies));
    size_t i = 2;
    const QLinData dq = lin_data(c.q, in, i), dk = lin_data(c.k, in, i), dv = lin_data(c.v, in, i);
    const float* x = in[0].data<float>();
    const float* nw = in[1].data<float>();
    const float* freqs = c.has_freqs ? in[i].data<float>() : nullptr;
    if (c.has_freqs) i++;
    const float* qn = c.q_norm ? in[i++].data<float>() : nullptr;
    const float* kn = c.k_norm ? in[i++].data<float>() : nullptr;
    float *qo = outputs[0].data<float>(), *ko = outputs[1].data<float>(), *vo = outputs[2].data<float>();
    const int B = inputs[0].shape(0), L = inputs[0].shape(1), Dm = inputs[0].shape(2);
    const bool avx2 = kern::avx2_active();
    enc.dispatch([c, x, nw, dq, dk, dv, freqs, qn, kn, qo, ko, vo, B, L, Dm, avx2, copies = std::move(copies)]() {
      for (const auto& cp : copies) cp.run();
      thread_local std::vector<float> bn, bq, bk, bv;
      const int nq = c.Hq * c.D, nk = c.Hkv * c.D, nv = c.Hkv * c.Dv;
      // the B·L rows go through the projections at once (the batch's matmuls: qmm's decode rows)
      const int M = B * L;
      float* xn = scratch(bn, static_cast<size_t>(M) * Dm);
      float* q = scratch(bq, static_cast<size_t>(M) * nq);
      float* k = scratch(bk, static_cast<size_t>(M) * nk);
      float* v = scratch(bv, static_cast<size_t>(M) * nv);
      rms_rows(x, nw, xn, M, Dm, c.eps, avx2);
      linears({{&c.q, &dq, q}, {&c.k, &dk, k}, {&c.v, &dv, v}}, xn, M, B > 1);
      // the graph's rmsNorm of each head's D values (FastRMSNorm's row function), in place
      if (qn) rms_rows(q, qn, q, M * c.Hq, c.D, c.qk_eps, avx2);
      if (kn) rms_rows(k, kn, k, M * c.Hkv, c.D, c.qk_eps, avx2);
      std::vector<float> cs, sn;
      if (c.has_rope) rows::rope_table(c.offsets, L, c.rope_dims, c.base, c.rope_scale, freqs, cs, sn);
      const int half = c.rope_dims / 2;
      // row m = b·L + l: [m][h][d] → [b][h][l][d], rotated at position offsets[b] + l (table entry m)
      auto put_head = [&](const float* src, float* dst, size_t m, bool rot, int d) {
        if (rot) rows::rope(src, dst, d, c.rope_dims, c.trad, cs.data() + m * half, sn.data() + m * half);
        else std::memcpy(dst, src, sizeof(float) * d);
      };
      for (int b = 0; b < B; b++) {
        for (int l = 0; l < L; l++) {
          const size_t m = static_cast<size_t>(b) * L + l;
          for (int h = 0; h < c.Hq; h++)
            put_head(q + m * nq + h * c.D, qo + ((static_cast<size_t>(b) * c.Hq + h) * L + l) * c.D, m, c.has_rope, c.D);
          for (int h = 0; h < c.Hkv; h++) {
            const size_t kv = (static_cast<size_t>(b) * c.Hkv + h) * L + l;
            put_head(k + m * nk + h * c.D, ko + kv * c.D, m, c.has_rope, c.D);
            put_head(v + m * nv + h * c.Dv, vo + kv * c.Dv, m, false, c.Dv);
          }
        }
      }
    });
  }
  void eval_gpu(const std::vector<array>&, std::vector<array>&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return "MlxkBlockQkv"; }

 private:
  QkvCfg c_;
};

struct AttnMlpCfg {
  QLin o, gate, up, down;
  int Lk; // cache positions to attend to (the buffers may be longer)
  std::vector<int> starts; // each batch entry's first key (left padding before it)
  float scale, eps;
  bool mlp = true; // false: stop at h = x + o_proj(attention) (a MoE block runs its MLP as a graph)
};

// q [B, Hq, L, D] over the cache buffers K [B, Hkv, cap, D], V [B, Hkv, cap, Dv] (entry b: positions
// [starts[b], Lk)) → attention rows → o_proj → + x → RMSNorm → gate/up → SwiGLU → down → + residual: the block's
// output [B, L, Dm]. B > 1 is a left-padded decode batch (one query each), attended as sdpa_rows attends it.
class BlockAttnMlp : public UnaryPrimitive {
 public:
  BlockAttnMlp(Stream s, AttnMlpCfg c) : UnaryPrimitive(s), c_(c) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    const AttnMlpCfg c = c_;
    std::vector<StridedCopy> copies;
    std::vector<array> in;
    for (const auto& a : inputs) in.push_back(row_major(a, enc, copies));
    const int B = inputs[0].shape(0), Hq = inputs[0].shape(1), L = inputs[0].shape(2), D = inputs[0].shape(3);
    const int Hkv = inputs[1].shape(1), cap = inputs[1].shape(2), Dv = inputs[2].shape(3), Dm = inputs[3].shape(2);
    size_t i = 4;
    const QLinData dn = lin_data(c.o, in, i);
    const float* nw = c.mlp ? in[i++].data<float>() : nullptr;
    QLinData dg{}, du{}, dd{};
    if (c.mlp) dg = lin_data(c.gate, in, i), du = lin_data(c.up, in, i), dd = lin_data(c.down, in, i);
    const float *q = in[0].data<float>(), *K = in[1].data<float>(), *V = in[2].data<float>(), *x = in[3].data<float>();
    float* y = out.data<float>();
    const bool avx2 = kern::avx2_active();
    enc.dispatch([=, copies = std::move(copies)]() {
      for (const auto& cp : copies) cp.run();
      thread_local std::vector<float> ba, bo, bh, bn, bg, bu, bs;
      const int M = B * L;
      const size_t nd = static_cast<size_t>(M) * Dm, nf = static_cast<size_t>(M) * c.gate.N;
      float* a = scratch(ba, static_cast<size_t>(M) * Hq * Dv);
      // The single-op attention kernel's loop (rows::attend_ranges): query l sees keys up to (Lk - L) + l (MLX's
      // end-aligned causal mask), one new row sees all of its entry's. Output rows land in [b][l][h] order (the
      // graph's transpose).
      const rows::RangeAttn ra{static_cast<size_t>(B), Hq, Hkv, L, c.Lk, D, Dv, c.scale, L > 1};
      const auto kv_row = [&](const float* base, int w) {
        return [=](size_t b, int h, int s) { return base + ((b * Hkv + h) * static_cast<size_t>(cap) + s) * w; };
      };
      rows::attend_ranges(
          ra, c.starts, {}, [&](size_t r) { return q + r * D; }, kv_row(K, D), D, kv_row(V, Dv), Dv,
          [&](size_t b, int h, int l) { return a + ((b * L + l) * Hq + h) * Dv; }, avx2);
      float* o = scratch(bo, nd);
      float* h = c.mlp ? scratch(bh, nd) : y;
      float* xn = scratch(bn, nd);
      float* g = scratch(bg, nf);
      float* u = scratch(bu, nf);
      float* s = scratch(bs, nf);
      linear(c.o, dn, a, M, B > 1, o);
      for (size_t j = 0; j < nd; j++) h[j] = x[j] + o[j];
      if (!c.mlp) return;
      rms_rows(h, nw, xn, M, Dm, c.eps, avx2);
      linears({{&c.gate, &dg, g}, {&c.up, &du, u}}, xn, M, B > 1);
      // FastSwiGLU's blocks (elementwise, so any split gives the same values)
      constexpr size_t kBlock = 4096;
      rows::for_rows((nf + kBlock - 1) / kBlock, static_cast<double>(nf) * 8, [&](size_t b) {
        rows::swiglu(g + b * kBlock, u + b * kBlock, s + b * kBlock, std::min(kBlock, nf - b * kBlock), avx2);
      });
      linear(c.down, dd, s, M, B > 1, o);
      for (size_t j = 0; j < nd; j++) y[j] = h[j] + o[j];
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return c_.mlp ? "MlxkBlockAttnMlp" : "MlxkBlockAttn"; }

 private:
  AttnMlpCfg c_;
};

// Build-time checks see dtypes and shapes only: layout is known at evaluation (where row_major copies if needed).
bool is_f32(const array& a) {
  return a.dtype() == float32;
}

// An optional f32 [N] bias at ins[i] (advances i); false when it is missing or unlike that.
bool lin_bias(const mlxk_array* ins, size_t& i, int N) {
  if (!ins[i]) return false;
  const array& b = A(ins[i++]);
  return is_f32(b) && b.shape() == Shape{N};
}

// A GGUF K-quant Linear (bits 0 in the ints, gs the KType 0/1/2): lin = [w uint8 [N, K/256 · block bytes], bias?].
std::optional<QLin> kqlin(const mlxk_array* ins, size_t& i, int type, bool has_bias, int K) {
  if (type < 0 || type > 2 || !kern::kq_supported(K)) return std::nullopt;
  const array& w = A(ins[i++]);
  QLin l{QFormat::Affine4, 0, has_bias, w.ndim() == 2 ? w.shape(0) : 0, K, true, static_cast<kern::KType>(type)};
  if (w.ndim() != 2 || w.dtype() != uint8 || static_cast<int64_t>(w.shape(1)) != static_cast<int64_t>(K) / 256 * kern::kq_block_bytes(l.kt))
    return std::nullopt;
  if (has_bias && !lin_bias(ins, i, l.N)) return std::nullopt;
  return l;
}

// A quantized Linear our kernel takes as is (row-contiguous, f32 scales/biases, affine 4/8-bit) with input
// width K; nullopt otherwise. Reads lin = [w, scales, biases, bias?] from ins at i.
std::optional<QLin> qlin(const mlxk_array* ins, size_t& i, int bits, int gs, bool has_bias, int K) {
  if (bits == 0) return kqlin(ins, i, gs, has_bias, K);
  if (bits != 4 && bits != 8) return std::nullopt;
  const array& w = A(ins[i]);
  if (!ins[i + 1] || !ins[i + 2]) return std::nullopt;
  const array &sc = A(ins[i + 1]), &bi = A(ins[i + 2]);
  i += 3;
  QLin l{bits == 4 ? QFormat::Affine4 : QFormat::Affine8, gs, has_bias, w.ndim() == 2 ? w.shape(0) : 0, K};
  if (w.ndim() != 2 || w.dtype() != uint32 || !kern::qmm_supported(l.fmt, gs, K)) return std::nullopt;
  if (static_cast<int64_t>(w.shape(1)) * 32 / bits != K || sc.shape() != Shape{l.N, K / gs} || bi.shape() != sc.shape()) return std::nullopt;
  if (!is_f32(sc) || !is_f32(bi)) return std::nullopt;
  if (has_bias) {
    if (!ins[i]) return std::nullopt;
    const array& b = A(ins[i++]);
    if (!is_f32(b) || b.shape() != Shape{l.N}) return std::nullopt;
  }
  return l;
}

bool cpu_kernels(const Stream& st) {
  return kern::kernels_level() > 0 && st.device == Device::cpu;
}

std::vector<array> gather(const mlxk_array* ins, size_t n) {
  std::vector<array> v;
  for (size_t i = 0; i < n; i++) v.push_back(A(ins[i]));
  return v;
}

} // namespace
} // namespace mlxk

using namespace mlxk;

MLXK_API int mlxk_block_qkv(mlxk_array* outs, const mlxk_array* ins, const int32_t* ic, const float* fc, mlxk_stream s) {
  MLXK_TRY outs[0] = outs[1] = outs[2] = nullptr;
  Stream st = to_stream(S(s));
  const array& x = A(ins[0]);
  if (!cpu_kernels(st) || !is_f32(x) || x.ndim() != 3 || !ins[1] || !is_f32(A(ins[1])) || A(ins[1]).shape() != Shape{x.shape(2)})
    return 0;
  QkvCfg c{};
  c.Hq = ic[6], c.Hkv = ic[7], c.D = ic[8], c.Dv = ic[9];
  c.has_rope = ic[10] != 0, c.trad = ic[11] != 0, c.rope_dims = ic[12], c.has_freqs = ic[13] != 0;
  c.eps = fc[0], c.base = fc[1], c.rope_scale = fc[2];
  const int Dm = x.shape(2), L = x.shape(1), B = x.shape(0);
  // ic[20] positions follow from ic[21], one per batch entry (ic[14], entry 0's, is what a shim without batches read)
  c.offsets.assign(ic + 21, ic + 21 + std::max(ic[20], 0));
  if (B < 1 || static_cast<int>(c.offsets.size()) != B || (B > 1 && L != 1)) return 0;
  size_t i = 2;
  auto q = qlin(ins, i, ic[0], ic[1], ic[15] != 0, Dm);
  auto k = q ? qlin(ins, i, ic[2], ic[3], ic[16] != 0, Dm) : std::nullopt;
  auto v = k ? qlin(ins, i, ic[4], ic[5], ic[17] != 0, Dm) : std::nullopt;
  if (!v || c.Hkv <= 0 || c.Hq % c.Hkv != 0 || q->N != c.Hq * c.D || k->N != c.Hkv * c.D || v->N != c.Hkv * c.Dv) return 0;
  if (c.has_rope && (c.rope_dims <= 0 || c.rope_dims % 2 != 0 || c.rope_dims > c.D ||
                     std::any_of(c.offsets.begin(), c.offsets.end(), [](int o) { return o < 0; })))
    return 0;
  if (c.has_freqs && (!c.has_rope || !ins[i] || !is_f32(A(ins[i])) || A(ins[i]).shape() != Shape{c.rope_dims / 2})) return 0;
  c.q = *q, c.k = *k, c.v = *v;
  // ints 18/19: q / k norm weights [D] follow (after freqs); floats 3: their eps
  size_t n = i + (c.has_freqs ? 1 : 0);
  c.q_norm = ic[18] != 0, c.k_norm = ic[19] != 0, c.qk_eps = fc[3];
  for (bool on : {c.q_norm, c.k_norm}) {
    if (!on) continue;
    if (!ins[n] || !is_f32(A(ins[n])) || A(ins[n]).shape() != Shape{c.D}) return 0;
    n++;
  }
  auto res = array::make_arrays({Shape{B, c.Hq, L, c.D}, Shape{B, c.Hkv, L, c.D}, Shape{B, c.Hkv, L, c.Dv}},
                                {float32, float32, float32}, std::make_shared<BlockQkv>(st, c),
                                gather(ins, n));
  for (int j = 0; j < 3; j++) outs[j] = new array(std::move(res[j]));
  return 0;
  MLXK_END
}

// The attention inputs both attention stages take: ins [q, K, V, x], f32, q [B, Hq, L, D] over the buffers
// K [B, Hkv, cap, D], V [B, Hkv, cap, Dv] up to Lk, each entry b from starts[b] (sp: [Lk, count, starts...]).
// Fills c's Lk, starts, scale; false: declined.
static bool attn_inputs(const mlxk_array* ins, const int32_t* sp, float scale, AttnMlpCfg& c) {
  const array &q = A(ins[0]), &K = A(ins[1]), &V = A(ins[2]), &x = A(ins[3]);
  if (!is_f32(q) || !is_f32(K) || !is_f32(V) || !is_f32(x) || q.ndim() != 4 || K.ndim() != 4 || V.ndim() != 4 || x.ndim() != 3)
    return false;
  const int B = q.shape(0), Hq = q.shape(1), L = q.shape(2), D = q.shape(3), Hkv = K.shape(1);
  c.Lk = sp[0], c.scale = scale;
  c.starts.assign(sp + 2, sp + 2 + std::max(sp[1], 0));
  if (B < 1 || K.shape(0) != B || V.shape(0) != B || x.shape(0) != B || static_cast<int>(c.starts.size()) != B || (B > 1 && L != 1))
    return false;
  return Hkv > 0 && Hq % Hkv == 0 && K.shape(3) == D && V.shape(1) == Hkv && V.shape(2) == K.shape(2) && x.shape(1) == L &&
         c.Lk <= K.shape(2) && std::none_of(c.starts.begin(), c.starts.end(), [&](int s0) { return s0 < 0 || c.Lk - s0 < L; });
}

MLXK_API int mlxk_block_attn_mlp(mlxk_array* out, const mlxk_array* ins, const int32_t* ic, const float* fc, mlxk_stream s) {
  MLXK_TRY * out = nullptr;
  Stream st = to_stream(S(s));
  AttnMlpCfg c{};
  // ints 12..: Lk, then the entries' first keys (one per batch entry; 0 for a lone sequence)
  if (!cpu_kernels(st) || !attn_inputs(ins, ic + 12, fc[0], c)) return 0;
  c.eps = fc[1];
  const int Hq = A(ins[0]).shape(1), Dm = A(ins[3]).shape(2), Dv = A(ins[2]).shape(3);
  size_t i = 4;
  auto o = qlin(ins, i, ic[0], ic[1], ic[8] != 0, Hq * Dv);
  if (!o || o->N != Dm || !ins[i] || !is_f32(A(ins[i])) || A(ins[i]).shape() != Shape{Dm}) return 0;
  i++;
  auto g = qlin(ins, i, ic[2], ic[3], ic[9] != 0, Dm);
  auto u = g ? qlin(ins, i, ic[4], ic[5], ic[10] != 0, Dm) : std::nullopt;
  auto d = u && u->N == g->N ? qlin(ins, i, ic[6], ic[7], ic[11] != 0, g->N) : std::nullopt;
  if (!d || d->N != Dm) return 0;
  c.o = *o, c.gate = *g, c.up = *u, c.down = *d;
  return put(out, array(A(ins[3]).shape(), float32, std::make_shared<BlockAttnMlp>(st, c), gather(ins, i)));
  MLXK_END
}

// The attention half alone (a block whose MLP is not the dense SwiGLU one, e.g. MoE): ins [q, K, V, x, o lin],
// ints [o bits, o gs, o bias, Lk, entries, their first keys…], floats [scale] → h = x + o_proj(attention) [B, L, Dm]; null when declined.
MLXK_API int mlxk_block_attn(mlxk_array* out, const mlxk_array* ins, const int32_t* ic, const float* fc, mlxk_stream s) {
  MLXK_TRY * out = nullptr;
  Stream st = to_stream(S(s));
  AttnMlpCfg c{};
  if (!cpu_kernels(st) || !attn_inputs(ins, ic + 3, fc[0], c)) return 0;
  c.eps = 0, c.mlp = false;
  const int Hq = A(ins[0]).shape(1), Dm = A(ins[3]).shape(2), Dv = A(ins[2]).shape(3);
  size_t i = 4;
  auto o = qlin(ins, i, ic[0], ic[1], ic[2] != 0, Hq * Dv);
  if (!o || o->N != Dm) return 0;
  c.o = *o;
  return put(out, array(A(ins[3]).shape(), float32, std::make_shared<BlockAttnMlp>(st, c), gather(ins, i)));
  MLXK_END
}

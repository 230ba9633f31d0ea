// Fused RMSNorm, RoPE, attention and SwiGLU as MLX custom primitives for the CPU. On CPU, MLX builds these from
// 11, 29 and 12+ elementary ops (rms_norm / rope / sdpa fall back to composites there); at decode sizes the
// per-op overhead dominates, so one primitive each cuts ~90 graph nodes per transformer layer.
#include <mlx/backend/cpu/encoder.h>
#include <mlx/fast.h>
#include <mlx/primitives.h>
#include <mlx/utils.h>

#include <cmath>
#include <limits>

#include "../common.h"
#include "inputs.h"
#include "kernels.h"
#include "pool.h"
#include "qmm.h"
#include "rows.h"
#include "simd.h"

namespace mlxk {
namespace {

bool kernel_stream(const Stream& st) {
  return kern::kernels_level() > 0 && st.device == Device::cpu;
}

bool use_avx2() {
  return kern::avx2_active();
}

// Start offset (in elements) of every row of the last axis; the last axis itself must have stride 1.
struct Rows {
  const float* base;
  std::vector<int64_t> off;
  const float* row(size_t i) const { return base + off[i]; }
};

// Rows of `a` in place when its last axis is contiguous, else of a row-major copy made in our task.
Rows rows_of(const array& a, cpu::CommandEncoder& enc, std::vector<StridedCopy>& copies) {
  const array src = a.ndim() > 0 && a.strides().back() == 1 ? a : row_major(a, enc, copies);
  const int nd = static_cast<int>(src.ndim());
  const int D = src.shape(-1);
  const size_t n = D > 0 ? src.size() / D : 0;
  Rows r{src.data<float>(), std::vector<int64_t>(n)};
  std::vector<int> idx(nd > 1 ? nd - 1 : 0, 0);
  for (size_t i = 0; i < n; i++) {
    int64_t off = 0;
    for (int d = 0; d + 1 < nd; d++) off += static_cast<int64_t>(idx[d]) * src.strides()[d];
    r.off[i] = off;
    for (int d = nd - 2; d >= 0 && ++idx[d] == src.shape(d); d--) idx[d] = 0;
  }
  return r;
}

// A 4-D [B, H, L, D] input addressed by strides (no per-row table: KV caches can hold thousands of rows).
struct View4 {
  const float* base;
  int64_t st[3];
  const float* at(size_t b, size_t h, size_t l) const {
    return base + static_cast<int64_t>(b) * st[0] + static_cast<int64_t>(h) * st[1] + static_cast<int64_t>(l) * st[2];
  }
};

View4 view4_of(const array& a, cpu::CommandEncoder& enc, std::vector<StridedCopy>& copies) {
  const array src = a.strides().back() == 1 ? a : row_major(a, enc, copies);
  return {src.data<float>(), {src.strides()[0], src.strides()[1], src.strides()[2]}};
}

#ifdef MLXK_X86
MLXK_AVX2 float dot_avx2(const float* a, const float* b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  __m256 v = _mm256_add_ps(s0, s1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float r = _mm_cvtss_f32(s);
  for (; i < n; i++) r += a[i] * b[i];
  return r;
}

// y[0..Dv) = Σ_s p[s]·v_s with the output kept in registers (Dv ≤ 64, a multiple of 8): no store per key.
MLXK_AVX2 void weighted_rows_avx2(const float* p, const float* vbase, int64_t vstride, int n, float* y, int Dv) {
  __m256 acc[8];
  const int nv = Dv / 8;
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
  for (int s = 0; s < n; s++) {
    const __m256 ps = _mm256_set1_ps(p[s]);
    const float* vr = vbase + s * vstride;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
      if (j < nv) acc[j] = _mm256_fmadd_ps(ps, _mm256_loadu_ps(vr + 8 * j), acc[j]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++)
    if (j < nv) _mm256_storeu_ps(y + 8 * j, acc[j]);
}

// q·k for 4 keys at once (D a multiple of 8): two accumulators per key (8 independent FMA chains instead of a
// latency-bound 2) and one transposing reduction for all four. A key's sum does not depend on its neighbours,
// so a tail key (passed with repeated pointers) gets exactly what it would get in a full group.
MLXK_AVX2 __m128 dot4_avx2(const float* q, const float* k0, const float* k1, const float* k2, const float* k3, int D) {
  __m256 a[4][2];
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) a[j][0] = a[j][1] = _mm256_setzero_ps();
  const float* k[4] = {k0, k1, k2, k3};
  int i = 0;
  for (; i + 16 <= D; i += 16) {
    const __m256 q0 = _mm256_loadu_ps(q + i), q1 = _mm256_loadu_ps(q + i + 8);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      a[j][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(k[j] + i), a[j][0]);
      a[j][1] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(k[j] + i + 8), a[j][1]);
    }
  }
  if (i < D) {
    const __m256 q0 = _mm256_loadu_ps(q + i);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) a[j][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(k[j] + i), a[j][0]);
  }
  const __m256 t0 = _mm256_hadd_ps(_mm256_add_ps(a[0][0], a[0][1]), _mm256_add_ps(a[1][0], a[1][1]));
  const __m256 t1 = _mm256_hadd_ps(_mm256_add_ps(a[2][0], a[2][1]), _mm256_add_ps(a[3][0], a[3][1]));
  const __m256 t = _mm256_hadd_ps(t0, t1);
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

// sc[s] = (q·k_s)·scale for s < n; returns the maximum.
MLXK_AVX2 float scores_avx2(const float* q, const float* kb, int64_t kst, int n, int D, float scale, float* sc) {
  const __m128 vs = _mm_set1_ps(scale);
  __m128 vm = _mm_set1_ps(-std::numeric_limits<float>::infinity());
  int s = 0;
  for (; s + 4 <= n; s += 4) {
    const float* k = kb + s * kst;
    const __m128 d = _mm_mul_ps(dot4_avx2(q, k, k + kst, k + 2 * kst, k + 3 * kst, D), vs);
    _mm_storeu_ps(sc + s, d);
    vm = _mm_max_ps(vm, d);
  }
  float m = std::max(std::max(vm[0], vm[1]), std::max(vm[2], vm[3]));
  if (s < n) {
    const float* k[4];
    for (int j = 0; j < 4; j++) k[j] = kb + std::min(s + j, n - 1) * kst;
    alignas(16) float d[4];
    _mm_store_ps(d, _mm_mul_ps(dot4_avx2(q, k[0], k[1], k[2], k[3], D), vs));
    for (int j = 0; s + j < n; j++) {
      sc[s + j] = d[j];
      m = std::max(m, d[j]);
    }
  }
  return m;
}

// y = silu(g)·u = g·u / (1 + exp(-g)).
MLXK_AVX2 void swiglu_avx2(const float* g, const float* u, float* y, size_t n) {
  size_t i = 0;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 den = _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), gv)));
    _mm256_storeu_ps(y + i, _mm256_div_ps(_mm256_mul_ps(gv, _mm256_loadu_ps(u + i)), den));
  }
  for (; i < n; i++) y[i] = g[i] * u[i] / (1.0f + std::exp(-g[i]));
}

// sc[s] = exp(sc[s] - m) for s < n; returns Σ sc.
MLXK_AVX2 float exp_shift_sum_avx2(float* sc, int n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  int s = 0;
  for (; s + 8 <= n; s += 8) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(sc + s), mv));
    _mm256_storeu_ps(sc + s, e);
    acc = _mm256_add_ps(acc, e);
  }
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  float sum = _mm_cvtss_f32(t);
  for (; s < n; s++) {
    sc[s] = std::exp(sc[s] - m);
    sum += sc[s];
  }
  return sum;
}

MLXK_AVX2 void axpy_avx2(float a, const float* x, float* y, int n) {
  const __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}
#endif

float dot(const float* a, const float* b, int n, bool avx2) {
#ifdef MLXK_X86
  if (avx2) return dot_avx2(a, b, n);
#endif
  float r = 0.f;
  for (int i = 0; i < n; i++) r += a[i] * b[i];
  return r;
}

void axpy(float a, const float* x, float* y, int n, bool avx2) {
#ifdef MLXK_X86
  if (avx2) return axpy_avx2(a, x, y, n);
#endif
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

} // namespace

namespace rows {

void rms_norm(const float* xr, const float* w, float* yr, int D, float eps, bool avx2) {
  const float inv = 1.0f / std::sqrt(dot(xr, xr, D, avx2) / static_cast<float>(D) + eps);
  if (w) for (int i = 0; i < D; i++) yr[i] = xr[i] * inv * w[i];
  else for (int i = 0; i < D; i++) yr[i] = xr[i] * inv;
}

// Same formula as MLX's composite: inv_freq = exp(-i·ln(base)/half) (or 1/freqs), θ = (offset+l)·scale·inv_freq.
void rope_table(const std::vector<int>& offs, int L, int dims, float base, float scale, const float* freqs,
                std::vector<float>& cs, std::vector<float>& sn) {
  const int half = dims / 2;
  const size_t nb = offs.size();
  cs.resize(nb * L * half);
  sn.resize(cs.size());
  const float k = static_cast<float>(std::log(static_cast<double>(base)) / half);
  for (size_t b = 0; b < nb; b++) {
    for (int l = 0; l < L; l++) {
      const float pos = static_cast<float>(offs[b] + l) * scale;
      const size_t at = (b * L + l) * half;
      for (int i = 0; i < half; i++) {
        const float inv = freqs ? 1.0f / freqs[i] : std::exp(static_cast<float>(-i) * k);
        const float th = pos * inv;
        cs[at + i] = std::cos(th);
        sn[at + i] = std::sin(th);
      }
    }
  }
}

void rope(const float* xr, float* yr, int D, int dims, bool trad, const float* c, const float* s) {
  const int half = dims / 2;
  for (int i = 0; i < half; i++) {
    const int i1 = trad ? 2 * i : i, i2 = trad ? 2 * i + 1 : i + half;
    const float a = xr[i1], b = xr[i2];
    yr[i1] = a * c[i] - b * s[i];
    yr[i2] = a * s[i] + b * c[i];
  }
  for (int i = dims; i < D; i++) yr[i] = xr[i];
}

void attend(const float* qr, const float* kb, int64_t kst, const float* vb, int64_t vst, int n, int D, int Dv, float scale,
            float* yr, bool avx2) {
  thread_local std::vector<float> sc;
  sc.resize(static_cast<size_t>(std::max(n, 1)));
  float m = -std::numeric_limits<float>::infinity();
#ifdef MLXK_X86
  if (avx2 && D % 8 == 0) {
    m = scores_avx2(qr, kb, kst, n, D, scale, sc.data());
  } else
#endif
  {
    for (int s = 0; s < n; s++) {
      sc[s] = dot(qr, kb + s * kst, D, avx2) * scale;
      m = std::max(m, sc[s]);
    }
  }
  float sum = 0.f;
#ifdef MLXK_X86
  if (avx2) {
    sum = exp_shift_sum_avx2(sc.data(), n, m);
  } else
#endif
  {
    for (int s = 0; s < n; s++) {
      sc[s] = std::exp(sc[s] - m);
      sum += sc[s];
    }
  }
#ifdef MLXK_X86
  if (avx2 && Dv % 8 == 0) {
    // 64 columns at a time with the sums in registers (the same FMAs per element as the axpy loop)
    for (int c = 0; c < Dv; c += 64) weighted_rows_avx2(sc.data(), vb + c, vst, n, yr + c, std::min(64, Dv - c));
  } else
#endif
  {
    std::fill(yr, yr + Dv, 0.f);
    for (int s = 0; s < n; s++) axpy(sc[s], vb + s * vst, yr, Dv, avx2);
  }
  const float inv = n > 0 ? 1.0f / sum : 0.f;
  for (int i = 0; i < Dv; i++) yr[i] *= inv;
}

void swiglu(const float* g, const float* u, float* y, size_t n, bool avx2) {
#ifdef MLXK_X86
  if (avx2) return swiglu_avx2(g, u, y, n);
#endif
  for (size_t i = 0; i < n; i++) y[i] = g[i] * u[i] / (1.0f + std::exp(-g[i]));
}

} // namespace rows

namespace {

// ------------------------------------------------------------------------------------------- RMSNorm

class FastRMSNorm : public UnaryPrimitive {
 public:
  FastRMSNorm(Stream s, float eps) : UnaryPrimitive(s), eps_(eps) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    Rows x = rows_of(inputs[0], enc, copies);
    const float* w = inputs.size() > 1 ? row_major(inputs[1], enc, copies).data<float>() : nullptr;
    float* y = out.data<float>();
    const int D = out.shape(-1);
    const float eps = eps_;
    const bool avx2 = use_avx2();
    enc.dispatch([x = std::move(x), w, y, D, eps, avx2, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      rows::for_rows(x.off.size(), static_cast<double>(x.off.size()) * D,
                     [&](size_t r) { rows::rms_norm(x.row(r), w, y + r * D, D, eps, avx2); });
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return "MlxkFastRMSNorm"; }

 private:
  float eps_;
};

// ---------------------------------------------------------------------------------------------- RoPE

class FastRoPE : public UnaryPrimitive {
 public:
  FastRoPE(Stream s, int dims, bool traditional, float base, float scale, int offset, std::vector<int> row_offsets = {})
      : UnaryPrimitive(s), dims_(dims), trad_(traditional), base_(base), scale_(scale), offset_(offset),
        row_offsets_(std::move(row_offsets)) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    Rows x = rows_of(inputs[0], enc, copies);
    const float* freqs = inputs.size() > 1 ? row_major(inputs[1], enc, copies).data<float>() : nullptr;
    float* y = out.data<float>();
    const int D = out.shape(-1), L = out.ndim() >= 2 ? out.shape(-2) : 1;
    // Capture values, not `this`: MLX may release the primitive once the graph is evaluated.
    // Per-batch offsets (a decode batch, B = row_offsets.size()): batch b is rotated at its own position.
    std::vector<int> offs = row_offsets_.empty() ? std::vector<int>{offset_} : row_offsets_;
    const size_t rows_per_b = x.off.size() / offs.size();
    enc.dispatch([dims = dims_, trad = trad_, base = base_, scale = scale_, offs = std::move(offs), rows_per_b, x = std::move(x),
                  freqs, y, D, L, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      const int half = dims / 2;
      std::vector<float> cs, sn;
      rows::rope_table(offs, L, dims, base, scale, freqs, cs, sn);
      rows::for_rows(x.off.size(), static_cast<double>(x.off.size()) * D, [&](size_t r) {
        const size_t at = ((r / rows_per_b) * L + (r % L)) * half;
        rows::rope(x.row(r), y + r * D, D, dims, trad, cs.data() + at, sn.data() + at);
      });
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return "MlxkFastRoPE"; }

 private:
  int dims_;
  bool trad_;
  float base_, scale_;
  int offset_;
  std::vector<int> row_offsets_;
};

// ----------------------------------------------------------------------------------------- attention

class FastSDPA : public UnaryPrimitive {
 public:
  FastSDPA(Stream s, float scale, bool causal, std::vector<int> starts = {}, std::vector<int> ends = {})
      : UnaryPrimitive(s), scale_(scale), causal_(causal), starts_(std::move(starts)), ends_(std::move(ends)) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    Rows q = rows_of(inputs[0], enc, copies);
    View4 k = view4_of(inputs[1], enc, copies);
    View4 v = view4_of(inputs[2], enc, copies);
    const int Hq = inputs[0].shape(1), Lq = inputs[0].shape(2), D = inputs[0].shape(3);
    const int Hkv = inputs[1].shape(1), Lk = inputs[1].shape(2), Dv = inputs[2].shape(3);
    const size_t B = inputs[0].shape(0);
    float* y = out.data<float>();
    const bool avx2 = use_avx2();
    const float scale = scale_;
    const bool causal = causal_;
    // A decode batch: batch b attends to keys [starts[b], Lk) (left padding before), indexed from 0 as if alone.
    std::vector<int> starts = starts_;
    // Padded encoder batches: batch b attends to keys [0, ends[b]) (right padding after).
    std::vector<int> ends = ends_;
    enc.dispatch([=, q = std::move(q), starts = std::move(starts), ends = std::move(ends), copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      const rows::RangeAttn a{B, Hq, Hkv, Lq, Lk, D, Dv, scale, causal};
      rows::attend_ranges(
          a, starts, ends, [&](size_t r) { return q.row(r); }, [&](size_t b, int h, int s) { return k.at(b, h, s); }, k.st[2],
          [&](size_t b, int h, int s) { return v.at(b, h, s); }, v.st[2],
          [&](size_t b, int h, int l) { return y + ((b * Hq + h) * Lq + l) * Dv; }, avx2);
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return "MlxkFastSDPA"; }

 private:
  float scale_;
  bool causal_;
  std::vector<int> starts_, ends_;
};

// -------------------------------------------------------------------------------------------- SwiGLU

class FastSwiGLU : public UnaryPrimitive {
 public:
  explicit FastSwiGLU(Stream s) : UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    auto& enc = begin_eval(stream(), inputs, out);
    std::vector<StridedCopy> copies;
    const float* g = row_major(inputs[0], enc, copies).data<float>();
    const float* u = row_major(inputs[1], enc, copies).data<float>();
    float* y = out.data<float>();
    const size_t n = out.size();
    const bool avx2 = use_avx2();
    enc.dispatch([g, u, y, n, avx2, copies = std::move(copies)]() {
      for (const auto& c : copies) c.run();
      constexpr size_t kBlock = 4096;
      rows::for_rows((n + kBlock - 1) / kBlock, static_cast<double>(n) * 8, [&](size_t b) {
        const size_t i0 = b * kBlock;
        rows::swiglu(g + i0, u + i0, y + i0, std::min(kBlock, n - i0), avx2);
      });
    });
  }
  void eval_gpu(const std::vector<array>&, array&) override { throw std::runtime_error("[mlxk] CPU kernel only"); }
  const char* name() const override { return "MlxkFastSwiGLU"; }
};

} // namespace
} // namespace mlxk

using namespace mlxk;

MLXK_API int mlxk_kernel_swiglu(mlxk_array* out, mlxk_array gate, mlxk_array up, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array &g = A(gate), &u = A(up);
  if (!kernel_stream(st) || g.dtype() != float32 || u.dtype() != float32 || g.shape() != u.shape())
    return put(out, multiply(multiply(g, sigmoid(g, st), st), u, st));
  return put(out, array(g.shape(), float32, std::make_shared<FastSwiGLU>(st), {g, u}));
  MLXK_END
}

MLXK_API int mlxk_kernel_rms_norm(mlxk_array* out, mlxk_array x, mlxk_array weight, float eps, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array& a = A(x);
  auto w = OA(weight);
  const bool ok = kernel_stream(st) && a.dtype() == float32 && a.ndim() >= 1 && a.shape(-1) > 0 &&
                  (!w || (w->dtype() == float32 && w->ndim() == 1 && w->shape(0) == a.shape(-1)));
  if (!ok) return put(out, fast::rms_norm(a, w, eps, st));
  std::vector<array> in{a};
  if (w) in.push_back(*w);
  return put(out, array(a.shape(), float32, std::make_shared<FastRMSNorm>(st, eps), std::move(in)));
  MLXK_END
}

MLXK_API int mlxk_kernel_rope(mlxk_array* out, mlxk_array x, int dims, bool traditional, bool has_base, float base,
                              float scale, int offset, mlxk_array offset_arr, mlxk_array freqs, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array& a = A(x);
  auto f = OA(freqs);
  std::optional<float> b = has_base ? std::optional<float>(base) : std::nullopt;
  const bool ok = kernel_stream(st) && !offset_arr && a.dtype() == float32 && a.ndim() >= 2 && dims > 0 &&
                  dims % 2 == 0 && dims <= a.shape(-1) && (b.has_value() != f.has_value()) &&
                  (!f || (f->dtype() == float32 && f->ndim() == 1 && f->shape(0) == dims / 2));
  if (!ok) {
    if (offset_arr) return put(out, fast::rope(a, dims, traditional, b, scale, A(offset_arr), f, st));
    return put(out, fast::rope(a, dims, traditional, b, scale, offset, f, st));
  }
  std::vector<array> in{a};
  if (f) in.push_back(*f);
  return put(out, array(a.shape(), float32, std::make_shared<FastRoPE>(st, dims, traditional, b.value_or(1.f), scale, offset),
                        std::move(in)));
  MLXK_END
}

MLXK_API int mlxk_kernel_rope_rows(mlxk_array* out, mlxk_array x, int dims, bool traditional, bool has_base, float base,
                                   float scale, const int32_t* offsets, int n, mlxk_array freqs, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array& a = A(x);
  auto f = OA(freqs);
  std::optional<float> b = has_base ? std::optional<float>(base) : std::nullopt;
  const bool ok = kernel_stream(st) && a.dtype() == float32 && a.ndim() == 4 && n == a.shape(0) && n > 0 && dims > 0 &&
                  dims % 2 == 0 && dims <= a.shape(-1) && (b.has_value() != f.has_value()) &&
                  (!f || (f->dtype() == float32 && f->ndim() == 1 && f->shape(0) == dims / 2));
  if (!ok) {
    // MLX's rope takes one offset per batch entry as an array
    array off(offsets, Shape{n}, int32);
    return put(out, fast::rope(a, dims, traditional, b, scale, off, f, st));
  }
  std::vector<array> in{a};
  if (f) in.push_back(*f);
  return put(out, array(a.shape(), float32,
                        std::make_shared<FastRoPE>(st, dims, traditional, b.value_or(1.f), scale, 0, std::vector<int>(offsets, offsets + n)),
                        std::move(in)));
  MLXK_END
}

namespace {
// Attention where batch entry b sees keys [starts[b], ends[b]) (empty vector: 0 / Lk): a left-padded decode
// batch (one query per entry) or a right-padded encoder batch. MLX's attention under the same key mask where our
// kernels cannot run.
array sdpa_ranges(const array& qa, const array& ka, const array& va, float scale, const std::vector<int>& starts,
                  const std::vector<int>& ends, bool one_query, Stream st) {
  const int n = qa.shape(0), Lk = ka.shape(2);
  bool ok = kernel_stream(st) && qa.dtype() == float32 && ka.dtype() == float32 && va.dtype() == float32 &&
            qa.ndim() == 4 && ka.ndim() == 4 && va.ndim() == 4 && ka.shape(0) == n && va.shape(0) == n &&
            (!one_query || qa.shape(2) == 1) && ka.shape(1) == va.shape(1) && ka.shape(1) > 0 &&
            qa.shape(1) % ka.shape(1) == 0 && ka.shape(2) == va.shape(2) && qa.shape(3) == ka.shape(3);
  for (size_t i = 0; ok && i < starts.size(); i++) ok = starts[i] >= 0 && starts[i] < Lk;
  for (size_t i = 0; ok && i < ends.size(); i++) ok = ends[i] >= 1 && ends[i] <= Lk;
  if (!ok) {
    std::vector<int> s0 = starts.empty() ? std::vector<int>(n, 0) : starts;
    std::vector<int> e0 = ends.empty() ? std::vector<int>(n, Lk) : ends;
    array pos = reshape(arange(0, Lk, int32, st), {1, 1, 1, Lk}, st);
    array mask = logical_and(greater_equal(pos, array(s0.data(), Shape{n, 1, 1, 1}, int32), st),
                             less(pos, array(e0.data(), Shape{n, 1, 1, 1}, int32), st), st);
    return fast::scaled_dot_product_attention(qa, ka, va, scale, "array", mask, std::nullopt, false, st);
  }
  Shape shape{qa.shape(0), qa.shape(1), qa.shape(2), va.shape(3)};
  return array(std::move(shape), float32, std::make_shared<FastSDPA>(st, scale, false, starts, ends), {qa, ka, va});
}
} // namespace

MLXK_API int mlxk_kernel_sdpa_rows(mlxk_array* out, mlxk_array q, mlxk_array k, mlxk_array v, float scale,
                                   const int32_t* starts, int n, mlxk_stream s) {
  MLXK_TRY if (A(q).ndim() != 4 || A(q).shape(0) != n) throw std::invalid_argument("sdpa_rows: one start per batch entry");
  return put(out, sdpa_ranges(A(q), A(k), A(v), scale, std::vector<int>(starts, starts + n), {}, true, to_stream(S(s))));
  MLXK_END
}

MLXK_API int mlxk_kernel_sdpa_keys(mlxk_array* out, mlxk_array q, mlxk_array k, mlxk_array v, float scale,
                                   const int32_t* lens, int n, mlxk_stream s) {
  MLXK_TRY if (A(q).ndim() != 4 || A(q).shape(0) != n) throw std::invalid_argument("sdpa_keys: one length per batch entry");
  return put(out, sdpa_ranges(A(q), A(k), A(v), scale, {}, std::vector<int>(lens, lens + n), false, to_stream(S(s))));
  MLXK_END
}

MLXK_API int mlxk_kernel_sdpa(mlxk_array* out, mlxk_array q, mlxk_array k, mlxk_array v, float scale, int mask_mode,
                              mlxk_array mask, mlxk_array sinks, mlxk_stream s) {
  MLXK_TRY Stream st = to_stream(S(s));
  const array &qa = A(q), &ka = A(k), &va = A(v);
  const bool ok = kernel_stream(st) && (mask_mode == MLXK_MASK_NONE || mask_mode == MLXK_MASK_CAUSAL) && !sinks &&
                  qa.dtype() == float32 && ka.dtype() == float32 && va.dtype() == float32 && qa.ndim() == 4 &&
                  ka.ndim() == 4 && va.ndim() == 4 && qa.shape(0) == ka.shape(0) && ka.shape(0) == va.shape(0) &&
                  ka.shape(1) == va.shape(1) && ka.shape(1) > 0 && qa.shape(1) % ka.shape(1) == 0 &&
                  ka.shape(2) == va.shape(2) && qa.shape(3) == ka.shape(3);
  if (!ok) {
    std::string mode = mask_mode == MLXK_MASK_CAUSAL ? "causal" : mask_mode == MLXK_MASK_ARRAY ? "array" : "";
    return put(out, fast::scaled_dot_product_attention(qa, ka, va, scale, mode,
                                                       mask_mode == MLXK_MASK_ARRAY ? OA(mask) : std::nullopt, OA(sinks),
                                                       false, st));
  }
  Shape shape{qa.shape(0), qa.shape(1), qa.shape(2), va.shape(3)};
  return put(out, array(std::move(shape), float32, std::make_shared<FastSDPA>(st, scale, mask_mode == MLXK_MASK_CAUSAL),
                        {qa, ka, va}));
  MLXK_END
}

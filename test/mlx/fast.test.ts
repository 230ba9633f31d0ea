import { describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { expectClose, randomFloats } from "./helpers.ts";

describe("norms", () => {
  test("rms_norm with and without weight", () =>
    mx.scope(() => {
      const D = 8;
      const xs = randomFloats(2 * D, 1);
      const ws = randomFloats(D, 2, 0.5, 1.5);
      const ref = (withW: boolean): number[] =>
        Array.from(xs, (v, i) => {
          const row = Math.floor(i / D);
          const ms = xs.subarray(row * D, row * D + D).reduce((s, t) => s + t * t, 0) / D;
          return (v / Math.sqrt(ms + 1e-5)) * (withW ? ws[i % D]! : 1);
        });
      const x = mx.array(xs, { shape: [2, D] });
      expectClose(mx.fast.rmsNorm(x, mx.array(ws), 1e-5).toFloat32Array(), ref(true), 1e-5, 1e-5);
      expectClose(mx.fast.rmsNorm(x, null, 1e-5).toFloat32Array(), ref(false), 1e-5, 1e-5);
    }));

  test("layer_norm with weight and bias, and bare", () =>
    mx.scope(() => {
      const D = 6;
      const xs = randomFloats(3 * D, 3);
      const ws = randomFloats(D, 4);
      const bs = randomFloats(D, 5);
      const ref = (affine: boolean): number[] =>
        Array.from(xs, (v, i) => {
          const row = xs.subarray(Math.floor(i / D) * D, Math.floor(i / D) * D + D);
          const mean = row.reduce((s, t) => s + t, 0) / D;
          const vr = row.reduce((s, t) => s + (t - mean) ** 2, 0) / D;
          const n = (v - mean) / Math.sqrt(vr + 1e-5);
          return affine ? n * ws[i % D]! + bs[i % D]! : n;
        });
      const x = mx.array(xs, { shape: [3, D] });
      expectClose(mx.fast.layerNorm(x, mx.array(ws), mx.array(bs), 1e-5).toFloat32Array(), ref(true), 1e-5, 1e-5);
      expectClose(mx.fast.layerNorm(x, null, null, 1e-5).toFloat32Array(), ref(false), 1e-5, 1e-5);
    }));
});

/**
 * RoPE reference for x [B, H, L, D]: position p = offset + l; pair (i, i + dims/2) (or (2i, 2i+1) when
 * traditional) rotated by angle p·scale/period_i with period_i = base^(2i/dims) unless periods are given.
 */
function ropeRef(x: Float32Array, shape: number[], o: { dims: number; base?: number; periods?: number[]; offset: number; scale?: number; traditional?: boolean }): Float32Array {
  const [B, H, L, D] = shape as [number, number, number, number];
  const out = Float32Array.from(x);
  const half = o.dims / 2;
  for (let b = 0; b < B * H; b++)
    for (let l = 0; l < L; l++) {
      const base = (b * L + l) * D;
      for (let i = 0; i < half; i++) {
        const period = o.periods ? o.periods[i]! : o.base! ** ((2 * i) / o.dims);
        const ang = ((o.offset + l) * (o.scale ?? 1)) / period;
        const [i1, i2] = o.traditional ? [2 * i, 2 * i + 1] : [i, i + half];
        const x1 = x[base + i1]!;
        const x2 = x[base + i2]!;
        out[base + i1] = x1 * Math.cos(ang) - x2 * Math.sin(ang);
        out[base + i2] = x1 * Math.sin(ang) + x2 * Math.cos(ang);
      }
    }
  return out;
}

describe("rope", () => {
  const shape = [1, 2, 5, 8];
  const xs = randomFloats(2 * 5 * 8, 21);
  const cases = [
    { name: "base 10000, offset 0", dims: 8, base: 10000, offset: 0 },
    { name: "base 1e6, offset 7", dims: 8, base: 1e6, offset: 7 },
    { name: "traditional pairs", dims: 8, base: 10000, offset: 3, traditional: true },
    { name: "partial rotary (first 4 dims only)", dims: 4, base: 10000, offset: 2 },
    { name: "position scale 0.5", dims: 8, base: 10000, offset: 1, scale: 0.5 },
  ];
  for (const c of cases) {
    test(c.name, () =>
      mx.scope(() => {
        const x = mx.array(xs, { shape });
        const y = mx.fast.rope(x, c);
        expectClose(y.toFloat32Array(), ropeRef(xs, shape, c), 2e-5, 2e-5);
      }));
  }
  test("custom frequencies (llama3-style periods) and an array offset", () =>
    mx.scope(() => {
      const periods = [1, 3.5, 40, 900];
      const x = mx.array(xs, { shape });
      const y = mx.fast.rope(x, { dims: 8, freqs: mx.array(periods), offset: mx.array(new Int32Array([4]), { shape: [] }) });
      expectClose(y.toFloat32Array(), ropeRef(xs, shape, { dims: 8, periods, offset: 4 }), 2e-5, 2e-5);
    }));
  test("needs base or freqs", () => {
    using x = mx.zeros([1, 1, 1, 4]);
    expect(() => mx.fast.rope(x, { dims: 4 })).toThrow(/base or freqs/);
  });
});

/** softmax(q·kᵀ·scale + mask [+ sink column])·v for q [1,Hq,Lq,D], k/v [1,Hkv,Lk,D]. */
function sdpaRef(
  q: Float32Array, k: Float32Array, v: Float32Array,
  o: { Hq: number; Hkv: number; Lq: number; Lk: number; D: number; scale: number; mask?: (i: number, j: number) => number; sinks?: number[] },
): Float32Array {
  const { Hq, Hkv, Lq, Lk, D } = o;
  const out = new Float32Array(Hq * Lq * D);
  for (let h = 0; h < Hq; h++) {
    const kh = Math.floor(h / (Hq / Hkv));
    for (let i = 0; i < Lq; i++) {
      const s: number[] = [];
      for (let j = 0; j < Lk; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(h * Lq + i) * D + d]! * k[(kh * Lk + j) * D + d]!;
        s.push(dot * o.scale + (o.mask ? o.mask(i, j) : 0));
      }
      const m = Math.max(...s, o.sinks ? o.sinks[h]! : -Infinity);
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, b) => a + b, 0) + (o.sinks ? Math.exp(o.sinks[h]! - m) : 0);
      for (let d = 0; d < D; d++) {
        let acc = 0;
        for (let j = 0; j < Lk; j++) acc += (e[j]! / z) * v[(kh * Lk + j) * D + d]!;
        out[(h * Lq + i) * D + d] = acc;
      }
    }
  }
  return out;
}

describe("scaled_dot_product_attention", () => {
  const Hq = 4;
  const Hkv = 2;
  const Lq = 3;
  const Lk = 5;
  const D = 8;
  const qs = randomFloats(Hq * Lq * D, 31);
  const ks = randomFloats(Hkv * Lk * D, 32);
  const vs = randomFloats(Hkv * Lk * D, 33);
  const scale = 1 / Math.sqrt(D);
  const dims = { Hq, Hkv, Lq, Lk, D, scale };
  const arrays = (): [mx.Array, mx.Array, mx.Array] => [
    mx.array(qs, { shape: [1, Hq, Lq, D] }),
    mx.array(ks, { shape: [1, Hkv, Lk, D] }),
    mx.array(vs, { shape: [1, Hkv, Lk, D] }),
  ];

  test("no mask, grouped-query heads", () =>
    mx.scope(() => {
      const [q, k, v] = arrays();
      const y = mx.fast.scaledDotProductAttention(q, k, v, { scale });
      expect(y.shape).toEqual([1, Hq, Lq, D]);
      expectClose(y.toFloat32Array(), sdpaRef(qs, ks, vs, dims), 1e-5, 1e-5);
    }));

  test('"causal" aligns the queries with the last keys', () =>
    mx.scope(() => {
      const [q, k, v] = arrays();
      const y = mx.fast.scaledDotProductAttention(q, k, v, { scale, mask: "causal" });
      const ref = sdpaRef(qs, ks, vs, { ...dims, mask: (i, j) => (j <= i + (Lk - Lq) ? 0 : -Infinity) });
      expectClose(y.toFloat32Array(), ref, 1e-5, 1e-5);
    }));

  test("boolean keep-mask and additive float mask arrays", () =>
    mx.scope(() => {
      const [q, k, v] = arrays();
      const keepFn = (i: number, j: number): boolean => (i + 2 * j) % 3 !== 1;
      const keep: boolean[][] = [];
      const add: number[][] = [];
      for (let i = 0; i < Lq; i++) {
        keep.push(Array.from({ length: Lk }, (_, j) => keepFn(i, j)));
        add.push(Array.from({ length: Lk }, (_, j) => (i - j) * 0.3));
      }
      const yb = mx.fast.scaledDotProductAttention(q, k, v, { scale, mask: mx.array(keep) });
      expectClose(yb.toFloat32Array(), sdpaRef(qs, ks, vs, { ...dims, mask: (i, j) => (keepFn(i, j) ? 0 : -Infinity) }), 1e-5, 1e-5);
      const yf = mx.fast.scaledDotProductAttention(q, k, v, { scale, mask: mx.array(add) });
      expectClose(yf.toFloat32Array(), sdpaRef(qs, ks, vs, { ...dims, mask: (i, j) => (i - j) * 0.3 }), 1e-5, 1e-5);
    }));

  test("attention sinks add a per-head logit to the softmax denominator", () =>
    mx.scope(() => {
      const [q, k, v] = arrays();
      const sinks = [0.5, -1, 2, 0];
      const y = mx.fast.scaledDotProductAttention(q, k, v, { scale, sinks: mx.array(sinks) });
      expectClose(y.toFloat32Array(), sdpaRef(qs, ks, vs, { ...dims, sinks }), 1e-5, 1e-5);
      const yc = mx.fast.scaledDotProductAttention(q, k, v, { scale, mask: "causal", sinks: mx.array(sinks) });
      const ref = sdpaRef(qs, ks, vs, { ...dims, sinks, mask: (i, j) => (j <= i + (Lk - Lq) ? 0 : -Infinity) });
      expectClose(yc.toFloat32Array(), ref, 1e-5, 1e-5);
    }));

  test("single-token decode (Lq = 1) matches the explicit formula", () =>
    mx.scope(() => {
      const q1 = qs.subarray(0, Hq * D);
      const qa = mx.array(Float32Array.from(q1), { shape: [1, Hq, 1, D] });
      const [, k, v] = arrays();
      const y = mx.fast.scaledDotProductAttention(qa, k, v, { scale });
      const ref = sdpaRef(Float32Array.from(q1), ks, vs, { ...dims, Lq: 1 });
      expectClose(y.toFloat32Array(), ref, 1e-5, 1e-5);
    }));
});

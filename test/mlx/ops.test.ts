import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { expectClose, randomFloats } from "./helpers.ts";

// Every test body runs in a scope so its arrays are freed; values are checked against plain TS.
let depth = 0;
beforeEach(() => {
  depth = mx.scopeDepth();
});
afterEach(() => {
  expect(mx.scopeDepth()).toBe(depth);
});

const X = [-2, -0.5, 0, 0.5, 1, 3];
const f32 = (a: mx.Array): number[] => Array.from(a.toFloat32Array());
const erfRef = (x: number): number => {
  // Abramowitz–Stegun 7.1.26 is too coarse; use a series/continued fraction good to ~1e-7.
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const y =
    1 -
    t *
      Math.exp(
        -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
      );
  return x >= 0 ? y : -y;
};
const sig = (x: number): number => 1 / (1 + Math.exp(-x));

describe("elementwise unary ops and activations", () => {
  const cases: [string, (a: mx.Array) => mx.Array, (x: number) => number][] = [
    ["exp", mx.exp, Math.exp],
    ["sigmoid", mx.sigmoid, sig],
    ["silu", mx.silu, (x) => x * sig(x)],
    ["gelu", mx.gelu, (x) => 0.5 * x * (1 + erfRef(x / Math.SQRT2))],
    ["geluApprox", mx.geluApprox, (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))],
    ["geluFastApprox", mx.geluFastApprox, (x) => x * sig(1.702 * x)],
    ["tanh", mx.tanh, Math.tanh],
    ["square", mx.square, (x) => x * x],
    ["negative", mx.negative, (x) => -x],
    ["abs", mx.abs, Math.abs],
    ["relu", mx.relu, (x) => Math.max(x, 0)],
    ["softplus", mx.softplus, (x) => Math.log1p(Math.exp(x))],
    ["erf", mx.erf, erfRef],
    ["sin", mx.sin, Math.sin],
    ["cos", mx.cos, Math.cos],
    ["floor", mx.floor, Math.floor],
  ];
  for (const [name, op, ref] of cases) {
    test(name, () =>
      mx.scope(() => {
        expectClose(f32(op(mx.array(X))), X.map(ref), 2e-6, 2e-6);
      }));
  }
  test("log / sqrt / rsqrt / reciprocal on positive inputs", () =>
    mx.scope(() => {
      const P = [0.25, 1, 2, 9];
      const a = mx.array(P);
      expectClose(f32(mx.log(a)), P.map(Math.log));
      expectClose(f32(mx.sqrt(a)), P.map(Math.sqrt));
      expectClose(f32(mx.rsqrt(a)), P.map((x) => 1 / Math.sqrt(x)));
      expectClose(f32(mx.reciprocal(a)), P.map((x) => 1 / x));
      expectClose(f32(mx.log1p(a)), P.map(Math.log1p));
    }));
  test("activations keep the input dtype (bf16 stays bf16)", () =>
    mx.scope(() => {
      const a = mx.array(X, { dtype: mx.Dtype.bfloat16 });
      expect(mx.gelu(a).dtype).toBe(mx.Dtype.bfloat16);
      expect(mx.silu(a).dtype).toBe(mx.Dtype.bfloat16);
      expect(mx.multiply(a, 0.5).dtype).toBe(mx.Dtype.bfloat16);
    }));
});

describe("binary ops and comparisons", () => {
  const A = [1, -2, 3, 4];
  const B = [2, 2, -1, 0.5];
  const cases: [string, (a: mx.ArrayLike, b: mx.ArrayLike) => mx.Array, (a: number, b: number) => number][] = [
    ["add", mx.add, (a, b) => a + b],
    ["subtract", mx.subtract, (a, b) => a - b],
    ["multiply", mx.multiply, (a, b) => a * b],
    ["divide", mx.divide, (a, b) => a / b],
    ["maximum", mx.maximum, Math.max],
    ["minimum", mx.minimum, Math.min],
    ["power", mx.power, (a, b) => a ** b],
    ["equal", mx.equal, (a, b) => Number(a === b)],
    ["notEqual", mx.notEqual, (a, b) => Number(a !== b)],
    ["greater", mx.greater, (a, b) => Number(a > b)],
    ["greaterEqual", mx.greaterEqual, (a, b) => Number(a >= b)],
    ["less", mx.less, (a, b) => Number(a < b)],
    ["lessEqual", mx.lessEqual, (a, b) => Number(a <= b)],
  ];
  for (const [name, op, ref] of cases) {
    test(name, () =>
      mx.scope(() => {
        expectClose(f32(op(mx.array(A), mx.array(B))), A.map((a, i) => ref(a, B[i]!)));
      }));
  }
  test("JS numbers on either side; broadcasting", () =>
    mx.scope(() => {
      expect(mx.subtract(10, mx.array([1, 2])).toList()).toEqual([9, 8]);
      expect(mx.add(mx.array([[1], [2]]), mx.array([10, 20])).toList()).toEqual([[11, 21], [12, 22]]);
      const i = mx.add(mx.array(new Int32Array([1, 2])), 3);
      expect(i.dtype).toBe(mx.Dtype.int32);
      expect(mx.add(mx.array(new Int32Array([1])), 0.5).dtype).toBe(mx.Dtype.float32);
    }));
  test("comparisons produce bool; where selects", () =>
    mx.scope(() => {
      const a = mx.array([1, 5, 3]);
      const m = mx.greater(a, 2);
      expect(m.dtype).toBe(mx.Dtype.bool);
      expect(mx.where(m, a, -1).toList()).toEqual([-1, 5, 3]);
      expect(mx.where(m, 1, 0).toList()).toEqual([0, 1, 1]);
    }));
  test("matmul and addmm", () =>
    mx.scope(() => {
      const a = randomFloats(3 * 4, 1);
      const b = randomFloats(4 * 5, 2);
      const A_ = mx.array(a, { shape: [3, 4] });
      const B_ = mx.array(b, { shape: [4, 5] });
      expectClose(f32(mx.matmul(A_, B_)), Array.from(matmul(a, b, 3, 4, 5)), 1e-5);
      const c = mx.ones([3, 5]);
      expectClose(f32(mx.addmm(c, A_, B_, 2, 0.5)), Array.from(matmul(a, b, 3, 4, 5), (v) => 2 * v + 0.5), 1e-5);
    }));
  test("clip with one or both bounds", () =>
    mx.scope(() => {
      const a = mx.array([-3, 0, 3]);
      expect(mx.clip(a, -1, 1).toList()).toEqual([-1, 0, 1]);
      expect(mx.clip(a, null, 1).toList()).toEqual([-3, 0, 1]);
      expect(mx.clip(a, 0, null).toList()).toEqual([0, 0, 3]);
    }));
});

function matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let t = 0; t < k; t++) out[i * n + j]! += a[i * k + t]! * b[t * n + j]!;
  return out;
}

describe("reductions, scans, softmax", () => {
  const M = [[1, 5, 2], [-4, 0, 3]];
  test("sum / mean / max / min over axes and all", () =>
    mx.scope(() => {
      const a = mx.array(M);
      expect(mx.sum(a).item()).toBe(7);
      expect(mx.sum(a, 0).toList()).toEqual([-3, 5, 5]);
      expect(mx.sum(a, 1, true).shape).toEqual([2, 1]);
      expect(mx.mean(a, -1).toList()).toEqual([8 / 3, -1 / 3].map((x) => Math.fround(x)));
      expect(mx.max(a, 1).toList()).toEqual([5, 3]);
      expect(mx.min(a, [0, 1]).item()).toBe(-4);
      expect(mx.prod(a, 0).toList()).toEqual([-4, 0, 6]);
    }));
  test("argmax / argmin", () =>
    mx.scope(() => {
      const a = mx.array(M);
      expect(mx.argmax(a, 1).toList()).toEqual([1, 2]);
      expect(mx.argmin(a, 0).toList()).toEqual([1, 1, 0]);
      expect(mx.argmax(a).item()).toBe(1);
      expect(mx.argmax(a, 1).dtype).toBe(mx.Dtype.uint32);
    }));
  test("softmax and logsumexp match the TS definitions", () =>
    mx.scope(() => {
      const row = [1, 2, 3, -1];
      const lse = Math.log(row.reduce((s, x) => s + Math.exp(x), 0));
      const a = mx.array([row]);
      expectClose(f32(mx.softmax(a, -1)), row.map((x) => Math.exp(x - lse)), 1e-6);
      expectClose(f32(mx.logsumexp(a, -1)), [lse], 1e-6);
      const b = mx.array([row], { dtype: mx.Dtype.bfloat16 });
      expect(mx.softmax(b, -1, true).dtype).toBe(mx.Dtype.bfloat16);
    }));
  test("cumsum forward, reverse, exclusive", () =>
    mx.scope(() => {
      const a = mx.array([1, 2, 3, 4]);
      expect(mx.cumsum(a, 0).toList()).toEqual([1, 3, 6, 10]);
      expect(mx.cumsum(a, 0, { reverse: true }).toList()).toEqual([10, 9, 7, 4]);
      expect(mx.cumsum(a, 0, { inclusive: false }).toList()).toEqual([0, 1, 3, 6]);
    }));
});

describe("sorting and selection", () => {
  const V = [3, 1, 4, 1.5, 9, 2, 6];
  test("sort / argsort", () =>
    mx.scope(() => {
      const a = mx.array(V);
      expect(mx.sort(a).toList()).toEqual([...V].sort((x, y) => x - y));
      const idx = mx.argsort(a).toList() as number[];
      expect(idx.map((i) => V[i])).toEqual([...V].sort((x, y) => x - y));
    }));
  test("argpartition puts the kth element in sorted position", () =>
    mx.scope(() => {
      const idx = mx.argpartition(mx.array(V), 2).toList() as number[];
      const sorted = [...V].sort((x, y) => x - y);
      expect(V[idx[2]!]).toBe(sorted[2]!);
      for (let i = 0; i < 2; i++) expect(V[idx[i]!]!).toBeLessThanOrEqual(sorted[2]!);
      for (let i = 3; i < V.length; i++) expect(V[idx[i]!]!).toBeGreaterThanOrEqual(sorted[2]!);
    }));
  test("topk returns the k largest", () =>
    mx.scope(() => {
      const t = (mx.topk(mx.array(V), 3).toList() as number[]).sort((x, y) => x - y);
      expect(t).toEqual([4, 6, 9]);
    }));
});

describe("shapes", () => {
  test("reshape / transpose / swapaxes / expandDims / squeeze / flatten", () =>
    mx.scope(() => {
      const a = mx.arange(24);
      expect(a.dtype).toBe(mx.Dtype.int32);
      const b = mx.reshape(a, [2, 3, 4]);
      expect(mx.transpose(b, [2, 0, 1]).shape).toEqual([4, 2, 3]);
      expect(mx.transpose(b).shape).toEqual([4, 3, 2]);
      const s = mx.swapaxes(b, 0, 2);
      expect(s.shape).toEqual([4, 3, 2]);
      // s[i][j][k] = b[k][j][i] = k*12 + j*4 + i
      expect((s.toList() as number[][][])[3]![2]![1]).toBe(1 * 12 + 2 * 4 + 3);
      expect(mx.expandDims(b, [0, -1]).shape).toEqual([1, 2, 3, 4, 1]);
      expect(mx.squeeze(mx.zeros([1, 3, 1])).shape).toEqual([3]);
      expect(mx.squeeze(mx.zeros([1, 3, 1]), 0).shape).toEqual([3, 1]);
      expect(mx.flatten(b, 1).shape).toEqual([2, 12]);
      expect(mx.reshape(b, [-1, 4]).shape).toEqual([6, 4]);
    }));
  test("slice with start/stop/strides and sliceAxis", () =>
    mx.scope(() => {
      const a = mx.reshape(mx.arange(12), [3, 4]);
      expect(mx.slice(a, [1, 0], [3, 4], [1, 2]).toList()).toEqual([[4, 6], [8, 10]]);
      expect(mx.sliceAxis(a, 1, 1, 3).toList()).toEqual([[1, 2], [5, 6], [9, 10]]);
      expect(mx.slice(a, [-1, 0], [3, 2]).toList()).toEqual([[8, 9]]);
    }));
  test("sliceUpdate writes a window (KV-cache style), sliceUpdateDynamic at an array offset", () =>
    mx.scope(() => {
      const cache = mx.zeros([1, 2, 4, 2]);
      const kv = mx.ones([1, 2, 1, 2]);
      const u = mx.sliceUpdate(cache, kv, [0, 0, 2, 0], [1, 2, 3, 2]);
      const v = u.toFloat32Array();
      expect(Array.from(v).reduce((s, x) => s + x, 0)).toBe(4);
      expect((u.toList() as number[][][][])[0]![1]![2]).toEqual([1, 1]);
      const d = mx.sliceUpdateDynamic(cache, kv, mx.array(new Int32Array([3])), [2]);
      expect((d.toList() as number[][][][])[0]![0]![3]).toEqual([1, 1]);
      const s = mx.sliceDynamic(u, mx.array(new Int32Array([2])), [2], [1, 2, 1, 2]);
      expect(s.shape).toEqual([1, 2, 1, 2]);
      expect(mx.sum(s).item()).toBe(4);
    }));
  test("concatenate / stack / split", () =>
    mx.scope(() => {
      const a = mx.array([[1, 2]]);
      const b = mx.array([[3, 4]]);
      expect(mx.concatenate([a, b]).toList()).toEqual([[1, 2], [3, 4]]);
      expect(mx.concatenate([a, b], 1).toList()).toEqual([[1, 2, 3, 4]]);
      expect(mx.stack([a, b], 0).shape).toEqual([2, 1, 2]);
      const parts = mx.split(mx.arange(6), 3);
      expect(parts.map((p) => p.toList())).toEqual([[0, 1], [2, 3], [4, 5]]);
      const at = mx.split(mx.reshape(mx.arange(6), [2, 3]), [1], 1);
      expect(at.map((p) => p.shape)).toEqual([[2, 1], [2, 2]]);
    }));
  test("broadcastTo / repeat / tile / pad / tri", () =>
    mx.scope(() => {
      expect(mx.repeat(mx.array([1, 2]), 2, 0).toList()).toEqual([1, 1, 2, 2]);
      expect(mx.tile(mx.array([1, 2]), [2]).toList()).toEqual([1, 2, 1, 2]);
      expect(mx.pad(mx.array([1, 2]), [[1, 2]], 9).toList()).toEqual([9, 1, 2, 9, 9]);
      expect(mx.tri(3).toList()).toEqual([[1, 0, 0], [1, 1, 0], [1, 1, 1]]);
      expect(mx.triu(mx.ones([2, 2]), 1).toList()).toEqual([[0, 1], [0, 0]]);
    }));
  test("zeros / ones / full / arange with dtypes; contiguous; astype", () =>
    mx.scope(() => {
      expect(mx.full([2], 7, mx.Dtype.int32).toList()).toEqual([7, 7]);
      expect(mx.ones([2], mx.Dtype.bfloat16).dtype).toBe(mx.Dtype.bfloat16);
      expect(mx.arange(0, 1, 0.25).toList()).toEqual([0, 0.25, 0.5, 0.75]);
      expect(mx.arange(5, 0, -2).toList()).toEqual([5, 3, 1]);
      const t = mx.contiguous(mx.transpose(mx.reshape(mx.arange(6), [2, 3])));
      expect(t.toList()).toEqual([[0, 3], [1, 4], [2, 5]]);
      expect(mx.astype(mx.array([1.7, -1.7]), mx.Dtype.int32).toList()).toEqual([1, -1]);
    }));
});

describe("indexing", () => {
  test("take along an axis (embedding lookup) and flat", () =>
    mx.scope(() => {
      const table = mx.reshape(mx.arange(12), [4, 3]);
      const ids = mx.array(new Int32Array([3, 0, 3]));
      expect(mx.take(table, ids, 0).toList()).toEqual([[9, 10, 11], [0, 1, 2], [9, 10, 11]]);
      expect(mx.take(table, mx.array(new Int32Array([5, 11]))).toList()).toEqual([5, 11]);
    }));
  test("takeAlongAxis / putAlongAxis (top-p style inverse permutation)", () =>
    mx.scope(() => {
      const v = mx.array([[0.1, 0.5, 0.2, 0.2]]);
      const order = mx.argsort(v, -1);
      const sorted = mx.takeAlongAxis(v, order, -1);
      expectClose(f32(sorted), [0.1, 0.2, 0.2, 0.5]);
      const back = mx.putAlongAxis(mx.zerosLike(v), order, sorted, -1);
      expectClose(f32(back), [0.1, 0.5, 0.2, 0.2]);
      const masked = mx.putAlongAxis(v, mx.array(new Int32Array([1]), { shape: [1, 1] }), -Infinity, -1);
      expect(f32(masked)[1]).toBe(-Infinity);
    }));
});

describe("random", () => {
  test("keys make sampling reproducible; categorical follows the logits", () =>
    mx.scope(() => {
      const u1 = mx.random.uniform({ shape: [4], key: mx.random.key(7) });
      const u2 = mx.random.uniform({ shape: [4], key: mx.random.key(7) });
      expect(u1.toList()).toEqual(u2.toList());
      for (const x of u1.toFloat32Array()) expect(x >= 0 && x < 1).toBe(true);
      // One logit dominates: every draw picks it.
      const logits = mx.array([[0, 0, 30, 0]]);
      const draws = mx.random.categorical(logits, { numSamples: 50, key: mx.random.key(1) });
      expect(draws.shape).toEqual([1, 50]);
      expect(new Set((draws.toList() as number[][])[0]!)).toEqual(new Set([2]));
      expect(mx.random.categorical(logits).shape).toEqual([1]);
      expect(mx.random.split(mx.random.key(3), 3).shape).toEqual([3, 2]);
    }));
  test("normal has roughly the requested moments", () =>
    mx.scope(() => {
      const n = mx.random.normal({ shape: [20000], loc: 2, scale: 0.5, key: mx.random.key(11) });
      expect(mx.mean(n).item()).toBeCloseTo(2, 1);
      expect(Math.sqrt(mx.variance(n).item())).toBeCloseTo(0.5, 1);
    }));
});

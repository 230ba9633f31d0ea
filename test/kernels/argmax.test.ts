/**
 * The decode step's argmax kernel (kernels/argmax.cpp) gives MLX's argmax index for index: the first NaN of a row,
 * else the first index of its maximum (ties across and within the 8 lanes, -0 = 0, all -inf, ±inf), on odd row
 * lengths (the vector body, its tail, rows shorter than one pass), strided inputs, AVX2 and scalar.
 */
import { afterAll, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { forceIsa, kernelArgmaxRows, kernelInfo } from "../../src/mlx/kernels.ts";

const info = kernelInfo();
afterAll(() => forceIsa(null));

function cases(): { name: string; x: Float32Array; B: number; V: number }[] {
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 4 - 2;
  const out: { name: string; x: Float32Array; B: number; V: number }[] = [];
  for (const V of [1, 5, 8, 15, 16, 17, 31, 40, 1003]) {
    const B = 6;
    const x = Float32Array.from({ length: B * V }, rnd);
    // row 1: the maximum twice, in different lanes; row 2: twice in one lane; row 3: all -inf; row 4: a NaN in the
    // body and one later; row 5: -0 and 0 as the maximum, +inf late
    const at = (b: number, i: number, v: number) => {
      if (i < V) x[b * V + i] = v;
    };
    at(1, V - 1, 9);
    at(1, Math.floor(V / 3), 9);
    at(2, V - 1, 9);
    at(2, Math.max(0, V - 9), 9);
    for (let i = 0; i < V; i++) x[3 * V + i] = -Infinity;
    at(4, Math.floor(V / 2), Number.NaN);
    at(4, V - 1, Number.NaN);
    for (let i = 0; i < V; i++) x[5 * V + i] = -1 - i;
    at(5, Math.floor(V / 4), -0);
    at(5, Math.floor(V / 2) + 1, 0);
    out.push({ name: `V=${V}`, x, B, V });
  }
  // a NaN only in the tail past the last full pass of 8
  const x = Float32Array.from({ length: 21 }, (_, i) => i);
  x[20] = Number.NaN;
  out.push({ name: "NaN in the tail", x, B: 1, V: 21 });
  return out;
}

const isas = (["avx2", "scalar"] as const).filter((i) => i === "scalar" || info.isa === "avx2" || info.isa === "avx512");

test.skipIf(!info.enabled)("argmax_rows = MLX's argmax on every row, AVX2 and scalar", () => {
  for (const isa of isas) {
    forceIsa(isa);
    for (const c of cases()) {
      const a = mx.array(c.x, { shape: [c.B, c.V] });
      const got = kernelArgmaxRows(a)!;
      expect(got).not.toBeNull();
      expect(got.dtype).toBe(mx.Dtype.uint32);
      expect(got.shape).toEqual([c.B]);
      expect([...got.toInt32Array()], `${isa} ${c.name}`).toEqual([...mx.argmax(a, -1).toInt32Array()]);
    }
  }
  forceIsa(null);
});

test.skipIf(!info.enabled)("argmax_rows on a strided view, a 3-d batch and one row", () => {
  const a = mx.random.normal({ shape: [37, 5], key: mx.random.key(3) });
  const t = mx.transpose(a, [1, 0]);
  expect([...kernelArgmaxRows(t)!.toInt32Array()]).toEqual([...mx.argmax(t, -1).toInt32Array()]);
  const b = mx.random.normal({ shape: [3, 1, 49155], key: mx.random.key(4) });
  const kb = kernelArgmaxRows(b)!;
  expect(kb.shape).toEqual([3, 1]);
  expect([...kb.toInt32Array()]).toEqual([...mx.argmax(b, -1).toInt32Array()]);
  const one = mx.random.normal({ shape: [100], key: mx.random.key(5) });
  expect(kernelArgmaxRows(one)!.toInt32Array()[0]).toBe(mx.argmax(one, -1).toInt32Array()[0]);
  // other dtypes go to MLX's op
  const h = one.astype(mx.Dtype.float16);
  expect(kernelArgmaxRows(h)!.toInt32Array()[0]).toBe(mx.argmax(h, -1).toInt32Array()[0]);
});

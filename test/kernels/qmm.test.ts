/**
 * Our quantized-matmul kernel against MLX's own op on random inputs: both must sit within f32 rounding
 * of an f64 reference (test/support/qmm-check.ts) over MLX's dequantized weights (|err| ≤ K·2⁻²⁴·Σ|x·w|, the classic
 * bound for a K-term f32 dot product). int8 activation quantization would be ~100× outside it.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { type Array, astype, contiguous, Dtype, quantize, quantizedMatmul, random, reshape, scope, slice, transpose } from "../../src/mlx/index.ts";
import { fastQuantizedMatmul, forceScalarKernels, kernelInfo, setKernelsEnabled } from "../../src/mlx/kernels.ts";
import { check, FORMATS, inputs, worstRatio } from "../support/qmm-check.ts";

const info = kernelInfo();
afterAll(() => {
  setKernelsEnabled(null);
  forceScalarKernels(false);
});

const formats = FORMATS;

describe.skipIf(info.level === "none")(`fastQuantizedMatmul (${info.level}, ${info.threads} threads)`, () => {
  for (const f of formats) {
    const name = `${f.mode} ${f.bits}-bit gs${f.gs}`;
    test(`${name}: rows 1, 7, 64, 513 at K=384`, () => {
      for (const M of [1, 7, 64, 513]) check({ ...f, M, K: 384, N: M === 513 ? 40 : 72 });
    });
    test(`${name}: K an odd number of groups, N odd, every row-tile height`, () => {
      for (const M of [2, 3, 4, 5, 6, 9]) check({ ...f, M, K: f.gs * 3, N: 37 });
      check({ ...f, M: 1, K: f.gs * 5, N: 1 });
    });
  }

  test("decode shapes of SmolLM2-135M, affine 4-bit gs64", () => {
    check({ mode: "affine", bits: 4, gs: 64, M: 1, K: 576, N: 1536 });
    check({ mode: "affine", bits: 4, gs: 64, M: 1, K: 1536, N: 576 });
  });

  test("the scalar fallback gives the same answers", () => {
    forceScalarKernels(true);
    try {
      for (const f of formats) check({ ...f, M: 5, K: f.gs * 3, N: 19 });
    } finally {
      forceScalarKernels(false);
    }
  });

  test("batched x [2, 3, K] and bf16 activations keep MLX's shapes and dtypes", () => {
    scope(() => {
      const c = { mode: "affine" as const, bits: 4, gs: 64, M: 6, K: 128, N: 24 };
      const { x, wq, scales, biases, wdq } = inputs(c);
      const o = { groupSize: 64, bits: 4 };
      const x3 = reshape(x, [2, 3, 128]);
      const out = fastQuantizedMatmul(x3, wq, scales, biases, o);
      expect(out.shape).toEqual([2, 3, 24]);
      expect(worstRatio(x.toFloat32Array(), wdq, out.toFloat32Array(), c)).toBeLessThanOrEqual(1);
      const xb = astype(x3, Dtype.bfloat16);
      const sb = astype(scales, Dtype.bfloat16);
      const bb = astype(biases!, Dtype.bfloat16);
      const ob = fastQuantizedMatmul(xb, wq, sb, bb, o);
      expect(ob.dtype).toBe(Dtype.bfloat16);
      expect(ob.shape).toEqual(quantizedMatmul(xb, wq, sb, bb, o).shape);
      // The kernel widens bf16 inputs to f32 exactly and rounds the f32 sums once: within one bf16 ulp of
      // MLX's op on the same values in f32 (MLX's own bf16 path accumulates in bf16 and is coarser).
      const f32 = (a: Array): Array => astype(a, Dtype.float32);
      const r = quantizedMatmul(f32(xb), wq, f32(sb), f32(bb), o).toFloat32Array();
      const got = f32(ob).toFloat32Array();
      for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - r[i]!)).toBeLessThanOrEqual(2 ** -8 * Math.abs(r[i]!) + 1e-4);
    });
  });

  test("strided inputs (a transposed x, a sliced weight) are read correctly", () => {
    scope(() => {
      const c = { mode: "affine" as const, bits: 4, gs: 32, M: 5, K: 96, N: 16 };
      const { x, wq, scales, biases } = inputs(c);
      const o = { groupSize: 32, bits: 4 };
      const xt = transpose(contiguous(transpose(x))); // same values, column-major strides
      const ws = slice(wq, [4, 0], [12, wq.shape[1]!]);
      const ss = slice(scales, [4, 0], [12, scales.shape[1]!]);
      const bs = slice(biases!, [4, 0], [12, biases!.shape[1]!]);
      expect(fastQuantizedMatmul(xt, ws, ss, bs, o).toFloat32Array()).toEqual(
        fastQuantizedMatmul(contiguous(x), contiguous(ws), contiguous(ss), contiguous(bs), o).toFloat32Array(),
      );
      const xs = slice(x, [0, 32], [5, 96]); // rows with a stride wider than their length
      const w2 = quantize(random.normal({ shape: [8, 64], key: random.key(99) }), { groupSize: 32, bits: 4 });
      const ref = quantizedMatmul(xs, w2.wq, w2.scales, w2.biases, o).toFloat32Array();
      const got = fastQuantizedMatmul(xs, w2.wq, w2.scales, w2.biases, o).toFloat32Array();
      for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(ref[i]!)));
    });
  });

  test("unsupported cases (transpose=false, 3-bit) fall back to MLX's op with identical results", () => {
    scope(() => {
      const x = random.normal({ shape: [4, 64], key: random.key(7) });
      const w = random.normal({ shape: [64, 32], key: random.key(8) });
      const q = quantize(w, { groupSize: 32, bits: 4 });
      const o = { groupSize: 32, bits: 4, transpose: false };
      expect(fastQuantizedMatmul(x, q.wq, q.scales, q.biases, o).toFloat32Array()).toEqual(
        quantizedMatmul(x, q.wq, q.scales, q.biases, o).toFloat32Array(),
      );
      const w3 = random.normal({ shape: [16, 64], key: random.key(9) });
      const q3 = quantize(w3, { groupSize: 32, bits: 3 });
      const o3 = { groupSize: 32, bits: 3 };
      expect(fastQuantizedMatmul(x, q3.wq, q3.scales, q3.biases, o3).toFloat32Array()).toEqual(
        quantizedMatmul(x, q3.wq, q3.scales, q3.biases, o3).toFloat32Array(),
      );
    });
  });

  test("shape errors surface as MLX errors, not crashes", () => {
    scope(() => {
      const x = random.normal({ shape: [2, 100], key: random.key(3) });
      const w = random.normal({ shape: [16, 128], key: random.key(4) });
      const q = quantize(w, { groupSize: 64, bits: 4 });
      expect(() => fastQuantizedMatmul(x, q.wq, q.scales, q.biases, { groupSize: 64, bits: 4 })).toThrow();
    });
  });

  test("MLXK_KERNELS=0 switch routes to MLX's op bit for bit", () => {
    scope(() => {
      const c = { mode: "affine" as const, bits: 4, gs: 64, M: 2, K: 256, N: 48 };
      const { x, wq, scales, biases } = inputs(c);
      const o = { groupSize: 64, bits: 4 };
      setKernelsEnabled(false);
      try {
        expect(fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array()).toEqual(
          quantizedMatmul(x, wq, scales, biases, o).toFloat32Array(),
        );
      } finally {
        setKernelsEnabled(null);
      }
    });
  });
});

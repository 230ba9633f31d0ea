/**
 * Our quantized-matmul kernel checked against MLX's op and an f64 reference (test/kernels/qmm*.test.ts): both
 * must sit within f32 rounding of the f64 sum over MLX's dequantized weights (|err| ≤ K·2⁻²⁴·Σ|x·w|, the
 * classic bound for a K-term f32 dot product).
 */
import { expect } from "bun:test";
import { type Array, Dtype, dequantize, quantize, quantizedMatmul, random, scope } from "../../src/mlx/index.ts";
import { fastQuantizedMatmul } from "../../src/mlx/kernels.ts";
import type { QuantMode } from "../../src/mlx/quant.ts";

export interface Case {
  mode: QuantMode;
  bits: number;
  gs: number;
  M: number;
  K: number;
  N: number;
}

let seed = 1;
export function inputs(c: Case): { x: Array; wq: Array; scales: Array; biases: Array | null; wdq: Float32Array } {
  const x = random.normal({ shape: [c.M, c.K], key: random.key(seed++) });
  const w = random.normal({ shape: [c.N, c.K], scale: 0.2, key: random.key(seed++) });
  const q = quantize(w, { groupSize: c.gs, bits: c.bits, mode: c.mode });
  const wdq = dequantize(q.wq, q.scales, q.biases, { groupSize: c.gs, bits: c.bits, mode: c.mode }).toFloat32Array();
  return { x, ...q, wdq };
}

/** f64 x·wdqᵀ and Σ|x·w| per output. */
export function reference(xs: Float32Array, wdq: Float32Array, c: Case): { ref: Float64Array; mag: Float64Array } {
  const ref = new Float64Array(c.M * c.N);
  const mag = new Float64Array(c.M * c.N);
  for (let m = 0; m < c.M; m++) {
    for (let n = 0; n < c.N; n++) {
      let r = 0;
      let a = 0;
      for (let k = 0; k < c.K; k++) {
        const p = xs[m * c.K + k]! * wdq[n * c.K + k]!;
        r += p;
        a += Math.abs(p);
      }
      ref[m * c.N + n] = r;
      mag[m * c.N + n] = a;
    }
  }
  return { ref, mag };
}

/** Max of |got-ref| / bound over all outputs; ≤ 1 means within f32 rounding. */
export function worstRatio(xs: Float32Array, wdq: Float32Array, got: Float32Array, c: Case): number {
  const { ref, mag } = reference(xs, wdq, c);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!) / (c.K * 2 ** -24 * mag[i]! + 1e-30));
  return worst;
}

/** The kernel and MLX's op on one random case: same shape and dtype, both within f32 rounding of f64. */
export function check(c: Case): void {
  scope(() => {
    const { x, wq, scales, biases, wdq } = inputs(c);
    const o = { groupSize: c.gs, bits: c.bits, mode: c.mode };
    const xs = x.toFloat32Array();
    const mine = fastQuantizedMatmul(x, wq, scales, biases, o);
    expect(mine.shape).toEqual([c.M, c.N]);
    expect(mine.dtype).toBe(Dtype.float32);
    const theirs = quantizedMatmul(x, wq, scales, biases, o).toFloat32Array();
    const got = mine.toFloat32Array();
    expect(worstRatio(xs, wdq, theirs, c)).toBeLessThanOrEqual(1);
    expect(worstRatio(xs, wdq, got, c)).toBeLessThanOrEqual(1);
  });
}

export const FORMATS: { mode: QuantMode; bits: number; gs: number }[] = [
  { mode: "affine", bits: 4, gs: 32 },
  { mode: "affine", bits: 4, gs: 64 },
  { mode: "affine", bits: 4, gs: 128 },
  { mode: "affine", bits: 8, gs: 32 },
  { mode: "affine", bits: 8, gs: 64 },
  { mode: "affine", bits: 8, gs: 128 },
  { mode: "mxfp4", bits: 4, gs: 32 },
];

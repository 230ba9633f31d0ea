import { describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { expectClose, randomFloats } from "./helpers.ts";

const N = 8;
const K = 256;

/** Dequantize MLX's affine layout in TS: q packed LSB-first in uint32 words; w = scale·q + bias per group. */
function dequantAffineRef(wq: Uint32Array, scales: Float32Array, biases: Float32Array, rows: number, k: number, gs: number, bits: number): Float32Array {
  const out = new Float32Array(rows * k);
  const wordsPerRow = (k * bits) / 32;
  const mask = 2 ** bits - 1;
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < k; j++) {
      const bit = j * bits;
      const q = (wq[r * wordsPerRow + Math.floor(bit / 32)]! >>> (bit % 32)) & mask;
      const g = r * (k / gs) + Math.floor(j / gs);
      out[r * k + j] = scales[g]! * q + biases[g]!;
    }
  return out;
}

const FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
/** mxfp4: e2m1 nibbles (bit 3 = sign), one E8M0 exponent (2^(e-127)) per 32 values. */
function dequantMxfp4Ref(wq: Uint32Array, scales: Uint8Array, rows: number, k: number): Float32Array {
  const out = new Float32Array(rows * k);
  const wordsPerRow = k / 8;
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < k; j++) {
      const nib = (wq[r * wordsPerRow + Math.floor(j / 8)]! >>> ((j % 8) * 4)) & 0xf;
      const v = FP4[nib & 7]! * (nib & 8 ? -1 : 1);
      out[r * k + j] = v * 2 ** (scales[r * (k / 32) + Math.floor(j / 32)]! - 127);
    }
  return out;
}

/** x[m,k] · w[n,k]ᵀ in float64. */
function linearRef(x: Float32Array, w: Float32Array, m: number, k: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += x[i * k + t]! * w[j * k + t]!;
      out[i * n + j] = s;
    }
  return out;
}

describe("affine quantization", () => {
  const wHost = randomFloats(N * K, 42, -2, 2);
  const xHost = randomFloats(3 * K, 7);
  for (const bits of [4, 8]) {
    for (const gs of [32, 64, 128]) {
      test(`${bits}-bit, group ${gs}: layout, round trip, quantized_matmul`, () =>
        mx.scope(() => {
          const w = mx.array(wHost, { shape: [N, K] });
          const { wq, scales, biases } = mx.quantize(w, { groupSize: gs, bits });
          expect(wq.dtype).toBe(mx.Dtype.uint32);
          expect(wq.shape).toEqual([N, (K * bits) / 32]);
          expect(scales.shape).toEqual([N, K / gs]);
          expect(biases!.shape).toEqual([N, K / gs]);
          const sc = scales.toFloat32Array();
          const ref = dequantAffineRef(wq.toUint32Array(), sc, biases!.toFloat32Array(), N, K, gs, bits);
          const dq = mx.dequantize(wq, scales, biases, { groupSize: gs, bits });
          expectClose(dq.toFloat32Array(), ref, 1e-6, 1e-6);
          // every value lands within one quantization step of the original
          for (let i = 0; i < wHost.length; i++) {
            const step = Math.abs(sc[Math.floor(i / gs)]!);
            expect(Math.abs(ref[i]! - wHost[i]!)).toBeLessThanOrEqual(step + 1e-6);
          }
          const x = mx.array(xHost, { shape: [3, K] });
          const y = mx.quantizedMatmul(x, wq, scales, biases, { groupSize: gs, bits });
          expect(y.shape).toEqual([3, N]);
          expectClose(y.toFloat32Array(), linearRef(xHost, ref, 3, K, N), 1e-4, 1e-4);
          // equals the float matmul with the dequantized weights
          const yf = mx.matmul(x, mx.transpose(dq));
          expectClose(y.toFloat32Array(), yf.toFloat32Array(), 1e-4, 1e-4);
        }));
    }
  }

  test("transpose=false multiplies by the [K, N] layout", () =>
    mx.scope(() => {
      const w = mx.array(randomFloats(64 * 32, 3), { shape: [64, 32] }); // [K, N], quantized along N
      const q = mx.quantize(w, { groupSize: 32, bits: 4 });
      const x = mx.array(randomFloats(2 * 64, 4), { shape: [2, 64] });
      const y = mx.quantizedMatmul(x, q.wq, q.scales, q.biases, { groupSize: 32, bits: 4, transpose: false });
      const yf = mx.matmul(x, mx.dequantize(q.wq, q.scales, q.biases, { groupSize: 32, bits: 4 }));
      expectClose(y.toFloat32Array(), yf.toFloat32Array(), 1e-4, 1e-4);
    }));

  // MLX's CPU kernel accumulates in the activation dtype, so bf16 is only roughly close.
  test("bf16 activations and scales give bf16 output near the f32 result", () =>
    mx.scope(() => {
      const w = mx.array(wHost, { shape: [N, K] });
      const q = mx.quantize(w, { groupSize: 64, bits: 4 });
      const x = mx.array(xHost, { shape: [3, K] });
      const y32 = mx.quantizedMatmul(x, q.wq, q.scales, q.biases);
      const yb = mx.quantizedMatmul(x.astype(mx.Dtype.bfloat16), q.wq, q.scales.astype(mx.Dtype.bfloat16), q.biases!.astype(mx.Dtype.bfloat16));
      expect(yb.dtype).toBe(mx.Dtype.bfloat16);
      const a = yb.toFloat32Array();
      const b = y32.toFloat32Array();
      let err = 0;
      let norm = 0;
      for (let i = 0; i < a.length; i++) {
        err += (a[i]! - b[i]!) ** 2;
        norm += b[i]! ** 2;
      }
      expect(Math.sqrt(err / norm)).toBeLessThan(0.1);
    }));

  test("invalid group size is an MlxError", () =>
    mx.scope(() => {
      expect(() => mx.quantize(mx.ones([4, 64]), { groupSize: 48, bits: 4 })).toThrow(mx.MlxError);
    }));
});

describe("mxfp4", () => {
  test("layout, TS decode, quantized_matmul", () =>
    mx.scope(() => {
      const wHost = randomFloats(N * K, 9, -3, 3);
      const w = mx.array(wHost, { shape: [N, K] });
      const { wq, scales, biases } = mx.quantize(w, { mode: "mxfp4" });
      expect(biases).toBeNull();
      expect(wq.shape).toEqual([N, K / 8]);
      expect(scales.dtype).toBe(mx.Dtype.uint8);
      expect(scales.shape).toEqual([N, K / 32]);
      const ref = dequantMxfp4Ref(wq.toUint32Array(), scales.toUint8Array(), N, K);
      const dq = mx.dequantize(wq, scales, null, { mode: "mxfp4" });
      expectClose(dq.toFloat32Array(), ref, 0, 0);
      // fp4 keeps ~1 significant bit: relative error per group bounded by the e2m1 grid
      for (let i = 0; i < wHost.length; i++) expect(Math.abs(ref[i]! - wHost[i]!)).toBeLessThanOrEqual(Math.abs(wHost[i]!) * 0.25 + 0.5);
      const xHost = randomFloats(2 * K, 5);
      const y = mx.quantizedMatmul(mx.array(xHost, { shape: [2, K] }), wq, scales, null, { mode: "mxfp4" });
      expectClose(y.toFloat32Array(), linearRef(xHost, ref, 2, K, N), 1e-4, 1e-4);
    }));
});

describe("gather_qmm (mixture of experts)", () => {
  test("each row uses the expert chosen by rhsIndices", () =>
    mx.scope(() => {
      const E = 3;
      const n = 16;
      const k = 64;
      const experts = mx.array(randomFloats(E * n * k, 11), { shape: [E, n, k] });
      const q = mx.quantize(experts, { groupSize: 32, bits: 4 });
      expect(q.wq.shape).toEqual([E, n, k / 8]);
      const x = mx.array(randomFloats(4 * k, 12), { shape: [4, 1, k] });
      const idx = [2, 0, 1, 2];
      const y = mx.gatherQmm(x, q.wq, q.scales, q.biases, { rhsIndices: mx.array(new Uint32Array(idx)), groupSize: 32, bits: 4 });
      expect(y.shape).toEqual([4, 1, n]);
      const got = y.toFloat32Array();
      for (let t = 0; t < 4; t++) {
        const e = mx.array(new Int32Array([idx[t]!]));
        const pick = (a: mx.Array): mx.Array => mx.squeeze(mx.take(a, e, 0), 0);
        const xt = mx.reshape(mx.take(x, mx.array(new Int32Array([t])), 0), [1, k]);
        const ref = mx.quantizedMatmul(xt, pick(q.wq), pick(q.scales), pick(q.biases!), { groupSize: 32, bits: 4 });
        expectClose(got.subarray(t * n, (t + 1) * n), ref.toFloat32Array(), 1e-5, 1e-5);
      }
    }));

  test("gather_mm with float experts", () =>
    mx.scope(() => {
      const a = mx.array(randomFloats(2 * 4, 1), { shape: [2, 1, 4] });
      const b = mx.array(randomFloats(3 * 4 * 5, 2), { shape: [3, 4, 5] });
      const y = mx.gatherMm(a, b, { rhsIndices: mx.array(new Uint32Array([1, 2])) });
      expect(y.shape).toEqual([2, 1, 5]);
      const want = mx.matmul(mx.reshape(mx.take(a, mx.array(new Int32Array([1])), 0), [1, 4]), mx.squeeze(mx.take(b, mx.array(new Int32Array([2])), 0), 0));
      expectClose(y.toFloat32Array().subarray(5), want.toFloat32Array(), 1e-5);
    }));
});

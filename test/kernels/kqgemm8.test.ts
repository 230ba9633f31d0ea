/**
 * The opt-in int8 K-quant GEMM (mlx-c/src/kernels/kqgemm8.cpp: u8 codes × q8_K x on VNNI, MLXK_INT8_ACT=1),
 * forced on from one row (setQgemmRows(1)) so every shape runs it:
 * - Q4_K/Q5_K/Q6_K within 8-bit rounding of an f64 sum over ggml's dequantized values (x rounded to 1/254 of
 *   its block's max: every output within 2e-3 of Σ|x||w|, relative RMS error 0.1–1.2%, ~0.6%), and far from f32 rounding (the int8 path really ran), on M from 1 to past
 *   one task's 512 rows and not a multiple of the 6-row tile, N not a multiple of the 32-column panel;
 * - the same integer sums as the q8_K dot tiles (setQgemmRows(0)): equal up to the f32 accumulation order;
 * - a row's result does not depend on the other rows (prefix of the rows = the same bits);
 * - a decode batch ([B, 1, K], B past the threshold) keeps the one-row q8_K tiles: each row = the row alone;
 * - MoE experts through kernelGatherQmm (kqmm_many) at prefill sizes, skewed routing (many rows, a few, one).
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { forceIsa, int8Available, kernelInfo, setQgemmRows } from "../../src/mlx/kernels.ts";
import { KQUANT_BLOCK_BYTES, type KQuantMode, kernelGatherQmm, kquantDequantize, kquantInt8, kquantMatmul } from "../../src/mlx/kquant.ts";
import { quantizeQ4K, quantizeQ5K, quantizeQ6K } from "../support/kquants.ts";
import { f64Matmul, maxAbs } from "../support/f64-ref.ts";

afterAll(() => {
  setQgemmRows(null);
  forceIsa(null);
});

let seed = 41;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const floats = (n: number) => Float32Array.from({ length: n }, () => rnd() * 2 - 1);
const QUANT: Record<KQuantMode, (x: Float32Array) => Uint8Array> = { q4_k: quantizeQ4K, q5_k: quantizeQ5K, q6_k: quantizeQ6K };
const MODES = Object.keys(QUANT) as KQuantMode[];

function withSettings<T>(rows: number, int8: boolean, f: () => T): T {
  const prevRows = setQgemmRows(rows);
  const prevInt8 = kquantInt8(int8);
  try {
    return f();
  } finally {
    kquantInt8(prevInt8);
    setQgemmRows(prevRows < 0 ? null : prevRows);
  }
}

const weights = (bytes: Uint8Array, rows: number) => mx.fromBytes(bytes, [rows, bytes.length / rows], mx.Dtype.uint8);

// int8 activations need AVX-512 VNNI for this path (AVX2 machines keep the q8_K dot tiles)
describe.skipIf(kernelInfo().level !== "avx512" || !int8Available())("int8 K-quant GEMM (VNNI)", () => {
  const SHAPES: [number, number, number][] = [
    [1, 1, 256],
    [5, 37, 512],
    [13, 33, 768],
    [70, 17, 1024],
    [200, 45, 256],
    [530, 20, 512],
  ];
  test.each(MODES)("%s: within 8-bit rounding of f64, = the q8_K dot tiles up to f32 order, rows independent", (mode) => {
    for (const [M, N, K] of SHAPES) {
      const bytes = QUANT[mode](floats(N * K));
      const xs = floats(M * K);
      mx.scope(() => {
        const w = weights(bytes, N);
        const wf = kquantDequantize(w, mode).toFloat32Array();
        const { y, mag } = f64Matmul(xs, wf, M, N, K);
        const x = mx.array(xs, { shape: [M, K] });
        const gemm = withSettings(1, true, () => kquantMatmul(x, w, mode).toFloat32Array());
        const tiles = withSettings(0, true, () => kquantMatmul(x, w, mode).toFloat32Array());
        const f32 = withSettings(1, false, () => kquantMatmul(x, w, mode).toFloat32Array());
        const err = maxAbs(gemm, y);
        expect(err).toBeLessThan(2e-3 * mag);
        if (N * M > 100) {
          expect(err).toBeGreaterThan(1e-5 * mag); // x really was rounded to int8
          // README's accuracy statement: ~0.6% relative RMS output error (8-bit rounding of x)
          let e2 = 0, y2 = 0;
          for (let i = 0; i < y.length; i++) (e2 += (gemm[i]! - y[i]!) ** 2), (y2 += y[i]! ** 2);
          expect(Math.sqrt(e2 / y2)).toBeLessThan(1.2e-2);
          expect(Math.sqrt(e2 / y2)).toBeGreaterThan(1e-3);
        }
        expect(maxAbs(f32, y)).toBeLessThan(2e-6 * mag + 1e-6);
        expect(maxAbs(gemm, tiles)).toBeLessThan(2e-5 * mag);
        if (M > 2) {
          const head = withSettings(1, true, () => kquantMatmul(mx.sliceAxis(x, 0, 0, 2), w, mode).toFloat32Array());
          expect(head).toEqual(gemm.subarray(0, 2 * N));
        }
      });
    }
  });

  test("the default threshold: prefill rows run the int8 GEMM with MLXK_INT8_ACT=1, the f32 GEMM without", () => {
    const N = 40, K = 512, M = 70;
    const bytes = quantizeQ4K(floats(N * K));
    const xs = floats(M * K);
    mx.scope(() => {
      const w = weights(bytes, N);
      const x = mx.array(xs, { shape: [M, K] });
      const forced = withSettings(1, true, () => kquantMatmul(x, w, "q4_k").toFloat32Array());
      const dflt = withSettings(-1, true, () => kquantMatmul(x, w, "q4_k").toFloat32Array());
      const off = withSettings(-1, false, () => kquantMatmul(x, w, "q4_k").toFloat32Array());
      expect(dflt).toEqual(forced);
      expect(dflt).not.toEqual(off);
    });
  });

  test("a decode batch [B, 1, K] is left to the one-row tiles: every row bit-identical to it alone", () => {
    const B = 9, N = 35, K = 512;
    const bytes = quantizeQ5K(floats(N * K));
    const xs = floats(B * K);
    mx.scope(() => {
      const w = weights(bytes, N);
      const batch = withSettings(-1, true, () => kquantMatmul(mx.array(xs, { shape: [B, 1, K] }), w, "q5_k").toFloat32Array());
      const prefill = withSettings(-1, true, () => kquantMatmul(mx.array(xs, { shape: [1, B, K] }), w, "q5_k").toFloat32Array());
      for (let b = 0; b < B; b++) {
        const solo = withSettings(-1, true, () => kquantMatmul(mx.array(xs.slice(b * K, (b + 1) * K), { shape: [1, 1, K] }), w, "q5_k").toFloat32Array());
        expect(batch.subarray(b * N, (b + 1) * N)).toEqual(solo);
      }
      expect(prefill).not.toEqual(batch); // the same rows as a prompt do run the GEMM
    });
  });

  test.each(MODES)("%s: MoE experts (kernelGatherQmm) through it: within 8-bit rounding, = the dot tiles up to f32 order", (mode) => {
    const E = 8, N = 36, K = 512, T = 40, k = 2;
    const bytes = QUANT[mode](floats(E * N * K));
    const xs = floats(T * K);
    // skewed routing: expert 0 gets every token (many rows), the others a few or one
    const idx = Int32Array.from({ length: T * k }, (_, i) => (i % k === 0 ? 0 : 1 + ((i * 7) % (E - 1)) * (i % 5 === 0 ? 1 : 0)));
    mx.scope(() => {
      const w = mx.fromBytes(bytes, [E, N, bytes.length / (E * N)], mx.Dtype.uint8);
      const wf = kquantDequantize(w, mode).toFloat32Array();
      const x = mx.array(xs, { shape: [T, K] });
      const ids = mx.array(idx, { shape: [T, k], dtype: mx.Dtype.int32 });
      const q = { groupSize: 256, bits: 4, mode };
      const gemm = withSettings(-1, true, () => kernelGatherQmm(x, w, null, null, ids, q)!.toFloat32Array());
      const tiles = withSettings(0, true, () => kernelGatherQmm(x, w, null, null, ids, q)!.toFloat32Array());
      for (let t = 0; t < T; t++)
        for (let s = 0; s < k; s++) {
          const e = idx[t * k + s]!;
          const { y, mag } = f64Matmul(xs.slice(t * K, (t + 1) * K), wf.slice(e * N * K, (e + 1) * N * K), 1, N, K);
          const got = gemm.slice((t * k + s) * N, (t * k + s + 1) * N);
          expect(maxAbs(got, y)).toBeLessThan(2e-3 * mag);
          expect(maxAbs(got, tiles.slice((t * k + s) * N, (t * k + s + 1) * N))).toBeLessThan(2e-5 * mag);
        }
      expect(maxAbs(gemm, tiles)).toBeGreaterThan(0); // the two paths really differ (accumulation order)
    });
  });
});

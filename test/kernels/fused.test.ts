/**
 * Fused RMSNorm / RoPE / attention kernels against MLX's own mx.fast ops (CPU composites) on random
 * inputs, including strided views (transposed heads, KV-cache slices) and the fallbacks.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { type Array, array, contiguous, Dtype, fast, multiply, random, reshape, scope, silu, slice, transpose } from "../../src/mlx/index.ts";
import {
  fastRmsNorm,
  fastRope,
  fastScaledDotProductAttention,
  fastSdpaKeys,
  fastSwiglu,
  forceScalarKernels,
  kernelInfo,
  mlxSdpaKeys,
} from "../../src/mlx/kernels.ts";
import { seededNormal, worst } from "../support/tolerance.ts";

const info = kernelInfo();
afterAll(() => forceScalarKernels(false));

const rnd = seededNormal(100);


describe.skipIf(info.level === "none")(`fused kernels (${info.level})`, () => {
  for (const scalar of [false, true]) {
    const tag = scalar ? " [scalar path]" : "";

    test(`rms_norm: rows 1/7/513, D 576/100, with and without weight${tag}`, () => {
      forceScalarKernels(scalar);
      scope(() => {
        for (const [M, D] of [[1, 576], [7, 100], [513, 64]] as const) {
          const x = rnd([1, M, D], 3);
          const w = rnd([D]);
          expect(worst(fastRmsNorm(x, w, 1e-5), fast.rmsNorm(x, w, 1e-5), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
          expect(worst(fastRmsNorm(x, null, 1e-6), fast.rmsNorm(x, null, 1e-6), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
        }
      });
    });

    test(`rope: decode/prefill shapes, offsets, traditional, partial dims, freqs, strided heads${tag}`, () => {
      forceScalarKernels(scalar);
      scope(() => {
        // Heads as the models make them: [B, L, H·D] → reshape → transpose (a strided view).
        const heads = (L: number, H: number, D: number) => transpose(reshape(rnd([1, L, H * D]), [1, L, H, D]), [0, 2, 1, 3]);
        const cases = [
          { x: heads(1, 9, 64), o: { dims: 64, base: 10000, offset: 37 } },
          { x: heads(7, 3, 64), o: { dims: 64, base: 100000, offset: 0, scale: 0.5 } },
          { x: heads(5, 2, 64), o: { dims: 64, base: 10000, offset: 3, traditional: true } },
          { x: heads(4, 2, 80), o: { dims: 32, base: 10000, offset: 1000 } },
          { x: heads(3, 2, 64), o: { dims: 64, freqs: array(Float32Array.from({ length: 32 }, (_, i) => 10000 ** (i / 32))), offset: 11 } },
        ];
        for (const { x, o } of cases) {
          // θ = position·freq is rounded to f32 by both (in different orders): allow |x|·ulp(θ) per element.
          const maxAbs = Math.max(...x.toFloat32Array().map(Math.abs));
          const atol = 1e-5 + maxAbs * (o.offset + x.shape[2]!) * 2 ** -23;
          expect(worst(fastRope(x, o), fast.rope(x, o), atol, 1e-5)).toBeLessThanOrEqual(1);
        }
      });
    });

    test(`swiglu: decode and prefill sizes, large |gate|, a strided gate${tag}`, () => {
      forceScalarKernels(scalar);
      scope(() => {
        for (const n of [1536, 7 * 1536 + 3]) {
          const g = rnd([1, n], 4);
          const u = rnd([1, n]);
          expect(worst(fastSwiglu(g, u), multiply(silu(g), u), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
        }
        const big = array(Float32Array.from([-100, -30, -1e-3, 0, 1e-3, 30, 100, 88, -88]), { shape: [9] });
        const ones = array(new Float32Array(9).fill(1), { shape: [9] });
        expect(worst(fastSwiglu(big, ones), multiply(silu(big), ones), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
        const gt = transpose(rnd([64, 24]));
        const ut = rnd([24, 64]);
        expect(worst(fastSwiglu(gt, ut), multiply(silu(gt), ut), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
      });
    });

    test(`attention: decode over a KV-cache slice, causal prefill (Lq = Lk and Lq < Lk), GQA, D=72/80/128${tag}`, () => {
      forceScalarKernels(scalar);
      scope(() => {
        const cacheSlice = (H: number, cap: number, n: number, D: number) => slice(rnd([1, H, cap, D]), [0, 0, 0, 0], [1, H, n, D]);
        const cases: { q: Array; k: Array; v: Array; mask: "causal" | null }[] = [
          { q: rnd([1, 9, 1, 64]), k: cacheSlice(3, 256, 100, 64), v: cacheSlice(3, 256, 100, 64), mask: null },
          { q: rnd([1, 9, 7, 64]), k: rnd([1, 3, 7, 64]), v: rnd([1, 3, 7, 64]), mask: "causal" },
          { q: rnd([1, 4, 5, 64]), k: cacheSlice(2, 256, 20, 64), v: cacheSlice(2, 256, 20, 64), mask: "causal" },
          { q: rnd([2, 4, 3, 80]), k: rnd([2, 4, 9, 80]), v: rnd([2, 4, 9, 48]), mask: null },
          { q: rnd([1, 2, 2, 32]), k: rnd([1, 2, 300, 32]), v: rnd([1, 2, 300, 96]), mask: null },
          // head_dim 128 (Qwen2.5): keys 4 at a time with a tail, values in 64-column blocks; D=72: a half block
          { q: rnd([1, 6, 1, 128]), k: cacheSlice(2, 64, 37, 128), v: cacheSlice(2, 64, 37, 128), mask: null },
          { q: rnd([1, 2, 3, 72]), k: rnd([1, 1, 11, 72]), v: rnd([1, 1, 11, 24]), mask: "causal" },
        ];
        for (const { q, k, v, mask } of cases) {
          const o = { scale: q.shape[3]! ** -0.5, mask };
          expect(worst(fastScaledDotProductAttention(q, k, v, o), fast.scaledDotProductAttention(q, k, v, o), 1e-5, 1e-4)).toBeLessThanOrEqual(1);
        }
      });
    });
  }

  for (const scalar of [false, true]) {
    test(`sdpa keys: right-padded rows attend to keys [0, lens[b]) as MLX's masked attention${scalar ? " [scalar path]" : ""}`, () => {
      forceScalarKernels(scalar);
      scope(() => {
        // heads as the encoders make them: [B, L, H, D] transposed to [B, H, L, D] (strided views)
        const heads = (B: number, L: number, H: number, D: number) => transpose(rnd([B, L, H, D]), [0, 2, 1, 3]);
        const cases = [
          { q: heads(3, 17, 12, 64), k: heads(3, 17, 12, 64), v: heads(3, 17, 12, 64), lens: [17, 5, 1] },
          { q: rnd([2, 4, 9, 72]), k: rnd([2, 2, 9, 72]), v: rnd([2, 2, 9, 24]), lens: [3, 9] },
          { q: rnd([1, 2, 40, 128]), k: rnd([1, 2, 40, 128]), v: rnd([1, 2, 40, 128]), lens: [37] },
        ];
        for (const { q, k, v, lens } of cases) {
          const scale = q.shape[3]! ** -0.5;
          expect(worst(fastSdpaKeys(q, k, v, scale, lens), mlxSdpaKeys(q, k, v, scale, lens), 1e-5, 1e-4)).toBeLessThanOrEqual(1);
        }
      });
    });
  }

  test("sdpa keys: lengths outside [1, Lk] take MLX's masked attention, exactly", () => {
    forceScalarKernels(false);
    scope(() => {
      const q = rnd([2, 2, 3, 16]);
      const k = rnd([2, 2, 5, 16]);
      const v = rnd([2, 2, 5, 16]);
      for (const lens of [[0, 5], [2, 6]]) {
        expect(fastSdpaKeys(q, k, v, 0.25, lens).toFloat32Array()).toEqual(mlxSdpaKeys(q, k, v, 0.25, lens).toFloat32Array());
      }
    });
  });

  test("fallbacks: a mask array, sinks and bf16 inputs give MLX's results exactly", () => {
    forceScalarKernels(false);
    scope(() => {
      const q = rnd([1, 2, 3, 16]);
      const k = rnd([1, 2, 5, 16]);
      const v = rnd([1, 2, 5, 16]);
      const mask = rnd([3, 5]);
      const o = { scale: 0.25, mask };
      expect(fastScaledDotProductAttention(q, k, v, o).toFloat32Array()).toEqual(fast.scaledDotProductAttention(q, k, v, o).toFloat32Array());
      const sinks = rnd([2]);
      const os = { scale: 0.25, sinks };
      expect(fastScaledDotProductAttention(q, k, v, os).toFloat32Array()).toEqual(fast.scaledDotProductAttention(q, k, v, os).toFloat32Array());
      const xb = contiguous(rnd([2, 32])).astype(Dtype.bfloat16);
      expect(fastRmsNorm(xb, null, 1e-5).toFloat32Array()).toEqual(fast.rmsNorm(xb, null, 1e-5).toFloat32Array());
    });
  });
});

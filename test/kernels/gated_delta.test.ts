/**
 * The Gated DeltaNet kernels (mlx-c/src/kernels/gated_delta.cpp) against the MLX-op path they replace
 * (src/models/gated_delta.ts, mlx-lm's gated_delta_ops and the depthwise conv + SiLU): random inputs,
 * decode (T = 1) and prefill shapes, grouped heads, strided views, AVX2 and scalar paths; and greedy
 * continuations of the tiny hybrid models identical with the kernels on and off (MLXK_KERNELS=0).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import { type Array, random, reshape, scope, sigmoid, silu, split } from "../../src/mlx/index.ts";
import { forceScalarKernels, kernelConvSilu, kernelGatedDelta, kernelInfo, setKernelsEnabled } from "../../src/mlx/kernels.ts";
import { depthwiseConv1d, gatedDeltaOps, normalizeQk } from "../../src/models/gated_delta.ts";
import { writeHybridModel } from "../support/tiny-hybrid.ts";
import { GOLDEN_PROMPT } from "../support/tiny-models.ts";
import { worst } from "../support/tolerance.ts";

const info = kernelInfo();
const tmp = mkdtempSync(join(tmpdir(), "mlxk-gdelta-"));
afterAll(() => {
  forceScalarKernels(false);
  setKernelsEnabled(null);
  rmSync(tmp, { recursive: true, force: true });
});

let seed = 700;
const rnd = (shape: number[], scale = 1): Array => random.normal({ shape, scale, key: random.key(seed++) });


describe.skipIf(info.level === "none")(`gated delta kernels (${info.level})`, () => {
  for (const scalar of [false, true]) {
    const tag = scalar ? " [scalar path]" : "";
    test(`delta rule: T 1/37, Hv = Hk and 2·Hk, Dk 128/12, state carried${tag}`, () => {
      forceScalarKernels(scalar);
      scope(() => {
        for (const [B, T, Hk, Hv, Dk, Dv] of [[1, 1, 4, 8, 128, 64], [1, 37, 2, 2, 12, 20], [2, 5, 2, 4, 128, 128]] as const) {
          // Normalised q/k as the layer feeds them (keeps the recurrence bounded, like the model).
          const [q, k] = normalizeQk(rnd([B, T, Hk, Dk]), rnd([B, T, Hk, Dk]), Dk ** -0.5, 1e-6);
          const v = rnd([B, T, Hv, Dv]);
          const g = random.uniform({ low: 0.7, high: 1, shape: [B, T, Hv], key: random.key(seed++) });
          const beta = sigmoid(rnd([B, T, Hv]));
          const state = rnd([B, Hv, Dv, Dk], 0.3);
          const got = kernelGatedDelta(q, k, v, g, beta, state);
          expect(got).not.toBeNull();
          const [yr, sr] = gatedDeltaOps(q, k, v, g, beta, state);
          expect(worst(got![0], yr, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
          expect(worst(got![1], sr, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
        }
      });
    });
  }

  test("delta rule on strided views (q/k/v split out of one projection)", () => {
    scope(() => {
      const [B, T, H, D] = [1, 6, 2, 16];
      const [q0, k0, v0] = split(rnd([B, T, 3 * H * D]), 3, -1) as [Array, Array, Array];
      const [q, k] = normalizeQk(reshape(q0, [B, T, H, D]), reshape(k0, [B, T, H, D]), D ** -0.5, 1e-6);
      const v = reshape(v0, [B, T, H, D]);
      const g = random.uniform({ low: 0.5, high: 1, shape: [B, T, H], key: random.key(seed++) });
      const beta = sigmoid(rnd([B, T, H]));
      const state = rnd([B, H, D, D], 0.1);
      const [y] = kernelGatedDelta(q, k, v, g, beta, state)!;
      expect(worst(y, gatedDeltaOps(q, k, v, g, beta, state)[0], 1e-5, 1e-4)).toBeLessThanOrEqual(1);
    });
  });

  test("conv + silu: decode and prefill lengths, K 4 and 2, a strided input", () => {
    scope(() => {
      for (const [B, L, C, K] of [[1, 4, 96, 4], [2, 40, 33, 4], [1, 9, 8, 2]] as const) {
        const x = rnd([B, L, C]);
        const w = rnd([C, K, 1], 0.5);
        expect(worst(kernelConvSilu(x, w)!, silu(depthwiseConv1d(x, w)), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
      }
      const [a] = split(rnd([1, 7, 64]), 2, -1) as [Array, Array];
      const w = rnd([32, 4, 1]);
      expect(worst(kernelConvSilu(a, w)!, silu(depthwiseConv1d(a, w)), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
    });
  });

  test("kernels off: both entry points return null (the model uses MLX's ops)", () => {
    setKernelsEnabled(false);
    scope(() => {
      const x = rnd([1, 4, 8]);
      expect(kernelConvSilu(x, rnd([8, 4, 1]))).toBeNull();
    });
    setKernelsEnabled(null);
  });

  test.each(["qwen3_5", "qwen3_5_q4", "qwen3_5_moe", "qwen3_next_q4"] as const)("%s: 48 greedy tokens with kernels on = off", async (name) => {
    using m = await loadModelDir(writeHybridModel(name, join(tmp, name)), { dtype: "float32", streams: 1 });
    const run = (on: boolean) => {
      setKernelsEnabled(on);
      try {
        return [...tokenLoop({ model: m.model, prompt: GOLDEN_PROMPT, maxTokens: 48 })].map((s) => s.token);
      } finally {
        setKernelsEnabled(null);
      }
    };
    const on = run(true);
    expect(on).toHaveLength(48);
    expect(on).toEqual(run(false));
  });
});

/**
 * Our kernels must not change what the engine generates: greedy continuations of every fixture model (tiny
 * random-weight models of each architecture, affine q4 and mxfp4 variants) and of the real SmolLM2-135M
 * GGUF are identical token for token with the kernels on and off (MLXK_KERNELS=0 ≙ setKernelsEnabled(false)).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadGgufModel, loadModelDir, type LoadedModel } from "../../src/engine/load.ts";
import { kernelInfo, setKernelsEnabled } from "../../src/mlx/kernels.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { GOLDEN_PROMPT, TINY_MODELS, type TinyName, writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-kgreedy-"));
afterAll(() => {
  setKernelsEnabled(null);
  rmSync(tmp, { recursive: true, force: true });
});

function greedy(m: LoadedModel, prompt: readonly number[], n: number, kernels: boolean): number[] {
  setKernelsEnabled(kernels);
  try {
    return [...tokenLoop({ model: m.model, prompt, maxTokens: n })].map((s) => s.token);
  } finally {
    setKernelsEnabled(null);
  }
}

const ARCHS: readonly TinyName[] = TINY_MODELS;

describe.skipIf(kernelInfo().level === "none")("greedy tokens with kernels on = off", () => {
  test.each(ARCHS)("%s, 48 tokens", async (name) => {
    using m = await loadModelDir(writeTinyModel(name, join(tmp, name)), { dtype: "float32", streams: 1 });
    const on = greedy(m, GOLDEN_PROMPT, 48, true);
    expect(on).toHaveLength(48);
    expect(on).toEqual(greedy(m, GOLDEN_PROMPT, 48, false));
  });

  test("SmolLM2-135M (real Q4_1 weights): 32 tokens after a 24-token prompt", async () => {
    using m = await loadGgufModel(await smollm2Gguf(), { streams: 1 });
    const prompt = Array.from({ length: 24 }, (_, i) => 1000 + ((i * 7919) % 30000));
    const on = greedy(m, prompt, 32, true);
    expect(on).toEqual(greedy(m, prompt, 32, false));
  }, 120_000);
});

/**
 * Every architecture against mlx-lm on the same tiny random weights (test/fixtures/goldens, made by
 * scripts/gen-goldens.ts): f32 logits of the whole prompt within 1e-3, and identical 32-token greedy
 * continuations through the real decode loop (KV cache, prefill, pipelined decode).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import * as mx from "../../src/mlx/index.ts";
import { GOLDEN_PROMPT, GOLDEN_STEPS, type TinyName, writeTinyModel } from "../support/tiny-models.ts";

type Goldens = { prompt: number[]; models: Record<string, { logits: number[][]; greedy: number[] }> };
const read = (f: string) => JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/goldens", f), "utf8")) as Goldens;
/** mlx-lm's outputs, and transformers' (torch f32) where mlx-lm computes otherwise (README: "Where mlxk differs from mlx-lm"). */
const mlxGoldens = read("tiny-models.json");
const hfGoldens = read("transformers.json");
const goldens: Goldens = { prompt: mlxGoldens.prompt, models: { ...mlxGoldens.models, ...hfGoldens.models } };
test("both references were computed for the same prompt", () => expect(hfGoldens.prompt).toEqual(mlxGoldens.prompt));
const tmp = mkdtempSync(join(tmpdir(), "mlxk-golden-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

export const ARCHS: TinyName[] = ["llama", "llama_q4", "qwen2", "qwen2_q4", "qwen3", "phi3", "gemma3_text", "gpt_oss", "gpt_oss_mxfp4"];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe.each(ARCHS)("%s matches its reference", (name) => {
  const golden = goldens.models[name]!;

  test.each([1, 2])("logits of the prompt (streams=%d)", async (streams) => {
    expect(goldens.prompt).toEqual([...GOLDEN_PROMPT]);
    using m = await loadModelDir(writeTinyModel(name, join(tmp, name)), { dtype: "float32", streams });
    const cache = m.model.makeCache();
    const logits = mx.scope(() => {
      const ids = mx.array(Int32Array.from(GOLDEN_PROMPT), { shape: [1, GOLDEN_PROMPT.length], dtype: mx.Dtype.int32 });
      return m.model.logits(m.model.hidden(ids, cache)).toFloat32Array();
    });
    for (const c of cache) c[Symbol.dispose]();
    const V = golden.logits[0]!.length;
    expect(logits.length).toBe(GOLDEN_PROMPT.length * V);
    expect(maxAbsDiff(logits, golden.logits.flat())).toBeLessThan(1e-3);
  });

  test("32-token greedy continuation", async () => {
    using m = await loadModelDir(writeTinyModel(name, join(tmp, name)), { dtype: "float32" });
    const tokens = [...tokenLoop({ model: m.model, prompt: GOLDEN_PROMPT, maxTokens: GOLDEN_STEPS })].map((s) => s.token);
    expect(tokens).toEqual(golden.greedy);
  });
});

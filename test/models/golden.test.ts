/**
 * Every architecture against its reference on the same tiny random weights (test/fixtures/goldens, made by
 * scripts/gen-goldens.ts): f32 logits of the whole prompt within 1e-3, and identical 32-token greedy
 * continuations through the real decode loop (KV cache, prefill, pipelined decode) — for the MLX-converted
 * and the transformers-saved layout, each with its config spelled as transformers 4 (and mlx-lm) and as
 * transformers 5 writes it. The reference is transformers (torch f32) where it ran (every float model),
 * else mlx-lm (quantized models); the two agree within 1e-5 except where mlx-lm is known to compute
 * otherwise (KNOWN_MLX_LM_DIFFERENCES, also in the README).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import { maxAbsDiff, promptLogits } from "../support/gguf-compare.ts";
import { hf, mlxLm, reference } from "../support/goldens.ts";
import { GOLDEN_PROMPT, GOLDEN_STEPS, HF_QUANTIZED, QUANTIZED, TINY_MODELS, type TinyName, type TinyOptions, writeTinyModel } from "../support/tiny-models.ts";


/** Where mlx-lm 0.32.2 computes otherwise than transformers (transformers is right; README lists them). */
export const KNOWN_MLX_LM_DIFFERENCES: Partial<Record<TinyName, string>> = {
  phi3: "longrope: mlx-lm always applies long_factor; transformers uses short_factor within original_max_position_embeddings",
  gemma3: "mlx-lm's gemma3 wrapper reads vocab_size from the top level, not text_config, and fails to load",
  mistral_swa: "mistral's sliding_window: transformers slides every layer over it; mlx-lm's llama ignores it",
  gpt_oss: "yarn with truncate: false: mlx-lm rounds the correction range anyway (logits off by ~1e-2 here)",
  gpt_oss_mxfp4: "a config without rope_scaling: transformers' gpt-oss default is yarn (factor 32); mlx-lm uses plain rope",
};

const tmp = mkdtempSync(join(tmpdir(), "mlxk-golden-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));


test("both references were computed for this prompt", () => {
  expect(mlxLm.prompt).toEqual([...GOLDEN_PROMPT]);
  expect(hf.prompt).toEqual([...GOLDEN_PROMPT]);
});

test.each(TINY_MODELS.filter((n) => !QUANTIZED.has(n) || HF_QUANTIZED.has(n)))("%s: mlx-lm and transformers agree unless the difference is known", (name) => {
  const a = mlxLm.models[name]!;
  const b = hf.models[name]!;
  expect("error" in b).toBe(false);
  const agree = !("error" in a) && !("error" in b) && maxAbsDiff(a.logits.flat(), b.logits.flat()) < 1e-5 && a.greedy.join() === b.greedy.join();
  expect(agree).toBe(KNOWN_MLX_LM_DIFFERENCES[name] === undefined);
});

const variants = (name: TinyName): [string, TinyOptions][] =>
  QUANTIZED.has(name)
    ? HF_QUANTIZED.has(name)
      ? [
          ["mlx/v4", {}],
          ["hf/v4", { layout: "hf" }],
        ]
      : [["mlx/v4", {}]]
    : [
        ["mlx/v4", {}],
        ["mlx/v5", { spelling: "v5" }],
        ["hf/v4", { layout: "hf" }],
        ["hf/v5", { layout: "hf", spelling: "v5" }],
      ];

describe.each(TINY_MODELS)("%s matches its reference", (name) => {
  const golden = reference(name);
  describe.each(variants(name))("%s", (label, opts) => {
    const dir = () => writeTinyModel(name, join(tmp, `${name}-${label.replace("/", "-")}`), opts);

    test.each(label === "mlx/v4" ? [1, 2] : [1])("logits of the prompt (streams=%d)", async (streams) => {
      using m = await loadModelDir(dir(), { dtype: "float32", streams });
      const logits = promptLogits(m);
      const V = golden.logits[0]!.length;
      expect(logits.length).toBe(GOLDEN_PROMPT.length * V);
      expect(maxAbsDiff(logits, golden.logits.flat())).toBeLessThan(1e-3);
    });

    test("32-token greedy continuation", async () => {
      using m = await loadModelDir(dir(), { dtype: "float32" });
      const tokens = [...tokenLoop({ model: m.model, prompt: GOLDEN_PROMPT, maxTokens: GOLDEN_STEPS })].map((s) => s.token);
      expect(tokens).toEqual(golden.greedy);
    });
  });
});

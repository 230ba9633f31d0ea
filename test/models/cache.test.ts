/**
 * KV caches through the model: a prompt prefilled in small chunks (offset causal masks; the rotating cache
 * trimming to its window between chunks) gives the same next-token logits as one pass.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prefill } from "../../src/engine/generate.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import { GOLDEN_PROMPT, type TinyName, writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-kv-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// MoE models: the one-pass prefill routes 35 × k ≥ 64 tokens, so it takes the sorted-experts path; the chunks do not.
test.each(["llama", "gemma3_text", "gpt_oss", "gpt_oss_mxfp4", "qwen3_moe", "qwen3_moe_q4"] as TinyName[])("%s: chunked prefill equals one-pass prefill", async (name) => {
  using m = await loadModelDir(writeTinyModel(name, join(tmp, name)), { dtype: "float32", streams: 1 });
  const prompt = [...GOLDEN_PROMPT, ...GOLDEN_PROMPT, 1, 2, 3]; // 35 tokens, > the sliding window of 8
  const run = (step: number) => {
    const cache = m.model.makeCache();
    const logits = prefill(m.model, cache, prompt, step);
    const out = logits.toFloat32Array();
    logits.dispose();
    for (const c of cache) c[Symbol.dispose]();
    return out;
  };
  const whole = run(512);
  for (const step of [5, 8, 13]) {
    const chunked = run(step);
    let diff = 0;
    for (let i = 0; i < whole.length; i++) diff = Math.max(diff, Math.abs(whole[i]! - chunked[i]!));
    expect(diff).toBeLessThan(1e-4);
  }
});

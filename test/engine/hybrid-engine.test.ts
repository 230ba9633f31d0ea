/**
 * Hybrid models through the whole Engine (text pipeline, chat template, per-layer cache kinds, sampling on the
 * host): the tiny qwen3_5 / lfm2 / gemma4 wrappers stream their mlx-lm greedy tokens for the golden prompt, and
 * a seeded sampled run is reproducible (the recurrent state is fresh per request); decoding keeps MLX's
 * active memory flat (recurrent-state slots are replaced, never accumulated).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEngine } from "../../src/engine/engine.ts";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import * as mx from "../../src/mlx/index.ts";
import type { GenerateEvent } from "../../src/engine/types.ts";
import { type HybridName, writeHybridModel } from "../support/tiny-hybrid.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-hybrid-engine-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const goldens = JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/goldens/tiny-hybrid.json"), "utf8")) as {
  models: Record<string, { greedy: number[] }>;
};
const greedy = { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 };

async function ids(gen: AsyncGenerator<GenerateEvent>): Promise<number[]> {
  const out: number[] = [];
  for await (const ev of gen) if (ev.type === "chunk" && ev.tokenId >= 0) out.push(ev.tokenId);
  return out;
}

describe.each(["qwen3_5_moe_q4", "lfm2", "gemma4"] as HybridName[])("%s through the engine", (name) => {
  test("raw prompt → the mlx-lm greedy tokens; seeded sampling repeats", async () => {
    using engine = await loadEngine({ kind: "dir", path: writeHybridModel(name, join(tmp, name)), id: name });
    // The byte-level tokenizer maps "Hello tiny model" to the golden prompt's byte ids.
    const got = await ids(engine.generate({ input: { prompt: "Hello tiny model" }, maxTokens: 32, sampling: greedy }));
    expect(got).toEqual(goldens.models[name]!.greedy);
    const sampling = { temperature: 0.8, topP: 0.9, topK: 40, minP: 0, repetitionPenalty: 1.1, repetitionContextSize: 20, seed: 3 };
    const req = { input: { messages: [{ role: "user" as const, content: "hi" }] }, maxTokens: 12, sampling };
    expect(await ids(engine.generate(req))).toEqual(await ids(engine.generate(req)));
  });
});

test.each(["qwen3_5", "lfm2"] as HybridName[])("%s: active memory is flat between decode tokens 16 and 200", async (name) => {
  using m = await loadModelDir(writeHybridModel(name, join(tmp, `${name}-mem`)), { dtype: "float32" });
  const samples: number[] = [];
  let i = 0;
  for (const _ of tokenLoop({ model: m.model, prompt: [1, 2, 3, 4, 5, 6, 7, 8], maxTokens: 200 })) {
    i++;
    // The attention layers' KV buffers hold 256 positions from the first step on, so nothing should grow.
    if (i === 16 || i === 200) samples.push(mx.memory.active());
  }
  expect(samples.length).toBe(2);
  expect(samples[1]! - samples[0]!).toBeLessThanOrEqual(0);
});

test("bf16 compute keeps A_log in its checkpoint precision (mlx-lm's cast_predicate) and still decodes", async () => {
  using m = await loadModelDir(writeHybridModel("qwen3_5", join(tmp, "qwen3_5-bf16")), { dtype: "bfloat16" });
  const layer = (m.model as unknown as { layers: { linear_attn: { A_log: mx.Array; dt_bias: mx.Array } | null }[] }).layers[0]!;
  expect(layer.linear_attn!.A_log.dtype).toBe(mx.Dtype.float32);
  expect(layer.linear_attn!.dt_bias.dtype).toBe(mx.Dtype.bfloat16);
  expect([...tokenLoop({ model: m.model, prompt: [1, 2, 3, 4], maxTokens: 4 })]).toHaveLength(4);
});

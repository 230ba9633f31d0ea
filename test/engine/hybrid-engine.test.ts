/**
 * Hybrid models through the whole Engine (text pipeline, chat template, per-layer cache kinds, sampling on the
 * host): the tiny qwen3_5 / lfm2 / gemma4 wrappers stream their mlx-lm greedy tokens for the golden prompt, and
 * a seeded sampled run is reproducible (the recurrent state is fresh per request).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEngine } from "../../src/engine/engine.ts";
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

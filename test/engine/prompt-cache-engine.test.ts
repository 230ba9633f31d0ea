/**
 * The prefix cache through the engine: a full hit (the next turn extends the last) and a partial hit (a
 * shared prefix, then a different branch) give exactly the tokens of a cold run, greedy on the device and
 * seeded sampling on the host, for a full-attention model, sliding-window and hybrid ones (reused only on
 * an exact prefix) and the real SmolLM2 chat; `cachedTokens` reports the reuse; the KV is freed on dispose.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEngine, type MlxEngine } from "../../src/engine/engine.ts";
import type { ChatMessage, GenerateEvent, GenerateRequest, SamplingParams } from "../../src/engine/types.ts";
import * as mx from "../../src/mlx/index.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { type HybridName, writeHybridModel } from "../support/tiny-hybrid.ts";
import { type TinyName, writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-pcache-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 };
const seeded: SamplingParams = { temperature: 0.8, topP: 0.95, topK: 0, minP: 0, repetitionPenalty: 1.1, repetitionContextSize: 20, seed: 7 };

type Done = Extract<GenerateEvent, { type: "done" }>;
async function run(engine: MlxEngine, req: GenerateRequest): Promise<{ ids: number[]; text: string; done: Done }> {
  const ids: number[] = [];
  let text = "";
  for await (const ev of engine.generate(req)) {
    if (ev.type === "done") return { ids, text, done: ev };
    if (ev.tokenId >= 0) ids.push(ev.tokenId);
    text += ev.text;
  }
  throw new Error("no done event");
}

async function tiny(name: TinyName, promptCacheBytes: number): Promise<MlxEngine> {
  const dir = join(tmp, name);
  writeTinyModel(name, dir);
  return loadEngine({ kind: "dir", path: dir, id: name }, { promptCacheBytes });
}

const prompt = (p: string, sampling: SamplingParams, maxTokens = 12): GenerateRequest => ({ input: { prompt: p }, maxTokens, sampling });

describe.each(["llama", "qwen3", "gemma3_text"] as TinyName[])("tiny %s", (name) => {
  // gemma3_text has sliding-window layers (window 8): only exact-prefix hits are reusable there.
  const trimmable = name !== "gemma3_text";
  for (const [label, sampling] of [["greedy", greedy], ["seeded sampling", seeded]] as const) {
    test(`${label}: full and partial hits give the cold run's tokens`, async () => {
      using cold = await tiny(name, 0);
      using warm = await tiny(name, 1 << 30);
      const first = "The quick brown fox jumps over the lazy dog. ";
      const a = await run(warm, prompt(first, sampling));
      expect(a.done.usage.cachedTokens).toBe(0);
      const a0 = await run(cold, prompt(first, sampling));
      expect(a.ids).toEqual(a0.ids);

      // Full hit: the next prompt starts with the last prompt and its answer.
      const next = `${first}${a.text} And then?`;
      const b = await run(warm, prompt(next, sampling));
      const b0 = await run(cold, prompt(next, sampling));
      expect(b.ids).toEqual(b0.ids);
      expect(b.done.usage.cachedTokens).toBeGreaterThanOrEqual(first.length);
      expect(b.done.usage.promptTokens).toBe(b0.done.usage.promptTokens);

      // Partial hit: same start, another branch.
      const branch = "The quick brown fox sleeps.";
      const c = await run(warm, prompt(branch, sampling));
      const c0 = await run(cold, prompt(branch, sampling));
      expect(c.ids).toEqual(c0.ids);
      expect(c.done.usage.cachedTokens).toBe(trimmable ? "The quick brown fox ".length : 0);
      expect(c0.done.usage.cachedTokens).toBeUndefined(); // cache off: not reported
    }, 60_000);
  }
});

describe.each(["qwen3_5", "lfm2", "gemma4"] as HybridName[])("hybrid %s", (name) => {
  // Recurrent states (Gated DeltaNet, short conv) and gemma4's sliding layers cannot be trimmed: exact prefixes only
  // (message-boundary snapshots of chats: prompt-cache-snapshots.test.ts).
  test("reused only on exact prefixes, tokens as cold", async () => {
    const dir = writeHybridModel(name, join(tmp, name));
    using warm = await loadEngine({ kind: "dir", path: dir, id: name }, { promptCacheBytes: 1 << 30 });
    using cold = await loadEngine({ kind: "dir", path: dir, id: name });
    const a = await run(warm, prompt("Hello tiny model", greedy, 8));
    for (const p of [`Hello tiny model${a.text} more`, "Hello tiny other"]) {
      const w = await run(warm, prompt(p, greedy, 8));
      const c = await run(cold, prompt(p, greedy, 8));
      expect(w.ids).toEqual(c.ids);
      expect(w.done.usage.cachedTokens).toBe(p.includes("more") ? "Hello tiny model".length : 0);
    }
    expect(warm.promptCache!.stats.entries).toBeGreaterThan(0);
  }, 60_000);
});

test("the prompt cache's KV is freed with the engine (MLX active memory back to the baseline)", async () => {
  mx.synchronize();
  const active0 = mx.memory.active();
  {
    using warm = await tiny("llama", 1 << 30);
    for (const p of ["one two three four", "one two three five", "one two six", "seven"]) await run(warm, prompt(p, greedy, 4));
    expect(warm.promptCache!.stats.entries).toBeGreaterThan(1);
    expect(warm.promptCache!.stats.bytes).toBeGreaterThan(0);
  }
  mx.synchronize();
  expect(mx.memory.active()).toBe(active0);
}, 60_000);

describe("SmolLM2-135M-Instruct (real weights, Q4_1 GGUF)", () => {
  test("a chat's follow-up turn reuses the last turn's KV and answers exactly as a cold run", async () => {
    const path = await smollm2Gguf();
    using warm = await loadEngine({ kind: "gguf", path, id: "smollm2" }, { promptCacheBytes: 1 << 30 });
    using cold = await loadEngine({ kind: "gguf", path, id: "smollm2" });
    const system = `You are a concise assistant. ${"Answer in one short sentence. ".repeat(10)}`;
    const chat = (messages: ChatMessage[]): GenerateRequest => ({ input: { messages }, maxTokens: 8, sampling: greedy });
    const turn1: ChatMessage[] = [{ role: "system", content: system }, { role: "user", content: "What is the capital of France?" }];
    const a = await run(warm, chat(turn1));
    expect(a.done.usage.promptTokens).toBeGreaterThan(60);
    const turn2: ChatMessage[] = [...turn1, { role: "assistant", content: a.text }, { role: "user", content: "And of Italy?" }];
    const b = await run(warm, chat(turn2));
    const b0 = await run(cold, chat(turn2));
    expect(b.ids).toEqual(b0.ids);
    expect(b.done.usage.cachedTokens).toBeGreaterThan(a.done.usage.promptTokens);
    // Another conversation with the same system prompt: a partial hit (its tokens against a cold run: the tiny models above).
    const c = await run(warm, chat([{ role: "system", content: system }, { role: "user", content: "Name a primary colour." }]));
    expect(c.done.usage.cachedTokens).toBeGreaterThan(60);
    expect(c.done.usage.cachedTokens).toBeLessThan(c.done.usage.promptTokens);
  }, 300_000);
});

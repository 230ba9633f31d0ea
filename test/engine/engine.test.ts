/**
 * The Engine end to end: real SmolLM2-135M-Instruct (GGUF from PyPI) answers a factual question; a tiny
 * fixture model streams the same greedy tokens through the text pipeline as through the token loop;
 * decoding frees every temporary (MLX active memory is flat while the KV cache buffer does not grow), and so
 * does a prompt prefilled in chunks (its peak is one chunk's).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEngine } from "../../src/engine/engine.ts";
import { prefill, tokenLoop } from "../../src/engine/generate.ts";
import { loadGgufModel, loadModelDir } from "../../src/engine/load.ts";
import type { GenerateEvent, GenerateRequest } from "../../src/engine/types.ts";
import * as mx from "../../src/mlx/index.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-engine-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const greedy = { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 };

async function collect(gen: AsyncGenerator<GenerateEvent>): Promise<{ text: string; ids: number[]; done: Extract<GenerateEvent, { type: "done" }> }> {
  let text = "";
  const ids: number[] = [];
  for await (const ev of gen) {
    if (ev.type === "done") return { text, ids, done: ev };
    text += ev.text;
    if (ev.tokenId >= 0) ids.push(ev.tokenId);
  }
  throw new Error("no done event");
}

describe("SmolLM2-135M-Instruct (real weights, Q4_1 GGUF)", () => {
  test("greedy answer to 'What is the capital of France?' mentions Paris", async () => {
    const path = await smollm2Gguf();
    using engine = await loadEngine({ kind: "gguf", path, id: "smollm2" });
    expect(engine.info.modelType).toBe("llama");
    expect(engine.info.contextLength).toBe(8192);
    const req: GenerateRequest = {
      input: { messages: [{ role: "user", content: "What is the capital of France?" }] },
      maxTokens: 24,
      sampling: greedy,
    };
    const r = await collect(engine.generate(req));
    expect(r.text).toContain("Paris");
    expect(r.done.finishReason).toBe("stop");
    expect(r.done.usage.promptTokens).toBe(engine.countPromptTokens(req.input));
    expect(r.done.usage.completionTokens).toBe(r.ids.length);
  }, 120_000);
});

describe("tiny llama through the text pipeline", () => {
  const goldens = JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/goldens/tiny-models.json"), "utf8"));

  test("raw prompt → the golden greedy tokens, streamed", async () => {
    const dir = writeTinyModel("llama", join(tmp, "llama"));
    using engine = await loadEngine({ kind: "dir", path: dir, id: "tiny" });
    // The byte-level tokenizer maps "Hello tiny model" to the golden prompt's byte ids.
    expect(engine.countPromptTokens({ prompt: "Hello tiny model" })).toBe(16);
    const r = await collect(engine.generate({ input: { prompt: "Hello tiny model" }, maxTokens: 32, sampling: greedy }));
    expect(r.ids).toEqual(goldens.models.llama.greedy);
    expect(r.done.finishReason).toBe("length");
    expect(r.done.usage).toEqual({ promptTokens: 16, completionTokens: 32 });
  });

  test("same seed, same sampled tokens; an aborted request ends 'cancelled'", async () => {
    const dir = writeTinyModel("llama", join(tmp, "llama"));
    using engine = await loadEngine({ kind: "dir", path: dir, id: "tiny" });
    const sampling = { temperature: 0.8, topP: 0.9, topK: 50, minP: 0.01, repetitionPenalty: 1.1, repetitionContextSize: 20, seed: 7 };
    const a = await collect(engine.generate({ input: { prompt: "Hello" }, maxTokens: 12, sampling }));
    const b = await collect(engine.generate({ input: { prompt: "Hello" }, maxTokens: 12, sampling }));
    expect(a.ids).toEqual(b.ids);
    const ac = new AbortController();
    let n = 0;
    let done: GenerateEvent | undefined;
    for await (const ev of engine.generate({ input: { prompt: "Hello" }, maxTokens: 30, sampling, signal: ac.signal })) {
      if (ev.type === "done") done = ev;
      // the held-back tail of the detokenizer (tokenId -1) may follow the last token
      else if (ev.tokenId >= 0 && ++n === 3) ac.abort();
    }
    expect(n).toBe(3);
    expect(done?.type === "done" && done.finishReason).toBe("cancelled");
  });
});

describe("long prompts", () => {
  test("yieldPrefill reports each full prefill chunk and leaves the tokens unchanged; stopping mid-prefill ends early", async () => {
    using m = await loadModelDir(writeTinyModel("llama", join(tmp, "llama-long")));
    {
      const prompt = Array.from({ length: 1100 }, (_, i) => (i * 7) % 200);
      const plain = [...tokenLoop({ model: m.model, prompt, maxTokens: 4 })].map((s) => s.token);
      const steps = [...tokenLoop({ model: m.model, prompt, maxTokens: 4, yieldPrefill: true })];
      expect(steps.filter((s) => s.prefilled !== undefined).map((s) => s.prefilled)).toEqual([512, 1024]);
      expect(steps.filter((s) => s.prefilled === undefined).map((s) => s.token)).toEqual(plain);
      let stop = false;
      const early = [];
      for (const s of tokenLoop({ model: m.model, prompt, maxTokens: 4, yieldPrefill: true, shouldStop: () => stop })) {
        early.push(s);
        stop = true;
      }
      expect(early).toEqual([{ token: -1, prefilled: 512 }]);
    }
  });

  test("a prompt that fills the context is refused with a clear error, not an empty answer", async () => {
    using engine = await loadEngine({ kind: "dir", path: writeTinyModel("llama", join(tmp, "llama-ctx")), id: "tiny" });
    const prompt = "x".repeat(engine.info.contextLength + 5);
    await expect(collect(engine.generate({ input: { prompt }, maxTokens: 4, sampling: greedy }))).rejects.toThrow(/context is \d+ tokens/);
  });
});

describe("memory", () => {
  test("decode frees every temporary: active memory is flat between tokens 16 and 200", async () => {
    using m = await loadModelDir(writeTinyModel("qwen2_q4", join(tmp, "qwen2_q4")), { dtype: "float32" });
    const samples: number[] = [];
    let i = 0;
    for (const _ of tokenLoop({ model: m.model, prompt: [1, 2, 3, 4, 5, 6, 7, 8], maxTokens: 200 })) {
      i++;
      // The cache buffer holds 256 positions from the first step on, so nothing should grow.
      if (i === 16 || i === 200) samples.push(mx.memory.active());
    }
    expect(samples.length).toBe(2);
    expect(samples[1]! - samples[0]!).toBeLessThanOrEqual(0);
  });

  test("a prompt in chunks frees each layer's temporaries as it goes: its peak is one chunk's, not one per layer", async () => {
    // 30 layers (real SmolLM2): a chunk whose layers all stayed alive to its end peaked ~5x higher (94 vs 19 MB)
    using m = await loadGgufModel(await smollm2Gguf(), { dtype: "float32" });
    const prompt = Array.from({ length: 128 }, (_, i) => ((i * 37) % 1000) + 5);
    const growth = (tokens: number[], step: number) => {
      const cache = m.model.makeCache();
      const a0 = mx.memory.active();
      mx.memory.resetPeak();
      const logits = prefill(m.model, cache, tokens, step);
      mx.eval([logits]);
      logits.dispose();
      const peak = mx.memory.peak() - a0;
      for (const c of cache) c[Symbol.dispose]();
      return peak;
    };
    const one = growth(prompt.slice(0, 64), 512);
    const two = growth(prompt, 64);
    expect(one).toBeGreaterThan(0);
    expect(two).toBeLessThan(1.5 * one);
  });
});

/**
 * Continuous batching over a real port with the `openai` SDK: concurrent greedy requests (streamed and not)
 * answer exactly what each answers alone on a --parallel 1 server, for a tiny random llama (float and 4-bit),
 * MoE (qwen3_moe), sliding windows (mistral, gemma3_text, gpt_oss with sinks and experts), hybrid MoE
 * (qwen3_5_moe: Gated DeltaNet + experts), lfm2 (short conv), gemma4 (KV shared across layers) and the real
 * SmolLM2 GGUF; the requests really shared the batch; without our kernels the server says why it does not batch
 * and still answers right one at a time; KV admission refuses with 503 + retry-after when full.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freemem } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import type { MlxEngine } from "../../src/engine/engine.ts";
import { kernelInfo, setKernelsEnabled } from "../../src/mlx/kernels.ts";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { addRepo, dirFiles, makeTempHub, type TempHub } from "../support/hf-cache.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { type HybridName, writeHybridModel } from "../support/tiny-hybrid.ts";
import { type TinyName, writeTinyModel } from "../support/tiny-models.ts";
import { serve, type Served } from "./support/serve.ts";

let hub: TempHub;
const opened: { s: Served; manager: ModelManager }[] = [];
const kernels = kernelInfo().enabled;

function server(env: Record<string, string | undefined>, o: { parallel: number; kvBudgetBytes?: number; pinned?: string }) {
  const manager = new ModelManager({
    resolve: (spec) => resolveTarget(spec, { env, allowPaths: true }),
    load: (t) => loadTarget(t, { env, parallel: o.parallel, kvBudgetBytes: o.kvBudgetBytes, freeMemory: freemem }),
    freeMemory: freemem,
    ...(o.pinned ? { pinned: resolveTarget(o.pinned, { env, allowPaths: true }) } : {}),
  });
  const s = serve(createApp({ manager, listModels: () => [] }));
  opened.push({ s, manager });
  return { manager, client: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "x", maxRetries: 0 }), url: s.url };
}

const DENSE: TinyName[] = ["llama", "llama_q4"];
// MoE (per-row expert routing), hybrid + MoE (Gated DeltaNet state per row), short-conv state per row
const MOE: TinyName[] = ["qwen3_moe_q4"];
// sliding windows: every layer (mistral), 2 of 3 layers (gemma3_text), MoE + sinks + sliding (gpt_oss)
const SLIDING: TinyName[] = ["mistral_swa", "gemma3_text", "gpt_oss_mxfp4"];
const HYBRID: HybridName[] = ["qwen3_5_moe_q4", "lfm2", "gemma4_text"];
const TINY = [...DENSE, ...MOE, ...SLIDING, ...HYBRID];
beforeAll(() => {
  hub = makeTempHub();
  for (const n of [...DENSE, ...MOE, ...SLIDING]) addRepo(hub.hubDir, { name: `mlx-community/tiny-${n}`, files: dirFiles(writeTinyModel(n, join(hub.root, n))) });
  for (const n of HYBRID) addRepo(hub.hubDir, { name: `mlx-community/tiny-${n}`, files: dirFiles(writeHybridModel(n, join(hub.root, n))) });
});

afterAll(() => {
  for (const o of opened) {
    o.s.stop();
    o.manager.close();
    o.manager.dispose();
  }
  hub?.cleanup();
});

const PROMPTS = ["Hello tiny model", "abc", "The quick brown fox jumps over the lazy", "x", "Once upon a time", "0123456789"];

/** Each prompt's greedy completion; `stream` alternates so both paths share the batch. */
async function answers(client: OpenAI, model: string, prompts: string[], maxTokens: number[], concurrent: boolean): Promise<string[]> {
  const one = async (p: string, i: number) => {
    const base = { model, temperature: 0, max_tokens: maxTokens[i % maxTokens.length]!, messages: [{ role: "user" as const, content: p }] };
    if (i % 2 === 0) return (await client.chat.completions.create(base)).choices[0]!.message.content ?? "";
    let text = "";
    for await (const c of await client.chat.completions.create({ ...base, stream: true })) text += c.choices[0]?.delta.content ?? "";
    return text;
  };
  if (concurrent) return Promise.all(prompts.map(one));
  const out: string[] = [];
  for (const [i, p] of prompts.entries()) out.push(await one(p, i));
  return out;
}

function engineOf(manager: ModelManager, id: string): MlxEngine {
  return manager.residentEngine(id) as MlxEngine;
}

describe.skipIf(!kernels)("concurrent greedy requests answer as alone", () => {
  for (const n of TINY) {
    test(`tiny ${n}: 6 concurrent requests (4 in the batch) equal their solo answers`, async () => {
      const env = { ...process.env, HF_HUB_CACHE: hub.hubDir };
      const model = `mlx-community/tiny-${n}`;
      const solo = server(env, { parallel: 1 });
      const batched = server(env, { parallel: 4 });
      // different lengths, so rows leave while others run and newcomers join a running batch
      const lengths = [24, 9, 17, 3, 30, 12];
      const want = await answers(solo.client, model, PROMPTS, lengths, false);
      const got = await answers(batched.client, model, PROMPTS, lengths, true);
      expect(got).toEqual(want);
      const e = engineOf(batched.manager, model);
      expect(e.parallel).toBe(4);
      expect(e.batchPeak).toBeGreaterThan(1);
      expect(e.batchPeak).toBeLessThanOrEqual(4);
      expect(engineOf(solo.manager, model).parallel).toBe(1);
    }, 60_000);
  }

  test("a client that disconnects mid-stream leaves the batch: the others answer as alone and the queue frees", async () => {
    const env = { ...process.env, HF_HUB_CACHE: hub.hubDir };
    const model = "mlx-community/tiny-llama_q4";
    const solo = server(env, { parallel: 1 });
    const batched = server(env, { parallel: 4 });
    const want = await answers(solo.client, model, PROMPTS.slice(0, 3), [40, 25, 33], false);
    const ac = new AbortController();
    let chunks = 0;
    const gone = (async () => {
      const s = await batched.client.chat.completions.create({ model, temperature: 0, max_tokens: 4000, stream: true, messages: [{ role: "user", content: "abc" }] }, { signal: ac.signal });
      try {
        for await (const _ of s) if (++chunks === 3) ac.abort();
      } catch {
        // the SDK may surface the abort as an error
      }
    })();
    const got = await answers(batched.client, model, PROMPTS.slice(0, 3), [40, 25, 33], true);
    await gone;
    expect(got).toEqual(want);
    expect(chunks).toBeLessThan(100);
    // the aborted row leaves the batch (it would otherwise decode up to 4000 tokens)
    const e = engineOf(batched.manager, model);
    const end = Date.now() + 10000;
    while ((batched.manager.queue.active || e.batchRows > 0) && Date.now() < end) await Bun.sleep(10);
    expect(e.batchRows).toBe(0);
    expect(batched.manager.queue.active).toBe(false);
    expect(e.batchPeak).toBeGreaterThan(1);
  }, 60_000);

  test("SmolLM2 (real GGUF): 4 concurrent greedy requests equal their solo answers", async () => {
    const gguf = await smollm2Gguf();
    const env = { ...process.env };
    const solo = server(env, { parallel: 1, pinned: gguf });
    const batched = server(env, { parallel: 4, pinned: gguf });
    const qs = ["What is the capital of France?", "Name three colors.", "Write a haiku about the sea.", "What is 2+2?"];
    const want = await answers(solo.client, "", qs, [20, 12, 28, 8], false);
    const got = await answers(batched.client, "", qs, [20, 12, 28, 8], true);
    expect(got).toEqual(want);
    expect(want[0]!.toLowerCase()).toContain("paris");
    expect(engineOf(batched.manager, batched.manager.pinned!.id).batchPeak).toBeGreaterThan(1);
  }, 180_000);

  test("SmolLM2: 8 requests arriving at once (default repetition penalty, none, 1.3) equal their solo answers", async () => {
    const gguf = await smollm2Gguf();
    const env = { ...process.env };
    const solo = server(env, { parallel: 1, pinned: gguf });
    const batched = server(env, { parallel: 8, pinned: gguf });
    const qs = ["Tell me about the moon.", "List four fruits.", "Why is the sky blue?", "Count to ten.", "Describe a cat.", "What is rain?", "Say hello.", "Name a planet."];
    // the OpenAI default sends the repetition penalty (1.1 over 20 tokens): batched it runs on the device
    const extra = [{}, { repetition_penalty: 1 }, { repetition_penalty: 1.3 }, {}, { repetition_penalty: 1 }, {}, { repetition_penalty: 1.3 }, {}];
    const lengths = [32, 20, 28, 16, 40, 24, 12, 36];
    const one = async (client: OpenAI, i: number) => {
      const base = { temperature: 0, max_tokens: lengths[i]!, messages: [{ role: "user" as const, content: qs[i]! }], ...extra[i] } as OpenAI.ChatCompletionCreateParamsNonStreaming & { model: string };
      base.model = "";
      if (i % 2 === 0) return (await client.chat.completions.create(base)).choices[0]!.message.content ?? "";
      let text = "";
      for await (const c of await client.chat.completions.create({ ...base, stream: true })) text += c.choices[0]?.delta.content ?? "";
      return text;
    };
    const want: string[] = [];
    for (let i = 0; i < qs.length; i++) want.push(await one(solo.client, i));
    const got = await Promise.all(qs.map((_, i) => one(batched.client, i)));
    expect(got).toEqual(want);
    // the penalty changes this answer, so the rows above really ran with it
    extra[2] = { repetition_penalty: 1 };
    expect(await one(solo.client, 2)).not.toBe(want[2]!);
    expect(engineOf(batched.manager, batched.manager.pinned!.id).batchPeak).toBeGreaterThan(4);
  }, 240_000);
});

test("without our kernels the server runs one request at a time, says why, and answers right", async () => {
  const env = { ...process.env, HF_HUB_CACHE: hub.hubDir };
  const model = "mlx-community/tiny-gemma4_text";
  // MLX's ops instead of our kernels: a batch row would not be computed exactly as alone, so no batching
  setKernelsEnabled(false);
  try {
    const solo = server(env, { parallel: 1 });
    const unbatched = server(env, { parallel: 4 });
    const want = await answers(solo.client, model, PROMPTS.slice(0, 3), [12], false);
    expect(await answers(unbatched.client, model, PROMPTS.slice(0, 3), [12], true)).toEqual(want);
    const e = engineOf(unbatched.manager, model);
    expect(e.parallel).toBe(1);
    expect(e.batching.refusal).toMatch(/kernels/);
  } finally {
    setKernelsEnabled(null);
  }
}, 60_000);

test.skipIf(!kernels)("KV admission: a request that does not fit beside the running ones is a 503 with retry-after", async () => {
  const env = { ...process.env, HF_HUB_CACHE: hub.hubDir };
  const model = "mlx-community/tiny-llama_q4";
  // room for one request of ~300 tokens of KV (tiny llama: 2 layers × 2 KV heads × 16 dims × 2 × 4 bytes = 512 B/token)
  const { client, url, manager } = server(env, { parallel: 4, kvBudgetBytes: 300 * 512 });
  const ask = { model, temperature: 0, max_tokens: 200, messages: [{ role: "user" as const, content: "abc" }] };
  await client.chat.completions.create({ ...ask, max_tokens: 1 });
  // a running request's reservation (deterministic: no race with how fast the tiny model finishes)
  const e = engineOf(manager, model);
  const running = e.reserve(e.prepare({ input: { prompt: "Hello tiny model" }, maxTokens: 200, sampling: { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 } }));
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(ask) });
  expect(res.status).toBe(503);
  expect(res.headers.get("retry-after")).not.toBeNull();
  const body = (await res.json()) as { error: { message: string; code: string } };
  expect(body.error.code).toBe("kv_cache_full");
  expect(body.error.message).toContain("KV cache");
  running();
  // once the running request is done, the same request fits
  const ok = await client.chat.completions.create(ask);
  expect(ok.choices[0]!.finish_reason).toBeDefined();
}, 60_000);

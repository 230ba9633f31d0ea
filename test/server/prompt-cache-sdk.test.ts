/**
 * The prompt cache over a real port with the official SDKs: a follow-up turn reports the reused prompt tokens
 * in each surface's own spelling (OpenAI chat usage.prompt_tokens_details.cached_tokens, Responses
 * usage.input_tokens_details.cached_tokens, Anthropic usage.cache_read_input_tokens with input_tokens the
 * prefilled rest, Ollama prompt_eval_cached_count beside the whole prompt_eval_count), non-stream and
 * stream, and answers exactly as a server without the cache.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freemem } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import { Ollama } from "ollama";
import OpenAI from "openai";
import * as v from "valibot";
import { UsageSchema } from "../../src/schemas/openai.ts";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { listRunnable, loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { addRepo, dirFiles, makeTempHub, type TempHub } from "../support/hf-cache.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const TINY = "mlx-community/tiny-llama-random";
let hub: TempHub;
const servers: { server: ReturnType<typeof Bun.serve>; manager: ModelManager; client: OpenAI; url: string }[] = [];

function serve(env: Record<string, string | undefined>, promptCacheBytes: number) {
  const manager = new ModelManager({ resolve: (s) => resolveTarget(s, { env }), load: (t) => loadTarget(t, { env, promptCacheBytes }), freeMemory: freemem });
  const app = createApp({ manager, listModels: () => listRunnable({ env }) });
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
  const url = `http://127.0.0.1:${server.port}`;
  const s = { server, manager, url, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 }) };
  servers.push(s);
  return s;
}

beforeAll(async () => {
  hub = makeTempHub();
  const dir = writeTinyModel("llama", join(hub.root, "tiny-src"));
  addRepo(hub.hubDir, { name: TINY, files: dirFiles(dir) });
});

afterAll(() => {
  for (const s of servers) {
    s.server.stop(true);
    s.manager.close();
    s.manager.dispose();
  }
  hub?.cleanup();
});

test("a follow-up turn reports cached_tokens and answers as a cold server", async () => {
  const env = { ...process.env, HF_HUB_CACHE: hub.hubDir };
  const warm = serve(env, 1 << 30).client;
  const cold = serve(env, 0).client;
  const base = { model: TINY, temperature: 0, max_tokens: 8 };
  const turn1 = [{ role: "system" as const, content: "You are a tiny model. ".repeat(8) }, { role: "user" as const, content: "Hello tiny model" }];
  const a = await warm.chat.completions.create({ ...base, messages: turn1 });
  expect(a.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
  v.parse(UsageSchema, a.usage);
  const turn2 = [...turn1, { role: "assistant" as const, content: a.choices[0]!.message.content ?? "" }, { role: "user" as const, content: "Again?" }];
  const b = await warm.chat.completions.create({ ...base, messages: turn2 });
  const b0 = await cold.chat.completions.create({ ...base, messages: turn2 });
  expect(b.choices[0]!.message.content).toBe(b0.choices[0]!.message.content);
  expect(b.usage?.prompt_tokens).toBe(b0.usage?.prompt_tokens);
  expect(b.usage!.prompt_tokens_details!.cached_tokens!).toBeGreaterThan(turn1[0]!.content.length);
  expect(b0.usage?.prompt_tokens_details).toBeUndefined();
  v.parse(UsageSchema, b.usage);

  const stream = await warm.chat.completions.create({ ...base, messages: turn2, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const c of stream) {
    text += c.choices[0]?.delta.content ?? "";
    if (c.usage) usage = c.usage;
  }
  expect(text).toBe(b0.choices[0]!.message.content ?? "");
  // The same prompt again: all but its last token are reused.
  expect(usage?.prompt_tokens_details?.cached_tokens).toBe(b.usage!.prompt_tokens - 1);
}, 60_000);

describe("the other surfaces report the reuse in their own spellings", () => {
  const env = () => ({ ...process.env, HF_HUB_CACHE: hub.hubDir });
  const system = "You are a tiny model. ".repeat(8);
  const q = "Hello tiny model";
  // The same request twice: the second reuses all but its last token (the trimmed entry of the first).
  test("Responses: usage.input_tokens_details.cached_tokens, whole and streamed", async () => {
    const warm = serve(env(), 1 << 30).client;
    const cold = serve(env(), 0).client;
    const req = { model: TINY, temperature: 0, max_output_tokens: 6, instructions: system, input: q };
    const a = await warm.responses.create(req);
    expect(a.usage!.input_tokens_details.cached_tokens).toBe(0);
    const b = await warm.responses.create(req);
    const b0 = await cold.responses.create(req);
    expect(b.output_text).toBe(b0.output_text);
    expect(b.usage!.input_tokens).toBe(b0.usage!.input_tokens);
    expect(b.usage!.input_tokens_details.cached_tokens).toBe(b.usage!.input_tokens - 1);
    expect(b0.usage!.input_tokens_details.cached_tokens).toBe(0);
    const stream = await warm.responses.create({ ...req, stream: true });
    let usage: OpenAI.Responses.ResponseUsage | undefined;
    for await (const e of stream) if (e.type === "response.completed" || e.type === "response.incomplete") usage = e.response.usage ?? undefined;
    expect(usage!.input_tokens_details.cached_tokens).toBe(b.usage!.input_tokens - 1);
  }, 60_000);

  test("Anthropic: cache_read_input_tokens + input_tokens add up to the prompt, whole and streamed", async () => {
    const warm = new Anthropic({ baseURL: serve(env(), 1 << 30).url, apiKey: "x", maxRetries: 0 });
    const cold = new Anthropic({ baseURL: serve(env(), 0).url, apiKey: "x", maxRetries: 0 });
    const req = { model: TINY, temperature: 0, max_tokens: 6, system, messages: [{ role: "user", content: q }] } as Anthropic.MessageCreateParamsNonStreaming;
    const a = await warm.messages.create(req);
    expect(a.usage.cache_read_input_tokens).toBe(0);
    const prompt = a.usage.input_tokens;
    const b = await warm.messages.create(req);
    const b0 = await cold.messages.create(req);
    expect(b.content).toEqual(b0.content);
    expect(b0.usage).toMatchObject({ input_tokens: prompt, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
    expect(b.usage).toMatchObject({ input_tokens: 1, cache_read_input_tokens: prompt - 1, cache_creation_input_tokens: 0 });
    // Streamed: message_start announces the reuse, message_delta carries the totals (the SDK keeps the latter).
    const stream = warm.messages.stream(req);
    let start: Anthropic.Usage | undefined;
    stream.on("streamEvent", (e) => {
      if (e.type === "message_start") start = e.message.usage;
    });
    const final = await stream.finalMessage();
    expect(start).toMatchObject({ input_tokens: 1, cache_read_input_tokens: prompt - 1 });
    expect(final.usage).toMatchObject({ input_tokens: 1, cache_read_input_tokens: prompt - 1, cache_creation_input_tokens: 0, output_tokens: b.usage.output_tokens });
  }, 60_000);

  test("Ollama: prompt_eval_cached_count beside the whole prompt_eval_count (chat and generate, whole and streamed)", async () => {
    const warm = new Ollama({ host: serve(env(), 1 << 30).url });
    const cold = new Ollama({ host: serve(env(), 0).url });
    const req = { model: TINY, options: { temperature: 0, num_predict: 6 }, messages: [{ role: "system", content: system }, { role: "user", content: q }] };
    type Counts = { prompt_eval_count: number; prompt_eval_cached_count?: number };
    const a = (await warm.chat(req)) as unknown as Counts;
    expect(a.prompt_eval_cached_count).toBe(0);
    const b = await warm.chat(req);
    const b0 = await cold.chat(req);
    expect(b.message.content).toBe(b0.message.content);
    expect((b0 as unknown as Counts).prompt_eval_cached_count).toBeUndefined(); // no cache, no field (as Ollama before 0.33)
    expect(b.prompt_eval_count).toBe(a.prompt_eval_count);
    expect((b as unknown as Counts).prompt_eval_cached_count).toBe(a.prompt_eval_count - 1);
    let last: Counts | undefined;
    for await (const part of await warm.chat({ ...req, stream: true })) if (part.done) last = part as unknown as Counts;
    expect(last!.prompt_eval_cached_count).toBe(a.prompt_eval_count - 1);
    const g = { model: TINY, prompt: `${system} ${q}`, options: { temperature: 0, num_predict: 4 } };
    await warm.generate(g);
    const g2 = (await warm.generate(g)) as unknown as Counts;
    expect(g2.prompt_eval_cached_count).toBe(g2.prompt_eval_count - 1);
  }, 60_000);
});

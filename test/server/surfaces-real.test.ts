/**
 * Every API surface over one real engine: SmolLM2 (GGUF) pinned with --served-model-name aliases, the official
 * SDKs of each surface over a real port, greedy so answers are reproducible. Streamed and whole, and the
 * same request through each surface gives the same text as the OpenAI chat route.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freemem } from "node:os";
import Anthropic from "@anthropic-ai/sdk";
import { Ollama } from "ollama";
import OpenAI from "openai";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { serve, type Served } from "./support/serve.ts";

let s: Served;
let manager: ModelManager;
const Q = "What is the capital of France?";

beforeAll(async () => {
  const gguf = await smollm2Gguf();
  const env = { ...process.env };
  manager = new ModelManager({
    resolve: (spec) => resolveTarget(spec, { env, allowPaths: false }),
    load: (t) => loadTarget(t, { env }),
    freeMemory: freemem,
    pinned: resolveTarget(gguf, { env, allowPaths: true }),
    aliases: ["gpt-4o-mini", "claude-sonnet-4-5", "smollm2"],
  });
  await manager.preload(manager.pinned!);
  s = serve(createApp({ manager, listModels: () => [] }));
}, 120000);

afterAll(() => {
  s?.stop();
  manager?.close();
  manager?.dispose();
});

describe("SmolLM2 through every surface", () => {
  test("OpenAI chat, Responses, Anthropic Messages and Ollama chat answer the same greedy text", async () => {
    const openai = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "x", maxRetries: 0 });
    const chat = await openai.chat.completions.create({ model: "gpt-4o-mini", temperature: 0, max_tokens: 16, messages: [{ role: "user", content: Q }] });
    const reference = chat.choices[0]!.message.content!;
    expect(reference.toLowerCase()).toContain("paris");

    const resp = await openai.responses.create({ model: "gpt-4o-mini", temperature: 0, max_output_tokens: 16, input: Q });
    expect(resp.output_text).toBe(reference);
    expect(resp.usage!.input_tokens).toBe(chat.usage!.prompt_tokens);

    const anthropic = new Anthropic({ baseURL: s.url, apiKey: "x", maxRetries: 0 });
    // this SDK version no longer types `temperature`; the Messages API still takes it (greedy here)
    const msg = await anthropic.messages.create({ model: "claude-sonnet-4-5", temperature: 0, max_tokens: 16, messages: [{ role: "user", content: Q }] } as Anthropic.MessageCreateParamsNonStreaming);
    expect((msg.content[0] as { text: string }).text).toBe(reference);
    expect(msg.usage.input_tokens).toBe(chat.usage!.prompt_tokens);

    const ollama = new Ollama({ host: s.url });
    const o = await ollama.chat({ model: "smollm2:latest", options: { temperature: 0, num_predict: 16 }, messages: [{ role: "user", content: Q }] });
    expect(o.message.content).toBe(reference);
    expect(o.prompt_eval_count).toBe(chat.usage!.prompt_tokens);
  }, 120000);

  test("streamed: Responses events, Anthropic deltas and Ollama NDJSON reassemble the whole answer", async () => {
    const openai = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "x", maxRetries: 0 });
    const whole = (await openai.responses.create({ temperature: 0, max_output_tokens: 12, input: Q } as never)) as { output_text: string };

    let deltas = "";
    const rs = openai.responses.stream({ model: "gpt-4o-mini", temperature: 0, max_output_tokens: 12, input: Q });
    rs.on("response.output_text.delta", (e) => (deltas += e.delta));
    const final = await rs.finalResponse();
    expect(deltas).toBe(whole.output_text);
    expect(final.output_text).toBe(whole.output_text);

    const anthropic = new Anthropic({ baseURL: s.url, apiKey: "x", maxRetries: 0 });
    let text = "";
    const ms = anthropic.messages.stream({ model: "claude-sonnet-4-5", temperature: 0, max_tokens: 12, messages: [{ role: "user", content: Q }] } as Anthropic.MessageStreamParams);
    ms.on("text", (t) => (text += t));
    await ms.finalMessage();
    expect(text).toBe(whole.output_text);

    const ollama = new Ollama({ host: s.url });
    let parts = "";
    for await (const p of await ollama.chat({ model: "smollm2", stream: true, options: { temperature: 0, num_predict: 12 }, messages: [{ role: "user", content: Q }] })) parts += p.message.content;
    expect(parts).toBe(whole.output_text);
  }, 120000);

  test("num_ctx smaller than the prompt is a 400, and changing num_ctx never reloads the model", async () => {
    const ollama = new Ollama({ host: s.url });
    const err = await ollama.chat({ model: "smollm2", options: { num_ctx: 4 }, messages: [{ role: "user", content: Q }] }).catch((e: unknown) => e);
    expect((err as { status_code?: number }).status_code).toBe(400);
    const engine = manager.residentEngine(manager.pinned!.id);
    await ollama.chat({ model: "smollm2", options: { num_ctx: 2048, num_predict: 2 }, messages: [{ role: "user", content: "hi" }] });
    await ollama.chat({ model: "smollm2", options: { num_ctx: 8192, num_predict: 2 }, messages: [{ role: "user", content: "hi" }] });
    expect(manager.residentEngine(manager.pinned!.id)).toBe(engine);
  }, 120000);

  test("Ollama format (a JSON schema) and Responses text.format are enforced by the decoder", async () => {
    const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false };
    const ollama = new Ollama({ host: s.url });
    const o = await ollama.chat({ model: "smollm2", format: schema, options: { temperature: 0, num_predict: 40 }, messages: [{ role: "user", content: "Name the capital of France as JSON." }] });
    expect(Object.keys(JSON.parse(o.message.content) as object)).toEqual(["city"]);
    const openai = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "x", maxRetries: 0 });
    const r = await openai.responses.create({ model: "gpt-4o-mini", temperature: 0, max_output_tokens: 40, input: "The capital of France, as JSON.", text: { format: { type: "json_schema", name: "capital", schema, strict: true } } });
    expect(Object.keys(JSON.parse(r.output_text) as object)).toEqual(["city"]);
  }, 120000);
});

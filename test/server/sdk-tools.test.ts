/**
 * Tool calling and structured output end to end: the `openai` SDK over a real port against SmolLM2
 * (a 135M model with no tool training): forced calls and json_schema answers must parse and validate
 * anyway, because the decoder enforces them; streaming follows the OpenAI tool-call delta rules.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freemem } from "node:os";
import Ajv from "ajv";
import OpenAI from "openai";
import * as v from "valibot";
import { ChatCompletionChunkSchema, ChatCompletionSchema } from "../../src/schemas/openai.ts";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { listRunnable, loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { smollm2Gguf } from "../support/smollm2.ts";

let server: ReturnType<typeof Bun.serve>;
let manager: ModelManager;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  model = await smollm2Gguf();
  manager = new ModelManager({ resolve: (s) => resolveTarget(s), load: (t) => loadTarget(t), freeMemory: freemem, maxQueue: 4 });
  const app = createApp({ manager, listModels: () => listRunnable() });
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
  client = new OpenAI({ baseURL: `http://127.0.0.1:${server.port}/v1`, apiKey: "unused", maxRetries: 0 });
});

afterAll(() => {
  server?.stop(true);
  manager?.close();
  manager?.dispose();
});

const WEATHER = {
  type: "object",
  properties: { city: { type: "string", minLength: 1, maxLength: 24 }, unit: { type: "string", enum: ["celsius", "fahrenheit"] }, days: { type: "integer", minimum: 1, maximum: 7 } },
  required: ["city", "unit", "days"],
  additionalProperties: false,
};
const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Weather forecast for a city", parameters: WEATHER } },
  { type: "function", function: { name: "get_time", description: "Local time of a city", parameters: { type: "object", properties: { city: { type: "string", maxLength: 24 } }, required: ["city"] } } },
];
const ajv = new Ajv({ strict: false });
const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "What will the weather be in Paris for the next 3 days?" }];

describe("SmolLM2 via the openai SDK: forced tool calls and json_schema", () => {
  test("named tool_choice: one call, arguments validate against the function's parameters", async () => {
    const r = await client.chat.completions.create({ model, messages, tools, tool_choice: { type: "function", function: { name: "get_weather" } }, temperature: 0, max_tokens: 64 });
    expect(v.safeParse(ChatCompletionSchema, r).success).toBe(true);
    const choice = r.choices[0]!;
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    const calls = choice.message.tool_calls!;
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.type).toBe("function");
    expect(call.id).toMatch(/^call_/);
    if (call.type !== "function") throw new Error("not a function call");
    expect(call.function.name).toBe("get_weather");
    expect(ajv.validate(WEATHER, JSON.parse(call.function.arguments))).toBe(true);
  }, 120000);

  test("required, streamed: deltas carry index, id and name first, then argument fragments; the call round-trips", async () => {
    const stream = await client.chat.completions.create({ model, messages, tools, tool_choice: "required", parallel_tool_calls: false, temperature: 0.7, seed: 5, max_tokens: 80, stream: true });
    const args: string[] = [];
    let id = "";
    let name = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      expect(v.safeParse(ChatCompletionChunkSchema, chunk).success).toBe(true);
      const c = chunk.choices[0];
      if (!c) continue;
      if (c.finish_reason) finish = c.finish_reason;
      for (const d of c.delta.tool_calls ?? []) {
        expect(d.index).toBe(0);
        if (d.id !== undefined) {
          expect(id).toBe(""); // id and name come once, in the call's first delta
          id = d.id;
          name = d.function!.name!;
          expect(d.type).toBe("function");
        } else expect(id).not.toBe("");
        args.push(d.function?.arguments ?? "");
      }
    }
    expect(finish).toBe("tool_calls");
    expect(["get_weather", "get_time"]).toContain(name);
    const parsed = JSON.parse(args.join("")) as unknown;
    if (name === "get_weather") expect(ajv.validate(WEATHER, parsed)).toBe(true);

    // The assistant turn with tool_calls and the tool's answer go back through the chat template.
    const follow = await client.chat.completions.create({
      model,
      temperature: 0,
      max_tokens: 16,
      tools,
      messages: [
        ...messages,
        { role: "assistant", content: null, tool_calls: [{ id, type: "function", function: { name, arguments: args.join("") } }] },
        { role: "tool", tool_call_id: id, content: '{"forecast": "sunny"}' },
      ],
      tool_choice: "none",
    });
    expect(follow.choices[0]!.finish_reason).not.toBe("tool_calls");
    expect(typeof follow.choices[0]!.message.content).toBe("string");
  }, 120000);

  test("response_format json_schema: the answer is JSON that validates, streamed and not", async () => {
    const schema = {
      type: "object",
      properties: { name: { type: "string", minLength: 2, maxLength: 16 }, age: { type: "integer", minimum: 0, maximum: 120 }, hobbies: { type: "array", items: { type: "string", maxLength: 12 }, maxItems: 2 } },
      required: ["name", "age", "hobbies"],
      additionalProperties: false,
    };
    const body = { model, messages: [{ role: "user" as const, content: "Describe a fictional person." }], response_format: { type: "json_schema" as const, json_schema: { name: "person", schema, strict: true } }, temperature: 0.8, seed: 11, max_tokens: 120 };
    const r = await client.chat.completions.create(body);
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(ajv.validate(schema, JSON.parse(r.choices[0]!.message.content!))).toBe(true);
    let text = "";
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe(r.choices[0]!.message.content!); // same seed, same answer
  }, 120000);

  test("response_format json_object: the answer is a JSON object", async () => {
    const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "List three colours as JSON." }], response_format: { type: "json_object" }, temperature: 0, max_tokens: 60 });
    const value = JSON.parse(r.choices[0]!.message.content!) as unknown;
    expect(value !== null && typeof value === "object" && !Array.isArray(value)).toBe(true);
  }, 60000);

  test("stop with enforced output is a 400 (it could cut the JSON short)", async () => {
    const err = await client.chat.completions.create({ model, messages, response_format: { type: "json_object" }, stop: ["}"] }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("stop");
  }, 60000);

  test("a schema keyword that cannot be enforced is a 400 naming it", async () => {
    const err = await client.chat.completions
      .create({ model, messages, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "string" } }, not: { required: ["a"] } } } } })
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("response_format.json_schema.schema.not");
  }, 60000);

  test("tool_choice auto on a template without tool support is refused, not ignored", async () => {
    const err = await client.chat.completions.create({ model, messages, tools }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("tools");
  }, 60000);
});

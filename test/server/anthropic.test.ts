/**
 * POST /v1/messages and /v1/messages/count_tokens through the official `@anthropic-ai/sdk` over a real port
 * (scripted engine): content blocks, stop reasons, the streamed event sequence, thinking blocks, errors in
 * Anthropic's shape, and x-api-key or bearer auth.
 */
import { afterAll, describe, expect, test } from "bun:test";
import Anthropic from "@anthropic-ai/sdk";
import { readNamedSse } from "../../src/server/stream.ts";
import { ScriptEngine } from "./support/script-engine.ts";
import { makeApp, post } from "./support/app.ts";
import { serve } from "./support/serve.ts";

const M = "org/tiny";
const T = "org/thinker";
const W = "org/caller";
const weather = { name: "get_weather", description: "Weather of a city", input_schema: { type: "object" as const, properties: { city: { type: "string" } } } };
const KEY = "sk-local-test";
const t = makeApp(
  {
    [M]: () => new ScriptEngine(M, { eosAfter: 3 }),
    [T]: () => new ScriptEngine(T, { eosAfter: 4, reasoning: ["hmm", "ok"] }),
    [W]: () => new ScriptEngine(W, { eosAfter: 1, calls: [{ name: "get_weather", arguments: '{"city":"Paris"}' }] }),
  },
  { apiKey: KEY, manager: { pinned: M, aliases: ["claude-sonnet-4-5"], allowSwitch: true } },
);
const s = serve(t.app);
const client = new Anthropic({ baseURL: s.url, apiKey: KEY, maxRetries: 0 });
afterAll(() => s.stop());

describe("messages via @anthropic-ai/sdk", () => {
  test("non-streamed: system, text blocks, end_turn, usage; the alias Claude Code sends is served", async () => {
    const r = await client.messages.create({
      model: "claude-sonnet-4-5",
      max_tokens: 64,
      system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: [{ type: "text", text: "hello" }] },
        { role: "user", content: [{ type: "text", text: "again" }] },
      ],
    });
    expect(r.type).toBe("message");
    expect(r.id).toStartWith("msg_");
    expect(r.model).toBe("claude-sonnet-4-5");
    expect(r.content).toEqual([{ type: "text", text: "alpha beta gamma " } as never]);
    expect(r.stop_reason).toBe("end_turn");
    expect(r.usage.input_tokens).toBeGreaterThan(0);
    expect(r.usage.output_tokens).toBe(3);
    const req = (t.manager.residentEngine(M) as ScriptEngine).requests.at(-1)!;
    expect("messages" in req.input && req.input.messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "user"]);
    // this SDK version sends the key as a bearer token; x-api-key (Claude Code, older SDKs) is checked below
    expect(s.requests.at(-1)!.headers.authorization).toBe(`Bearer ${KEY}`);
  });

  test("stop reasons: max_tokens and stop_sequence (naming the sequence)", async () => {
    const cut = await client.messages.create({ model: M, max_tokens: 1, messages: [{ role: "user", content: "x" }] });
    expect(cut.stop_reason).toBe("max_tokens");
    const stopped = await client.messages.create({ model: M, max_tokens: 50, stop_sequences: ["gamma"], messages: [{ role: "user", content: "x" }] });
    expect(stopped.stop_reason).toBe("stop_sequence");
    expect(stopped.stop_sequence).toBe("gamma");
    expect((stopped.content[0] as { text: string }).text).toBe("alpha beta ");
  });

  test("streamed: event sequence, thinking then text blocks; finalMessage() matches", async () => {
    const stream = client.messages.stream({ model: T, max_tokens: 64, messages: [{ role: "user", content: "think" }] });
    const types: string[] = [];
    stream.on("streamEvent", (e) => types.push(e.type === "content_block_delta" ? `${e.type}:${e.delta.type}` : e.type));
    const final = await stream.finalMessage();
    expect(types).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta:thinking_delta",
      "content_block_delta:thinking_delta",
      "content_block_delta:signature_delta",
      "content_block_stop",
      "content_block_start",
      "content_block_delta:text_delta",
      "content_block_delta:text_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(final.content.map((b) => b.type)).toEqual(["thinking", "text"]);
    expect((final.content[0] as { thinking: string }).thinking).toBe("hmm ok ");
    expect((final.content[1] as { text: string }).text).toBe("alpha beta ");
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage.output_tokens).toBe(4);
  });

  test("the raw stream has ping, and each `event:` name equals the payload type", async () => {
    const res = await fetch(`${s.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: M, max_tokens: 2, stream: true, messages: [{ role: "user", content: "x" }] }),
    });
    expect(res.status).toBe(200);
    const events: string[] = [];
    for await (const e of readNamedSse(res.body!)) {
      expect(e.event).toBe((JSON.parse(e.data) as { type: string }).type);
      events.push(e.event!);
    }
    expect(events).toContain("ping");
    expect(events.at(-1)).toBe("message_stop");
  });

  test("count_tokens counts the rendered prompt", async () => {
    const r = await client.messages.countTokens({ model: M, system: "sys", messages: [{ role: "user", content: "one two three" }] });
    expect(r.input_tokens).toBe(5);
  });

  test("errors come in Anthropic's shape and map to the SDK's classes", async () => {
    const bad = new Anthropic({ baseURL: s.url, apiKey: "wrong", maxRetries: 0 });
    const auth = await bad.messages.create({ model: M, max_tokens: 5, messages: [{ role: "user", content: "x" }] }).catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(Anthropic.AuthenticationError);
    const img = await client.messages
      .create({ model: M, max_tokens: 5, messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "AA==" } }] }] })
      .catch((e: unknown) => e);
    expect(img).toBeInstanceOf(Anthropic.BadRequestError);
    // x-api-key authenticates (a 400 for the missing max_tokens, not a 401)
    const raw = await post(t.app, "/v1/messages", { model: M, messages: [{ role: "user", content: "x" }] }, { "x-api-key": KEY });
    expect(raw.status).toBe(400);
    const body = (await raw.json()) as { type: string; error: { type: string; message: string } };
    expect(body.type).toBe("error");
    expect(body.error.type).toBe("invalid_request_error");
    expect(body.error.message).toContain("max_tokens");
    const unknown = await client.messages.create({ model: "org/none", max_tokens: 5, messages: [{ role: "user", content: "x" }] }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
  });

  test("a failure mid-stream is an `error` event the SDK raises", async () => {
    const f = makeApp({ "org/fails": () => new ScriptEngine("org/fails", { failAfter: 1 }) });
    const fs = serve(f.app);
    try {
      const c = new Anthropic({ baseURL: fs.url, apiKey: "x", maxRetries: 0 });
      const err = await c.messages
        .stream({ model: "org/fails", max_tokens: 10, messages: [{ role: "user", content: "x" }] })
        .finalMessage()
        .catch((e: unknown) => e);
      expect(String((err as Error).message)).toContain("scripted failure");
    } finally {
      fs.stop();
    }
  });

  test("tools: tool_use blocks with input objects, stop_reason tool_use; streamed as input_json_delta", async () => {
    const r = await client.messages.create({ model: W, max_tokens: 64, tools: [weather], messages: [{ role: "user", content: "weather?" }] });
    expect(r.stop_reason).toBe("tool_use");
    expect(r.content.map((b) => b.type)).toEqual(["text", "tool_use"]);
    const use = r.content[1] as { id: string; name: string; input: unknown };
    expect(use.name).toBe("get_weather");
    expect(use.input).toEqual({ city: "Paris" });
    expect(use.id).toStartWith("toolu_");
    const req = (t.manager.residentEngine(W) as ScriptEngine).requests.at(-1)!;
    expect(req.tools).toEqual([{ name: "get_weather", description: "Weather of a city", parameters: weather.input_schema }]);

    const stream = client.messages.stream({ model: W, max_tokens: 64, tools: [weather], tool_choice: { type: "any" }, messages: [{ role: "user", content: "weather?" }] });
    const deltas: string[] = [];
    stream.on("streamEvent", (e) => {
      if (e.type === "content_block_delta" && e.delta.type === "input_json_delta") deltas.push(e.delta.partial_json);
    });
    const final = await stream.finalMessage();
    expect(deltas.join("")).toBe('{"city":"Paris"}');
    expect(final.stop_reason).toBe("tool_use");
    expect((final.content.find((b) => b.type === "tool_use") as { input: unknown }).input).toEqual({ city: "Paris" });
    expect((t.manager.residentEngine(W) as ScriptEngine).requests.at(-1)!.toolChoice).toBe("required");
  });

  test("tool_use and tool_result blocks become the assistant's call and the tool turn", async () => {
    await client.messages.create({
      model: M,
      max_tokens: 8,
      tools: [weather],
      tool_choice: { type: "tool", name: "get_weather", disable_parallel_tool_use: true },
      messages: [
        { role: "user", content: "weather?" },
        { role: "assistant", content: [{ type: "text", text: "Let me look." }, { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Oslo" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "-3 C" }] }, { type: "text", text: "and?" }] },
      ],
    });
    const req = (t.manager.residentEngine(M) as ScriptEngine).requests.at(-1)!;
    expect(req.toolChoice).toEqual({ name: "get_weather" });
    expect(req.parallelToolCalls).toBe(false);
    expect("messages" in req.input && req.input.messages).toEqual([
      { role: "user", content: "weather?" },
      { role: "assistant", content: "Let me look.", toolCalls: [{ id: "toolu_1", name: "get_weather", arguments: '{"city":"Oslo"}' }] },
      { role: "tool", content: "-3 C", toolCallId: "toolu_1", name: "get_weather" },
      { role: "user", content: "and?" },
    ]);
    const server = await post(t.app, "/v1/messages", { model: M, max_tokens: 5, tools: [{ type: "web_search_20250305", name: "web_search" }], messages: [{ role: "user", content: "x" }] }, { "x-api-key": KEY });
    expect(server.status).toBe(400);
    expect(((await server.json()) as { error: { message: string } }).error.message).toContain("tools[0].type");
    const mcp = await post(t.app, "/v1/messages", { model: M, max_tokens: 5, mcp_servers: [{ type: "url", url: "http://x", name: "x" }], messages: [{ role: "user", content: "x" }] }, { "x-api-key": KEY });
    expect(mcp.status).toBe(400);
    expect(((await mcp.json()) as { error: { message: string } }).error.message).toContain("mcp_servers");
  });
});

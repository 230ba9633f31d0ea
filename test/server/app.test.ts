/**
 * HTTP shapes, errors, auth, CORS, queueing and cancellation through app.handle (no port), with a scripted
 * engine where the path needs a behaviour a real model cannot be made to show (slow load, failure mid-stream).
 */
import { describe, expect, test } from "bun:test";
import {
  ChatCompletionChunkSchema,
  ChatCompletionSchema,
  ErrorBodySchema,
  ModelListSchema,
  ModelObjectSchema,
  TextCompletionSchema,
} from "../../src/schemas/openai.ts";
import { ScriptEngine } from "./support/script-engine.ts";
import { check, get, makeApp, post, sseEvents } from "./support/app.ts";

const M = "org/tiny";
const chat = (extra: Record<string, unknown> = {}) => ({ model: M, messages: [{ role: "user", content: "hi there" }], ...extra });

async function errorOf(res: Response): Promise<{ message: string; type: string; param: string | null; code: string | null }> {
  return check(ErrorBodySchema, await res.json()).error;
}

describe("models and health", () => {
  test("GET /v1/models lists in OpenAI shape; GET /v1/models/{org/name} finds ids with '/'", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M), "b/other": () => new ScriptEngine("b/other") });
    const list = check(ModelListSchema, await (await get(app, "/v1/models")).json());
    expect(list.data.map((m) => m.id)).toEqual(["b/other", M]);
    const one = await get(app, `/v1/models/${M}`);
    expect(one.status).toBe(200);
    expect(check(ModelObjectSchema, await one.json()).id).toBe(M);
    const enc = await get(app, `/v1/models/${encodeURIComponent(M)}`);
    expect(enc.status).toBe(200);
    const missing = await get(app, "/v1/models/nope/nothing");
    expect(missing.status).toBe(404);
    expect((await errorOf(missing)).code).toBe("model_not_found");
  });

  test("health is 503 while a model loads, 200 with the model after", async () => {
    let finish!: () => void;
    const gate = new Promise<void>((r) => (finish = r));
    const { app, manager } = makeApp({
      [M]: async () => {
        await gate;
        return new ScriptEngine(M);
      },
    });
    expect((await get(app, "/health")).status).toBe(200);
    const pre = manager.preload(M);
    await Bun.sleep(0);
    const during = await get(app, "/health");
    expect(during.status).toBe(503);
    expect(((await during.json()) as { status: string }).status).toBe("loading");
    finish();
    await pre;
    const after = await get(app, "/health");
    expect(after.status).toBe(200);
    expect(((await after.json()) as { model: string }).model).toBe(M);
    // the loaded model is listed first
    const list = check(ModelListSchema, await (await get(app, "/v1/models")).json());
    expect(list.data[0]!.id).toBe(M);
  });
});

describe("chat completions", () => {
  test("non-stream: shape, usage from the engine, finish_reason stop/length", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { eosAfter: 3 }) });
    const body = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat())).json());
    expect(body.choices[0].message.content).toBe("alpha beta gamma ");
    expect(body.choices[0].finish_reason).toBe("stop");
    expect(body.usage).toEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });
    const cut = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat({ max_tokens: 2 }))).json());
    expect(cut.choices[0].finish_reason).toBe("length");
    expect(cut.usage.completion_tokens).toBe(2);
    const mct = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat({ max_completion_tokens: 1, max_tokens: 50 }))).json());
    expect(mct.usage.completion_tokens).toBe(1);
  });

  test("request fields reach the engine: sampling, seed, stop list, parts joined, roles kept", async () => {
    const engine = new ScriptEngine(M, { eosAfter: 1 });
    const { app } = makeApp({ [M]: () => engine });
    const res = await post(app, "/v1/chat/completions", {
      model: M,
      messages: [
        { role: "developer", content: "be brief" },
        { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
        { role: "assistant", content: null },
        { role: "tool", content: "42", tool_call_id: "x" },
      ],
      temperature: 0,
      top_p: 0.5,
      seed: 7,
      stop: "zz",
      unknown_field: { ignored: true },
    });
    expect(res.status).toBe(200);
    const req = engine.requests[0]!;
    expect(req.sampling.temperature).toBe(0);
    expect(req.sampling.topP).toBe(0.5);
    expect(req.sampling.seed).toBe(7);
    expect(req.stop).toEqual(["zz"]);
    expect("messages" in req.input && req.input.messages).toEqual([
      { role: "developer", content: "be brief" },
      { role: "user", content: "a\nb" },
      { role: "assistant", content: "" },
      { role: "tool", content: "42", toolCallId: "x" },
    ]);
  });

  test("tool calls: message.tool_calls (content null) and per-call stream deltas with distinct indexes", async () => {
    const calls = [
      { name: "get_weather", arguments: '{"city": "Paris"}' },
      { name: "get_time", arguments: '{"tz": "CET"}' },
    ];
    const tools = [
      { type: "function", function: { name: "get_weather", parameters: { type: "object" } } },
      { type: "function", function: { name: "get_time", parameters: { type: "object" } } },
    ];
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { eosAfter: 0, calls }) });
    const body = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat({ tools }))).json());
    expect(body.choices[0].finish_reason).toBe("tool_calls");
    expect(body.choices[0].message.content).toBeNull();
    expect(body.choices[0].message.tool_calls).toEqual([
      { id: "call_0", type: "function", function: calls[0]! },
      { id: "call_1", type: "function", function: calls[1]! },
    ]);
    const ev = (await sseEvents(await post(app, "/v1/chat/completions", chat({ tools, stream: true })))).slice(0, -1).map((c) => check(ChatCompletionChunkSchema, c));
    const deltas = ev.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(deltas[0]).toEqual({ index: 0, id: "call_0", type: "function", function: { name: "get_weather", arguments: "" } });
    expect(deltas[1]).toEqual({ index: 0, function: { arguments: '{"city":' } });
    expect(deltas[3]).toEqual({ index: 1, id: "call_1", type: "function", function: { name: "get_time", arguments: "" } });
    for (const i of [0, 1]) expect(deltas.filter((d) => d.index === i).map((d) => d.function.arguments).join("")).toBe(calls[i]!.arguments);
    expect(ev.at(-1)!.choices[0]).toMatchObject({ delta: {}, finish_reason: "tool_calls" });
  });

  test("stop is honoured without streaming and never emitted", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M) });
    const body = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat({ stop: ["gam", "zzz"], max_tokens: 10 }))).json());
    expect(body.choices[0].message.content).toBe("alpha beta ");
    expect(body.choices[0].finish_reason).toBe("stop");
  });

  test("stream: role chunk, content chunks, finish chunk, usage chunk only with include_usage, [DONE]", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { eosAfter: 2 }) });
    const res = await post(app, "/v1/chat/completions", chat({ stream: true, stream_options: { include_usage: true } }));
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const ev = await sseEvents(res);
    expect(ev.at(-1)).toBe("[DONE]");
    const chunks = ev.slice(0, -1).map((c) => check(ChatCompletionChunkSchema, c));
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(new Set(chunks.map((c) => c.created)).size).toBe(1);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: "assistant", content: "" });
    expect(chunks.slice(1, 3).map((c) => c.choices[0]!.delta.content)).toEqual(["alpha ", "beta "]);
    expect(chunks[3]!.choices[0]!).toMatchObject({ delta: {}, finish_reason: "stop" });
    expect(chunks.slice(0, 4).every((c) => c.usage === null)).toBe(true);
    expect(chunks[4]!.choices).toEqual([]);
    expect(chunks[4]!.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });

    const plain = await sseEvents(await post(app, "/v1/chat/completions", chat({ stream: true })));
    const pc = plain.slice(0, -1).map((c) => check(ChatCompletionChunkSchema, c));
    expect(pc.every((c) => c.usage === undefined && c.choices.length === 1)).toBe(true);
  });

  test("reasoning goes to reasoning_content, streamed and not", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { reasoning: ["hmm", "ok"], eosAfter: 3 }) });
    const body = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat())).json());
    expect(body.choices[0].message).toMatchObject({ content: "alpha ", reasoning_content: "hmm ok " });
    const ev = (await sseEvents(await post(app, "/v1/chat/completions", chat({ stream: true })))).slice(0, -1).map((c) => check(ChatCompletionChunkSchema, c));
    expect(ev.map((c) => c.choices[0]?.delta.reasoning_content ?? "").join("")).toBe("hmm ok ");
    expect(ev.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("alpha ");
  });

  test("logprobs / top_logprobs", async () => {
    const engine = new ScriptEngine(M, { eosAfter: 2 });
    const { app } = makeApp({ [M]: () => engine });
    const body = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat({ logprobs: true, top_logprobs: 2 }))).json());
    expect(engine.requests[0]!.topLogprobs).toBe(2);
    const lp = body.choices[0].logprobs!.content;
    expect(lp.map((t) => t.token)).toEqual(["alpha ", "beta "]);
    expect(lp[0]!.top_logprobs.map((t) => t.token)).toEqual(["t0", "t1"]);
    expect(lp[0]!.bytes).toEqual([...new TextEncoder().encode("alpha ")]);
    const none = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat())).json());
    expect(none.choices[0].logprobs).toBeNull();
    expect(engine.requests[1]!.topLogprobs).toBeUndefined();
  });

  test("a failure after streaming began is a data: {error} frame, and the queue is free afterwards", async () => {
    const { app, manager } = makeApp({ [M]: () => new ScriptEngine(M, { failAfter: 1 }) });
    const ev = await sseEvents(await post(app, "/v1/chat/completions", chat({ stream: true })));
    expect(ev.at(-1)).not.toBe("[DONE]");
    const err = check(ErrorBodySchema, ev.at(-1));
    expect(err.error.message).toContain("scripted failure");
    expect(manager.queue.active).toBe(false);
  });
});

describe("text completions", () => {
  test("non-stream and stream shapes, raw prompt, legacy logprobs", async () => {
    const engine = new ScriptEngine(M, { eosAfter: 2 });
    const { app } = makeApp({ [M]: () => engine });
    const body = check(TextCompletionSchema, await (await post(app, "/v1/completions", { model: M, prompt: "once upon", logprobs: 1 })).json());
    expect(engine.requests[0]!.input).toEqual({ prompt: "once upon" });
    expect(body.choices[0]).toMatchObject({ text: "alpha beta ", finish_reason: "stop" });
    expect(body.choices[0]!.logprobs!.text_offset).toEqual([0, 6]);
    expect(body.usage!.completion_tokens).toBe(2);
    const ev = await sseEvents(await post(app, "/v1/completions", { model: M, prompt: ["x"], stream: true, stream_options: { include_usage: true } }));
    expect(ev.at(-1)).toBe("[DONE]");
    const chunks = ev.slice(0, -1).map((c) => check(TextCompletionSchema, c));
    expect(chunks.map((c) => c.choices[0]?.text ?? "").join("")).toBe("alpha beta ");
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks.at(-1)!.usage!.total_tokens).toBe(4);
  });
});

describe("errors", () => {
  const { app } = makeApp({ [M]: () => new ScriptEngine(M, { eosAfter: 1 }) });
  const cases: { name: string; body: unknown; path?: string; status: number; param: string | null; code?: string; contains?: string }[] = [
    { name: "bad JSON", body: "{nope", status: 400, param: null, code: "invalid_json" },
    { name: "empty body", body: "", status: 400, param: null, code: "invalid_json" },
    { name: "missing model", body: { messages: [{ role: "user", content: "x" }] }, status: 400, param: "model", code: "missing_required_parameter" },
    { name: "missing messages", body: { model: M }, status: 400, param: "messages" },
    { name: "empty messages", body: { model: M, messages: [] }, status: 400, param: "messages" },
    { name: "bad role", body: chat({ messages: [{ role: "wizard", content: "x" }] }), status: 400, param: "messages[0].role" },
    { name: "temperature range", body: chat({ temperature: 3 }), status: 400, param: "temperature", contains: "<= 2" },
    { name: "max_tokens type", body: chat({ max_tokens: "ten" }), status: 400, param: "max_tokens" },
    { name: "max_tokens zero", body: chat({ max_tokens: 0 }), status: 400, param: "max_tokens" },
    { name: "n > 1", body: chat({ n: 2 }), status: 400, param: "n", code: "unsupported_parameter" },
    { name: "tools: type other than function", body: chat({ tools: [{ type: "code_interpreter" }] }), status: 400, param: "tools[0].type" },
    { name: "tool_choice names an unknown function", body: chat({ tools: [{ type: "function", function: { name: "f" } }], tool_choice: { type: "function", function: { name: "g" } } }), status: 400, param: "tool_choice" },
    {
      name: "image part",
      body: chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:x" } }] }] }),
      status: 400,
      param: "messages[0].content[0].type",
    },
    { name: "response_format type unknown", body: chat({ response_format: { type: "xml" } }), status: 400, param: "response_format.type" },
    { name: "json_schema keyword that cannot be enforced", body: chat({ response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", not: {} } } } }), status: 400, param: "response_format.json_schema.schema.not" },
    { name: "top_logprobs without logprobs", body: chat({ top_logprobs: 2 }), status: 400, param: "top_logprobs" },
    { name: "top_logprobs range", body: chat({ logprobs: true, top_logprobs: 21 }), status: 400, param: "top_logprobs" },
    { name: "presence_penalty", body: chat({ presence_penalty: 0.5 }), status: 400, param: "presence_penalty" },
    { name: "stream_options without stream", body: chat({ stream_options: { include_usage: true } }), status: 400, param: "stream_options" },
    { name: "stop type", body: chat({ stop: [1] }), status: 400, param: "stop" },
    { name: "unknown model", body: chat({ model: "no/such" }), status: 404, param: null, code: "model_not_found" },
    { name: "completions prompt list", path: "/v1/completions", body: { model: M, prompt: ["a", "b"] }, status: 400, param: "prompt" },
    { name: "completions suffix", path: "/v1/completions", body: { model: M, prompt: "a", suffix: "b" }, status: 400, param: "suffix" },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const res = await post(app, c.path ?? "/v1/chat/completions", c.body);
      expect(res.status).toBe(c.status);
      expect(res.headers.get("x-should-retry")).toBe("false");
      const err = await errorOf(res);
      expect(err.param).toBe(c.param);
      if (c.code) expect(err.code).toBe(c.code);
      if (c.param) expect(err.message).toContain(c.param);
      if (c.contains) expect(err.message).toContain(c.contains);
      expect(err.type).toBe(c.status === 404 ? "not_found_error" : "invalid_request_error");
    });
  }

  test("body too large → 413, with and without Content-Length", async () => {
    const small = makeApp({ [M]: () => new ScriptEngine(M) }, { maxBodyBytes: 100 });
    const big = JSON.stringify(chat({ messages: [{ role: "user", content: "x".repeat(500) }] }));
    const res = await post(small.app, "/v1/chat/completions", big);
    expect(res.status).toBe(413);
    expect((await errorOf(res)).code).toBe("payload_too_large");
    const chunked = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    const res2 = await small.app.handle(new Request("http://localhost/v1/chat/completions", { method: "POST", body: chunked }));
    expect(res2.status).toBe(413);
  });

  test("unknown endpoint → 404 in the OpenAI envelope", async () => {
    const res = await get(app, "/v1/nothing");
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe("unknown_url");
  });

  test("prompt longer than the context → 400 context_length_exceeded", async () => {
    const t = makeApp({ [M]: () => new ScriptEngine(M, { contextLength: 3 }) });
    const res = await post(t.app, "/v1/chat/completions", chat({ messages: [{ role: "user", content: "a b c d e" }] }));
    expect(res.status).toBe(400);
    expect((await errorOf(res)).code).toBe("context_length_exceeded");
  });

  test("not enough memory → 507 insufficient_memory, nothing loaded", async () => {
    const t = makeApp({ [M]: () => new ScriptEngine(M) }, { freeMemory: 1000, weightBytes: 10_000 });
    const res = await post(t.app, "/v1/chat/completions", chat());
    expect(res.status).toBe(507);
    expect((await errorOf(res)).code).toBe("insufficient_memory");
    expect(t.loads).toEqual([]);
  });
});

describe("auth and CORS", () => {
  test("API key: missing/wrong → 401, right → 200, /health exempt", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { eosAfter: 1 }) }, { apiKey: "sekret" });
    const none = await get(app, "/v1/models");
    expect(none.status).toBe(401);
    expect((await errorOf(none)).type).toBe("authentication_error");
    expect(none.headers.get("x-should-retry")).toBe("false");
    expect((await get(app, "/v1/models", { authorization: "Bearer wrong" })).status).toBe(401);
    expect((await get(app, "/v1/models", { authorization: "Bearer sekret" })).status).toBe(200);
    expect((await post(app, "/v1/chat/completions", chat(), { authorization: "Bearer sekret" })).status).toBe(200);
    expect((await get(app, "/health")).status).toBe(200);
  });

  test("CORS: allowed origin reflected, others get no header, preflight 204", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M) }, { cors: ["http://ui.local"] });
    const ok = await get(app, "/v1/models", { origin: "http://ui.local" });
    expect(ok.headers.get("access-control-allow-origin")).toBe("http://ui.local");
    const other = await get(app, "/v1/models", { origin: "http://evil.local" });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    const pre = await app.handle(
      new Request("http://localhost/v1/chat/completions", { method: "OPTIONS", headers: { origin: "http://ui.local", "access-control-request-method": "POST" } }),
    );
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-methods")).toContain("POST");
    const noCors = makeApp({ [M]: () => new ScriptEngine(M) });
    expect((await get(noCors.app, "/v1/models", { origin: "http://ui.local" })).headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("queue and cancellation", () => {
  test("requests run one at a time in FIFO order; beyond the bound → 503 with retry-after", async () => {
    const engine = new ScriptEngine(M, { eosAfter: 3, delayMs: 5 });
    const { app } = makeApp({ [M]: () => engine }, { maxQueue: 2 });
    const order: number[] = [];
    const reqs = [0, 1, 2].map((i) =>
      post(app, "/v1/chat/completions", chat({ messages: [{ role: "user", content: `n${i}` }] })).then(async (r) => {
        order.push(i);
        return r;
      }),
    );
    await Bun.sleep(1);
    const full = await post(app, "/v1/chat/completions", chat());
    expect(full.status).toBe(503);
    expect(full.headers.get("retry-after")).toBe("1");
    expect(full.headers.get("x-should-retry")).toBe("true");
    expect((await errorOf(full)).code).toBe("queue_full");
    const res = await Promise.all(reqs);
    expect(res.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(order).toEqual([0, 1, 2]);
    expect(engine.maxConcurrent).toBe(1);
  });

  test("a client that aborts mid-stream stops generation and frees the queue", async () => {
    const engine = new ScriptEngine(M, { delayMs: 2 });
    const { app, manager } = makeApp({ [M]: () => engine });
    const ac = new AbortController();
    const res = await post(app, "/v1/chat/completions", chat({ stream: true, max_tokens: 100000 }), {}, ac.signal);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    ac.abort();
    // the queue frees once the generator has really stopped
    for (let i = 0; i < 100 && manager.queue.active; i++) await Bun.sleep(5);
    expect(manager.queue.active).toBe(false);
    expect(engine.generating).toBe(0);
    const next = await post(app, "/v1/chat/completions", chat({ max_tokens: 2 }));
    expect(next.status).toBe(200);
  });

  test("a stream nobody reads does not hold the model: the next request still completes", async () => {
    const engine = new ScriptEngine(M, { eosAfter: 200 });
    const { app } = makeApp({ [M]: () => engine });
    const unread = await post(app, "/v1/chat/completions", chat({ stream: true }));
    expect(unread.status).toBe(200);
    const next = await post(app, "/v1/chat/completions", chat({ max_tokens: 2 }));
    expect(next.status).toBe(200);
    const ev = await sseEvents(unread);
    expect(ev.at(-1)).toBe("[DONE]");
    expect(ev.length).toBe(200 + 3);
  });

  test("a waiting request whose client aborts leaves the queue", async () => {
    const engine = new ScriptEngine(M, { eosAfter: 5, delayMs: 5 });
    const { app, manager } = makeApp({ [M]: () => engine }, { maxQueue: 1 });
    const first = post(app, "/v1/chat/completions", chat());
    await Bun.sleep(1);
    const ac = new AbortController();
    const waiting = post(app, "/v1/chat/completions", chat(), {}, ac.signal);
    await Bun.sleep(1);
    expect(manager.queue.pending).toBe(1);
    ac.abort();
    await waiting.catch(() => undefined);
    expect(manager.queue.pending).toBe(0);
    expect((await first).status).toBe(200);
  });

  test("switching models disposes the old engine and loads the new one inside the queue", async () => {
    const a = new ScriptEngine("a/one", { eosAfter: 1 });
    const b = new ScriptEngine("b/two", { eosAfter: 1 });
    const { app, loads } = makeApp({ "a/one": () => a, "b/two": () => b });
    expect((await post(app, "/v1/chat/completions", chat({ model: "a/one" }))).status).toBe(200);
    expect((await post(app, "/v1/chat/completions", chat({ model: "a/one" }))).status).toBe(200);
    const res = check(ChatCompletionSchema, await (await post(app, "/v1/chat/completions", chat({ model: "b/two" }))).json());
    expect(res.model).toBe("b/two");
    expect(loads).toEqual(["a/one", "b/two"]);
    expect(a.disposed).toBe(true);
    expect(b.disposed).toBe(false);
  });
});

/**
 * POST /v1/responses through the official `openai` SDK over a real port (scripted engine): output items,
 * the streamed event sequence (types, sequence numbers, item ids, completed/incomplete with usage),
 * reasoning items, logprobs, and the 400s of a stateless server.
 */
import { afterAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { readNamedSse } from "../../src/server/stream.ts";
import { ScriptEngine } from "./support/script-engine.ts";
import { makeApp, post } from "./support/app.ts";
import { serve } from "./support/serve.ts";

const M = "org/tiny";
const T = "org/thinker";
const W = "org/caller";
const CALL = { name: "get_weather", arguments: '{"city":"Paris"}' };
const t = makeApp({
  [M]: () => new ScriptEngine(M, { eosAfter: 3 }),
  [T]: () => new ScriptEngine(T, { eosAfter: 4, reasoning: ["hmm", "ok"] }),
  [W]: () => new ScriptEngine(W, { eosAfter: 0, calls: [CALL] }),
});
const weatherTool = { type: "function" as const, name: "get_weather", description: "Weather of a city", parameters: { type: "object", properties: { city: { type: "string" } } }, strict: false };
const s = serve(t.app);
const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused", maxRetries: 0 });
afterAll(() => s.stop());

describe("responses via the openai SDK", () => {
  test("non-streamed: string input, instructions, output items, output_text, usage", async () => {
    const r = await client.responses.create({ model: M, instructions: "Be brief.", input: "hello there" });
    expect(r.object).toBe("response");
    expect(r.id).toStartWith("resp_");
    expect(r.status).toBe("completed");
    expect(r.output_text).toBe("alpha beta gamma ");
    expect(r.output.length).toBe(1);
    const msg = r.output[0]!;
    expect(msg.type).toBe("message");
    if (msg.type === "message") expect(msg.content[0]!.type).toBe("output_text");
    // instructions became the system message before the input
    const req = (t.manager.residentEngine(M) as ScriptEngine).requests.at(-1)!;
    expect("messages" in req.input && req.input.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "hello there" },
    ]);
    expect(r.usage).toEqual({ input_tokens: 5, input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 8 });
  });

  test("items input (messages with input_text/output_text parts), max_output_tokens → incomplete", async () => {
    const r = await client.responses.create({
      model: M,
      max_output_tokens: 2,
      input: [
        { role: "user", content: [{ type: "input_text", text: "one" }] },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "two", annotations: [] }] },
        { role: "user", content: "three" },
      ] as never,
    });
    expect(r.status).toBe("incomplete");
    expect(r.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(r.usage!.output_tokens).toBe(2);
  });

  test("streamed: the full event sequence; finalResponse() equals the completed response", async () => {
    const stream = client.responses.stream({ model: T, input: "think first" });
    const types: string[] = [];
    const seqs: number[] = [];
    let deltas = "";
    stream.on("event", (e) => {
      types.push(e.type);
      seqs.push(e.sequence_number);
    });
    stream.on("response.output_text.delta", (e) => {
      deltas += e.delta;
      expect(e.item_id).toStartWith("msg_");
      expect(Array.isArray(e.logprobs)).toBe(true);
    });
    const final = await stream.finalResponse();
    expect(types).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.reasoning_text.delta",
      "response.reasoning_text.delta",
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(seqs).toEqual(seqs.map((_, i) => i));
    expect(deltas).toBe("alpha beta ");
    expect(final.output_text).toBe("alpha beta ");
    expect(final.output.map((o) => o.type)).toEqual(["reasoning", "message"]);
    const rs = final.output[0]!;
    if (rs.type === "reasoning") expect(rs.content![0]!.text).toBe("hmm ok ");
    expect(final.usage!.output_tokens_details.reasoning_tokens).toBe(2);
    expect(final.usage!.output_tokens).toBe(4);
  });

  test("every SSE event's `event:` name equals its `type`", async () => {
    const res = await fetch(`${s.url}/v1/responses`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: M, input: "x", stream: true, max_output_tokens: 1 }) });
    const events: { event: string | null; type: string }[] = [];
    for await (const e of readNamedSse(res.body!)) events.push({ event: e.event, type: (JSON.parse(e.data) as { type: string }).type });
    expect(events.length).toBeGreaterThan(5);
    for (const e of events) expect(e.event).toBe(e.type);
    expect(events.at(-1)!.type).toBe("response.incomplete");
  });

  test("logprobs via include + top_logprobs", async () => {
    const r = await client.responses.create({ model: M, input: "x", include: ["message.output_text.logprobs"], top_logprobs: 2 });
    const msg = r.output[0]!;
    if (msg.type !== "message") throw new Error("expected a message");
    const part = msg.content[0]!;
    if (part.type !== "output_text") throw new Error("expected output_text");
    expect(part.logprobs!.length).toBe(3);
    expect(part.logprobs![0]!.top_logprobs.length).toBe(2);
  });

  test("stateless: previous_response_id and store: true are 400s that say so; the SDK raises BadRequestError", async () => {
    for (const extra of [{ previous_response_id: "resp_123" }, { store: true }]) {
      const err = await client.responses.create({ model: M, input: "x", ...extra }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).message).toContain("stateless");
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(Object.keys(extra)[0]!);
    }
    const ok = await client.responses.create({ model: M, input: "x", store: false });
    expect(ok.status).toBe("completed");
    const gone = await client.responses.retrieve(ok.id).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect((gone as Error).message).toContain("stateless");
  });

  test("what cannot be honoured is a 400 naming the field", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ input: [{ role: "user", content: [{ type: "input_image", image_url: "data:," }] }] }, "input[0].content[0].type"],
      [{ input: "x", text: { format: { type: "grammar" } } }, "text.format.type"],
      [{ input: "x", tools: [{ type: "web_search" }] }, "tools[0].type"],
      [{ input: "x", truncation: "auto" }, "truncation"],
      [{ input: [{ type: "item_reference", id: "msg_1" }] }, "input[0].type"],
      [{ input: "x", background: true }, "background"],
      [{ input: "x", text: { verbosity: "low" } }, "text.verbosity"],
      [{ input: "x", reasoning: { effort: "extreme" } }, "reasoning.effort"],
    ];
    for (const [body, param] of cases) {
      const res = await post(t.app, "/v1/responses", { model: M, ...body });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { param: string } }).error.param).toBe(param);
    }
  });

  test("a failure mid-stream is an `error` event; the SDK raises it", async () => {
    const f = makeApp({ "org/fails": () => new ScriptEngine("org/fails", { failAfter: 1 }) });
    const fs = serve(f.app);
    try {
      const c = new OpenAI({ baseURL: `${fs.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const err = await c.responses
        .stream({ model: "org/fails", input: "x" })
        .finalResponse()
        .catch((e: unknown) => e);
      expect(JSON.stringify(err) + String((err as Error).message)).toContain("scripted failure");
    } finally {
      fs.stop();
    }
  });

  test("tools: a function_call item (non-streamed) and the streamed arguments deltas; tools reach the engine", async () => {
    const r = await client.responses.create({ model: W, input: "weather in Paris?", tools: [weatherTool], tool_choice: "auto" });
    expect(r.output.map((o) => o.type)).toEqual(["function_call"]);
    const fc = r.output[0]!;
    if (fc.type !== "function_call") throw new Error("expected a function_call");
    expect(fc.name).toBe("get_weather");
    expect(JSON.parse(fc.arguments)).toEqual({ city: "Paris" });
    expect(fc.call_id).toBe("call_0");
    const req = (t.manager.residentEngine(W) as ScriptEngine).requests.at(-1)!;
    expect(req.tools).toEqual([{ name: "get_weather", description: "Weather of a city", parameters: weatherTool.parameters, strict: false }]);
    expect(req.toolChoice).toBe("auto");

    const stream = client.responses.stream({ model: W, input: "weather?", tools: [weatherTool] });
    const types: string[] = [];
    stream.on("event", (e) => types.push(e.type));
    const final = await stream.finalResponse();
    expect(types.slice(2)).toEqual([
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    const item = final.output[0]!;
    if (item.type !== "function_call") throw new Error("expected a function_call");
    expect(item.arguments).toBe(CALL.arguments);
  });

  test("function_call and function_call_output items become the assistant's call and the tool turn", async () => {
    await client.responses.create({
      model: M,
      tools: [weatherTool],
      input: [
        { role: "user", content: "weather?" },
        { type: "function_call", call_id: "call_9", name: "get_weather", arguments: '{"city":"Oslo"}' },
        { type: "function_call_output", call_id: "call_9", output: "-3 C" },
      ],
    });
    const req = (t.manager.residentEngine(M) as ScriptEngine).requests.at(-1)!;
    expect("messages" in req.input && req.input.messages).toEqual([
      { role: "user", content: "weather?" },
      { role: "assistant", content: "", toolCalls: [{ id: "call_9", name: "get_weather", arguments: '{"city":"Oslo"}' }] },
      { role: "tool", content: "-3 C", toolCallId: "call_9", name: "get_weather" },
    ]);
  });

  test("text.format json_schema / json_object become the decoder's constraint", async () => {
    const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };
    await client.responses.create({ model: M, input: "x", text: { format: { type: "json_schema", name: "thing", schema, strict: true } } });
    expect((t.manager.residentEngine(M) as ScriptEngine).requests.at(-1)!.constraint).toEqual({ type: "json_schema", schema, name: "thing", strict: true });
    await client.responses.create({ model: M, input: "x", text: { format: { type: "json_object" } } });
    expect((t.manager.residentEngine(M) as ScriptEngine).requests.at(-1)!.constraint).toEqual({ type: "json_object" });
  });
});

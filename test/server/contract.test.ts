/**
 * The server contract a new user's clients hit first: fields we cannot honour are 400s naming them, models that
 * cannot run are 4xx, a client that leaves is not a 400, per-request ceilings, and an error frame at shutdown.
 */
import { describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { MlxkError } from "../../src/errors.ts";
import { targetFacts } from "../../src/server/model-facts.ts";
import { ChatCompletionChunkSchema, ErrorBodySchema, ModelListSchema } from "../../src/schemas/openai.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { check, get, makeApp, post, sseEvents } from "./support/app.ts";
import { ScriptEngine } from "./support/script-engine.ts";

const M = "org/tiny";
const chat = (extra: Record<string, unknown> = {}) => ({ model: M, messages: [{ role: "user", content: "hi there" }], ...extra });

async function errorOf(res: Response) {
  return check(ErrorBodySchema, await res.json()).error;
}

describe("fields the server cannot honour are refused by name", () => {
  const cases: [string, unknown][] = [
    ["functions", [{ name: "f", parameters: { type: "object" } }]],
    ["function_call", "auto"],
    ["audio", { voice: "alloy", format: "wav" }],
    ["modalities", ["text", "audio"]],
    ["prediction", { type: "content", content: "x" }],
    ["reasoning_effort", "low"],
    ["web_search_options", {}],
  ];
  for (const [field, value] of cases) {
    test(`${field} → 400 with param '${field}'`, async () => {
      const engine = new ScriptEngine(M, { eosAfter: 2 });
      const { app } = makeApp({ [M]: () => engine });
      const res = await post(app, "/v1/chat/completions", chat({ [field]: value }));
      expect(res.status).toBe(400);
      const e = await errorOf(res);
      expect(e.param).toBe(field);
      expect(e.message).toContain(`'${field}'`);
      expect(engine.requests.length).toBe(0);
    });
  }

  test("harmless spellings still pass: function_call 'none', modalities ['text'], empty functions", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { eosAfter: 2 }) });
    const res = await post(app, "/v1/chat/completions", chat({ function_call: "none", modalities: ["text"], functions: [], user: "u1" }));
    expect(res.status).toBe(200);
  });
});

describe("models that cannot run are the client's problem (4xx)", () => {
  for (const [what, err] of [
    ["unhealthy", new MlxkError("execution_error", "Model 'org/tiny' is not healthy: missing weights", { extra: { code: "model_unhealthy" } })],
    ["unsupported", new MlxkError("unsupported_model", "GGUF architecture 'mamba' is not supported")],
  ] as const) {
    test(`${what} model → 400 with param 'model'`, async () => {
      const { app } = makeApp({
        [M]: () => {
          throw err;
        },
      });
      const res = await post(app, "/v1/chat/completions", chat());
      expect(res.status).toBe(400);
      expect(res.headers.get("x-should-retry")).toBe("false");
      const e = await errorOf(res);
      expect(e.param).toBe("model");
      expect(e.code).toBe(what === "unhealthy" ? "model_unhealthy" : "model_not_supported");
    });
  }

  test("unknown model → 404", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M) });
    expect((await post(app, "/v1/chat/completions", chat({ model: "no/such" }))).status).toBe(404);
  });
});

describe("client disconnect", () => {
  test("a non-streamed request whose client leaves is logged as 499 client_closed_request, not as a 400", async () => {
    const logs: { level: string; fields?: Record<string, unknown> }[] = [];
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { delayMs: 5 }) }, { log: (level, _m, fields) => logs.push({ level, fields }) });
    const ac = new AbortController();
    const pending = post(app, "/v1/chat/completions", chat({ max_tokens: 1000 }), {}, ac.signal);
    await Bun.sleep(30);
    ac.abort();
    const res = await pending.catch(() => null);
    if (res) {
      expect(res.status).toBe(499);
      expect((await errorOf(res)).code).toBe("client_closed_request");
    }
    expect(logs.some((l) => l.level === "error")).toBe(false);
  });
});

describe("per-request ceilings", () => {
  test("--max-tokens-cap: more is a 400 naming max_tokens; no max_tokens means the cap", async () => {
    const engine = new ScriptEngine(M);
    const { app } = makeApp({ [M]: () => engine }, { maxTokensCap: 5 });
    const over = await post(app, "/v1/chat/completions", chat({ max_tokens: 6 }));
    expect(over.status).toBe(400);
    const e = await errorOf(over);
    expect(e.param).toBe("max_tokens");
    expect(e.message).toContain("--max-tokens-cap");
    const none = await post(app, "/v1/chat/completions", chat());
    expect(none.status).toBe(200);
    expect(engine.prepared.at(-1)!.maxTokens).toBe(5);
  });

  test("--request-timeout: a non-streamed answer that runs too long is a 504", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { delayMs: 20 }) }, { requestTimeoutMs: 100 });
    const res = await post(app, "/v1/chat/completions", chat({ max_tokens: 1000 }));
    expect(res.status).toBe(504);
    expect((await errorOf(res)).code).toBe("request_timeout");
  });

  test("--request-timeout: a stream that runs too long ends with an error frame and no [DONE]", async () => {
    const { app, manager } = makeApp({ [M]: () => new ScriptEngine(M, { delayMs: 20 }) }, { requestTimeoutMs: 100 });
    const events = await sseEvents(await post(app, "/v1/chat/completions", chat({ stream: true, max_tokens: 1000 })));
    const last = events.at(-1) as { error?: { code: string } };
    expect(last.error?.code).toBe("request_timeout");
    expect(events).not.toContain("[DONE]");
    for (const e of events.slice(0, -1)) check(ChatCompletionChunkSchema, e);
    expect(manager.queue.active).toBe(false);
  });

  test("--request-timeout counts the wait in the queue", async () => {
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { delayMs: 20 }) }, { requestTimeoutMs: 150 });
    const first = post(app, "/v1/chat/completions", chat({ max_tokens: 1000 }));
    await Bun.sleep(10);
    const second = await post(app, "/v1/chat/completions", chat({ max_tokens: 1 }));
    expect(second.status).toBe(504);
    expect((await first).status).toBe(504);
  });
});

describe("shutdown", () => {
  test("a running stream gets a server_shutdown error frame before it is closed", async () => {
    const shutdown = new AbortController();
    const { app } = makeApp({ [M]: () => new ScriptEngine(M, { delayMs: 10 }) }, { shutdown: shutdown.signal });
    const res = await post(app, "/v1/chat/completions", chat({ stream: true, max_tokens: 10_000 }));
    const events: unknown[] = [];
    const reading = (async () => {
      for (const e of await sseEvents(res)) events.push(e);
    })();
    await Bun.sleep(60);
    shutdown.abort();
    await reading;
    const last = events.at(-1) as { error?: { code: string; type: string } };
    expect(last.error?.code).toBe("server_shutdown");
    expect(events.length).toBeGreaterThan(2);
  });
});

describe("/v1/models for a model given by path", () => {
  test("a loaded GGUF reports its context length from the header and its file time as created", async () => {
    const gguf = await smollm2Gguf();
    const facts = targetFacts({ id: gguf, kind: "gguf", path: gguf, hash: null, detection: null, weightBytes: 1, contextLength: null });
    expect(facts.contextLength).toBe(8192); // SmolLM2's llama.context_length
    expect(facts.created).toBeGreaterThan(1_600_000_000);
  });

  test("listed first with created and context_length (not 0 / null)", async () => {
    const gguf = await smollm2Gguf();
    const manager = new ModelManager({
      resolve: (s) => ({ id: s, kind: "gguf" as const, path: s, hash: null, detection: null, weightBytes: 1, contextLength: null }),
      load: async (t) => new ScriptEngine(t.id),
      freeMemory: () => 1e12,
    });
    const app = createApp({ manager, listModels: () => [] });
    await manager.preload(gguf);
    const list = check(ModelListSchema, await (await get(app, "/v1/models")).json());
    expect(list.data[0]).toMatchObject({ id: gguf, created: Math.floor(statSync(gguf).mtimeMs / 1000), context_length: 8192 });
  });
});

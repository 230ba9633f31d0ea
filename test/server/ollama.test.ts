/**
 * Ollama's native API through the official `ollama` npm client over a real port (scripted engine):
 * version/tags/show/ps, chat and generate streamed (NDJSON) and not, options mapping, keep_alive, load/unload
 * without a prompt, the 400s for what cannot be honoured, and /api/pull + /api/delete against the loopback Hub.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Ollama, type Tool } from "ollama";
import { cacheManagement } from "../../src/server/models-source.ts";
import { parseKeepAlive, toSpec } from "../../src/server/ollama/convert.ts";
import { LoopbackHub } from "../helpers/loopback-hub.ts";
import { modelRepoFiles } from "../helpers/model-repo.ts";
import { makeTempHub, type TempHub } from "../support/hf-cache.ts";
import { ScriptEngine } from "./support/script-engine.ts";
import { makeApp, post } from "./support/app.ts";
import { serve } from "./support/serve.ts";

const M = "org/tiny";
const T = "org/thinker";
const W = "org/caller";
const t = makeApp(
  {
    [M]: () => new ScriptEngine(M, { eosAfter: 3 }),
    [T]: () => new ScriptEngine(T, { eosAfter: 4, reasoning: ["hmm", "ok"] }),
    [W]: () => new ScriptEngine(W, { eosAfter: 1, calls: [{ name: "get_weather", arguments: '{"city":"Paris"}' }, { name: "get_time", arguments: "{}" }] }),
  },
  { manager: { keepAliveMs: 60_000 } },
);
const s = serve(t.app);
const ollama = new Ollama({ host: s.url });
afterAll(() => s.stop());

const engineOf = (id: string) => t.manager.residentEngine(id) as ScriptEngine;

describe("ollama client: metadata", () => {
  test("version is bare semver; tags name models with :latest; root says it is running", async () => {
    expect((await ollama.version()).version).toMatch(/^\d+\.\d+\.\d+$/);
    const tags = await ollama.list();
    expect(tags.models.map((m) => m.name)).toEqual([`${W}:latest`, `${T}:latest`, `${M}:latest`]);
    expect(tags.models[0]!.details.format).toBe("safetensors");
    expect(await (await fetch(s.url)).text()).toContain("Ollama is running");
  });

  test("show has model_info and capabilities; ps lists resident models with expiry", async () => {
    await ollama.chat({ model: `${T}:latest`, messages: [{ role: "user", content: "x" }] });
    const show = await ollama.show({ model: `${T}:latest` });
    expect(show.capabilities).toContain("completion");
    expect(show.capabilities).toContain("thinking");
    const info = show.model_info as unknown as Record<string, unknown>;
    expect(info["general.architecture"]).toBe("script");
    expect(info["script.context_length"]).toBe(4096);
    const ps = await ollama.ps();
    const entry = ps.models.find((m) => m.name === `${T}:latest`)!;
    expect(entry).toBeDefined();
    expect(new Date(entry.expires_at).getTime()).toBeGreaterThan(Date.now());
  });
});

describe("ollama client: chat and generate", () => {
  test("chat streams NDJSON by default over HTTP; the client's stream:true yields parts and a done line with counts", async () => {
    const raw = await fetch(`${s.url}/api/chat`, { method: "POST", body: JSON.stringify({ model: M, messages: [{ role: "user", content: "hi" }] }) });
    expect(raw.headers.get("content-type")).toContain("application/x-ndjson");
    const lines = (await raw.text()).trim().split("\n").map((l) => JSON.parse(l) as { done: boolean });
    expect(lines.length).toBe(4);
    expect(lines.at(-1)!.done).toBe(true);

    const parts: string[] = [];
    let last: { done_reason?: string; eval_count?: number; prompt_eval_count?: number } = {};
    for await (const p of await ollama.chat({ model: `${M}:latest`, stream: true, messages: [{ role: "user", content: "hi" }] })) {
      parts.push(p.message.content);
      last = p;
    }
    expect(parts.join("")).toBe("alpha beta gamma ");
    expect(last.done_reason).toBe("stop");
    expect(last.eval_count).toBe(3);
    expect(last.prompt_eval_count).toBe(2);
  });

  test("non-streamed chat: thinking split out; options map onto sampling; num_predict → length", async () => {
    const r = await ollama.chat({
      model: T,
      messages: [{ role: "system", content: "s" }, { role: "user", content: "x" }],
      options: { temperature: 0, top_p: 0.5, top_k: 7, min_p: 0.1, repeat_penalty: 1.2, repeat_last_n: 32, seed: 42, stop: ["zzz"], num_ctx: 2048, num_thread: 4 },
    });
    expect(r.message.thinking).toBe("hmm ok ");
    expect(r.message.content).toBe("alpha beta ");
    const req = engineOf(T).requests.at(-1)!;
    expect(req.sampling).toEqual({ temperature: 0, topP: 0.5, topK: 7, minP: 0.1, repetitionPenalty: 1.2, repetitionContextSize: 32, seed: 42 });
    expect(req.stop).toEqual(["zzz"]);
    const cut = await ollama.generate({ model: M, prompt: "x", options: { num_predict: 2 } });
    expect(cut.response).toBe("alpha beta ");
    expect(cut.done_reason).toBe("length");
  });

  test("generate: chat template by default, raw prompt with raw:true, system prepended", async () => {
    await ollama.generate({ model: M, prompt: "p", system: "sys" });
    expect(engineOf(M).requests.at(-1)!.input).toEqual({ messages: [{ role: "system", content: "sys" }, { role: "user", content: "p" }] });
    await ollama.generate({ model: M, prompt: "raw text", raw: true });
    expect(engineOf(M).requests.at(-1)!.input).toEqual({ prompt: "raw text" });
    const parts: string[] = [];
    for await (const p of await ollama.generate({ model: M, prompt: "p", stream: true })) parts.push(p.response ?? "");
    expect(parts.join("")).toBe("alpha beta gamma ");
  });

  test("no prompt loads the model; keep_alive 0 unloads it; keep_alive sets the expiry", async () => {
    const loaded = await ollama.generate({ model: T, prompt: "" });
    expect(loaded.done_reason).toBe("load");
    expect(t.manager.resident.map((m) => m.id)).toContain(T);
    const unloaded = await ollama.generate({ model: T, prompt: "", keep_alive: 0 });
    expect(unloaded.done_reason).toBe("unload");
    expect(t.manager.resident.map((m) => m.id)).not.toContain(T);
    await ollama.chat({ model: M, messages: [{ role: "user", content: "x" }], keep_alive: "2h" });
    const exp = t.manager.status().resident.find((r) => r.id === M)!.expiresAt!;
    expect(exp - Date.now()).toBeGreaterThan(3_600_000);
  });

  test("what cannot be honoured is a 400 with Ollama's {error} shape; the client raises it", async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ["/api/chat", { model: M, messages: [{ role: "user", content: "x" }], format: "yaml" }, "format"],
      ["/api/chat", { model: M, messages: [{ role: "user", content: "x" }], tools: [{ type: "retrieval" }] }, "tools[0].type"],
      ["/api/chat", { model: M, messages: [{ role: "user", content: "x", images: ["AA=="] }] }, "images"],
      ["/api/chat", { model: M, messages: [{ role: "user", content: "x" }], options: { mirostat: 2 } }, "options.mirostat"],
      ["/api/chat", { model: M, messages: [{ role: "user", content: "x" }], options: { bogus: 1 } }, "options.bogus"],
      ["/api/generate", { model: M, prompt: "x", suffix: "y" }, "suffix"],
      ["/api/generate", { model: M, prompt: "x", context: [1, 2] }, "context"],
      ["/api/chat", { model: M, messages: [{ role: "user", content: "x" }], think: true }, "thinking"],
      ["/api/chat", { model: M, messages: [{ role: "user", content: "x" }], keep_alive: "soon" }, "keep_alive"],
    ];
    for (const [path, body, word] of cases) {
      const res = await post(t.app, path, body);
      expect(res.status).toBe(400);
      const err = (await res.json()) as { error: string };
      expect(typeof err.error).toBe("string");
      expect(err.error).toContain(word);
    }
    const create = await post(t.app, "/api/create", { model: "x", from: "org/tiny" });
    expect(create.status).toBe(501);
    expect(((await create.json()) as { error: string }).error).toContain("Hugging Face cache");
    const e = await ollama.chat({ model: "org/none", messages: [{ role: "user", content: "x" }] }).catch((x: unknown) => x);
    expect((e as Error & { status_code: number }).status_code).toBe(404);
  });

  test("a failure mid-stream is an {error} line", async () => {
    const f = makeApp({ "org/fails": () => new ScriptEngine("org/fails", { failAfter: 1 }) });
    const res = await post(f.app, "/api/chat", { model: "org/fails", messages: [{ role: "user", content: "x" }] });
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { error?: string });
    expect(lines.at(-1)!.error).toContain("scripted failure");
  });
});

describe("ollama client: tools and format", () => {
  const tools: Tool[] = [
    { type: "function", function: { name: "get_weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } } } } },
    { type: "function", function: { name: "get_time", parameters: { type: "object", properties: {} } } },
  ];

  test("tool calls come back whole, arguments as objects, streamed or not", async () => {
    const r = await ollama.chat({ model: W, messages: [{ role: "user", content: "weather?" }], tools });
    expect(r.message.content).toBe("alpha ");
    expect(r.message.tool_calls!.map((c) => [c.function.name, c.function.arguments])).toEqual([
      ["get_weather", { city: "Paris" }],
      ["get_time", {}],
    ]);
    expect(r.done_reason).toBe("stop");
    const streamed: { name: string; arguments: unknown }[] = [];
    for await (const p of await ollama.chat({ model: W, stream: true, messages: [{ role: "user", content: "weather?" }], tools })) {
      for (const c of p.message.tool_calls ?? []) streamed.push({ name: c.function.name, arguments: c.function.arguments });
    }
    expect(streamed).toEqual([
      { name: "get_weather", arguments: { city: "Paris" } },
      { name: "get_time", arguments: {} },
    ]);
  });

  test("assistant tool_calls and tool turns (matched by tool_name) reach the engine", async () => {
    await ollama.chat({
      model: M,
      tools,
      messages: [
        { role: "user", content: "weather?" },
        { role: "assistant", content: "", tool_calls: [{ function: { name: "get_weather", arguments: { city: "Oslo" } } }] },
        { role: "tool", content: "-3 C", tool_name: "get_weather" },
      ],
    });
    const req = engineOf(M).requests.at(-1)!;
    expect(req.tools!.map((x) => x.name)).toEqual(["get_weather", "get_time"]);
    const msgs = "messages" in req.input ? req.input.messages : [];
    expect(msgs[1]!.toolCalls).toEqual([{ id: "call_1_0", name: "get_weather", arguments: '{"city":"Oslo"}' }]);
    expect(msgs[2]).toEqual({ role: "tool", content: "-3 C", toolCallId: "call_1_0", name: "get_weather" });
  });

  test("format json / a schema become the decoder's constraint", async () => {
    await ollama.chat({ model: M, messages: [{ role: "user", content: "x" }], format: "json" });
    expect(engineOf(M).requests.at(-1)!.constraint).toEqual({ type: "json_object" });
    const schema = { type: "object", properties: { n: { type: "integer" } } };
    await ollama.generate({ model: M, prompt: "x", format: schema });
    expect(engineOf(M).requests.at(-1)!.constraint).toEqual({ type: "json_schema", schema });
  });
});

describe("ollama names and durations", () => {
  test("name:latest and hf.co/ prefixes map onto our names; served names stay verbatim", () => {
    expect(toSpec("org/x:latest")).toBe("org/x");
    expect(toSpec("hf.co/org/x")).toBe("org/x");
    expect(toSpec("llama3.2:latest", ["llama3.2:latest"])).toBe("llama3.2:latest");
    expect(toSpec("org/x@abc")).toBe("org/x@abc");
  });

  test("keep_alive durations", () => {
    expect(parseKeepAlive("5m")).toBe(300_000);
    expect(parseKeepAlive("1h30m")).toBe(5_400_000);
    expect(parseKeepAlive(30)).toBe(30_000);
    expect(parseKeepAlive("0")).toBe(0);
    expect(parseKeepAlive(-1)).toBeNull();
    expect(parseKeepAlive("-1m")).toBeNull();
    expect(() => parseKeepAlive("forever")).toThrow("not a duration");
  });
});

describe("ollama pull/delete onto our pull/rm (loopback Hub)", () => {
  let hub: LoopbackHub;
  let cache: TempHub;
  beforeAll(async () => {
    hub = await LoopbackHub.start();
    await hub.addRepo("org/pulled", modelRepoFiles());
    cache = makeTempHub();
  });
  afterAll(() => {
    hub.stop();
    cache.cleanup();
  });

  test("refused without --allow-manage (403 naming the flag)", async () => {
    const res = await post(t.app, "/api/pull", { model: "org/pulled" });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toContain("--allow-manage");
  });

  test("pull streams progress lines ending in success; delete removes exactly that model", async () => {
    const env = { ...cache.env, HF_ENDPOINT: hub.url };
    const m = makeApp({ [M]: () => new ScriptEngine(M) }, { manage: cacheManagement(env) });
    const ms = serve(m.app);
    try {
      const client = new Ollama({ host: ms.url });
      const statuses: string[] = [];
      for await (const p of await client.pull({ model: "hf.co/org/pulled:latest", stream: true })) statuses.push(p.status);
      expect(statuses[0]).toBe("pulling manifest");
      expect(statuses.at(-1)).toBe("success");
      const dir = join(cache.hubDir, "models--org--pulled");
      expect(existsSync(dir)).toBe(true);
      // a loose name never deletes
      const loose = await fetch(`${ms.url}/api/delete`, { method: "DELETE", body: JSON.stringify({ model: "pulled" }) });
      expect(loose.status).toBe(409);
      expect(existsSync(dir)).toBe(true);
      await client.delete({ model: "org/pulled:latest" });
      expect(existsSync(dir)).toBe(false);
      const again = await client.delete({ model: "org/pulled" }).catch((e: unknown) => e);
      expect((again as Error & { status_code: number }).status_code).toBe(404);
    } finally {
      ms.stop();
    }
  });
});

/**
 * The served model (issue #12 item 2) and several resident models (issue #14 item 4): pinning, aliases,
 * switching rules, paths refused before the disk is asked, failed switches, LRU within the memory budget,
 * keep-alive, honest /health, and the poisoned-backend rule. Scripted engines; one real cache resolver.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { listRunnable, resolveTarget } from "../../src/server/models-source.ts";
import { ChatCompletionSchema, ErrorBodySchema, ModelListSchema } from "../../src/schemas/openai.ts";
import { addRepo, type FileContent, makeTempHub } from "../support/hf-cache.ts";
import { runCliCapture } from "../support/cli.ts";
import { writeTinyModel } from "../support/tiny-models.ts";
import { ScriptEngine } from "./support/script-engine.ts";
import { check, get, makeApp, post } from "./support/app.ts";

const A = "org/alpha";
const B = "org/beta";
const C = "org/gamma";
const chat = (model?: string) => ({ ...(model !== undefined ? { model } : {}), max_tokens: 2, messages: [{ role: "user", content: "hi" }] });
const engines = (...ids: string[]) => Object.fromEntries(ids.map((id) => [id, () => new ScriptEngine(id, { eosAfter: 1 })]));

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

describe("served model: --model, --served-model-name, --allow-switch", () => {
  test("a pinned server answers requests without 'model' and under each alias, reporting the name used", async () => {
    const t = makeApp(engines(A, B), { manager: { pinned: A, aliases: ["gpt-4o-mini", "default"] } });
    const none = check(ChatCompletionSchema, await (await post(t.app, "/v1/chat/completions", chat())).json());
    expect(none.model).toBe("gpt-4o-mini");
    const alias = check(ChatCompletionSchema, await (await post(t.app, "/v1/chat/completions", chat("default"))).json());
    expect(alias.model).toBe("default");
    const id = check(ChatCompletionSchema, await (await post(t.app, "/v1/chat/completions", chat(A))).json());
    expect(id.model).toBe(A);
    // the `:latest` names /api/tags lists work on the OpenAI route too (Copilot's Ollama provider chats there)
    expect((await post(t.app, "/v1/chat/completions", chat(`${A}:latest`))).status).toBe(200);
    expect(t.loads).toEqual([A]);
  });

  test("without --allow-switch another model is a 404 naming the served names, and the pinned model stays", async () => {
    const t = makeApp(engines(A, B), { manager: { pinned: A, aliases: ["gpt-4o-mini"] } });
    await t.manager.preload(A);
    const res = await post(t.app, "/v1/chat/completions", chat(B));
    expect(res.status).toBe(404);
    const err = check(ErrorBodySchema, await res.json()).error;
    expect(err.message).toContain("'gpt-4o-mini'");
    expect(err.message).toContain("--allow-switch");
    expect(t.loads).toEqual([A]);
    expect(t.manager.resident.map((m) => m.id)).toEqual([A]);
    // /v1/models lists only what a client may name
    const list = check(ModelListSchema, await (await get(t.app, "/v1/models")).json());
    expect(list.data.map((m) => m.id)).toEqual(["gpt-4o-mini", A]);
  });

  test("with --allow-switch other models load; without --model no 'model' means the loaded one, else a 400", async () => {
    const t = makeApp(engines(A, B), { manager: { pinned: A, allowSwitch: true } });
    expect((await post(t.app, "/v1/chat/completions", chat(B))).status).toBe(200);
    expect(t.loads).toEqual([B]);
    const free = makeApp(engines(A));
    const missing = await post(free.app, "/v1/chat/completions", chat());
    expect(missing.status).toBe(400);
    expect(check(ErrorBodySchema, await missing.json()).error.param).toBe("model");
    expect((await post(free.app, "/v1/chat/completions", chat(A))).status).toBe(200);
    const after = check(ChatCompletionSchema, await (await post(free.app, "/v1/chat/completions", chat())).json());
    expect(after.model).toBe(A);
  });

  test("a failed switch leaves the previous model loaded (room for both: untouched; --max-models 1: restored)", async () => {
    const a = new ScriptEngine(A, { eosAfter: 1 });
    const broken = {
      [A]: () => a,
      [B]: () => {
        throw new Error("weights are corrupt");
      },
    };
    const t = makeApp(broken);
    expect((await post(t.app, "/v1/chat/completions", chat(A))).status).toBe(200);
    const res = await post(t.app, "/v1/chat/completions", chat(B));
    expect(res.status).toBe(500);
    expect(check(ErrorBodySchema, await res.json()).error.message).toContain("weights are corrupt");
    expect(a.disposed).toBe(false);
    expect(t.manager.resident.map((m) => m.id)).toEqual([A]);

    const failing = { ...engines(A), [B]: () => Promise.reject(new Error("no memory after all")) };
    const t1 = makeApp(failing, { manager: { maxModels: 1 } });
    expect((await post(t1.app, "/v1/chat/completions", chat(A))).status).toBe(200);
    expect((await post(t1.app, "/v1/chat/completions", chat(B))).status).toBe(500);
    expect(t1.manager.resident.map((m) => m.id)).toEqual([A]);
    expect((await post(t1.app, "/v1/chat/completions", chat(A))).status).toBe(200);
    expect(t1.loads).toEqual([A, B, A]);
  });
});

describe("model ids from clients never reach the filesystem (real resolver)", () => {
  const hub = makeTempHub();
  afterAll(() => hub.cleanup());

  let added = false;
  async function appFor(allowPaths: boolean) {
    if (!added) {
      added = true;
      const dir = writeTinyModel("llama", join(hub.root, "tiny-src"));
      const files: Record<string, FileContent> = {};
      for (const f of new Bun.Glob("*").scanSync({ cwd: dir })) files[f] = new Uint8Array(await Bun.file(join(dir, f)).arrayBuffer());
      addRepo(hub.hubDir, { name: "org/tiny", files });
    }
    const env = { ...process.env, HF_HUB_CACHE: hub.hubDir, MLXK_WORKSPACE_HOME: join(hub.root, "no-workspaces") };
    const manager = new ModelManager({
      resolve: (s) => resolveTarget(s, { env, allowPaths }),
      load: () => Promise.reject(new Error("not loading in this test")),
      freeMemory: () => 1e12,
    });
    return createApp({ manager, listModels: () => listRunnable({ env }) });
  }

  test("'/etc/passwd' and a missing path get the same 403 (existence is not revealed); --allow-paths resolves them", async () => {
    const app = await appFor(false);
    const bodies: unknown[] = [];
    for (const model of ["/etc/passwd", "/nonexistent/nothing", "../../etc", "~/x.gguf", "model.gguf"]) {
      const res = await post(app, "/v1/chat/completions", chat(model));
      expect(res.status).toBe(403);
      const err = check(ErrorBodySchema, await res.json()).error;
      expect(err.code).toBe("model_path_not_allowed");
      bodies.push(err.message.replace(model, "<m>"));
    }
    expect(new Set(bodies).size).toBe(1);
    const open = await appFor(true);
    const res = await post(open, "/v1/chat/completions", chat("/etc/passwd"));
    expect(res.status).toBe(404);
  });

  test("cache names still resolve with paths refused", async () => {
    const app = await appFor(false);
    const res = await post(app, "/v1/chat/completions", chat("org/tiny"));
    // resolution passed: the (deliberately failing) loader was reached
    expect(res.status).toBe(500);
    expect(check(ErrorBodySchema, await res.json()).error.message).toContain("not loading in this test");
  });
});

describe("several models resident", () => {
  test("--max-models 2: the least recently used model is evicted", async () => {
    const t = makeApp(engines(A, B, C), { manager: { maxModels: 2 } });
    for (const m of [A, B, A, C]) expect((await post(t.app, "/v1/chat/completions", chat(m))).status).toBe(200);
    expect(t.manager.resident.map((m) => m.id).sort()).toEqual([A, C]);
    expect(t.loads).toEqual([A, B, C]);
  });

  test("memory budget: idle models are unloaded only as far as needed; a load that cannot fit is a 507 naming the sizes", async () => {
    const GB = 1024 ** 3;
    const weights = { [A]: 2 * GB, [B]: 2 * GB, [C]: 9 * GB };
    const total = 6 * GB;
    let t: ReturnType<typeof makeApp>;
    const free = () => total - t.manager.resident.reduce((s, m) => s + m.weightBytes, 0);
    t = makeApp(engines(A, B, C), { weightBytes: weights, freeMemory: free, manager: { memoryFactor: 1 } });
    expect((await post(t.app, "/v1/chat/completions", chat(A))).status).toBe(200);
    expect((await post(t.app, "/v1/chat/completions", chat(B))).status).toBe(200);
    expect(t.manager.resident.length).toBe(2);
    const res = await post(t.app, "/v1/chat/completions", chat(C));
    expect(res.status).toBe(507);
    const err = check(ErrorBodySchema, await res.json()).error;
    expect(err.message).toContain("9.0 GB");
    expect(err.message).toContain("6.0 GB available");
    // nothing was evicted for a load that could never fit
    expect(t.manager.resident.length).toBe(2);
    expect(t.loads).toEqual([A, B]);
  });

  test("keep_alive: the server TTL unloads idle models, 0 unloads right after the request, the pinned model stays", async () => {
    const t = makeApp(engines(A, B), { manager: { pinned: A, allowSwitch: true, keepAliveMs: 5 } });
    expect((await post(t.app, "/v1/chat/completions", chat(A))).status).toBe(200);
    expect((await post(t.app, "/v1/chat/completions", chat(B))).status).toBe(200);
    await until(() => t.manager.resident.length === 1, "the idle model to unload");
    expect(t.manager.resident.map((m) => m.id)).toEqual([A]);
    const lease = await t.manager.lease(B);
    lease.release({ keepAliveMs: 0 });
    await until(() => t.manager.resident.length === 1, "keep_alive 0 to unload");
    expect(t.manager.resident.map((m) => m.id)).toEqual([A]);
  });
});

describe("/health tells readiness honestly", () => {
  test("loading → 503, loaded → 200; a pinned model that failed → 503 failed", async () => {
    let finish!: () => void;
    const gate = new Promise<void>((r) => (finish = r));
    const t = makeApp({ [A]: async () => (await gate, new ScriptEngine(A)) }, { manager: { pinned: A } });
    expect((await get(t.app, "/health")).status).toBe(503); // not loaded yet
    const pre = t.manager.preload(A);
    await Bun.sleep(0);
    const during = await get(t.app, "/health");
    expect(during.status).toBe(503);
    expect(((await during.json()) as { status: string }).status).toBe("loading");
    finish();
    await pre;
    expect((await get(t.app, "/health")).status).toBe(200);

    const bad = makeApp({ [A]: () => Promise.reject(new Error("bad weights")) }, { manager: { pinned: A } });
    await bad.manager.preload(A).catch(() => undefined);
    const res = await get(bad.app, "/health");
    expect(res.status).toBe(503);
    const body = (await res.json()) as { status: string; error: { message: string } };
    expect(body.status).toBe("failed");
    expect(body.error.message).toContain("bad weights");
  });

  test("503 when MLX is unavailable or no model can serve", async () => {
    const noMlx = makeApp(engines(A), { runtime: () => ({ available: false, reason: "libmlx.so not found" }) });
    const r1 = await get(noMlx.app, "/health");
    expect(r1.status).toBe(503);
    expect(((await r1.json()) as { error: { message: string } }).error.message).toContain("libmlx.so not found");
    const empty = makeApp({});
    const r2 = await get(empty.app, "/health");
    expect(r2.status).toBe(503);
    expect(((await r2.json()) as { status: string }).status).toBe("no_models");
    expect((await get(makeApp(engines(A)).app, "/health")).status).toBe(200);
  });

  test("a backend failing every request is reported once (the worker exits on it); a success resets the count", async () => {
    const reasons: string[] = [];
    const flaky = { [A]: () => new ScriptEngine(A, { eosAfter: 1, failAfter: 0 }) };
    const t = makeApp(flaky, { manager: { poisonAfter: 3, onPoisoned: (m) => reasons.push(m) } });
    for (let i = 0; i < 2; i++) expect((await post(t.app, "/v1/chat/completions", chat(A))).status).toBe(500);
    // client errors do not count
    expect((await post(t.app, "/v1/chat/completions", { model: A, messages: [] })).status).toBe(400);
    expect(reasons).toEqual([]);
    expect((await post(t.app, "/v1/chat/completions", { ...chat(A), stream: true })).status).toBe(200); // fails mid-stream
    await until(() => reasons.length > 0, "the poisoned report");
    for (let i = 0; i < 2; i++) await post(t.app, "/v1/chat/completions", chat(A));
    expect(reasons.length).toBe(1);
    expect(reasons[0]).toContain("3 requests in a row");
    const h = await get(t.app, "/health");
    expect(h.status).toBe(503);

    const ok = makeApp(engines(A), { manager: { poisonAfter: 2, onPoisoned: (m) => reasons.push(m) } });
    const lease = await ok.manager.lease(A);
    lease.release({ error: new Error("x") });
    const l2 = await ok.manager.lease(A);
    l2.release();
    const l3 = await ok.manager.lease(A);
    l3.release({ error: new Error("y") });
    expect(reasons.length).toBe(1);
  });
});

describe("mlxk server flags", () => {
  test("--served-model-name and --allow-switch need --model; bad --keep-alive / --max-models are usage errors", async () => {
    const env = { HOME: "/nonexistent-home", HF_HUB_CACHE: "/nonexistent-cache" };
    for (const [argv, msg] of [
      [["server", "--served-model-name", "gpt-4o-mini"], "--served-model-name"],
      [["server", "--allow-switch"], "--allow-switch"],
      [["server", "--keep-alive", "soon"], "--keep-alive"],
      [["server", "--max-models", "0"], "--max-models"],
    ] as const) {
      const r = await runCliCapture([...argv], { env });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(msg);
    }
  });
});

describe("server limits on every surface (--max-tokens-cap, --request-timeout, shutdown)", () => {
  const msgs = [{ role: "user", content: "hi" }];
  test("a limit past the cap is a 400 naming each surface's field; none means the cap", async () => {
    const t = makeApp(engines(A), { maxTokensCap: 5 });
    const cases: [string, Record<string, unknown>, string][] = [
      ["/v1/chat/completions", { model: A, max_tokens: 9, messages: msgs }, "max_tokens"],
      ["/v1/responses", { model: A, max_output_tokens: 9, input: "x" }, "max_output_tokens"],
      ["/v1/messages", { model: A, max_tokens: 9, messages: msgs }, "max_tokens"],
      ["/api/chat", { model: A, options: { num_predict: 9 }, messages: msgs, stream: false }, "options.num_predict"],
    ];
    for (const [path, body, param] of cases) {
      const res = await post(t.app, path, body);
      expect(res.status).toBe(400);
      expect(await res.text()).toContain(param);
    }
    const long = makeApp({ [A]: () => new ScriptEngine(A) }, { maxTokensCap: 3 });
    const r = await post(long.app, "/api/chat", { model: A, options: { num_predict: -1 }, messages: msgs, stream: false });
    expect(((await r.json()) as { eval_count: number }).eval_count).toBe(3);
  });

  test("--request-timeout ends a streamed Responses/Anthropic answer with the surface's error event", async () => {
    const t = makeApp({ [A]: () => new ScriptEngine(A, { delayMs: 5 }) }, { requestTimeoutMs: 40 });
    const r1 = await post(t.app, "/v1/responses", { model: A, input: "x", stream: true });
    const body1 = await r1.text();
    expect(body1).toContain("event: error");
    expect(body1).toContain("--request-timeout");
    const r2 = await post(t.app, "/v1/messages", { model: A, max_tokens: 1000, stream: true, messages: msgs });
    const body2 = await r2.text();
    expect(body2).toContain("event: error");
    expect(body2).toContain("--request-timeout");
    const r3 = await post(t.app, "/api/generate", { model: A, prompt: "x", stream: false });
    expect(r3.status).toBe(504);
  });
});

describe("one file, two names", () => {
  test("ids naming the same file share one engine; each keeps its name", async () => {
    const engine = new ScriptEngine(A, { eosAfter: 1 });
    const t = makeApp({ [A]: () => engine, [`${A}:Q4_1`]: () => engine }, { paths: { [A]: "/models/same.gguf", [`${A}:Q4_1`]: "/models/same.gguf" } });
    const a = check(ChatCompletionSchema, await (await post(t.app, "/v1/chat/completions", chat(A))).json());
    const b = check(ChatCompletionSchema, await (await post(t.app, "/v1/chat/completions", chat(`${A}:Q4_1`))).json());
    expect([a.model, b.model]).toEqual([A, `${A}:Q4_1`]);
    expect(t.loads).toEqual([A]);
  });
});

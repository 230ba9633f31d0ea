/**
 * The server with the real engine, over a real port, with the `openai` SDK as the client: a tiny random-weight
 * llama in a temp HF cache (greedy, so every answer is reproducible), and one real exchange with SmolLM2.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freemem } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { listRunnable, loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { addRepo, dirFiles, makeTempHub, type TempHub } from "../support/hf-cache.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const TINY = "mlx-community/tiny-llama-random";
const WORKSPACE = "my-tiny-ws";
let hub: TempHub;
let server: ReturnType<typeof Bun.serve>;
let manager: ModelManager;
let client: OpenAI;
let posts = 0;

beforeAll(async () => {
  hub = makeTempHub();
  const dir = writeTinyModel("llama", join(hub.root, "tiny-src"));
  addRepo(hub.hubDir, { name: TINY, files: dirFiles(dir) });
  // a workspace (mlx-knife's MLXK_WORKSPACE_HOME) holding a copy of the same tiny model
  const wsHome = join(hub.root, "workspaces");
  writeTinyModel("llama", join(wsHome, WORKSPACE));
  const env = { ...process.env, HF_HUB_CACHE: hub.hubDir, MLXK_WORKSPACE_HOME: wsHome };
  manager = new ModelManager({ resolve: (s) => resolveTarget(s, { env }), load: (t) => loadTarget(t, { env }), freeMemory: freemem, maxQueue: 8 });
  const app = createApp({ manager, listModels: () => listRunnable({ env }) });
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch: (r) => {
      if (r.method === "POST") posts++;
      return app.handle(r);
    },
  });
  client = new OpenAI({ baseURL: `http://127.0.0.1:${server.port}/v1`, apiKey: "unused", maxRetries: 2 });
});

afterAll(() => {
  server?.stop(true);
  manager?.close();
  manager?.dispose();
  hub?.cleanup();
});

const greedy = { model: TINY, temperature: 0, messages: [{ role: "user" as const, content: "Hello tiny model" }] };

describe("server + real engine (tiny random llama) via the openai SDK", () => {
  test("models.list shows the cached model; retrieve works with '/' in the id", async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toContain(TINY);
    expect((await client.models.retrieve(TINY)).id).toBe(TINY);
  });

  test("workspaces are listed by folder name (owned_by workspace) and can be chatted with", async () => {
    const ws = (await client.models.list()).data.find((m) => m.id === WORKSPACE);
    expect(ws?.owned_by).toBe("workspace");
    const r = await client.chat.completions.create({ ...greedy, model: WORKSPACE, max_tokens: 3 });
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
  });

  test("chat non-stream and stream with include_usage give the same greedy text and real usage", async () => {
    const full = await client.chat.completions.create({ ...greedy, max_tokens: 12 });
    const choice = full.choices[0]!;
    expect(full.model).toBe(TINY);
    expect(typeof choice.message.content).toBe("string");
    expect(full.usage!.completion_tokens).toBeGreaterThan(0);
    expect(full.usage!.completion_tokens).toBeLessThanOrEqual(12);
    expect(full.usage!.prompt_tokens).toBeGreaterThan(3);
    expect(full.usage!.total_tokens).toBe(full.usage!.prompt_tokens + full.usage!.completion_tokens);
    expect(["stop", "length"]).toContain(choice.finish_reason);

    const stream = await client.chat.completions.create({ ...greedy, max_tokens: 12, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? "";
      finish = c.choices[0]?.finish_reason ?? finish;
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(choice.message.content!);
    expect(finish).toBe(choice.finish_reason);
    expect(usage).toEqual(full.usage!);
  });

  test("max_tokens → finish_reason length with exactly that many tokens", async () => {
    const r = await client.chat.completions.create({ ...greedy, max_tokens: 3 });
    // a random model can hit EOS early; then it must say stop
    if (r.usage!.completion_tokens === 3) expect(r.choices[0]!.finish_reason).toBe("length");
    else expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(r.usage!.completion_tokens).toBeLessThanOrEqual(3);
  });

  test("a stop sequence cuts the greedy text before it, streaming and not, and is never emitted", async () => {
    const base = (await client.chat.completions.create({ ...greedy, max_tokens: 24 })).choices[0]!.message.content!;
    const chars = [...base];
    // a 2-char stop string from the middle whose first occurrence is not at the start
    let stop = "";
    for (let k = 2; k < chars.length - 2 && !stop; k++) {
      const s = chars.slice(k, k + 2).join("");
      if (s.trim() !== "" && base.indexOf(s) > 0) stop = s;
    }
    expect(stop).not.toBe("");
    const expected = base.slice(0, base.indexOf(stop));
    const cut = await client.chat.completions.create({ ...greedy, max_tokens: 24, stop: [stop] });
    expect(cut.choices[0]!.message.content).toBe(expected);
    expect(cut.choices[0]!.finish_reason).toBe("stop");
    const stream = await client.chat.completions.create({ ...greedy, max_tokens: 24, stop, stream: true });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
    expect(text).toBe(expected);
  });

  test("text completions with a raw prompt", async () => {
    const r = await client.completions.create({ model: TINY, prompt: "Once upon a time", max_tokens: 5, temperature: 0 });
    expect(r.object).toBe("text_completion");
    expect(r.usage!.completion_tokens).toBeLessThanOrEqual(5);
    expect(typeof r.choices[0]!.text).toBe("string");
  });

  test("logprobs come from the engine: top_logprobs sorted, chosen token's logprob ≤ 0", async () => {
    const r = await client.chat.completions.create({ ...greedy, max_tokens: 4, logprobs: true, top_logprobs: 3 });
    const lp = r.choices[0]!.logprobs!.content!;
    expect(lp.length).toBe(r.usage!.completion_tokens);
    for (const t of lp) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs.length).toBe(3);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[2]!.logprob);
    }
  });

  test("unknown model → NotFoundError; bad parameter → BadRequestError sent once (no retry)", async () => {
    const nf = await client.chat.completions.create({ ...greedy, model: "nobody/nothing" }).catch((e: unknown) => e);
    expect(nf).toBeInstanceOf(OpenAI.NotFoundError);
    expect((nf as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found");
    const before = posts;
    const err = await client.chat.completions.create({ ...greedy, temperature: 7 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("temperature");
    expect(posts - before).toBe(1);
  });

  test("aborting mid-stream frees the queue for the next request", async () => {
    const ac = new AbortController();
    const stream = await client.chat.completions.create({ ...greedy, max_tokens: 4000, stream: true }, { signal: ac.signal });
    let chunks = 0;
    try {
      for await (const _ of stream) {
        if (++chunks === 3) ac.abort();
      }
    } catch {
      // the SDK may surface the abort as an error
    }
    const end = Date.now() + 10000;
    while (manager.queue.active && Date.now() < end) await Bun.sleep(10);
    expect(manager.queue.active).toBe(false);
    const next = await client.chat.completions.create({ ...greedy, max_tokens: 2 });
    expect(next.usage!.completion_tokens).toBeGreaterThan(0);
  });
});

describe("server + SmolLM2 (real GGUF)", () => {
  test("one real exchange", async () => {
    const gguf = await smollm2Gguf();
    const r = await client.chat.completions.create({
      model: gguf,
      temperature: 0,
      max_tokens: 24,
      messages: [{ role: "user", content: "What is the capital of France?" }],
    });
    expect(r.model).toBe(gguf);
    expect(r.choices[0]!.message.content!.toLowerCase()).toContain("paris");
    expect(r.usage!.prompt_tokens).toBeGreaterThan(5);
  }, 120000);
});

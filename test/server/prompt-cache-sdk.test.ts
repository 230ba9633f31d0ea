/**
 * The prompt cache over a real port with the `openai` SDK: a follow-up turn reports the reused prompt
 * tokens in usage.prompt_tokens_details.cached_tokens (non-stream and stream with include_usage) and
 * answers exactly as a server without the cache.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { freemem } from "node:os";
import { join } from "node:path";
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
const servers: { server: ReturnType<typeof Bun.serve>; manager: ModelManager; client: OpenAI }[] = [];

function serve(env: Record<string, string | undefined>, promptCacheBytes: number) {
  const manager = new ModelManager({ resolve: (s) => resolveTarget(s, { env }), load: (t) => loadTarget(t, { env, promptCacheBytes }), freeMemory: freemem });
  const app = createApp({ manager, listModels: () => listRunnable({ env }) });
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
  const s = { server, manager, client: new OpenAI({ baseURL: `http://127.0.0.1:${server.port}/v1`, apiKey: "unused", maxRetries: 0 }) };
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

/** Ollama's /api/embed and /api/embeddings through the `ollama` client on the tiny BERT fixture (sentence-transformers goldens). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freemem } from "node:os";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ollama } from "ollama";
import { openEmbedder } from "../../src/embed/open.ts";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { listRunnable, loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { addRepo, type FileContent, makeTempHub, type TempHub } from "../support/hf-cache.ts";
import { cosine } from "../support/vectors.ts";
import { serve, type Served } from "./support/serve.ts";

const FIX = join(import.meta.dir, "..", "fixtures", "embeddings");
let hub: TempHub;
let s: Served;
let manager: ModelManager;
const golden = JSON.parse(readFileSync(join(FIX, "bert.golden.json"), "utf8")) as { texts: string[]; embeddings: number[][] };

beforeAll(async () => {
  hub = makeTempHub();
  const files: Record<string, FileContent> = {};
  for (const f of new Bun.Glob("**/*").scanSync({ cwd: join(FIX, "bert") })) files[f] = new Uint8Array(await Bun.file(join(FIX, "bert", f)).arrayBuffer());
  addRepo(hub.hubDir, { name: "org/bge-tiny", files });
  const env = { ...hub.env, HF_HUB_CACHE: hub.hubDir, PATH: process.env.PATH ?? "/usr/bin:/bin" };
  manager = new ModelManager({ resolve: (x) => resolveTarget(x, { env }), load: (t) => loadTarget(t, { env }), freeMemory: freemem });
  s = serve(createApp({ manager, listModels: () => listRunnable({ env }), openEmbedder: (x) => openEmbedder(x, { env }) }));
});
afterAll(() => {
  s?.stop();
  manager?.close();
  hub?.cleanup();
});

describe("ollama embeddings", () => {
  test("/api/embed: one vector per input, matching sentence-transformers; Ollama names resolve", async () => {
    const ollama = new Ollama({ host: s.url });
    const r = await ollama.embed({ model: "org/bge-tiny:latest", input: [golden.texts[0]!, golden.texts[1]!] });
    expect(r.embeddings.length).toBe(2);
    expect(cosine(r.embeddings[0]!, golden.embeddings[0]!)).toBeGreaterThanOrEqual(0.9999);
    expect(cosine(r.embeddings[1]!, golden.embeddings[1]!)).toBeGreaterThanOrEqual(0.9999);
    expect(r.prompt_eval_count).toBeGreaterThan(0);
    const one = await ollama.embed({ model: "bge-tiny", input: golden.texts[2]! });
    expect(cosine(one.embeddings[0]!, golden.embeddings[2]!)).toBeGreaterThanOrEqual(0.9999);
  });

  test("/api/show says embedding", async () => {
    const show = await new Ollama({ host: s.url }).show({ model: "org/bge-tiny" });
    expect(show.capabilities).toEqual(["embedding"]);
  });

  test("/api/embeddings (older clients) and the 400s", async () => {
    const ollama = new Ollama({ host: s.url });
    const r = await ollama.embeddings({ model: "org/bge-tiny", prompt: golden.texts[3]! });
    expect(cosine(r.embedding, golden.embeddings[3]!)).toBeGreaterThanOrEqual(0.9999);
    const bad = await fetch(`${s.url}/api/embed`, { method: "POST", body: JSON.stringify({ model: "org/bge-tiny", input: "x", options: { temperature: 0.5 } }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toContain("options.temperature");
  });
});

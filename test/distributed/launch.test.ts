/**
 * MLX distributed on loopback: pipeline parallel for every fixture architecture (2 ranks) and the deeper ones
 * (3 ranks) against the single-process greedy tokens; `mlxk launch -- run` on SmolLM2 (each rank holding about
 * its share of the weights) and on a tiny model over 3 ranks; `mlxk launch -- server` answering the openai SDK;
 * a killed rank ending the launch with an error naming it and no process left behind.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import OpenAI from "openai";
import { ringHostfile } from "../../src/distributed/hosts.ts";
import { freePorts } from "../../src/distributed/launch.ts";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadGgufModel, loadModelDir } from "../../src/engine/load.ts";
import * as mx from "../../src/mlx/index.ts";
import { mlxAvailability } from "../../src/mlx/ffi.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { HYBRID_MODELS, writeHybridModel } from "../support/tiny-hybrid.ts";
import { GOLDEN_PROMPT, TINY_MODELS, writeTinyModel } from "../support/tiny-models.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const MLXK = [process.execPath, join(ROOT, "bin", "mlxk")];
const HARNESS = join(ROOT, "test", "support", "pipeline-ranks.ts");
const noMlx = !mlxAvailability().available;
const tmp = mkdtempSync(join(tmpdir(), "mlxk-dist-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const STEPS = 6;
const models = noMlx
  ? []
  : [...TINY_MODELS.map((n) => writeTinyModel(n, join(tmp, n))), ...HYBRID_MODELS.map((n) => writeHybridModel(n, join(tmp, n)))];

async function reference(dir: string): Promise<number[]> {
  const l = await loadModelDir(dir);
  try {
    return [...tokenLoop({ model: l.model, prompt: GOLDEN_PROMPT, maxTokens: STEPS })].map((s) => s.token);
  } finally {
    l[Symbol.dispose]();
  }
}

interface Report {
  rank: number;
  pid: number;
  start: number;
  end: number;
  weightBytes: number;
  activeBytes: number;
}
const readLines = <T>(f: string): T[] => (existsSync(f) ? readFileSync(f, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as T) : []);

/** `n` harness ranks over one loopback ring, each loading `dirs` in turn; rank 0's tokens per model. */
async function pipeline(n: number, dirs: string[], name: string, mode: "pipeline" | "tensor" = "pipeline", split = "layers") {
  const ports = await freePorts(n);
  const ring = join(tmp, `${name}.ring.json`);
  writeFileSync(ring, ringHostfile(Array.from({ length: n }, (_, rank) => ({ rank, ssh: "127.0.0.1", ips: ["127.0.0.1"] })), ports));
  const out = join(tmp, `${name}.out.jsonl`);
  const report = join(tmp, `${name}.report.jsonl`);
  const procs = Array.from({ length: n }, (_, r) =>
    Bun.spawn([process.execPath, HARNESS, ...dirs], {
      env: { ...process.env, MLX_RANK: String(r), MLX_HOSTFILE: ring, MLXK_LAUNCH: "1", MLXK_LAUNCH_MODE: mode, MLXK_LAUNCH_SPLIT: split, PIPE_OUT: out, PIPE_STEPS: String(STEPS), MLXK_LAUNCH_REPORT: report },
      stdout: "ignore",
      stderr: "pipe",
    }),
  );
  // a rank that fails leaves its neighbours waiting on the ring: end them too (what launch does)
  procs.forEach((p) => p.exited.then((c) => c !== 0 && procs.forEach((q) => q.kill("SIGKILL"))));
  const codes = await Promise.all(procs.map((p) => p.exited));
  const errs = await Promise.all(procs.map((p) => new Response(p.stderr).text()));
  expect({ codes, errs: errs.map((e) => e.split("\n").filter((l) => !l.startsWith("[ring]")).join("\n").trim()) }).toEqual({ codes: procs.map(() => 0), errs: procs.map(() => "") });
  return { tokens: new Map(readLines<{ model: string; tokens: number[] }>(out).map((l) => [l.model, l.tokens])), reports: readLines<Report>(report) };
}

describe.skipIf(noMlx)("pipeline parallel on loopback", () => {
  test("2 ranks: greedy tokens of every fixture architecture equal the single process", async () => {
    const { tokens, reports } = await pipeline(2, models, "two");
    for (const dir of models) expect({ dir, tokens: tokens.get(dir) }).toEqual({ dir, tokens: await reference(dir) });
    // every model: two slices that meet and cover its layers
    expect(reports.length).toBe(2 * models.length);
    for (let i = 0; i < models.length; i++) {
      const [a, b] = [reports.find((r) => r.rank === 0 && reports.indexOf(r) >= 2 * i)!, reports.find((r) => r.rank === 1 && reports.indexOf(r) >= 2 * i)!];
      expect(a.start).toBe(0);
      expect(b.start).toBe(a.end);
    }
  }, 180_000);

  test("3 ranks: the models with 3+ layers (gemma4's KV-shared layers cannot be cut that fine: a clear refusal)", async () => {
    const conf = (d: string) => {
      const c = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
      return (c.text_config ?? c) as { num_hidden_layers: number; num_kv_shared_layers?: number };
    };
    const deep = models.filter((d) => conf(d).num_hidden_layers >= 3 && !conf(d).num_kv_shared_layers);
    expect(deep.length).toBeGreaterThan(0);
    const { tokens } = await pipeline(3, deep, "three");
    for (const dir of deep) expect({ dir, tokens: tokens.get(dir) }).toEqual({ dir, tokens: await reference(dir) });
  }, 120_000);
});

async function cli(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([...MLXK, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe.skipIf(noMlx)("--split", () => {
  test("weights 3,1 and by free memory (gathered over the ring): the slices follow, the tokens do not change", async () => {
    const dir = join(tmp, "smollm3");
    const want = await reference(dir);
    const weighted = await pipeline(2, [dir], "split-weights", "pipeline", "3,1");
    expect(weighted.reports.map((r) => [r.rank, r.start, r.end]).sort()).toEqual([[0, 0, 3], [1, 3, 4]]);
    expect(weighted.tokens.get(dir)).toEqual(want);
    const memory = await pipeline(2, [dir], "split-memory", "pipeline", "memory");
    const [a, b] = [0, 1].map((r) => memory.reports.find((x) => x.rank === r)!);
    expect([a!.start, b!.end, b!.start]).toEqual([0, 4, a!.end]);
    expect(memory.tokens.get(dir)).toEqual(want);
  }, 60_000);
});

describe.skipIf(noMlx)("tensor parallel on loopback", () => {
  test("2 ranks: llama, qwen2, qwen3, qwen3_moe (float and quantized) equal the single process", async () => {
    const tp = ["llama", "llama_q4", "qwen2", "qwen2_q4", "qwen3", "qwen3_moe"].map((n) => join(tmp, n));
    const { tokens, reports } = await pipeline(2, tp, "tensor", "tensor");
    for (const dir of tp) expect({ dir, tokens: tokens.get(dir) }).toEqual({ dir, tokens: await reference(dir) });
    expect(reports.every((r) => r.start === 0 && r.end > 0)).toBe(true);
  }, 60_000);

  test("refusals name the reason: other architectures, and shards a quantization group cannot split", async () => {
    const r = await cli(["launch", "-n", "2", "--tensor-parallel", "--", "run", join(tmp, "phi3"), "hi", "--max-tokens", "2"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("--tensor-parallel shards llama, qwen2, qwen3 and qwen3_moe (this model is 'phi3')");
    const q = await cli(["launch", "-n", "2", "--tensor-parallel", "--", "run", join(tmp, "qwen3_moe_q4"), "hi", "--max-tokens", "2"]);
    expect(q.code).not.toBe(0);
    expect(q.stderr).toMatch(/switch_mlp\.down_proj\.\w+ \(1 along axis -1\) does not split over 2 ranks/);
  }, 60_000);
});

describe.skipIf(noMlx)("mlxk launch", () => {
  test("launch -n 2 -- run SmolLM2: the single-process answer; each rank resident ≈ its share", async () => {
    const gguf = await smollm2Gguf();
    const args = ["run", gguf, "What is the capital of France?", "--temperature", "0", "--max-tokens", "12", "--json"];
    const single = await cli(args);
    const report = join(tmp, "smollm2.report.jsonl");
    const dist = await cli(["launch", "-n", "2", "--", ...args], { MLXK_LAUNCH_REPORT: report });
    expect({ code: dist.code, err: dist.code ? dist.stderr : "" }).toEqual({ code: 0, err: "" });
    const answer = (s: string) => (JSON.parse(s) as { data: { response: string } }).data.response;
    expect(answer(dist.stdout)).toBe(answer(single.stdout));
    const [r0, r1] = [0, 1].map((r) => readLines<Report>(report).find((x) => x.rank === r)!);
    expect([r0!.start, r0!.end, r1!.start, r1!.end]).toEqual([0, 15, 15, 30]);
    // the whole model in one process, for scale
    const before = mx.memory.active();
    const whole = await loadGgufModel(gguf);
    const wholeBytes = mx.memory.active() - before;
    whole[Symbol.dispose]();
    // rank 1 holds half of the layers and no embedding/head; rank 0 the other half and the (tied) embedding
    expect(r1!.weightBytes + r0!.weightBytes).toBeLessThan(wholeBytes * 1.05);
    expect(r1!.activeBytes / wholeBytes).toBeGreaterThan(0.25);
    expect(r1!.activeBytes / wholeBytes).toBeLessThan(0.45);
    expect(r0!.activeBytes / wholeBytes).toBeLessThan(0.8);
  }, 120_000);

  test("launch -n 3 -- run: a 4-layer model over 3 ranks answers as one process does", async () => {
    const dir = join(tmp, "smollm3");
    const args = ["run", dir, "Hello", "--temperature", "0", "--max-tokens", "8", "--no-chat-template", "--json"];
    const [single, dist] = [await cli(args), await cli(["launch", "-n", "3", "--", ...args])];
    expect({ code: dist.code, err: dist.code ? dist.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(JSON.parse(dist.stdout).data.response).toBe(JSON.parse(single.stdout).data.response);
  }, 60_000);

  test("bad launches are refused before anything starts", async () => {
    const r = await cli(["launch", "-n", "2", "--", "list"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("runs 'run' or 'server'");
    const missing = await cli(["launch", "-n", "2", "--", "run", join(tmp, "no-such-model"), "hi"]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/rank 0, 1 \(127\.0\.0\.1\) cannot load/);
    const tooMany = await cli(["launch", "-n", "3", "--", "run", join(tmp, "llama"), "hi", "--max-tokens", "2"]);
    expect(tooMany.code).not.toBe(0);
    expect(tooMany.stderr).toContain("2 layers cannot be split over 3 ranks");
  }, 60_000);

  test("launch -- server answers the openai SDK; a rank killed mid-stream ends that stream with an error and the launch naming the rank, with no process left", async () => {
    const gguf = await smollm2Gguf();
    const report = join(tmp, "server.report.jsonl");
    const p = Bun.spawn([...MLXK, "launch", "-n", "2", "--", "server", "--model", gguf, "--port", "0", "--json"], {
      env: { ...process.env, MLXK_LAUNCH_REPORT: report },
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
    });
    try {
      const reader = p.stdout.getReader();
      let text = "";
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const url = (JSON.parse(text.split("\n")[0]!) as { data: { url: string } }).data.url;
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "none", maxRetries: 0 });
      const messages = [{ role: "user" as const, content: "What is the capital of France?" }];
      const r = await client.chat.completions.create({ model: gguf, messages, max_tokens: 8, temperature: 0 });
      expect(r.usage?.completion_tokens).toBeGreaterThan(0);
      const single = await cli(["run", gguf, "What is the capital of France?", "--temperature", "0", "--max-tokens", "8", "--json"]);
      expect(r.choices[0]!.message.content).toBe(JSON.parse(single.stdout).data.response);

      const follower = readLines<Report>(report).find((x) => x.rank === 1)!;
      const stream = await client.chat.completions.create({ model: gguf, messages: [{ role: "user", content: "Tell me a long story." }], max_tokens: 400, temperature: 0, stream: true });
      let chunks = 0;
      const failure = await (async () => {
        try {
          for await (const _ of stream) if (chunks++ === 0) process.kill(follower.pid, "SIGKILL");
          return "the stream ended normally";
        } catch (e) {
          return e instanceof Error ? e.message : String(e);
        }
      })();
      expect(failure).toContain("the distributed group lost a rank");
      expect(chunks).toBeLessThan(400);
      const code = await p.exited;
      const stderr = await new Response(p.stderr).text();
      expect(code).not.toBe(0);
      expect(stderr).toContain("rank 1 was killed by SIGKILL");
      const pids = readLines<Report>(report).map((x) => x.pid);
      expect(pids.map(alive)).toEqual(pids.map(() => false));
      expect(await fetch(`${url}/health`).then((x) => x.status).catch(() => "down")).toBe("down");
    } finally {
      p.kill("SIGKILL");
    }
  }, 90_000);
});

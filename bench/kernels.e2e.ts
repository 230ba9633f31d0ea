/**
 * End-to-end decode/prefill on SmolLM2-135M-Instruct (Q4_1 GGUF → MLX affine 4-bit gs32): mlxk with our CPU
 * kernels vs mlxk with MLX's own ops, in one process and interleaved per round; optionally llama.cpp via
 * node-llama-cpp (installed under .cache/ only) and mlx_lm (Python reference venv) as references.
 * Usage: bun bench/kernels.e2e.ts [--rounds 3] [--decode 128] [--prompt 512] [--baseline-prompt 64] [--streams 1] [--llama] [--llama-threads 2] [--mlx-lm] [--json]
 * References run as their own processes after ours (llama.cpp and mlx_lm need the .cache/ installs of bench/generate.ts).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { prefill, tokenLoop } from "../src/engine/generate.ts";
import { loadGgufModel } from "../src/engine/load.ts";
import * as mx from "../src/mlx/index.ts";
import { kernelInfo, setKernelsEnabled } from "../src/mlx/kernels.ts";
import { smollm2Gguf } from "../test/support/smollm2.ts";
import { llamaGreedyCommand } from "./generate.ts";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const rounds = Number(arg("rounds", "3"));
const nDecode = Number(arg("decode", "128"));
const nPrompt = Number(arg("prompt", "512"));
const streams = Number(arg("streams", "1"));
// MLX's own ops prefill ~5-10 tok/s here: a shorter prompt keeps that baseline's rounds short (tok/s barely depends on it).
const nPromptBaseline = Number(arg("baseline-prompt", "64"));
const ROOT = resolve(import.meta.dir, "..");

const path = await smollm2Gguf();
const loaded = await loadGgufModel(path, { streams });
const { model } = loaded;
// Deterministic token ids spread over the vocabulary (not special tokens): the matmul work does not depend on them.
const ids = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 1000 + ((i * 7919 + seed * 104729) % 40000));

function decodeTps(): { tps: number; tokens: number[] } {
  const stats = { prefillMs: 0, decodeMs: 0, generated: 0 };
  const tokens: number[] = [];
  for (const step of tokenLoop({ model, prompt: ids(8, 1), maxTokens: nDecode, stats })) tokens.push(step.token);
  return { tps: ((stats.generated - 1) / stats.decodeMs) * 1000, tokens };
}

function prefillTps(n: number): number {
  const cache = model.makeCache();
  try {
    const t0 = performance.now();
    const logits = prefill(model, cache, ids(n, 2));
    logits.eval();
    const ms = performance.now() - t0;
    logits.dispose();
    return (n / ms) * 1000;
  } finally {
    for (const c of cache) c[Symbol.dispose]();
  }
}

const info = kernelInfo();
const res: Record<string, { decode: number[]; prefill: number[] }> = { kernels: { decode: [], prefill: [] }, mlx: { decode: [], prefill: [] } };
let sameTokens = true;
// Warm-up both paths once (first-call allocations, pool start-up).
for (const on of [true, false]) {
  setKernelsEnabled(on);
  decodeTps();
}
for (let r = 0; r < rounds; r++) {
  let ref: number[] | null = null;
  for (const on of [true, false]) {
    setKernelsEnabled(on);
    const d = decodeTps();
    if (ref && d.tokens.join() !== ref.join()) sameTokens = false;
    ref = d.tokens;
    const key = on ? "kernels" : "mlx";
    res[key]!.decode.push(d.tps);
    res[key]!.prefill.push(prefillTps(on ? nPrompt : Math.min(nPrompt, nPromptBaseline)));
  }
}
setKernelsEnabled(null);

interface Ref {
  decode: number;
  prefill: number;
}

function runJson(cmd: string[], cwd: string): { prefill_tps: number; decode_tps: number } {
  const p = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const out = p.stdout.toString().trim().split("\n").at(-1) ?? "";
  if (p.exitCode !== 0 || !out.startsWith("{")) throw new Error(`${cmd[0]} failed (${p.exitCode}): ${p.stderr.toString().slice(-800)}`);
  return JSON.parse(out);
}

/** Median over rounds of a reference run as its own process (prefill of nPrompt ids, then nDecode greedy tokens). */
function reference(cmd: (ids: string) => string[], cwd: string): Ref {
  const pre: number[] = [];
  const dec: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const x = runJson(cmd(ids(nPrompt, 2).join(",")), cwd);
    pre.push(x.prefill_tps);
    dec.push(x.decode_tps);
  }
  return { prefill: median(pre), decode: median(dec) };
}

// llama.cpp: node-llama-cpp 3.21.1 as installed by bench/generate.ts under .cache/llama-bench (same GGUF, run by node).
const LLAMA_DIR = join(ROOT, ".cache", "llama-bench");
const llamaThreads = Number(arg("llama-threads", "2"));
function llamaCpp(): Ref | null {
  if (!existsSync(join(LLAMA_DIR, "node_modules", "node-llama-cpp"))) return null;
  const llamaCmd = llamaGreedyCommand(LLAMA_DIR);
  return reference((i) => llamaCmd(path, i, nDecode, { threads: llamaThreads }), LLAMA_DIR);
}

// mlx_lm (Python reference venv) on the MLX conversion of the same GGUF that bench/generate.ts writes.
const MLX_LM = `
import json, sys, time
from pathlib import Path
import mlx.core as mx
from mlx_lm.utils import load_model
from mlx_lm.generate import generate_step
model, _ = load_model(Path(sys.argv[1]))
ids = [int(t) for t in sys.argv[2].split(",")]
n_gen = int(sys.argv[3])
t0 = time.perf_counter(); t1 = None; n = 0
for tok, _ in generate_step(mx.array(ids), model, max_tokens=n_gen, sampler=lambda x: mx.argmax(x, axis=-1)):
    n += 1
    if t1 is None: t1 = time.perf_counter()
print(json.dumps({"prefill_tps": len(ids) / (t1 - t0), "decode_tps": (n - 1) / (time.perf_counter() - t1)}))
`;
function mlxLm(): Ref | null {
  const py = join(ROOT, ".cache", "py-ref", "bin", "python");
  const dir = join(ROOT, ".cache", "bench", "SmolLM2-135M-Instruct-mlx-f32");
  if (!existsSync(py) || !existsSync(dir)) return null;
  return reference((i) => [py, "-c", MLX_LM, dir, i, String(nDecode)], ROOT);
}

const ref = flag("llama") ? llamaCpp() : null;
const lm = flag("mlx-lm") ? mlxLm() : null;
const k = { decode: median(res.kernels!.decode), prefill: median(res.kernels!.prefill) };
const m = { decode: median(res.mlx!.decode), prefill: median(res.mlx!.prefill) };
const out = {
  model: "SmolLM2-135M-Instruct Q4_1 (MLX affine 4-bit gs32)",
  kernels: info,
  streams,
  rounds,
  decodeTokens: nDecode,
  promptTokens: nPrompt,
  promptTokensMlxOpsBaseline: Math.min(nPrompt, nPromptBaseline),
  mlxkKernels: k,
  mlxkMlxOps: m,
  llamaCpp: ref,
  llamaThreads,
  mlxLm: lm,
  greedyTokensIdentical: sameTokens,
};
if (flag("json")) console.log(JSON.stringify(out, null, 2));
else {
  console.log(`kernels ${info.level}/${info.threads} threads, engine streams ${streams}, ${rounds} rounds (medians); greedy tokens identical: ${sameTokens}`);
  console.log("| engine | decode tok/s | prefill tok/s |");
  console.log("|---|---|---|");
  console.log(`| mlxk + our kernels | ${k.decode.toFixed(1)} | ${k.prefill.toFixed(1)} |`);
  console.log(`| mlxk + MLX ops | ${m.decode.toFixed(1)} | ${m.prefill.toFixed(1)} (${Math.min(nPrompt, nPromptBaseline)}-token prompt) |`);
  if (ref) console.log(`| llama.cpp (node-llama-cpp 3.21.1, ${llamaThreads} threads) | ${ref.decode.toFixed(1)} | ${ref.prefill.toFixed(1)} |`);
  if (lm) console.log(`| mlx_lm generate_step (mlx 0.32.4 cpu) | ${lm.decode.toFixed(1)} | ${lm.prefill.toFixed(1)} |`);
  console.log(`kernels vs MLX ops: decode ${(k.decode / m.decode).toFixed(1)}×, prefill ${(k.prefill / m.prefill).toFixed(1)}×`);
  if (lm) console.log(`kernels vs mlx_lm: decode ${(k.decode / lm.decode).toFixed(1)}×, prefill ${(k.prefill / lm.prefill).toFixed(1)}×`);
  if (ref) console.log(`kernels vs llama.cpp: decode ${(k.decode / ref.decode).toFixed(2)}×, prefill ${(k.prefill / ref.prefill).toFixed(2)}×`);
}
loaded[Symbol.dispose]();

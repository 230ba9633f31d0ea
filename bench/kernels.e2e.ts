/**
 * End-to-end decode/prefill on SmolLM2-135M-Instruct (Q4_1 GGUF → MLX affine 4-bit gs32): mlxk with our CPU
 * kernels vs mlxk with MLX's own ops, in one process and interleaved per round; optionally llama.cpp via
 * node-llama-cpp (installed under .cache/ only) and mlx_lm (Python reference venv) as references.
 * Usage: bun bench/kernels.e2e.ts [--rounds 3] [--decode 128] [--prompt 512] [--streams 1] [--llama] [--mlx-lm] [--profile]
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { prefill, tokenLoop } from "../src/engine/generate.ts";
import { loadGgufModel } from "../src/engine/load.ts";
import * as mx from "../src/mlx/index.ts";
import { kernelInfo, setKernelsEnabled } from "../src/mlx/kernels.ts";
import { smollm2Gguf } from "../test/support/smollm2.ts";

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

function prefillTps(): number {
  const cache = model.makeCache();
  try {
    const t0 = performance.now();
    const logits = prefill(model, cache, ids(nPrompt, 2));
    logits.eval();
    const ms = performance.now() - t0;
    logits.dispose();
    return (nPrompt / ms) * 1000;
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
    res[key]!.prefill.push(prefillTps());
  }
}
setKernelsEnabled(null);

interface Ref {
  decode: number;
  prefill: number;
}

/** llama.cpp through node-llama-cpp (2 threads, the same GGUF), if installed under .cache/node-llama-cpp. */
async function llamaCpp(): Promise<Ref | null> {
  const dir = join(ROOT, ".cache", "node-llama-cpp", "node_modules", "node-llama-cpp");
  if (!existsSync(dir)) return null;
  const { getLlama } = await import(join(dir, "dist", "index.js"));
  const llama = await getLlama({ gpu: false });
  const m = await llama.loadModel({ modelPath: path });
  const ctx = await m.createContext({ contextSize: 2048, threads: 2, batchSize: 512 });
  const seq = ctx.getSequence();
  const dec: number[] = [];
  const pre: number[] = [];
  for (let r = 0; r < rounds; r++) {
    seq.clearHistory?.();
    await seq.eraseContextTokenRanges?.([{ start: 0, end: seq.nextTokenIndex }]);
    let t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(ids(nPrompt, 2));
    pre.push((nPrompt / (performance.now() - t0)) * 1000);
    await seq.eraseContextTokenRanges([{ start: 0, end: seq.nextTokenIndex }]);
    let n = 0;
    t0 = performance.now();
    let tFirst = 0;
    for await (const _ of seq.evaluate(ids(8, 1), { temperature: 0 })) {
      if (n === 0) tFirst = performance.now();
      if (++n >= nDecode) break;
    }
    dec.push(((n - 1) / (performance.now() - tFirst)) * 1000);
    await seq.eraseContextTokenRanges([{ start: 0, end: seq.nextTokenIndex }]);
  }
  await ctx.dispose();
  await m.dispose();
  return { decode: median(dec), prefill: median(pre) };
}

const ref = flag("llama") ? await llamaCpp() : null;
const k = { decode: median(res.kernels!.decode), prefill: median(res.kernels!.prefill) };
const m = { decode: median(res.mlx!.decode), prefill: median(res.mlx!.prefill) };
const out = {
  model: "SmolLM2-135M-Instruct Q4_1 (MLX affine 4-bit gs32)",
  kernels: info,
  streams,
  rounds,
  decodeTokens: nDecode,
  promptTokens: nPrompt,
  mlxkKernels: k,
  mlxkMlxOps: m,
  llamaCpp: ref,
  greedyTokensIdentical: sameTokens,
};
if (flag("json")) console.log(JSON.stringify(out, null, 2));
else {
  console.log(`kernels ${info.level}/${info.threads} threads, engine streams ${streams}, ${rounds} rounds (medians); greedy tokens identical: ${sameTokens}`);
  console.log("| engine | decode tok/s | prefill tok/s |");
  console.log("|---|---|---|");
  console.log(`| mlxk + our kernels | ${k.decode.toFixed(1)} | ${k.prefill.toFixed(1)} |`);
  console.log(`| mlxk + MLX ops | ${m.decode.toFixed(1)} | ${m.prefill.toFixed(1)} |`);
  if (ref) console.log(`| llama.cpp (node-llama-cpp, 2 threads) | ${ref.decode.toFixed(1)} | ${ref.prefill.toFixed(1)} |`);
  console.log(`kernels vs MLX ops: decode ${(k.decode / m.decode).toFixed(1)}×, prefill ${(k.prefill / m.prefill).toFixed(1)}×`);
  if (ref) console.log(`kernels vs llama.cpp: decode ${(k.decode / ref.decode).toFixed(2)}×, prefill ${(k.prefill / ref.prefill).toFixed(2)}×`);
}
loaded[Symbol.dispose]();

/**
 * MLX runtime benchmark: (1) per-op overhead of the TS → bun:ffi → shim → MLX path vs the same op
 * driven from C++ (bench/mlx-ops.cpp, built here against the same libmlx); (2) quantized_matmul at
 * decode shapes for f32 vs bf16 activations and one vs two CPU streams (output columns split).
 *
 * Run: node_modules/.bin/bun bench/mlx-ops.ts      (needs `npm install` to have built the shim)
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import * as mx from "../src/mlx/index.ts";
import { mlxRoot, REPO_ROOT } from "../src/mlx/paths.ts";

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

function buildCpp(): string {
  const root = mlxRoot();
  const src = join(REPO_ROOT, "bench", "mlx-ops.cpp");
  const outDir = join(REPO_ROOT, "mlx-c", "build");
  mkdirSync(outDir, { recursive: true });
  const exe = join(outDir, "bench-mlx-ops");
  if (!existsSync(exe) || statSync(exe).mtimeMs < statSync(src).mtimeMs) {
    const cxx = process.env.CXX ?? "g++";
    const r = Bun.spawnSync([cxx, "-std=c++20", "-O2", `-I${join(root, "include")}`, src, "-o", exe, `-L${join(root, "lib")}`, "-lmlx", `-Wl,-rpath,${join(root, "lib")}`], { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`building bench/mlx-ops.cpp failed:\n${r.stderr.toString()}`);
  }
  return exe;
}

function runCpp(exe: string): Record<string, number> {
  const r = Bun.spawnSync([exe], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bench-mlx-ops failed: ${r.stderr.toString()}`);
  const out: Record<string, number> = {};
  for (const line of r.stdout.toString().trim().split("\n")) {
    const o = JSON.parse(line) as { name: string; ns: number };
    out[o.name] = o.ns;
  }
  return out;
}

/** ns per graph-node creation + free of one add (no evaluation). */
function tsAddGraph(a: mx.Array, b: mx.Array): number {
  const n = 200_000;
  const reps: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) mx.add(a, b).dispose();
    reps.push(((performance.now() - t0) * 1e6) / n);
  }
  return median(reps);
}

/** ns per op of a 1000-op dependent chain evaluated once, built inside a scope. */
function tsAddChain(a: mx.Array, b: mx.Array): number {
  const reps: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    mx.scope(() => {
      let x = a;
      for (let i = 0; i < 1000; i++) x = mx.add(x, b);
      x.eval();
    });
    reps.push(((performance.now() - t0) * 1e6) / 1000);
  }
  return median(reps);
}

/**
 * ms per KV-cache style slice_update of one position into a [1, 2, 4096, 64] f32 cache (2 MiB):
 * with the old cache handle still alive MLX must copy; disposed before eval it updates in place.
 */
function kvUpdate(disposeOldFirst: boolean): number {
  let cache = mx.keep(mx.zeros([1, 2, 4096, 64]));
  const kv = mx.keep(mx.ones([1, 2, 1, 64]));
  mx.eval(cache, kv);
  const times: number[] = [];
  for (let i = 0; i < 60; i++) {
    const t0 = performance.now();
    const next = mx.sliceUpdate(cache, kv, [0, 0, i, 0], [1, 2, i + 1, 64]);
    if (disposeOldFirst) cache.dispose();
    next.eval();
    if (!disposeOldFirst) cache.dispose();
    cache = next;
    if (i >= 10) times.push(performance.now() - t0);
  }
  cache.dispose();
  kv.dispose();
  return median(times);
}

interface QmmCase {
  k: number;
  n: number;
  dtype: mx.Dtype;
  streams: 1 | 2;
}

/** ms per decode-shaped quantized_matmul (4-bit affine, group 64), median of `reps` evaluated calls. */
function qmm(c: QmmCase, s2: mx.Stream, reps: number): number {
  return mx.scope(() => {
    const w = mx.random.normal({ shape: [c.n, c.k], key: mx.random.key(3) });
    const q = mx.quantize(w, { groupSize: 64, bits: 4 });
    const scales = q.scales.astype(c.dtype);
    const biases = q.biases!.astype(c.dtype);
    const x = mx.random.normal({ shape: [1, c.k], key: mx.random.key(4) }).astype(c.dtype);
    // halves of the output columns for the two-stream variant
    const halves = [q.wq, scales, biases].map((t) => mx.split(t, 2, 0));
    mx.eval(q.wq, scales, biases, x, ...halves.flat());
    const times: number[] = [];
    for (let r = 0; r < reps + 1; r++) {
      mx.scope(() => {
        const t0 = performance.now();
        if (c.streams === 1) {
          mx.quantizedMatmul(x, q.wq, scales, biases).eval();
        } else {
          const y0 = mx.quantizedMatmul(x, halves[0]![0]!, halves[1]![0]!, halves[2]![0]!);
          const y1 = mx.withStream(s2, () => mx.quantizedMatmul(x, halves[0]![1]!, halves[1]![1]!, halves[2]![1]!));
          mx.eval(mx.concatenate([y0, y1], 1));
        }
        if (r > 0) times.push(performance.now() - t0);
      });
    }
    return median(times);
  });
}

async function main(): Promise<void> {
  const av = mx.mlxAvailability();
  if (!av.available) throw new Error(`MLX unavailable: ${av.reason}`);
  const cpp = runCpp(buildCpp());
  const { a, b } = mx.keep({ a: mx.random.normal({ shape: [64], key: mx.random.key(1) }), b: mx.random.normal({ shape: [64], key: mx.random.key(2) }) });
  mx.eval(a, b);
  const addGraph = tsAddGraph(a, b);
  const addChain = tsAddChain(a, b);
  const s2 = mx.newStream("cpu");
  const qmmTs = qmm({ k: 896, n: 4864, dtype: mx.Dtype.float32, streams: 1 }, s2, 15);

  const load = (await Bun.file("/proc/loadavg").text().catch(() => "n/a")).split(" ").slice(0, 3).join(" ");
  console.log(`MLX ${mx.mlxVersion()}, ${navigator.hardwareConcurrency} CPUs, Bun ${Bun.version}, load average before: ${load}\n`);
  console.log("| op | TypeScript | C++ | TS / C++ |");
  console.log("|---|---|---|---|");
  const row = (name: string, ts: number, c: number, unit: string, scale: number): void =>
    console.log(`| ${name} | ${(ts / scale).toFixed(2)} ${unit} | ${(c / scale).toFixed(2)} ${unit} | ${(ts / c).toFixed(2)} |`);
  row("add, graph node create + free (no eval)", addGraph, cpp.add_graph!, "µs", 1e3);
  row("add, 1000-op chain + one eval, per op", addChain, cpp.add_chain_eval!, "µs", 1e3);
  row("quantized_matmul 1×896×4864 q4 f32, eval'd", qmmTs * 1e6, cpp.qmm_f32_1x896x4864!, "ms", 1e6);

  const kvKeep = kvUpdate(false);
  const kvFree = kvUpdate(true);
  console.log(`\nKV-cache slice_update into a 2 MiB cache: old handle alive ${(kvKeep * 1e3).toFixed(0)} µs, disposed before eval ${(kvFree * 1e3).toFixed(0)} µs (${(kvKeep / kvFree).toFixed(1)}× faster in place)`);

  console.log("\nquantized_matmul (affine 4-bit, group 64), ms per evaluated call, median:\n");
  console.log("| M×K×N | f32, 1 stream | f32, 2 streams | bf16, 1 stream | bf16, 2 streams | bf16 / f32 (1 stream) | 2 / 1 streams (f32) |");
  console.log("|---|---|---|---|---|---|---|");
  for (const [k, n, reps] of [[896, 4864, 15], [576, 49152, 5]] as const) {
    const f1 = qmm({ k, n, dtype: mx.Dtype.float32, streams: 1 }, s2, reps);
    const f2 = qmm({ k, n, dtype: mx.Dtype.float32, streams: 2 }, s2, reps);
    const b1 = qmm({ k, n, dtype: mx.Dtype.bfloat16, streams: 1 }, s2, Math.min(reps, 5));
    const b2 = qmm({ k, n, dtype: mx.Dtype.bfloat16, streams: 2 }, s2, Math.min(reps, 5));
    console.log(`| 1×${k}×${n} | ${f1.toFixed(2)} | ${f2.toFixed(2)} | ${b1.toFixed(2)} | ${b2.toFixed(2)} | ${(b1 / f1).toFixed(2)} | ${(f2 / f1).toFixed(2)} |`);
  }
  a.dispose();
  b.dispose();
  s2.dispose();
}

await main();

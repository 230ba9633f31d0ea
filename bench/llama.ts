/**
 * mlxk against llama.cpp on the same GGUF and the same prompt (issue #17): prefill and greedy decode tok/s of
 * mlxk (its default thread policy) and of node-llama-cpp 3.22.1 (its prebuilt CPU backend picks the machine's
 * best ISA at run time) with 1 AND 2 threads, interleaved rounds (order reversed each round), median per engine.
 * The ratio is mlxk's median over llama.cpp's best thread setting, per metric. Each run is its own process.
 *
 * Rows: the real SmolLM2-135M Q4_1, a Qwen2.5-1.5B-shaped random Q4_1, a Qwen3-0.6B-shaped random Q4_K_M and a
 * Qwen3-30B-A3B-like random Q4_K_M MoE (bench/kquant-models.ts), generated once under .cache/bench.
 *
 * node-llama-cpp lives outside the project (a reference, never a dependency):
 *   npm install --prefix /work/main/.cache/llama-ref node-llama-cpp@3.22.1   (or --llama-dir DIR)
 *
 * Usage: bun bench/llama.ts [--prompt 658] [--gen 128] [--rounds 3] [--only smollm2,qwen15,q4km,moe]
 *        [--int8]                  (an extra mlxk row with the opt-in int8 activations, MLXK_INT8_ACT=1)
 *        [--unfused]               (an extra mlxk row with the fused decoder block off, MLXK_FUSED_BLOCKS=0)
 *        [--mlxk-threads 1,2]      (extra mlxk rows pinned with MLXK_THREADS, besides the default policy)
 *        [--env K=V,K=V]           (extra environment for the default mlxk row)
 *        [--baseline-shim PATH]    (an extra mlxk row on another build of libmlxk.so, e.g. before a change)
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { qwen3MoeShapedQ4KM, qwen3ShapedQ4KM } from "./kquant-models.ts";
import { llamaGreedyCommand, promptIds, QWEN15_SHAPE, type Result, runJson, shapedGguf, timeGreedy } from "./generate.ts";

const ROOT = resolve(import.meta.dir, "..");
const CACHE = join(ROOT, ".cache", "bench");

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

interface BenchModel {
  key: string;
  name: string;
  gguf: (smollm2: string) => Promise<string>;
}

/** The rows; append more (same GGUF for both engines). */
export const MODELS: BenchModel[] = [
  { key: "smollm2", name: "SmolLM2-135M-Instruct Q4_1 (real)", gguf: async (smol) => smol },
  { key: "qwen15", name: "Qwen2.5-1.5B-shaped random Q4_1", gguf: (smol) => shapedGguf(smol, QWEN15_SHAPE) },
  // K-quants packed (bench/kquant-models.ts): every matrix Q4_K/Q6_K; the MoE's experts through the gather kernel
  { key: "q4km", name: "Qwen3-0.6B-shaped random Q4_K_M", gguf: (smol) => qwen3ShapedQ4KM(smol) },
  { key: "moe", name: "Qwen3-30B-A3B-like MoE (64 experts, top 8) random Q4_K_M", gguf: (smol) => qwen3MoeShapedQ4KM(smol) },
];


async function worker(): Promise<void> {
  const { loadGgufModel } = await import("../src/engine/load.ts");
  const ids = promptIds(Number(arg("prompt", "658")));
  using m = await loadGgufModel(arg("model", ""), { dtype: "float32" });
  const r = await timeGreedy(m.model, ids, Number(arg("gen", "128")));
  const { kernelInfo } = await import("../src/mlx/kernels.ts");
  const k = kernelInfo();
  console.log(JSON.stringify({ ...r, kernels: k.enabled ? `${k.isa}${k.int8 ? "+int8" : ""}/${k.threads}t` : "off" }));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Leading tokens two greedy runs agree on. */
const agree = (a: number[] = [], b: number[] = []) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

async function main(): Promise<void> {
  const llamaDir = arg("llama-dir", "/work/main/.cache/llama-ref");
  if (!existsSync(join(llamaDir, "node_modules", "node-llama-cpp"))) {
    console.error(`node-llama-cpp not found under ${llamaDir}: npm install --prefix ${llamaDir} node-llama-cpp@3.22.1`);
    process.exit(2);
  }
  const llamaCmd = llamaGreedyCommand(llamaDir);
  // A private copy of the shim (per worktree: .cache may be shared; two levels below the root so its
  // $ORIGIN runpath finds libmlx): a rebuild of mlx-c/build during the run cannot change the workers mid-way.
  const { findShim } = await import("../src/mlx/paths.ts");
  const shimDir = join(ROOT, ".cache", `shim-llama-${basename(ROOT)}`);
  mkdirSync(shimDir, { recursive: true });
  const shim = join(shimDir, "libmlxk.so");
  copyFileSync(findShim()!, shim);
  const baseline = arg("baseline-shim", "");
  const baseShim = join(shimDir, "baseline.so");
  if (baseline) copyFileSync(baseline, baseShim);
  const nPrompt = Number(arg("prompt", "658"));
  const nGen = Number(arg("gen", "128"));
  const rounds = Number(arg("rounds", "3"));
  const only = arg("only", "").split(",").filter(Boolean);
  const pins = arg("mlxk-threads", "").split(",").filter(Boolean);
  const { smollm2Gguf } = await import("../test/support/smollm2.ts");
  const smol = await smollm2Gguf();
  const ids = promptIds(nPrompt).join(",");
  const rows: string[] = [];
  for (const m of MODELS.filter((x) => only.length === 0 || only.includes(x.key))) {
    const gguf = await m.gguf(smol);
    const self = [process.execPath, join(ROOT, "bench", "llama.ts"), "--worker", "--model", gguf, "--prompt", String(nPrompt), "--gen", String(nGen)];
    const env = { MLXK_SHIM: shim };
    const variants: [string, () => Result][] = [["mlxk", () => runJson(self, ROOT, env)]];
    if (process.argv.includes("--int8")) variants.push(["mlxk MLXK_INT8_ACT=1", () => runJson(self, ROOT, { ...env, MLXK_INT8_ACT: "1" })]);
    if (process.argv.includes("--unfused")) variants.push(["mlxk MLXK_FUSED_BLOCKS=0", () => runJson(self, ROOT, { ...env, MLXK_FUSED_BLOCKS: "0" })]);
    for (const t of pins) variants.push([`mlxk MLXK_THREADS=${t}`, () => runJson(self, ROOT, { ...env, MLXK_THREADS: t })]);
    if (baseline) variants.push(["mlxk (baseline shim)", () => runJson(self, ROOT, { MLXK_SHIM: baseShim })]);
    for (const t of ["1", "2"]) variants.push([`llama.cpp ${t} thread${t === "1" ? "" : "s"}`, () => runJson(llamaCmd(gguf, ids, nGen, { threads: Number(t) }), llamaDir)]);
    const results = new Map<string, Result[]>();
    for (let r = 0; r < rounds; r++) {
      for (const [name, fn] of r % 2 === 0 ? variants : [...variants].reverse()) {
        const res = fn();
        console.error(`${m.key} / ${name} / round ${r + 1}: prefill ${res.prefill_tps.toFixed(1)} decode ${res.decode_tps.toFixed(2)} (${res.kernels ?? ""})`);
        results.set(name, [...(results.get(name) ?? []), res]);
      }
    }
    const med = (name: string, k: "prefill_tps" | "decode_tps") => median(results.get(name)!.map((r) => r[k]));
    const llamaNames = variants.map(([n]) => n).filter((n) => n.startsWith("llama.cpp"));
    const bestPrefill = Math.max(...llamaNames.map((n) => med(n, "prefill_tps")));
    const bestDecode = Math.max(...llamaNames.map((n) => med(n, "decode_tps")));
    const refTokens = results.get("llama.cpp 1 thread")![0]!.tokens;
    for (const [name] of variants) {
      const p = med(name, "prefill_tps");
      const d = med(name, "decode_tps");
      const all = results.get(name)!;
      const spread = (k: "prefill_tps" | "decode_tps") => `${Math.min(...all.map((r) => r[k])).toFixed(1)}–${Math.max(...all.map((r) => r[k])).toFixed(1)}`;
      const same = name.startsWith("llama") ? "–" : `${agree(all[0]!.tokens, refTokens)}/${nGen}`;
      rows.push(`| ${m.name} | ${name} | ${p.toFixed(1)} (${spread("prefill_tps")}) | ${d.toFixed(1)} (${spread("decode_tps")}) | ${(p / bestPrefill).toFixed(2)}× | ${(d / bestDecode).toFixed(2)}× | ${same} |`);
    }
  }
  const table = [
    `Prompt ${nPrompt} tokens, ${nGen} greedy tokens, ${navigator.hardwareConcurrency} CPUs (shared), median of ${rounds} interleaved rounds (min–max).`,
    "Ratios: against llama.cpp's best thread setting (1 or 2) per metric, same run. Agree: leading greedy tokens equal to llama.cpp's.",
    "",
    "| model | engine | prefill tok/s | decode tok/s | prefill vs llama.cpp best | decode vs llama.cpp best | agree |",
    "|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
  console.log(table);
  mkdirSync(CACHE, { recursive: true });
  writeFileSync(join(CACHE, "llama-last-run.md"), `${table}\n`);
}

if (import.meta.main) {
  if (process.argv.includes("--worker")) await worker();
  else await main();
}

/**
 * Hybrid-architecture benchmark: prefill and greedy decode tok/s of a Qwen3.5-shaped random 4-bit model
 * (Qwen3.5-0.8B layer sizes: hidden 1024, 8/2 heads of 256, FF 3584, Gated DeltaNet 16/16 heads of 128,
 * conv 4, every 4th layer full attention; fewer layers and a 32k vocabulary to fit the shared box) side by
 * side with mlx-lm on the same weights, in one run. The weights are made once by mlx-lm itself (random
 * init, nn.quantize 4-bit group 64, f32 scales, so both engines run f32) under .cache/bench/.
 *
 * Usage: bun bench/hybrid.ts [--layers 12] [--prompt 256] [--gen 64] [--rounds 2] [--ops] [--skip-mlx-lm]
 *   --ops also runs mlxk with MLXK_KERNELS=0 (MLX's ops, as mlx-lm uses them).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { MLX_LM_SCRIPT, PY_SAVE_Q4, promptIds, qwen35PyConfig, type Result, runJson, timeGreedy } from "./generate.ts";

const ROOT = resolve(import.meta.dir, "..");
const CACHE = join(ROOT, ".cache", "bench");
const PY = join(ROOT, ".cache", "py-ref", "bin", "python");
const VOCAB = 32768;

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const has = (name: string) => process.argv.includes(`--${name}`);
const ids = (n: number) => promptIds(n).map((t) => t % VOCAB);

const MAKE_SCRIPT = `
import sys, json
import mlx.core as mx, mlx.nn as nn
from pathlib import Path
from mlx_lm.models import qwen3_5 as arch
from mlx_lm.utils import save_model
path, layers = Path(sys.argv[1]), int(sys.argv[2])
cfg = ${qwen35PyConfig("layers", String(VOCAB))}
${PY_SAVE_Q4}
`;

async function worker(dir: string, nPrompt: number, nGen: number): Promise<Result> {
  const { loadModelDir } = await import("../src/engine/load.ts");
  using m = await loadModelDir(dir, { dtype: "float32", streams: 1 });
  return await timeGreedy(m.model, ids(nPrompt), nGen);
}

async function main(): Promise<void> {
  const nPrompt = Number(arg("prompt", "256"));
  const nGen = Number(arg("gen", "64"));
  const layers = Number(arg("layers", "12"));
  if (has("worker")) {
    console.log(JSON.stringify(await worker(arg("model", ""), nPrompt, nGen)));
    return;
  }
  const dir = join(CACHE, `qwen3_5-0.8b-shape-${layers}l-q4`);
  if (!existsSync(join(dir, "config.json"))) {
    mkdirSync(CACHE, { recursive: true });
    const p = Bun.spawnSync([PY, "-c", MAKE_SCRIPT, dir, String(layers)], { stdout: "inherit", stderr: "inherit" });
    if (p.exitCode !== 0) throw new Error("making the benchmark model failed");
  }
  const self = [process.execPath, join(ROOT, "bench", "hybrid.ts"), "--worker", "--model", dir, "--prompt", String(nPrompt), "--gen", String(nGen)];
  const REF = "mlx-lm 0.32.2 (mlx 0.32.4 cpu)";
  const variants: [string, () => Result][] = [["mlxk (AVX2 kernels)", () => runJson(self)]];
  if (has("ops")) variants.push(["mlxk (MLX ops, MLXK_KERNELS=0)", () => runJson(self, ROOT, { MLXK_KERNELS: "0" })]);
  if (!has("skip-mlx-lm")) variants.push([REF, () => runJson([PY, "-c", MLX_LM_SCRIPT, dir, ids(nPrompt).join(","), String(nGen)])]);
  const results = new Map<string, Result>();
  const rounds = Number(arg("rounds", "2"));
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of r % 2 === 0 ? variants : [...variants].reverse()) {
      const res = fn();
      console.error(`round ${r + 1} / ${name}: ${JSON.stringify(res)}`);
      const prev = results.get(name);
      results.set(name, prev ? { ...res, prefill_tps: Math.max(prev.prefill_tps, res.prefill_tps), decode_tps: Math.max(prev.decode_tps, res.decode_tps) } : res);
    }
  }
  const ref = results.get(REF);
  const rows = variants.map(([name]) => {
    const r = results.get(name)!;
    const ratio = ref ? `${(r.prefill_tps / ref.prefill_tps).toFixed(2)}× | ${(r.decode_tps / ref.decode_tps).toFixed(2)}×` : "– | –";
    return `| Qwen3.5-0.8B-shaped, ${layers} layers, 4-bit | ${name} | ${r.prefill_tps.toFixed(1)} | ${r.decode_tps.toFixed(2)} | ${r.peak_rss_mb.toFixed(0)} | ${ratio} |`;
  });
  const table = [
    `Prompt ${nPrompt} tokens, ${nGen} generated (greedy), best of ${rounds} interleaved rounds.`,
    "",
    "| model | engine | prefill tok/s | decode tok/s | peak RSS MB | prefill vs mlx-lm | decode vs mlx-lm |",
    "|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
  console.log(table);
  writeFileSync(join(CACHE, "hybrid-last-run.md"), `${table}\n`);
}

await main();

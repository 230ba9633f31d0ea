/**
 * GPU benchmark: prefill (512-token prompt) and decode (128 tokens) tokens/s of mlxk on the GPU (the default
 * backend profile: MLX's CUDA or Metal ops, bf16 compute) against llama.cpp on the same GPU (node-llama-cpp
 * 3.22.1 with its linux-x64-cuda prebuilt, every layer offloaded) on the same GGUF: SmolLM2-135M-Instruct Q4_1
 * and a random 7B-shaped Q4_1 llama (Mistral-7B layer shapes: hidden 4096, 32 layers, 32/8 heads, FF 14336;
 * SmolLM2's 49152-token vocabulary, tied head). Each run is its own process; rounds interleave the two engines
 * (order reversed each round) and keep each one's best. The ratio is mlxk / llama.cpp from the same run.
 *
 * Usage: bun bench/gpu.ts [--prompt 512] [--gen 128] [--rounds 2] [--only smollm2|7b]
 *                         [--llama-dir /work/main/.cache/llama-ref] [--allow-cpu]
 * Without a GPU it refuses (exit 2) unless --allow-cpu (both engines on the CPU: a dry run of the script).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { llamaGreedyCommand, promptIds, type Result, runJson, shapedGguf, timeGreedy } from "./generate.ts";

const ROOT = resolve(import.meta.dir, "..");
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const has = (name: string) => process.argv.includes(`--${name}`);


async function worker(): Promise<void> {
  const { loadGgufModel } = await import("../src/engine/load.ts");
  using m = await loadGgufModel(arg("model", ""), {});
  const r = await timeGreedy(m.model, promptIds(Number(arg("prompt", "512"))), Number(arg("gen", "128")));
  console.log(JSON.stringify({ ...r, kernels: `${m.backend.device}/${m.backend.dtype}/${m.backend.kernels}` }));
}

async function main(): Promise<void> {
  if (has("worker")) return worker();
  const { deviceFacts, planBackend } = await import("../src/mlx/backend.ts");
  const plan = planBackend(deviceFacts());
  if (plan.device === "cpu" && !has("allow-cpu")) {
    console.error(`bench/gpu.ts: no GPU here (${plan.reason}); install a GPU build (bun scripts/install-mlx.ts on a CUDA machine) or pass --allow-cpu for a dry run`);
    process.exit(2);
  }
  const llamaGpu = plan.device === "cpu" ? "cpu" : plan.device === "metal" ? "metal" : "cuda";
  const llamaDir = arg("llama-dir", join(ROOT, ".cache", "llama-ref"));
  if (!existsSync(join(llamaDir, "node_modules", "node-llama-cpp"))) {
    console.error(`bench/gpu.ts: node-llama-cpp not found under ${llamaDir} (npm install --prefix ${llamaDir} node-llama-cpp@3.22.1)`);
    process.exit(2);
  }
  const llamaCmd = llamaGreedyCommand(llamaDir);
  const nPrompt = Number(arg("prompt", "512"));
  const nGen = Number(arg("gen", "128"));
  const rounds = Number(arg("rounds", "2"));
  const only = arg("only", "");
  const { smollm2Gguf } = await import("../test/support/smollm2.ts");
  const smol = await smollm2Gguf();
  const models: { name: string; gguf: () => Promise<string> }[] = [];
  if (only !== "7b") models.push({ name: "SmolLM2-135M-Instruct Q4_1", gguf: async () => smol });
  if (only !== "smollm2") {
    models.push({
      name: "7B-shaped random Q4_1",
      gguf: () => shapedGguf(smol, { file: "mistral7b-shaped.Q4_1.gguf", name: "mistral-7b-shaped-random", H: 4096, L: 32, NH: 32, KV: 8, FF: 14336, V: 49152, shareLayers: true }),
    });
  }
  const ids = promptIds(nPrompt).join(",");
  const best = (a: Result | undefined, b: Result): Result =>
    a === undefined ? b : { ...b, prefill_tps: Math.max(a.prefill_tps, b.prefill_tps), decode_tps: Math.max(a.decode_tps, b.decode_tps), peak_rss_mb: Math.max(a.peak_rss_mb, b.peak_rss_mb) };
  const rows: string[] = [];
  for (const m of models) {
    const gguf = await m.gguf();
    const ours = `mlxk (${plan.device})`;
    const ref = `llama.cpp (node-llama-cpp 3.22.1, ${llamaGpu}${llamaGpu === "cpu" ? "" : ", all layers"})`;
    const variants: [string, () => Result][] = [
      [ours, () => runJson([process.execPath, join(ROOT, "bench", "gpu.ts"), "--worker", "--model", gguf, "--prompt", String(nPrompt), "--gen", String(nGen)])],
      [ref, () => runJson(llamaCmd(gguf, ids, nGen, { gpu: llamaGpu }), llamaDir)],
    ];
    const results = new Map<string, Result>();
    for (let r = 0; r < rounds; r++) {
      for (const [name, fn] of r % 2 === 0 ? variants : [...variants].reverse()) {
        const res = fn();
        console.error(`${m.name} / ${name} / round ${r + 1}: ${JSON.stringify(res)}`);
        results.set(name, best(results.get(name), res));
      }
    }
    const a = results.get(ours)!;
    const b = results.get(ref)!;
    rows.push(
      `| ${m.name} | ${a.prefill_tps.toFixed(1)} | ${b.prefill_tps.toFixed(1)} | **${(a.prefill_tps / b.prefill_tps).toFixed(2)}×** | ${a.decode_tps.toFixed(1)} | ${b.decode_tps.toFixed(1)} | **${(a.decode_tps / b.decode_tps).toFixed(2)}×** | ${a.kernels} |`,
    );
  }
  console.log(
    [
      `Prompt ${nPrompt} tokens, ${nGen} generated (greedy), best of ${rounds} interleaved rounds; mlxk profile: ${plan.device}, ${plan.dtype}, ${plan.kernels} ops.`,
      "",
      "| model | mlxk prefill tok/s | llama.cpp prefill tok/s | prefill ratio | mlxk decode tok/s | llama.cpp decode tok/s | decode ratio | mlxk profile |",
      "|---|---|---|---|---|---|---|---|",
      ...rows,
    ].join("\n"),
  );
}

await main();

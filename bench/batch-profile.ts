/**
 * Where a batched decode step's time goes (issue #13): DecodeBatch.launch (building the graph in TypeScript,
 * then asyncEval, which on the CPU returns only when the step is nearly computed) and collect (the rest and the
 * read-back), for rows greedy on the device, greedy with the server's default repetition penalty (1.1 over 20
 * tokens) on the device, or the same through the host sampler; batches of 1..8 rows of about the same prompt
 * length. Synchronous steps (no pipelining), so the parts add up. Also the process's CPU time per step (all
 * threads: what a step costs whatever else runs on the machine) and, with MLXK_KERNEL_PROFILE=1, the
 * quantized-matmul kernel's wall time.
 *
 *   MLXK_KERNEL_PROFILE=1 bun bench/batch-profile.ts [--model path.gguf] [--batch 1,8] [--prompt 40] [--steps 24]
 */
import * as mx from "../src/mlx/index.ts";
import { loadGgufModel } from "../src/engine/load.ts";
import { DecodeBatch, Prefill, type RowPolicy } from "../src/engine/batch.ts";
import { kernelInfo, qmmProfile } from "../src/mlx/kernels.ts";
import { DEFAULT_SAMPLING, Rng, sampleToken } from "../src/generate/sample.ts";
import { promptIds } from "./generate.ts";
import { smollm2Gguf } from "../test/support/smollm2.ts";

const arg = (n: string, f: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : f;
};
const steps = Number(arg("steps", "24"));
const P = Number(arg("prompt", "40"));
using m = await loadGgufModel(arg("model", "") || (await smollm2Gguf()), { dtype: "float32" });
const penalized = { ...DEFAULT_SAMPLING, temperature: 0 };

function policy(kind: string): RowPolicy {
  if (kind === "greedy") return {};
  if (kind === "penalty") return { penalty: { value: penalized.repetitionPenalty, window: penalized.repetitionContextSize } };
  const rng = new Rng(1);
  return { sampler: (logits, history) => sampleToken(logits, penalized, rng, { history }).token };
}

function profile(B: number, kind: string): Record<string, number | string> {
  using batch = new DecodeBatch(m.model);
  const add = Array.from({ length: B }, (_, i) => {
    const prompt = promptIds(P + i).slice(i);
    const pre = new Prefill({ prompt, cache: m.model.makeCache(), cached: 0, policy: policy(kind) }, m.model);
    const first = pre.chunk()!;
    return { cache: pre.row.cache, policy: pre.row.policy, history: pre.history, first: first.token };
  });
  batch.rebuild([], add);
  let last = add.map((a) => a.first);
  let build = 0, wait = 0;
  let q0 = qmmProfile();
  let c0 = process.cpuUsage();
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    const p = batch.launch(last);
    const t1 = performance.now();
    const out = batch.collect(p);
    const t2 = performance.now();
    last = out.map((o) => (o instanceof Error ? 0 : o.token));
    if (i === 3) {
      q0 = qmmProfile();
      c0 = process.cpuUsage();
    }
    if (i >= 4) {
      build += t1 - t0;
      wait += t2 - t1;
    }
  }
  const n = steps - 4;
  const q1 = qmmProfile();
  const cpu = process.cpuUsage(c0);
  return {
    B,
    rows: kind,
    launch_ms: +(build / n).toFixed(2),
    collect_ms: +(wait / n).toFixed(2),
    step_ms: +((build + wait) / n).toFixed(2),
    ms_per_row: +((build + wait) / n / B).toFixed(2),
    cpu_ms_per_row: +((cpu.user + cpu.system) / 1000 / n / B).toFixed(2),
    ...(q1.calls > q0.calls ? { qmm_ms: +((q1.ms - q0.ms) / n).toFixed(2) } : {}),
  };
}

const k = kernelInfo();
console.log(`kernels ${k.isa}/${k.threads}t, prompt ${P}+ tokens, ${steps - 4} steps measured`);
profile(2, "greedy"); // warm-up
for (const B of arg("batch", "1,8").split(",").map(Number)) {
  for (const kind of ["greedy", "penalty", "host-penalty"]) console.log(JSON.stringify(profile(B, kind)));
}

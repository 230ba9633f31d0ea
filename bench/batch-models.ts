/**
 * Continuous batching at the engine for models the server bench cannot drive (no tokenizer: the bench/hybrid.ts
 * Qwen3.5-shaped model) or any model dir / GGUF: aggregate greedy tok/s of N requests decoded together through the
 * scheduler (src/engine/scheduler.ts, what `--parallel N` runs) against the same requests one at a time through
 * the solo token loop (`--parallel 1`), and against one request alone, all in this run, rounds interleaved,
 * medians. Every batched row's tokens are checked against its solo run (a mismatch aborts the bench).
 * Usage: bun bench/batch-models.ts --model DIR|GGUF [--clients 8] [--prompt 32] [--tokens 32] [--rounds 3]
 */
import { loadGgufModel, loadModelDir } from "../src/engine/load.ts";
import { batchRefusal, MlxBatcher } from "../src/engine/batch.ts";
import { tokenLoop } from "../src/engine/generate.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import { promptIds } from "./generate.ts";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const spec = arg("model", "");
const N = Number(arg("clients", "8"));
const P = Number(arg("prompt", "32"));
const T = Number(arg("tokens", "32"));
const ROUNDS = Number(arg("rounds", "3"));

using m = spec.endsWith(".gguf") ? await loadGgufModel(spec) : await loadModelDir(spec, { dtype: "float32" });
const refusal = batchRefusal(m.model, m.modelType);
if (refusal) throw new Error(`cannot batch: ${refusal}`);
const vocab = Number((m.config as { vocab_size?: number }).vocab_size ?? 32000);
// N different prompts (each its own answer), same length
const prompts = Array.from({ length: N }, (_, i) => promptIds(P + i).slice(i).map((t) => t % vocab));

function solo(prompt: number[]): number[] {
  return [...tokenLoop({ model: m.model, prompt, maxTokens: T })].map((s) => s.token);
}

async function batched(): Promise<number[][]> {
  using batcher = new MlxBatcher(m.model);
  using sched = new Scheduler(batcher, { parallel: N });
  const rows = prompts.map((prompt) => sched.join(batcher.newcomer({ prompt, cache: m.model.makeCache(), cached: 0, policy: {} }), { maxTokens: T }));
  const out = await Promise.all(
    rows.map(async (s) => {
      const out: number[] = [];
      for (let r = await s.next(); !r.done; r = await s.next()) out.push(r.value.token);
      return out;
    }),
  );
  // the rows leave at the loop's next round
  await sched.idle();
  return out;
}

const want = prompts.map(solo); // also warms up
const tps: Record<"one" | "serial" | "batched", number[]> = { one: [], serial: [], batched: [] };
for (let r = 0; r < ROUNDS; r++) {
  let t0 = performance.now();
  solo(prompts[0]!);
  tps.one.push((T * 1000) / (performance.now() - t0));
  t0 = performance.now();
  for (const p of prompts) solo(p);
  tps.serial.push((N * T * 1000) / (performance.now() - t0));
  t0 = performance.now();
  const got = await batched();
  tps.batched.push((N * T * 1000) / (performance.now() - t0));
  got.forEach((g, i) => {
    if (g.join() !== want[i]!.join()) throw new Error(`row ${i}: batched tokens differ from its solo run`);
  });
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const one = med(tps.one);
console.log(`model: ${spec} (${m.modelType}), ${N} requests, prompt ${P}+ tokens, ${T} greedy tokens each, ${ROUNDS} rounds (median), batched tokens = solo tokens\n`);
console.log("| run | aggregate tok/s | vs 1 request alone |");
console.log("|---|---|---|");
console.log(`| 1 request alone | ${one.toFixed(1)} | 1.00× |`);
console.log(`| ${N} requests one at a time (--parallel 1) | ${med(tps.serial).toFixed(1)} | ${(med(tps.serial) / one).toFixed(2)}× |`);
console.log(`| ${N} requests batched (--parallel ${N}) | ${med(tps.batched).toFixed(1)} | **${(med(tps.batched) / one).toFixed(2)}×** |`);

/**
 * What a long prompt costs in memory: for each round a fresh process prefills `--prompt` tokens (chunks of
 * PREFILL_STEP) twice and reports, per prefill, the wall time, MLX's peak memory above what was active before
 * it (the KV cache included) and the minor page faults (fresh memory the kernel had to zero). The first prefill
 * of a process is the one a user waits for; the second reuses memory the first left in the allocator.
 *
 *   bun bench/prefill-memory.ts [--model path.gguf] [--prompt 1024] [--rounds 3]
 */
import { smollm2Gguf } from "../test/support/smollm2.ts";
import { promptIds, runJson } from "./generate.ts";

interface Prefill {
  ms: number;
  peakMB: number;
  faults: number;
}

const arg = (n: string, f: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : f;
};

if (process.argv.includes("--worker")) {
  const mx = await import("../src/mlx/index.ts");
  const { loadGgufModel } = await import("../src/engine/load.ts");
  const { prefill } = await import("../src/engine/generate.ts");
  using m = await loadGgufModel(arg("model", ""), { dtype: "float32" });
  const ids = promptIds(Number(arg("prompt", "1024")));
  const out: Prefill[] = [];
  for (let r = 0; r < 2; r++) {
    const cache = m.model.makeCache();
    const a0 = mx.memory.active();
    mx.memory.resetPeak();
    const u0 = process.resourceUsage();
    const t0 = performance.now();
    const logits = prefill(m.model, cache, ids);
    mx.eval([logits]); // the last chunk is lazy until read
    logits.dispose();
    const ms = performance.now() - t0;
    out.push({ ms, peakMB: (mx.memory.peak() - a0) / 1e6, faults: process.resourceUsage().minorPageFault - u0.minorPageFault });
    for (const c of cache) c[Symbol.dispose]();
  }
  console.log(JSON.stringify({ prefills: out }));
} else {
  const model = arg("model", "") || (await smollm2Gguf());
  const prompt = arg("prompt", "1024");
  console.log(`${model}, ${prompt}-token prompt`);
  console.log("| round | first prefill ms | peak MB | page faults | second prefill ms | peak MB | page faults |\n|---|---|---|---|---|---|---|");
  for (let r = 0; r < Number(arg("rounds", "3")); r++) {
    const [a, b] = runJson<{ prefills: Prefill[] }>([process.execPath, import.meta.path, "--worker", "--model", model, "--prompt", prompt]).prefills;
    const f = (x: Prefill) => `${x.ms.toFixed(0)} | ${x.peakMB.toFixed(0)} | ${x.faults}`;
    console.log(`| ${r + 1} | ${f(a!)} | ${f(b!)} |`);
  }
}

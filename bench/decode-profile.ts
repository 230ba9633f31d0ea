/**
 * Where a decode step's time goes (issue #17 item 1): building the graph in TypeScript (FFI calls), MLX's
 * evaluation of it (our kernels + MLX's scheduling), and reading the token back. Greedy, one token per step,
 * synchronous (no pipelining), so the parts add up; prints ms per token for each part, and with
 * MLXK_KERNEL_PROFILE=1 how much of the evaluation our quantized-matmul kernel took (calls and GMAC/s).
 *
 *   MLXK_KERNEL_PROFILE=1 bun bench/decode-profile.ts [--model path.gguf] [--prompt 658] [--steps 64] [--ab]
 *
 * --ab: the fused decoder block on and off in alternate runs of 4 steps of the one process (same load, cache
 * lengths within a few tokens; alternating single steps showed artifacts in wall time under load), and the
 * medians of each side's step (build + eval + read) and their ratio; also the process's CPU time per step
 * (user + system, all threads), which other processes' load inflates less than wall time (with
 * MLXK_THREADS=1 no pool helper spins, so it is the step's work).
 * --ab-moe: the same alternation with the fused decode MoE (mlx/moe.ts) on and off, the rest fused on both sides.
 * --ab-kq: the same alternation with the AVX-512 K-quant decode tiles instead (f32 and bf16 sides;
 * kquantDecode, MLXK_KQ_DECODE), for GGUF K-quant models on a CPU that has both.
 */
import * as mx from "../src/mlx/index.ts";
import { loadGgufModel } from "../src/engine/load.ts";
import { prefill } from "../src/engine/generate.ts";
import { kernelInfo, qmmProfile } from "../src/mlx/kernels.ts";
import { setFusedBlocks } from "../src/mlx/block.ts";
import { kquantDecode } from "../src/mlx/kquant.ts";
import { setFusedMoe } from "../src/mlx/moe.ts";
import { promptIds } from "./generate.ts";
import { smollm2Gguf } from "../test/support/smollm2.ts";

const arg = (n: string, f: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : f;
};
const steps = Number(arg("steps", "64"));
const abKq = process.argv.includes("--ab-kq");
const abMoe = process.argv.includes("--ab-moe");
const ab = process.argv.includes("--ab") || abKq || abMoe;
const sides: [number[], number[]] = [[], []]; // --ab: step ms with the fused block on, off
const cpu: [number[], number[]] = [[], []]; //   and CPU ms
using m = await loadGgufModel(arg("model", "") || (await smollm2Gguf()), { dtype: "float32" });
const cache = m.model.makeCache();
let logits = prefill(m.model, cache, promptIds(Number(arg("prompt", "658"))));
let tok = mx.scope(() => mx.argmax(logits, -1));
mx.eval([tok]);
logits.dispose();
let build = 0, run = 0, read = 0;
let q0 = qmmProfile();
for (let i = 0; i < steps; i++) {
  const side = (i >> 2) % 2;
  if (abKq) kquantDecode(side === 0 ? "f32" : "bf16");
  else if (abMoe) setFusedMoe(side === 0 ? null : false);
  else if (ab) setFusedBlocks(side === 0);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const id = tok.item();
  tok.dispose();
  const t1 = performance.now();
  const next = mx.scope(() => {
    const h = m.model.hidden(mx.array(Int32Array.from([id]), { shape: [1, 1], dtype: mx.Dtype.int32 }), cache);
    return mx.argmax(mx.reshape(m.model.logits(h), [-1]), -1);
  });
  const t2 = performance.now();
  mx.eval([next]);
  const t3 = performance.now();
  tok = next;
  if (i === 3) q0 = qmmProfile();
  if (i >= 4) {
    read += t1 - t0;
    build += t2 - t1;
    run += t3 - t2;
    if (ab) sides[side]!.push(t3 - t0);
    if (ab) cpu[side]!.push(((u) => (u.user + u.system) / 1000)(process.cpuUsage(c0)));
  }
}
setFusedBlocks(null);
setFusedMoe(null);
if (abKq) kquantDecode("auto");
const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1]!;
const n = steps - 4;
const q1 = qmmProfile();
const qmm = { calls: (q1.calls - q0.calls) / n, ms: (q1.ms - q0.ms) / n, gmacs: (q1.macs - q0.macs) / (q1.ms - q0.ms) / 1e6 };
const k = kernelInfo();
console.log(JSON.stringify({
  kernels: `${k.isa}${k.int8 ? "+int8" : ""}/${k.threads}t`,
  build_ms: build / n,
  eval_ms: run / n,
  read_ms: read / n,
  total_ms: (build + run + read) / n,
  ...(ab ? Object.fromEntries(((on, off) => [
    [`${on}_ms`, median(sides[0])], [`${off}_ms`, median(sides[1])], [`${off}_over_${on}`, median(sides[1]) / median(sides[0])],
    [`${on}_cpu_ms`, median(cpu[0])], [`${off}_cpu_ms`, median(cpu[1])], [`cpu_${off}_over_${on}`, median(cpu[1]) / median(cpu[0])],
  ])(abKq ? "f32" : abMoe ? "moe_fused" : "fused", abKq ? "bf16" : abMoe ? "moe_graph" : "unfused")) : {}),
  ...(q1.calls > 0 ? { qmm_calls: qmm.calls, qmm_ms: qmm.ms, qmm_gmac_s: qmm.gmacs, eval_other_ms: run / n - qmm.ms } : {}),
}));
for (const c of cache) c[Symbol.dispose]();
tok.dispose();

/**
 * The decode kernel for batches (issue #13): time of one quantized matmul of B independent rows [B, 1, K]
 * against one row [1, 1, K] at SmolLM2-135M's shapes (affine 4-bit gs 32 as its Q4_1 GGUF), interleaved,
 * median over rounds; "per-row speed-up" = B × t(1 row) / t(B rows) (B would be perfect weight sharing).
 * Usage: bun bench/qmm-rows.ts [--batch 2,4,8] [--rounds 30]
 */
import * as mx from "../src/mlx/index.ts";
import { fastQuantizedMatmul, kernelInfo } from "../src/mlx/kernels.ts";

const arg = (n: string, f: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : f;
};
const rounds = Number(arg("rounds", "30"));
const batches = arg("batch", "2,4,8").split(",").map(Number);
const SHAPES: [number, number][] = [
  [576, 1536],
  [1536, 576],
  [576, 49152],
];
const o = { groupSize: 32, bits: 4, mode: "affine" as const, transpose: true };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function time(x: mx.Array, q: { wq: mx.Array; scales: mx.Array; biases: mx.Array | null }, reps: number): number {
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) mx.scope(() => mx.eval([fastQuantizedMatmul(x, q.wq, q.scales, q.biases, o)]));
  return (performance.now() - t0) / reps;
}

const k = kernelInfo();
console.log(`kernels ${k.isa}/${k.threads}t, ${rounds} rounds\n`);
console.log("| K → N | B | t(1 row) µs | t(B rows) µs | per-row speed-up |");
console.log("|---|---|---|---|---|");
for (const [K, N] of SHAPES) {
  const q = mx.quantize(mx.random.normal({ shape: [N, K], scale: 0.2, key: mx.random.key(1) }), o);
  const reps = Math.max(2, Math.round(2e8 / (K * N)));
  for (const B of batches) {
    const x1 = mx.random.normal({ shape: [1, 1, K], key: mx.random.key(2) });
    const xb = mx.random.normal({ shape: [B, 1, K], key: mx.random.key(3) });
    mx.eval([x1, xb]);
    time(x1, q, 2);
    time(xb, q, 2);
    const one: number[] = [];
    const many: number[] = [];
    for (let r = 0; r < rounds; r++) {
      one.push(time(x1, q, reps));
      many.push(time(xb, q, reps));
    }
    const t1 = median(one), tb = median(many);
    console.log(`| ${K} → ${N} | ${B} | ${(t1 * 1000).toFixed(0)} | ${(tb * 1000).toFixed(0)} | ${((B * t1) / tb).toFixed(2)}× |`);
  }
}

/**
 * The quantized-matmul kernel at SmolLM2-135M's shapes (affine 4-bit gs 32, as its Q4_1 GGUF): decode of one row
 * [1, 1, K], a decode batch of B independent rows [B, 1, K] and a prefill [1, L, K]. Reports the process's CPU
 * time per call (median of 9 runs), which other load on the machine inflates far less than wall time; run it with
 * MLXK_THREADS=1 so no helper thread spins. Compare two builds by running it in each checkout, alternating.
 * Usage: MLXK_THREADS=1 bun bench/qmm-rows.ts [--shapes 1x576x1536,8x576x1536,45x1536x576]   (M x K x N; M ≤ 8 = decode rows)
 * A shape may name its group size and bits: 8x576x49152:32:8 (SmolLM2's Q8_0 head), 8x576x1536:64 (MLX's default gs).
 */
import * as mx from "../src/mlx/index.ts";
import { fastQuantizedMatmul, kernelInfo } from "../src/mlx/kernels.ts";

const arg = (n: string, f: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : f;
};
const shapes = arg("shapes", "1x576x1536,1x576x49152,8x576x1536,8x1536x576,8x576x49152,45x576x1536,45x1536x576")
  .split(",")
  .map((s) => {
    const [dims = "", gs = "32", bits = "4"] = s.split(":");
    return [...dims.split("x").map(Number), Number(gs), Number(bits)] as [number, number, number, number, number];
  });
const k = kernelInfo();
const out: string[] = [`${k.isa}/${k.threads}t`];
for (const [M, K, N, groupSize, bits] of shapes) {
  const o = { groupSize, bits, mode: "affine" as const, transpose: true };
  const q = mx.quantize(mx.random.normal({ shape: [N, K], scale: 0.2, key: mx.random.key(1) }), o);
  const x = mx.random.normal({ shape: M <= 8 ? [M, 1, K] : [1, M, K], key: mx.random.key(2) });
  mx.eval([x]);
  const reps = Math.max(3, Math.round(3e8 / (M * K * N)));
  const us: number[] = [];
  for (let r = 0; r < 9; r++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < reps; i++) mx.scope(() => mx.eval([fastQuantizedMatmul(x, q.wq, q.scales, q.biases, o)]));
    const c = process.cpuUsage(c0);
    us.push((c.user + c.system) / reps);
  }
  us.sort((a, b) => a - b);
  const tag = groupSize === 32 && bits === 4 ? "" : ` (gs${groupSize} ${bits}-bit)`;
  out.push(`${M}x${K}→${N}${tag}: ${us[4]!.toFixed(0)} µs`);
}
console.log(out.join("  "));

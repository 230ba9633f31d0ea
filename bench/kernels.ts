/**
 * Op-level benchmark of our CPU quantized-matmul kernel vs MLX's own quantized_matmul, in one process:
 * each round times both ops back to back (interleaved, so machine noise hits both alike); the speed-up
 * reported is the median over rounds of (MLX time / kernel time).
 * Usage: bun bench/kernels.ts [--rounds 15] [--formats affine4,affine8,mxfp4] [--json]
 */
import * as mx from "../src/mlx/index.ts";
import { fastQuantizedMatmul, kernelInfo, setKernelsEnabled } from "../src/mlx/kernels.ts";
import type { QuantMode } from "../src/mlx/quant.ts";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const rounds = Number(arg("rounds", "15"));
const FORMATS: Record<string, { mode: QuantMode; bits: number; groupSize: number }> = {
  affine4: { mode: "affine", bits: 4, groupSize: 64 },
  affine8: { mode: "affine", bits: 8, groupSize: 64 },
  mxfp4: { mode: "mxfp4", bits: 4, groupSize: 32 },
};
const formats = arg("formats", "affine4,affine8,mxfp4").split(",");
const SHAPES: [number, number, number][] = [
  [1, 576, 1536],
  [1, 576, 49152],
  [512, 576, 1536],
  [1, 896, 4864],
];

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function timeOnce(f: () => mx.Array): number {
  return mx.scope(() => {
    const t0 = performance.now();
    mx.eval(f());
    return performance.now() - t0;
  });
}

interface Row {
  format: string;
  shape: string;
  mlxMs: number;
  kernelMs: number;
  speedup: number;
  kernelGmacs: number;
}

const info = kernelInfo();
if (info.level === "none") {
  console.error("kernels unavailable on this machine/shim: nothing to compare");
  process.exit(1);
}
setKernelsEnabled(true);
const rows: Row[] = [];
for (const fname of formats) {
  const q = FORMATS[fname];
  if (!q) throw new Error(`unknown format ${fname}`);
  for (const [M, K, N] of SHAPES) {
    mx.scope(() => {
      const x = mx.random.normal({ shape: [M, K], key: mx.random.key(1) });
      const w = mx.random.normal({ shape: [N, K], scale: 0.05, key: mx.random.key(2) });
      const qw = mx.quantize(w, q);
      mx.eval([x, qw.wq, qw.scales, ...(qw.biases ? [qw.biases] : [])]);
      const ref = () => mx.quantizedMatmul(x, qw.wq, qw.scales, qw.biases, q);
      const fast = () => fastQuantizedMatmul(x, qw.wq, qw.scales, qw.biases, q);
      timeOnce(ref);
      timeOnce(fast);
      // Big prefill shapes under MLX take ~0.5 s each: fewer rounds there keep the bench short.
      const n = M * K * N > 1e8 ? Math.max(3, Math.floor(rounds / 3)) : rounds;
      const tr: number[] = [];
      const tk: number[] = [];
      const ratio: number[] = [];
      for (let i = 0; i < n; i++) {
        const a = timeOnce(ref);
        const b = timeOnce(fast);
        tr.push(a);
        tk.push(b);
        ratio.push(a / b);
      }
      const kernelMs = median(tk);
      rows.push({
        format: fname,
        shape: `${M}×${K}×${N}`,
        mlxMs: median(tr),
        kernelMs,
        speedup: median(ratio),
        kernelGmacs: (M * K * N) / (kernelMs * 1e6),
      });
    });
  }
}

if (process.argv.includes("--json")) {
  console.log(JSON.stringify({ kernels: info, rows }, null, 2));
} else {
  console.log(`kernels: ${info.level}, ${info.threads} threads; ${rounds} interleaved rounds, medians`);
  console.log("| format | M×K×N | MLX ms | kernel ms | speed-up | kernel GMAC/s |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.format} | ${r.shape} | ${r.mlxMs.toFixed(3)} | ${r.kernelMs.toFixed(3)} | ${r.speedup.toFixed(1)}× | ${r.kernelGmacs.toFixed(1)} |`);
  }
}

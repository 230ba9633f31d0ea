/**
 * Quantized prefill at op level: the dequantized-panel GEMM (mlx-c/src/kernels/qgemm.cpp) against the per-row
 * kernels it replaces (qmm*.cpp, kquant*.cpp), same process, interleaved per round (order reversed each round),
 * on the shapes of bench/llama.ts's rows, for a range of row counts M: decides qgemm's default MLXK_QGEMM_ROWS.
 * Reports the median ms per call of each path and the median of the per-round ratios old / new (> 1: qgemm wins).
 *
 * With --int8 (K-quant shapes only): the opt-in int8 paths, "old" = the q8_K dot tiles (setQgemmRows(0)), "new" =
 * the int8 VNNI GEMM (kqgemm8.cpp, setQgemmRows(1)), and a third column, the f32 panel GEMM (int8 off), with its
 * ratio f32 / int8 GEMM: decides kqgemm8's threshold and shows its gain over the default path.
 *
 * Usage: bun bench/qgemm.ts [--rounds 5] [--threads 1] (pinned kernel threads; 0 = the policy)
 *        [--rows 4,8,12,16,24,32,64,256] [--only smol,qwen,q4k]  (shape labels containing one of these) [--int8]
 */
import * as mx from "../src/mlx/index.ts";
import { fastQuantizedMatmul, kernelInfo, pinKernelThreads, setQgemmRows } from "../src/mlx/kernels.ts";
import { KQUANT_BLOCK_BYTES, type KQuantMode, kquantInt8, kquantMatmul } from "../src/mlx/kquant.ts";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const rounds = Number(arg("rounds", "5"));
pinKernelThreads(Number(arg("threads", "1")));
const rowsList = arg("rows", "4,8,12,16,24,32,64,256").split(",").map(Number);
const only = arg("only", "").split(",").filter(Boolean);
const int8 = process.argv.includes("--int8");

// [label, K, N, format]: affine gs 32 (a Q4_1 GGUF loads as that) or a K-quant type
const SHAPES: [string, number, number, "affine4" | "affine8" | KQuantMode][] = [
  ["smol gate/up", 576, 1536, "affine4"],
  ["smol down", 1536, 576, "affine4"],
  ["qwen gate/up", 1536, 8960, "affine4"],
  ["qwen down", 8960, 1536, "affine4"],
  ["qwen q8 q_proj", 1536, 1536, "affine8"],
  ["q4k gate", 1024, 3072, "q4_k"],
  ["q6k down", 3072, 1024, "q6_k"],
];

let seed = 7;
const rnd = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;

function kblocks(mode: KQuantMode, count: number): Uint8Array {
  const bb = KQUANT_BLOCK_BYTES[mode];
  const b = new Uint8Array(count * bb);
  for (let i = 0; i < b.length; i++) b[i] = (rnd() * 256) | 0;
  for (let i = 0; i < count; i++)
    for (const o of mode === "q6_k" ? [208] : [0, 2]) b[i * bb + o + 1] = (b[i * bb + o + 1]! & 0x83) | 0x1c; // small finite fp16
  return b;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const k = kernelInfo();
console.log(`isa ${k.isa}, kernel threads ${arg("threads", "1")}, load ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
if (int8) {
  console.log("| shape | K×N | M | q8_K tiles ms | int8 GEMM ms | tiles / GEMM | f32 qgemm ms | f32 / int8 GEMM |");
  console.log("|---|---|---|---|---|---|---|---|");
} else {
  console.log("| shape | K×N | M | per-row kernels ms | qgemm ms | per-row / qgemm |");
  console.log("|---|---|---|---|---|---|");
}
type P = "old" | "new" | "f32";
const paths: P[] = int8 ? ["old", "new", "f32"] : ["old", "new"];
const shapes = SHAPES.filter(([l, , , f]) => (only.length === 0 || only.some((w) => l.includes(w))) && (!int8 || !f.startsWith("affine")));
for (const [label, K, N, fmt] of shapes) {
  mx.scope(() => {
    let op: (x: mx.Array) => mx.Array;
    if (fmt === "affine4" || fmt === "affine8") {
      const bits = fmt === "affine4" ? 4 : 8;
      const o = { groupSize: 32, bits, mode: "affine" as const, transpose: true };
      const q = mx.quantize(mx.random.normal({ shape: [N, K], scale: 0.2, key: mx.random.key(1) }), o);
      mx.eval([q.wq, q.scales, q.biases!]);
      op = (x) => fastQuantizedMatmul(x, q.wq, q.scales, q.biases, o);
    } else {
      const w = mx.fromBytes(kblocks(fmt, (N * K) / 256), [N, (K / 256) * KQUANT_BLOCK_BYTES[fmt]], mx.Dtype.uint8);
      mx.eval([w]);
      op = (x) => kquantMatmul(x, w, fmt);
    }
    for (const M of rowsList) {
      const x = mx.random.normal({ shape: [1, M, K], key: mx.random.key(2) });
      mx.eval([x]);
      const reps = Math.max(2, Math.round(4e7 / (M * K * N)));
      const t: Record<P, number[]> = { old: [], new: [], f32: [] };
      const ratios: number[] = [];
      const f32r: number[] = [];
      for (let r = -1; r < rounds; r++) {
        const one: Record<string, number> = {};
        for (const p of r % 2 === 0 ? paths : [...paths].reverse()) {
          setQgemmRows(p === "old" ? 0 : 1);
          kquantInt8(int8 && p !== "f32");
          const t0 = performance.now();
          for (let i = 0; i < reps; i++) mx.scope(() => mx.eval([op(x)]));
          one[p] = (performance.now() - t0) / reps;
        }
        if (r < 0) continue; // warm-up round
        t.old.push(one.old!);
        if (int8) t.f32.push(one.f32!);
        t.new.push(one.new!);
        ratios.push(one.old! / one.new!);
        if (int8) f32r.push(one.f32! / one.new!);
      }
      const tail = int8 ? ` ${median(t.f32.length ? t.f32 : [0]).toFixed(3)} | ${median(f32r).toFixed(2)}× |` : "";
      console.log(`| ${label} | ${K}×${N} | ${M} | ${median(t.old).toFixed(3)} | ${median(t.new).toFixed(3)} | ${median(ratios).toFixed(2)}× |${tail}`);
    }
  });
}
setQgemmRows(null);
kquantInt8(false);

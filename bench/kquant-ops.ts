/**
 * Op-level K-quant matmul (mlx-c/src/kernels/kquant*.cpp) on the shapes of bench/llama.ts's Q4_K_M rows, every
 * path in one process, interleaved per round (machine noise hits all alike): the AVX2 f32 path (the path before
 * the AVX-512 tiles, kept for CPUs without AVX-512), the AVX-512 f32 paths (decode rows: the bf16-piece tiles and
 * the f32 tiles, MLXK_KQ_DECODE; prefill rows run the same panels under both), and the opt-in int8 activations
 * (MLXK_INT8_ACT=1) on AVX2 and on AVX-512 VNNI. Reports the median ms per call, each path's speed-up over AVX2
 * f32 (median of per-round ratios), and the relative RMS error against the AVX2 f32 output.
 * Weights are random valid blocks (timing does not depend on the values); MoE rows go through the gather kernel
 * (64 experts, top 8, as the Qwen3-30B-A3B-like row).
 *
 * Usage: bun bench/kquant-ops.ts [--rounds 7] [--threads 1] (MLXK_THREADS-equivalent pin; 0 = the policy)
 *        [--only head,prefill]  (rows whose label contains one of these words)
 */
import * as mx from "../src/mlx/index.ts";
import { forceIsa, kernelInfo, pinKernelThreads } from "../src/mlx/kernels.ts";
import { KQUANT_BLOCK_BYTES, type KQuantMode, kernelGatherQmm, kquantDecode, kquantInt8, kquantMatmul } from "../src/mlx/kquant.ts";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const rounds = Number(arg("rounds", "7"));
pinKernelThreads(Number(arg("threads", "1")));

// [label, M (tokens), K, N, type, experts (0 = dense)]
const SHAPES: [string, number, number, number, KQuantMode, number][] = [
  ["q_proj decode", 1, 1024, 2048, "q4_k", 0],
  ["gate decode", 1, 1024, 3072, "q4_k", 0],
  ["down decode", 1, 3072, 1024, "q6_k", 0],
  ["head decode", 1, 1024, 151936, "q6_k", 0],
  ["q5_k decode", 1, 1024, 3072, "q5_k", 0],
  ["gate decode 4 rows", 4, 1024, 3072, "q4_k", 0],
  ["gate prefill", 256, 1024, 3072, "q4_k", 0],
  ["down prefill", 256, 3072, 1024, "q6_k", 0],
  ["moe gate decode", 1, 1024, 512, "q4_k", 64],
  ["moe down decode", 1, 512, 1024, "q6_k", 64],
  ["moe gate prefill", 256, 1024, 512, "q4_k", 64],
];

const only = arg("only", "").split(",").filter(Boolean);

let seed = 5;
const rnd = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;

/** Random block bytes with small finite fp16 d/dmin. */
function blocks(mode: KQuantMode, count: number): Uint8Array {
  const bb = KQUANT_BLOCK_BYTES[mode];
  const b = new Uint8Array(count * bb);
  const u = new Uint32Array(b.buffer, 0, Math.floor(b.length / 4));
  for (let i = 0; i < u.length; i++) u[i] = (rnd() * 4294967296) >>> 0;
  for (let i = 0; i < count; i++)
    for (const o of mode === "q6_k" ? [208] : [0, 2]) b[i * bb + o + 1] = (b[i * bb + o + 1]! & 0x83) | 0x1c;
  return b;
}

const ALL_PATHS = ["avx2 f32", "avx512 bf16", "avx512 f32", "avx2 int8", "avx512 int8"] as const;
type Path = (typeof ALL_PATHS)[number];
const has512 = kernelInfo().level === "avx512";
// the two AVX-512 f32 decode tiles where the CPU has both (prefill rows run the same panels under either)
const runs = (m: "f32" | "bf16") => {
  kquantDecode(m);
  return kquantDecode() === m;
};
const hasBf16 = has512 && runs("bf16"), hasF32 = has512 && runs("f32");
kquantDecode("auto");
const PATHS = ALL_PATHS.filter((p) => (has512 || !p.startsWith("avx512")) && (p !== "avx512 bf16" || hasBf16) && (p !== "avx512 f32" || hasF32));

function setPath(p: Path): void {
  forceIsa(p.startsWith("avx512") ? "avx512" : "avx2");
  kquantInt8(p.endsWith("int8"));
  if (p === "avx512 bf16") kquantDecode("bf16");
  else if (p === "avx512 f32") kquantDecode("f32");
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const rows: string[] = [];
for (const [label, M, K, N, mode, E] of SHAPES.filter(([l]) => only.length === 0 || only.some((w) => l.includes(w)))) {
  mx.scope(() => {
    const rowBytes = (K / 256) * KQUANT_BLOCK_BYTES[mode];
    const w = mx.fromBytes(blocks(mode, (Math.max(E, 1) * N * K) / 256), E ? [E, N, rowBytes] : [N, rowBytes], mx.Dtype.uint8);
    const x = mx.random.normal({ shape: [M, K], key: mx.random.key(1) });
    const idx = E ? mx.array(Int32Array.from({ length: M * 8 }, () => Math.floor(rnd() * E)), { shape: [M, 8], dtype: mx.Dtype.int32 }) : null;
    mx.eval([w, x, ...(idx ? [idx] : [])]);
    const op = () => (idx ? kernelGatherQmm(x, w, null, null, idx, { groupSize: 256, bits: 4, mode })! : kquantMatmul(x, w, mode));
    const paths = PATHS;
    const t = new Map<Path, number[]>(paths.map((p) => [p, []]));
    const ref = new Map<Path, Float32Array>();
    const n = M * K * N * Math.max(1, E ? 8 : 1) > 2e8 ? Math.max(3, Math.floor(rounds / 2)) : rounds;
    for (let r = -1; r < n; r++) {
      for (const p of r % 2 === 0 ? paths : [...paths].reverse()) {
        setPath(p);
        mx.scope(() => {
          const t0 = performance.now();
          const y = op();
          mx.eval(y);
          const ms = performance.now() - t0;
          if (r < 0) ref.set(p, y.toFloat32Array());
          else t.get(p)!.push(ms);
        });
      }
    }
    const base = ref.get("avx2 f32")!;
    const err = (y: Float32Array) => {
      let e = 0;
      let s = 0;
      for (let i = 0; i < y.length; i++) {
        e += (y[i]! - base[i]!) ** 2;
        s += base[i]! ** 2;
      }
      return Math.sqrt(e / s);
    };
    const b = t.get("avx2 f32")!;
    const cells = paths.map((p) => {
      const ratio = median(t.get(p)!.map((v, i) => b[i]! / v));
      return `${median(t.get(p)!).toFixed(3)} (${ratio.toFixed(2)}×, ${(100 * err(ref.get(p)!)).toExponential(1)}%)`;
    });
    rows.push(`| ${label} | ${M}×${K}×${N}${E ? ` (${E} experts, top 8)` : ""} | ${mode} | ${cells.join(" | ")} |`);
    console.error(rows.at(-1));
  });
}
setPath("avx2 f32");
forceIsa(null);
kquantDecode("auto");
const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
console.log(
  [
    `K-quant op level, ${arg("threads", "1")} thread(s) pinned, median of ${rounds} interleaved rounds, load average ${load}.`,
    "Cells: ms per call (speed-up over AVX2 f32, relative RMS difference from AVX2 f32).",
    "",
    `| op | M×K×N | type | ${PATHS.join(" | ")} |`,
    `|---|---|---|${PATHS.map(() => "---").join("|")}|`,
    ...rows,
  ].join("\n"),
);

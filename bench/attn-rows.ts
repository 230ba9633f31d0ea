/**
 * The attention rows alone (fastScaledDotProductAttention, the loop the decoder block runs too) on model shapes,
 * AVX2 rows vs AVX-512 rows (attend.cpp) alternating in one process: only the attention kernel differs between
 * the two ISAs here. Median ms per call of each side and the ratio; run with MLXK_THREADS=1 for single-core work.
 *
 *   MLXK_THREADS=1 bun bench/attn-rows.ts [--reps 15]
 */
import * as mx from "../src/mlx/index.ts";
import { fastScaledDotProductAttention, forceIsa, kernelInfo } from "../src/mlx/kernels.ts";

const arg = (n: string, f: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : f;
};
const reps = Number(arg("reps", "15"));
const shapes = [
  { name: "qwen3-0.6b prefill 256", Hq: 16, Hkv: 8, D: 128, Lq: 256, Lk: 256 },
  { name: "smollm2 prefill 256", Hq: 9, Hkv: 3, D: 64, Lq: 256, Lk: 256 },
  { name: "qwen2.5-1.5b prefill 256", Hq: 12, Hkv: 2, D: 128, Lq: 256, Lk: 256 },
  { name: "qwen3-0.6b decode @1024", Hq: 16, Hkv: 8, D: 128, Lq: 1, Lk: 1024 },
  { name: "qwen2.5-1.5b decode @1024", Hq: 12, Hkv: 2, D: 128, Lq: 1, Lk: 1024 },
];
const load = async () => (await Bun.file("/proc/loadavg").text()).split(" ")[0];
console.log(`kernels ${kernelInfo().level}, ${kernelInfo().threads} thread(s), load ${await load()}`);
for (const s of shapes) {
  const key = mx.random.key(7);
  const [q, k, v] = mx.keep([[1, s.Hq, s.Lq, s.D], [1, s.Hkv, s.Lk, s.D], [1, s.Hkv, s.Lk, s.D]].map((sh) => mx.random.normal({ shape: sh, key })));
  const o = { scale: s.D ** -0.5, mask: s.Lq > 1 ? ("causal" as const) : null };
  const ms: [number[], number[]] = [[], []];
  const inner = s.Lq > 1 ? 1 : 20;
  for (let r = -1; r < reps; r++) {
    for (const side of r % 2 === 0 ? [0, 1] : [1, 0]) {
      forceIsa(side === 0 ? "avx2" : "avx512");
      const t0 = performance.now();
      for (let i = 0; i < inner; i++) mx.scope(() => mx.eval([fastScaledDotProductAttention(q!, k!, v!, o)]));
      if (r >= 0) ms[side]!.push((performance.now() - t0) / inner);
    }
  }
  forceIsa(null);
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  console.log(`${s.name}: avx2 ${med(ms[0]).toFixed(3)} ms, avx512 ${med(ms[1]).toFixed(3)} ms, ${(med(ms[0]) / med(ms[1])).toFixed(2)}x (load ${await load()})`);
  for (const a of [q, k, v]) a!.dispose();
}

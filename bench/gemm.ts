/**
 * Float32 x·wᵀ (a float Linear) on the embedders' shapes: our kernel unpacked (gemm512.cpp / gemm.cpp), the packed
 * kernel (gemm_packed.cpp, weight packed once beforehand), and torch's F.linear (CPU, 1 and 2 threads, the better
 * per shape) in the same run, rounds interleaved, each side its best. GFLOP/s wall and per CPU-second.
 *
 *   bun bench/gemm.ts [--rounds 2] [--shapes M,K,N;M,K,N]
 */
import { join } from "node:path";
import * as mx from "../src/mlx/index.ts";
import { fastLinear, packLinear } from "../src/mlx/kernels.ts";

const PY = "/work/main/.cache/py-ref/bin/python";
const arg = (k: string) => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : undefined);
const rounds = Number(arg("--rounds") ?? 2);
// BERT-base (768 wide, MLP 3072) and Qwen3-Embedding-0.6B (1024 wide, q 2048, MLP 3072) at ~20 / 300 / 1300 rows
const DEFAULT = [
  [20, 768, 768], [300, 768, 3072], [300, 3072, 768], [1300, 768, 768],
  [30, 1024, 2048], [400, 1024, 3072], [400, 3072, 1024], [1600, 1024, 1024],
];
const shapes = arg("--shapes")?.split(";").map((s) => s.split(",").map(Number)) ?? DEFAULT;
const load = async () => (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");

function time(f: () => mx.Array, flop: number): [number, number] {
  mx.eval(f()); // warm-up
  const reps = Math.max(1, Math.floor(0.5e9 / flop));
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) mx.scope(() => mx.eval(f()));
  const cu = process.cpuUsage(c0);
  return [(reps * flop) / ((performance.now() - t0) / 1000) / 1e9, (reps * flop) / ((cu.user + cu.system) / 1e6) / 1e9];
}

type Best = Map<string, [number, number]>;
const best = { ours: new Map(), packed: new Map(), torch: new Map() } as Record<string, Best>;
const keep = (m: Best, k: string, v: [number, number]) => {
  const o = m.get(k) ?? [0, 0];
  m.set(k, [Math.max(o[0], v[0]), Math.max(o[1], v[1])]);
};
console.log(`load average ${await load()}`);
for (let r = 0; r < rounds; r++) {
  for (const t of [1, 2]) {
    const p = Bun.spawn([PY, join(import.meta.dir, "gemm_ref.py"), String(t), ...shapes.map((s) => s.join(","))], { stdout: "pipe" });
    const res = JSON.parse((await new Response(p.stdout).text()).trim()) as Record<string, [number, number]>;
    for (const [k, v] of Object.entries(res)) keep(best.torch!, k, v);
  }
  for (const [M, K, N] of shapes) {
    const k = `${M},${K},${N}`;
    mx.scope(() => {
      const x = mx.random.normal({ shape: [M!, K!], key: mx.random.key(1) });
      const w = mx.random.normal({ shape: [N!, K!], key: mx.random.key(2) });
      const pk = packLinear(w)!;
      mx.eval([x, w, pk]);
      const flop = 2 * M! * K! * N!;
      keep(best.ours!, k, time(() => fastLinear(x, w), flop));
      keep(best.packed!, k, time(() => fastLinear(x, w, pk), flop));
    });
  }
}
console.log(`best of ${rounds} interleaved rounds; load average ${await load()}`);
console.log("M,K,N | ours unpacked GFLOP/s | packed | torch (best threads) | packed/torch | per CPU-s: unpacked, packed, torch, packed/torch");
for (const [M, K, N] of shapes) {
  const k = `${M},${K},${N}`;
  const [o, p, t] = [best.ours!.get(k)!, best.packed!.get(k)!, best.torch!.get(k)!];
  console.log(`${k.padEnd(15)} | ${o[0].toFixed(1)} | ${p[0].toFixed(1)} | ${t[0].toFixed(1)} | ${(p[0] / t[0]).toFixed(2)}× | ${o[1].toFixed(1)}, ${p[1].toFixed(1)}, ${t[1].toFixed(1)}, ${(p[1] / t[1]).toFixed(2)}×`);
}

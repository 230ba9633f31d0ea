/**
 * `convert --quantize 4` throughput (GB of source weights per second) against mlx_lm.convert on the same random
 * bf16 Qwen3 checkpoint (~230M parameters as transformers saves it), both as fresh processes, interleaved rounds in
 * one run; also checks both outputs hold the same tensors (names and bytes).
 *
 *   bun bench/convert.ts [--rounds 2]
 */
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";

const PY = "/work/main/.cache/py-ref/bin/python";
const ROOT = join(import.meta.dir, "..");
const DIR = join(ROOT, ".cache", "bench-convert");
const SRC = join(DIR, "qwen3-230m-bf16");
const rounds = process.argv.includes("--rounds") ? Number(process.argv[process.argv.indexOf("--rounds") + 1]) : 2;

async function run(cmd: string[]): Promise<{ out: string; ms: number }> {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if ((await p.exited) !== 0) throw new Error(`${cmd.join(" ")} failed:\n${err.slice(-2000)}`);
  return { out, ms: performance.now() - t0 };
}

if (!existsSync(join(SRC, "config.json"))) await run([PY, join(import.meta.dir, "convert_ref.py"), "make", SRC]);
const bytes = readdirSync(SRC).filter((f) => f.endsWith(".safetensors")).reduce((s, f) => s + statSync(join(SRC, f)).size, 0);
console.log(`source ${(bytes / 1e9).toFixed(3)} GB bf16; load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
const ours: number[] = [];
const ref: number[] = [];
for (let r = 0; r < rounds; r++) {
  const a = join(DIR, "out-mlxk");
  rmSync(a, { recursive: true, force: true });
  ours.push((await run([process.execPath, join(ROOT, "bin", "mlxk"), "convert", SRC, a, "--quantize", "4", "--json"])).ms / 1000);
  const b = join(DIR, "out-mlx-lm");
  ref.push((await run([PY, join(import.meta.dir, "convert_ref.py"), "convert", SRC, b, "4"])).ms / 1000);
}
const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const gbs = (s: number) => bytes / 1e9 / s;
console.log(`mlxk convert --quantize 4: ${ours.map((s) => s.toFixed(1)).join(", ")} s → ${gbs(med(ours)).toFixed(3)} GB/s (process wall time)`);
console.log(`mlx_lm.convert -q 4:        ${ref.map((s) => s.toFixed(1)).join(", ")} s → ${gbs(med(ref)).toFixed(3)} GB/s (process wall time)`);
console.log(`ratio ${(med(ref) / med(ours)).toFixed(2)}×`);
// same tensors? compare with the golden-style hasher on both outputs
const { loadSafetensors, scope } = await import("../src/mlx/index.ts");
const hashes = (d: string) => {
  const out: Record<string, string> = {};
  scope(() => {
    for (const f of readdirSync(d).filter((f) => f.endsWith(".safetensors"))) {
      for (const [k, a] of loadSafetensors(join(d, f)).weights) out[k] = new Bun.CryptoHasher("sha256").update(a.eval().toBytes()).digest("hex");
    }
  });
  return out;
};
const ha = hashes(join(DIR, "out-mlxk"));
const hb = hashes(join(DIR, "out-mlx-lm"));
const same = Object.keys(hb).length === Object.keys(ha).length && Object.entries(hb).every(([k, h]) => ha[k] === h);
console.log(`outputs byte-identical: ${same} (${Object.keys(ha).length} tensors)`);

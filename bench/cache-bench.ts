/**
 * Cache-command benchmark: `list --json` and `health` on a generated 500-model cache, mlxk vs Python
 * mlx-knife 2.0.x (and huggingface_hub.scan_cache_dir() as a floor reference) in the same run.
 * Usage: bun bench/cache-bench.ts [--models 500] [--runs 7] [--exe dist/mlxk] [--mlxknife /path/to/venv/bin/mlxk] [--python /path/to/venv/bin/python]
 * Each command runs as a fresh process (what a user or script sees); the median wall time is reported, and the
 * median CPU time (user+sys of all threads), which is the steadier number when other work shares the machine.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { generateCache } from "./cache-gen.ts";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const models = Number(arg("models", "500"));
const runs = Number(arg("runs", "7"));
const mlxknife = arg("mlxknife", "/tmp/mlxk-venv/bin/mlxk");
const python = arg("python", "/tmp/mlxk-venv/bin/python");
const root = join(import.meta.dir, "..");

const tmp = mkdtempSync(join(tmpdir(), "mlxk-bench-"));
generateCache(tmp, models);
const env = { ...process.env, HF_HOME: tmp, HF_HUB_CACHE: "", HUGGINGFACE_HUB_CACHE: "", NO_COLOR: "1" };

async function time(cmd: string[]): Promise<{ ms: number; cpuMs: number; code: number; out: string }> {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, { env, stdout: "pipe", stderr: "pipe", cwd: tmp });
  const [code, out] = await Promise.all([p.exited, new Response(p.stdout).text()]);
  const ms = performance.now() - t0;
  // CPU time (user+sys, all threads) varies less than wall time on a machine shared with other work
  const ru = p.resourceUsage();
  const cpuMs = ru ? (Number(ru.cpuTime.user) + Number(ru.cpuTime.system)) / 1000 : Number.NaN;
  return { ms, cpuMs, code, out };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const bun = process.execPath;
const exe = arg("exe", join(root, "dist", "mlxk"));
const cases: Record<string, Record<string, string[]>> = {
  "list --json": { mlxk: [bun, join(root, "bin", "mlxk"), "list", "--json"] },
  health: { mlxk: [bun, join(root, "bin", "mlxk"), "health"] },
};
if (existsSync(exe)) {
  cases["list --json"]!["mlxk (dist/mlxk)"] = [exe, "list", "--json"];
  cases.health!["mlxk (dist/mlxk)"] = [exe, "health"];
  // the same without scan worker threads (src/cache/pool.ts), to show what the second core adds
  cases["list --json"]!["mlxk (dist/mlxk, 1 thread)"] = ["/usr/bin/env", "MLXK_SCAN_WORKERS=0", exe, "list", "--json"];
  cases.health!["mlxk (dist/mlxk, 1 thread)"] = ["/usr/bin/env", "MLXK_SCAN_WORKERS=0", exe, "health"];
}
const haveKnife = existsSync(mlxknife);
if (haveKnife) {
  cases["list --json"]!["mlx-knife"] = [mlxknife, "list", "--json"];
  cases.health!["mlx-knife"] = [mlxknife, "health"];
}
if (existsSync(python)) {
  cases["list --json"]!["hf scan_cache_dir()"] = [python, "-c", "from huggingface_hub import scan_cache_dir; print(len(scan_cache_dir().repos))"];
}

const results: Record<string, Record<string, number>> = {};
const cpuResults: Record<string, Record<string, number>> = {};
const load0 = loadavg()[0]!;
for (const [name, impls] of Object.entries(cases)) {
  const samples: Record<string, number[]> = {};
  const cpuSamples: Record<string, number[]> = {};
  for (let r = 0; r < runs; r++) {
    // interleave implementations so drift affects all equally
    for (const [impl, cmd] of Object.entries(impls)) {
      const t = await time(cmd);
      if (t.code !== 0) throw new Error(`${impl} ${name} exited ${t.code}`);
      if (r === 0 && name === "list --json" && !impl.startsWith("hf")) {
        const count = JSON.parse(t.out).data.count;
        if (count !== models) throw new Error(`${impl} listed ${count} models, expected ${models}`);
      }
      (samples[impl] ??= []).push(t.ms);
      (cpuSamples[impl] ??= []).push(t.cpuMs);
    }
  }
  results[name] = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  cpuResults[name] = Object.fromEntries(Object.entries(cpuSamples).map(([k, v]) => [k, median(v)]));
}
rmSync(tmp, { recursive: true, force: true });

console.log(`cache commands on ${models} models, median of ${runs} runs (fresh process each), wall ms (CPU ms user+sys)`);
console.log(`load average (1 min) before: ${load0.toFixed(2)}, after: ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} cores`);
for (const [name, r] of Object.entries(results)) {
  const ref = r["mlx-knife"];
  const cpu = cpuResults[name]!;
  const cols = Object.entries(r).map(([impl, ms]) => `${impl}: ${ms.toFixed(0)} (${cpu[impl]!.toFixed(0)})`);
  console.log(`${name.padEnd(12)} ${cols.join(" | ")}`);
  if (ref) {
    for (const impl of Object.keys(r).filter((k) => k.startsWith("mlxk"))) {
      const cpuRatio = cpu["mlx-knife"]! / cpu[impl]!;
      console.log(`${"".padEnd(12)} ${impl} is ${(ref / r[impl]!).toFixed(1)}x faster than mlx-knife (CPU time: ${cpuRatio.toFixed(1)}x less)`);
    }
  }
}
if (!haveKnife) console.log(`(mlx-knife not found at ${mlxknife}; see BENCHMARKS.md for installing it)`);

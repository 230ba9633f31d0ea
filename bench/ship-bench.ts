/**
 * Shipping benchmark: cold start (a fresh process each time) of `bunx mlxk --version` (the packed package installed
 * in a temp project, as bunx finds it), `dist/mlxk --version` and `dist/mlxk list --json` on a generated 500-model
 * cache, against pip-installed mlx-knife in the same run (interleaved rounds, medians); and install sizes of the
 * package, the platform package, an installed project and the release archive.
 * Usage: bun bench/ship-bench.ts --mlxknife /path/to/venv/bin/mlxk [--runs 9] [--models 500]
 */
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { HOST } from "../scripts/build-exe.ts";
import { packMain, packPlatform } from "../scripts/pack.ts";
import { CLI_VERSION } from "../src/version.ts";
import { generateCache } from "./cache-gen.ts";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const runs = Number(arg("runs", "9"));
const mlxknife = arg("mlxknife", "/work/main/.cache/py-ship/bin/mlxk");
const root = join(import.meta.dir, "..");
const exe = join(root, "dist", "mlxk");
const archive = join(root, "dist", `mlxk-${CLI_VERSION}-${HOST.os}-${HOST.arch}.tar.gz`);

const tmp = mkdtempSync(join(tmpdir(), "mlxk-shipbench-"));
const hf = join(tmp, "hf");
generateCache(hf, Number(arg("models", "500")));
const env = { ...process.env, HF_HOME: hf, HF_HUB_CACHE: "", HUGGINGFACE_HUB_CACHE: "", NO_COLOR: "1", XDG_DATA_HOME: join(tmp, "xdg") };

const out = join(tmp, "out");
mkdirSync(out);
const tgz = packMain(out);
const ptgz = packPlatform(out);
const proj = join(tmp, "proj");
mkdirSync(proj);
writeFileSync(join(proj, "package.json"), '{"name":"bench","private":true}\n');
const add = Bun.spawnSync([process.execPath, "add", tgz, ptgz], { cwd: proj, stdout: "pipe", stderr: "pipe" });
if (add.exitCode !== 0) throw new Error(`bun add failed: ${add.stderr}`);

function time(cmd: string[], cwd = tmp): { ms: number; cpuMs: number } {
  const t0 = performance.now();
  const p = Bun.spawnSync(cmd, { env, cwd, stdout: "pipe", stderr: "pipe" });
  const ms = performance.now() - t0;
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${p.stderr}`);
  const ru = p.resourceUsage;
  return { ms, cpuMs: ru ? (Number(ru.cpuTime.user) + Number(ru.cpuTime.system)) / 1000 : Number.NaN };
}

const cases: [string, string[], string?][] = [
  ["bunx mlxk --version", [process.execPath, "x", "mlxk", "--version"], proj],
  ["dist/mlxk --version", [exe, "--version"]],
  ["mlx-knife --version", [mlxknife, "--version"]],
  ["dist/mlxk list --json", [exe, "list", "--json"]],
  ["mlx-knife list --json", [mlxknife, "list", "--json"]],
];
const res = new Map<string, { ms: number[]; cpu: number[] }>(cases.map(([n]) => [n, { ms: [], cpu: [] }]));
for (const [, cmd, cwd] of cases) time(cmd, cwd); // warm the page cache once
for (let r = 0; r < runs; r++) {
  for (const [n, cmd, cwd] of cases) {
    const t = time(cmd, cwd);
    res.get(n)!.ms.push(t.ms);
    res.get(n)!.cpu.push(t.cpuMs);
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const m = (n: string) => ({ ms: median(res.get(n)!.ms), cpu: median(res.get(n)!.cpu) });
console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(1)).join(" ")}; ${runs} interleaved rounds, medians`);
console.log("| command | wall ms | CPU ms | vs mlx-knife (wall) |");
console.log("|---|---|---|---|");
for (const [n] of cases) {
  const ref = n.includes("list") ? m("mlx-knife list --json") : m("mlx-knife --version");
  const v = m(n);
  console.log(`| \`${n}\` | ${v.ms.toFixed(0)} | ${v.cpu.toFixed(0)} | ${(v.ms / ref.ms).toFixed(2)}x |`);
}
const du = (p: string): number => Number(Bun.spawnSync(["du", "-sk", p]).stdout.toString().split("\t")[0]) * 1024;
const mb = (b: number): string => `${(b / 1e6).toFixed(1)} MB`;
const knifeVenv = join(mlxknife, "..", "..");
console.log("\n| artifact | size |\n|---|---|");
console.log(`| package tarball \`mlxk-${CLI_VERSION}.tgz\` | ${mb(statSync(tgz).size)} |`);
console.log(`| platform package \`${ptgz.split("/").pop()}\` | ${mb(statSync(ptgz).size)} |`);
console.log(`| installed project node_modules (bun add, incl. Bun) | ${mb(du(join(proj, "node_modules")))} |`);
console.log(`| release archive \`${archive.split("/").pop()}\` | ${mb(statSync(archive).size)} |`);
console.log(`| mlx-knife venv (pip install mlx-knife) | ${mb(du(knifeVenv))} |`);
rmSync(tmp, { recursive: true, force: true });

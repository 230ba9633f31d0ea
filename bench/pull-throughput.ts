/**
 * pull throughput: `mlxk pull` of a ~1 GB repo from the loopback Hub against curl fetching the same
 * files (same redirects, 4 in parallel) from the same server in the same run. Data lives in a temp dir.
 *
 *   bun bench/pull-throughput.ts [--mb 1024] [--files 4] [--rounds 3]
 *
 * Prints one JSON line per round and a summary with the throughput ratio mlxk / curl (target ≥ 0.8).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LoopbackHub } from "../test/helpers/loopback-hub.ts";

const ROOT = join(import.meta.dir, "..");

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const totalMb = arg("mb", 1024);
const nFiles = arg("files", 4);
const rounds = arg("rounds", 3);
const workers = 4;

/** CPU seconds (user + system) of each client, summed per kind: steadier than wall time on a busy machine. */
const cpu: Record<string, number[]> = { curl: [], mlxk: [] };

async function timed(cmd: string[], env: Record<string, string>, kind: "curl" | "mlxk"): Promise<number> {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, { env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  const secs = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`${cmd[0]} failed (${code}): ${err}${out}`);
  const ru = p.resourceUsage();
  if (ru) cpu[kind]!.push(Number(ru.cpuTime.user + ru.cpuTime.system) / 1e6);
  return secs;
}

const work = mkdtempSync(join(tmpdir(), "mlxk-bench-pull-"));
const hub = await LoopbackHub.start();
try {
  // data: distinct pseudo-random blocks per file (not compressible, no repeated content across files)
  const perFile = Math.floor((totalMb * 1e6) / nFiles);
  const block = new Uint8Array(8 << 20);
  const files: { path: string; file: string; lfs: boolean }[] = [];
  for (let i = 0; i < nFiles; i++) {
    const path = join(work, `data-${i}.bin`);
    const w = Bun.file(path).writer();
    for (let off = 0; off < perFile; off += block.length) {
      crypto.getRandomValues(block.subarray(0, 65536));
      for (let k = 65536; k < block.length; k += 65536) block.copyWithin(k, 0, 65536);
      block[0] = i;
      block[1] = off & 0xff;
      w.write(block.subarray(0, Math.min(block.length, perFile - off)));
    }
    await w.end();
    files.push({ path: `model-${String(i + 1).padStart(5, "0")}-of-${String(nFiles).padStart(5, "0")}.safetensors`, file: path, lfs: true });
  }
  const commit = await hub.addRepo("bench/big", [{ path: "config.json", content: '{"model_type":"llama"}' }, ...files]);
  const totalBytes = perFile * nFiles + 22;
  const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work, NO_PROXY: "127.0.0.1" };

  const results: { round: number; curl_s: number; mlxk_s: number }[] = [];
  for (let round = 1; round <= rounds; round++) {
    const runCurl = async () => {
      const curlDir = join(work, "curl");
      mkdirSync(curlDir, { recursive: true });
      // curl: same resolve URLs, following the CDN redirect, 4 transfers at once
      const cfg = [{ path: "config.json" }, ...files]
        .map((f, i) => `url = "${hub.url}/bench/big/resolve/${commit}/${f.path}"\noutput = "${join(curlDir, `f${i}`)}"`)
        .join("\n");
      writeFileSync(join(work, "curl.cfg"), cfg);
      const s = await timed(["curl", "-sS", "-f", "-L", "--parallel", "--parallel-max", String(workers), "-K", join(work, "curl.cfg")], baseEnv, "curl");
      rmSync(curlDir, { recursive: true, force: true });
      return s;
    };
    const runMlxk = async () => {
      const hfHome = join(work, "hf");
      const env = { ...baseEnv, HF_HOME: hfHome, HF_ENDPOINT: hub.url };
      const s = await timed([process.execPath, join(ROOT, "bin", "mlxk"), "pull", "bench/big", "--json", "--workers", String(workers)], env, "mlxk");
      rmSync(hfHome, { recursive: true, force: true });
      return s;
    };
    // alternate who goes first, so page-cache and load effects do not favour one side
    let curl_s: number;
    let mlxk_s: number;
    if (round % 2 === 1) {
      curl_s = await runCurl();
      mlxk_s = await runMlxk();
    } else {
      mlxk_s = await runMlxk();
      curl_s = await runCurl();
    }
    const row = { round, curl_s: +curl_s.toFixed(3), mlxk_s: +mlxk_s.toFixed(3), curl_MBps: +(totalBytes / 1e6 / curl_s).toFixed(1), mlxk_MBps: +(totalBytes / 1e6 / mlxk_s).toFixed(1) };
    console.log(JSON.stringify(row));
    results.push(row);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const curlMed = median(results.map((r) => r.curl_s));
  const mlxkMed = median(results.map((r) => r.mlxk_s));
  console.log(
    JSON.stringify({
      summary: true,
      bytes: totalBytes,
      files: nFiles + 1,
      workers,
      curl_median_s: curlMed,
      mlxk_median_s: mlxkMed,
      curl_MBps: +(totalBytes / 1e6 / curlMed).toFixed(1),
      mlxk_MBps: +(totalBytes / 1e6 / mlxkMed).toFixed(1),
      // throughput ratio mlxk/curl: per round (same load at that moment), then the median of those
      ratio_per_round: results.map((r) => +(r.curl_s / r.mlxk_s).toFixed(3)),
      ratio_median: +median(results.map((r) => r.curl_s / r.mlxk_s)).toFixed(3),
      ratio_of_median_times: +(curlMed / mlxkMed).toFixed(3),
      ratio_of_best_times: +(Math.min(...results.map((r) => r.curl_s)) / Math.min(...results.map((r) => r.mlxk_s))).toFixed(3),
      cpu_s_median: { curl: +median(cpu.curl!).toFixed(3), mlxk: +median(cpu.mlxk!).toFixed(3) },
      note: "mlxk time includes process start, preflight, sha256 of every byte, rename and symlinks",
    }),
  );
} finally {
  hub.stop();
  rmSync(work, { recursive: true, force: true });
}

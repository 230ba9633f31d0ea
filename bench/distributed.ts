/**
 * Pipeline parallel on loopback (SmolLM2-135M Q4_1): decode tok/s and per-rank peak memory for 1, 2 and 3 ranks
 * (`mlxk run` vs `mlxk launch -n N -- run`, same prompt, same run), and the cost of one ring hop of a decode
 * step's hidden state (send + recv of [1, 1, 576] f32 between two processes, ping-pong). On one machine the
 * ranks share its cores, so the point is memory per rank and overhead per token, not speed.
 *
 * Usage: bun bench/distributed.ts [--gen 64] [--reps 2]      (--pingpong is the two-process worker)
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const MLXK = [process.execPath, join(ROOT, "bin", "mlxk")];
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};

async function pingpongWorker(): Promise<void> {
  const mx = await import("../src/mlx/index.ts");
  const { joinWorld } = await import("../src/distributed/world.ts");
  const g = (await joinWorld())!;
  const iters = Number(arg("iters", "300"));
  const x = mx.zeros([1, 1, 576], mx.Dtype.float32);
  mx.eval([x]);
  const hop = () => {
    if (g.rank === 0) {
      mx.scope(() => mx.eval([mx.distributed.send(x, 1, g)]));
      mx.scope(() => mx.eval([mx.distributed.recvLike(x, 1, g)]));
    } else {
      mx.scope(() => {
        const r = mx.distributed.recvLike(x, 0, g);
        mx.eval([r]);
        mx.eval([mx.distributed.send(r, 0, g)]);
      });
    }
  };
  for (let i = 0; i < 20; i++) hop();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) hop();
  const us = ((performance.now() - t0) * 1000) / (2 * iters);
  if (g.rank === 0) console.log(JSON.stringify({ hop_us: us }));
}

async function pingpong(): Promise<number> {
  const { freePorts } = await import("../src/distributed/launch.ts");
  const { ringHostfile } = await import("../src/distributed/hosts.ts");
  const ports = await freePorts(2);
  const f = join(tmpdir(), `mlxk-bench-ring-${process.pid}.json`);
  writeFileSync(f, ringHostfile([0, 1].map((rank) => ({ rank, ssh: "127.0.0.1", ips: ["127.0.0.1"] })), ports));
  const ps = [0, 1].map((r) =>
    Bun.spawn([process.execPath, import.meta.path, "--pingpong"], { env: { ...process.env, MLX_RANK: String(r), MLX_HOSTFILE: f, MLXK_LAUNCH: "1" }, stdout: "pipe", stderr: "ignore" }),
  );
  const out = await new Response(ps[0]!.stdout).text();
  await Promise.all(ps.map((p) => p.exited));
  rmSync(f, { force: true });
  return (JSON.parse(out.trim().split("\n").at(-1)!) as { hop_us: number }).hop_us;
}

interface Row {
  ranks: number;
  tps: number;
  peaks: number[];
}

function runOnce(ranks: number, gguf: string, gen: number): Row {
  const report = join(tmpdir(), `mlxk-bench-report-${process.pid}.jsonl`);
  rmSync(report, { force: true });
  const run = ["run", gguf, "Write a short story about a lighthouse keeper.", "--temperature", "0", "--max-tokens", String(gen), "--json"];
  const cmd = ranks === 1 ? [...MLXK, ...run] : [...MLXK, "launch", "-n", String(ranks), "--", ...run];
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, MLXK_LAUNCH_REPORT: report } });
  if (p.exitCode !== 0) throw new Error(`${ranks} ranks failed: ${p.stderr.toString().slice(-800)}`);
  const j = JSON.parse(p.stdout.toString()) as { data: { timings: { generation_tps: number; peak_memory_bytes: number }; usage: { completion_tokens: number } } };
  if (j.data.usage.completion_tokens !== gen) throw new Error(`generated ${j.data.usage.completion_tokens} tokens, not ${gen}`);
  const lines = existsSync(report) ? readFileSync(report, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { rank: number; peakBytes?: number }) : [];
  rmSync(report, { force: true });
  const peaks = [j.data.timings.peak_memory_bytes, ...Array.from({ length: ranks - 1 }, (_, i) => lines.find((l) => l.rank === i + 1 && l.peakBytes)?.peakBytes ?? Number.NaN)];
  return { ranks, tps: j.data.timings.generation_tps, peaks };
}

async function main(): Promise<void> {
  if (process.argv.includes("--pingpong")) return pingpongWorker();
  const { smollm2Gguf } = await import("../test/support/smollm2.ts");
  const gguf = await smollm2Gguf();
  const gen = Number(arg("gen", "64"));
  const reps = Number(arg("reps", "2"));
  const best = new Map<number, Row>();
  // interleaved repetitions, best decode rate of each kept (the machine is shared)
  for (let r = 0; r < reps; r++) {
    for (const n of [1, 2, 3]) {
      const row = runOnce(n, gguf, gen);
      const b = best.get(n);
      if (!b || row.tps > b.tps) best.set(n, row);
    }
  }
  const hop = Math.min(await pingpong(), await pingpong());
  const base = best.get(1)!;
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  console.log(`SmolLM2-135M-Instruct Q4_1, ${gen} decode tokens, greedy, best of ${reps}`);
  console.log("| ranks | decode tok/s | vs 1 rank | peak memory per rank (MiB) | overhead per token vs 1 rank |");
  console.log("|---|---|---|---|---|");
  for (const n of [1, 2, 3]) {
    const row = best.get(n)!;
    const over = n === 1 ? "—" : `${((1 / row.tps - 1 / base.tps) * 1e6).toFixed(0)} µs`;
    console.log(`| ${n} | ${row.tps.toFixed(1)} | ${(row.tps / base.tps).toFixed(2)}× | ${row.peaks.map(mib).join(" / ")} | ${over} |`);
  }
  console.log(`\nOne ring hop of a decode hidden state ([1,1,576] f32, send+recv, loopback): ${hop.toFixed(0)} µs`);
  const hops = (n: number) => n + 2 * (n - 1);
  console.log(`Per decode token an N-rank pipeline makes N hidden-state hops and 2(N-1) control hops: ${hops(2)} hops ≈ ${(hops(2) * hop).toFixed(0)} µs at N = 2, ${hops(3)} ≈ ${(hops(3) * hop).toFixed(0)} µs at N = 3.`);
}

await main();

/**
 * Server overhead benchmark: the same greedy generation run directly on the engine and streamed through the
 * server over a real port (same process, same model, same run), then 8 concurrent clients × 10 requests.
 * Usage: bun bench/server.ts [--model SPEC] [--tokens N] [--rounds R]   (default model: SmolLM2 GGUF)
 * Continuous batching: bun bench/server.ts --clients 1,2,4,8 [--tokens N] [--requests R] [--rounds K]: aggregate
 * completion tok/s and TTFT p50/p95 of N concurrent streaming clients on a --parallel 8 server and on a --parallel 1
 * server (one request at a time), both in this run, K interleaved rounds (default 1); ratios against one client on
 * the --parallel 1 server of the same round, median over rounds. --prompt-cache gives both servers the prompt
 * cache as `mlxk server` sizes it by default (off otherwise, to measure batching alone).
 * Prints a Markdown table for BENCHMARKS.md.
 */
import { freemem, loadavg } from "node:os";
import { smollm2Gguf } from "../test/support/smollm2.ts";
import type { Engine, GenerateRequest } from "../src/engine/types.ts";
import { createApp } from "../src/server/app.ts";
import { ModelManager } from "../src/server/model-manager.ts";
import { loadTarget, resolveTarget } from "../src/server/models-source.ts";
import { DEFAULT_SAMPLING } from "../src/generate/sample.ts";
import { defaultPromptCacheBytes } from "../src/engine/open.ts";
import { readSse } from "../src/server/openai/sse.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const CLIENT_URL = arg("client");
const TOKENS = Number(arg("tokens") ?? 64);
const ROUNDS = Number(arg("rounds") ?? 3);
const spec = arg("model") ?? (await smollm2Gguf());
const messages = [{ role: "user" as const, content: "Write a long story about a lighthouse keeper and the sea." }];
const sampling = { ...DEFAULT_SAMPLING, temperature: 0, repetitionPenalty: 1 };

interface Sample {
  /** CPU time (all threads) of the serving process per generated token, ms: immune to other load on the machine */
  cpuPerToken?: number;
  tokens: number;
  ttftMs: number;
  /** decode rate: tokens after the first over the time after the first */
  tps: number;
  totalMs: number;
}

function rate(tokens: number, t0: number, tFirst: number, tEnd: number): Sample {
  return { tokens, ttftMs: tFirst - t0, tps: tokens > 1 ? ((tokens - 1) * 1000) / (tEnd - tFirst) : 0, totalMs: tEnd - t0 };
}

function cpuMs(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1000;
}

async function direct(engine: Engine): Promise<Sample> {
  const req: GenerateRequest = { input: { messages }, maxTokens: TOKENS, sampling };
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let tFirst = 0;
  let n = 0;
  for await (const ev of engine.generate(req)) {
    if (ev.type === "done") break;
    n++;
    // same rule as the SSE side: the first token with visible text
    if (tFirst === 0 && ev.text !== "") tFirst = performance.now();
  }
  return { ...rate(n, t0, tFirst, performance.now()), cpuPerToken: cpuMs(process.cpuUsage(c0)) / n };
}

async function viaServer(url: string): Promise<Sample> {
  const body = { model: spec, messages, max_tokens: TOKENS, temperature: 0, repetition_penalty: 1, stream: true, stream_options: { include_usage: true } };
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  let tFirst = 0;
  let tLast = 0;
  let tokens = 0;
  let chunks = 0;
  for await (const d of readSse(res.body!)) {
    if (d === "[DONE]") break;
    const c = JSON.parse(d) as { choices: { delta: { content?: string } }[]; usage?: { completion_tokens: number } | null };
    if (c.usage) tokens = c.usage.completion_tokens;
    if (c.choices[0]?.delta.content) {
      if (chunks++ === 0) tFirst = performance.now();
      tLast = performance.now();
    }
  }
  return rate(tokens, t0, tFirst, tLast);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

const CLIENTS = 8;
const PER_CLIENT = 10;

interface ClientsResult {
  tokens: number;
  wallMs: number;
  ttfts: number[];
  failures: number;
}

/** `n` concurrent streaming clients, each sending `requests` requests one after another. */
async function streamingClients(url: string, n: number, requests: number): Promise<ClientsResult> {
  const ttfts: number[] = [];
  let tokens = 0;
  let failures = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: n }, async (_, c) => {
      for (let i = 0; i < requests; i++) {
        const m = [{ role: "user", content: `${messages[0]!.content} (client ${c}, request ${i})` }];
        const body = { model: spec, messages: m, max_tokens: TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } };
        const t = performance.now();
        const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
        if (res.status !== 200) {
          failures++;
          await res.arrayBuffer();
          continue;
        }
        let first = 0;
        for await (const d of readSse(res.body!)) {
          if (d === "[DONE]") break;
          const ch = JSON.parse(d) as { choices: { delta: { content?: string } }[]; usage?: { completion_tokens: number } | null };
          if (ch.usage) tokens += ch.usage.completion_tokens;
          if (first === 0 && ch.choices[0]?.delta.content) first = performance.now();
        }
        ttfts.push(first - t);
      }
    }),
  );
  return { tokens, wallMs: performance.now() - t0, ttfts, failures };
}

if (CLIENT_URL) {
  // client side runs in its own process so its SSE parsing does not compete with the engine's thread
  const mode = arg("mode");
  if (mode === "stream") console.log(JSON.stringify(await viaServer(CLIENT_URL)));
  else if (mode === "clients") console.log(JSON.stringify(await streamingClients(CLIENT_URL, Number(arg("n")), Number(arg("requests") ?? 2))));
  else console.log(JSON.stringify(await concurrent(CLIENT_URL)));
  process.exit(0);
}

const CLIENT_COUNTS = arg("clients");
if (CLIENT_COUNTS) {
  await batchingBench(CLIENT_COUNTS.split(",").map(Number));
  process.exit(0);
}

/** Aggregate tok/s and TTFT for each client count on a batching and a one-at-a-time server (same process, same run). */
async function batchingBench(counts: number[]): Promise<void> {
  const requests = Number(arg("requests") ?? 2);
  const promptCacheBytes = process.argv.includes("--prompt-cache") ? defaultPromptCacheBytes(freemem()) : 0;
  const servers = [8, 1].map((parallel) => {
    const m = new ModelManager({ resolve: (x) => resolveTarget(x), load: (t) => loadTarget(t, { parallel, promptCacheBytes, freeMemory: freemem }), freeMemory: freemem, maxQueue: 64 });
    const a = createApp({ manager: m, listModels: () => [] });
    const srv = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => a.handle(r) });
    return { parallel, manager: m, srv, url: `http://127.0.0.1:${srv.port}` };
  });
  // the serving process's CPU time (engine + HTTP; the clients run in their own process) per completion token:
  // what a token costs regardless of how busy the machine is
  const run = async (url: string, n: number): Promise<ClientsResult & { cpuMs: number }> => {
    const c0 = process.cpuUsage();
    const p = Bun.spawn([process.execPath, import.meta.path, "--client", url, "--mode", "clients", "--n", String(n), "--requests", String(requests), "--model", spec, "--tokens", String(TOKENS)], {
      stdout: "pipe",
      stderr: "inherit",
    });
    const out = await new Response(p.stdout).text();
    if ((await p.exited) !== 0) throw new Error(`bench client failed: ${out}`);
    return { ...(JSON.parse(out) as ClientsResult), cpuMs: cpuMs(process.cpuUsage(c0)) };
  };
  for (const sv of servers) await run(sv.url, 1); // load + warm-up
  const rounds = Number(arg("rounds") ?? 1);
  const rows = counts.map((n) => ({ n, batched: [] as (ClientsResult & { cpuMs: number })[], serial: [] as (ClientsResult & { cpuMs: number })[] }));
  const agg = (r: ClientsResult) => (r.tokens * 1000) / r.wallMs;
  const load: string[] = [loadavg()[0]!.toFixed(1)];
  for (let k = 0; k < rounds; k++) {
    for (const r of rows) {
      // interleaved so load drift hits both servers alike
      r.batched.push(await run(servers[0]!.url, r.n));
      r.serial.push(await run(servers[1]!.url, r.n));
    }
    load.push(loadavg()[0]!.toFixed(1));
  }
  // each round's ratios against that round's 1 client on the --parallel 1 server, then the median over rounds
  const ref = rows.find((r) => r.n === 1)?.serial ?? rows[0]!.serial;
  const f = (x: number, d = 1) => x.toFixed(d);
  const peak = (servers[0]!.manager.residentEngine(servers[0]!.manager.resident[0]!.id) as { batchPeak?: number }).batchPeak;
  console.log(
    `model: ${spec}, ${TOKENS} tokens greedy per request, ${requests} requests per client, streaming; ${navigator.hardwareConcurrency} CPUs; largest batch ${peak}; prompt cache ${promptCacheBytes > 0 ? "on" : "off"}; ` +
      `${rounds} round(s), medians (ratios per round, then the median); load average (1 min) ${load.join(" → ")}\n`,
  );
  console.log(
    "| clients | --parallel 8: aggregate tok/s | vs 1 client serial | TTFT p50 / p95 ms | CPU ms/token | --parallel 1: aggregate tok/s | vs 1 client serial | TTFT p50 / p95 ms | CPU ms/token |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const cell = (xs: (ClientsResult & { cpuMs: number })[]) => {
      const ttfts = xs.flatMap((x) => x.ttfts);
      const failed = xs.reduce((a, x) => a + x.failures, 0);
      const ratio = median(xs.map((x, k) => agg(x) / agg(ref[k]!)));
      const range = xs.length > 1 ? ` (${f(Math.min(...xs.map((x, k) => agg(x) / agg(ref[k]!))), 2)}–${f(Math.max(...xs.map((x, k) => agg(x) / agg(ref[k]!))), 2)})` : "";
      const cpu = median(xs.map((x) => x.cpuMs / x.tokens));
      return `${f(median(xs.map(agg)))} | ${f(ratio, 2)}×${range} | ${f(pct(ttfts, 50), 0)} / ${f(pct(ttfts, 95), 0)}${failed ? ` (${failed} failed)` : ""} | ${f(cpu, 2)}`;
    };
    console.log(`| ${r.n} | ${cell(r.batched)} | ${cell(r.serial)} |`);
  }
  for (const sv of servers) {
    sv.srv.stop(true);
    sv.manager.close();
    sv.manager.dispose();
  }
}

async function concurrent(url: string): Promise<{ latencies: number[]; failures: number; wallMs: number }> {
  const latencies: number[] = [];
  let failures = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      for (let i = 0; i < PER_CLIENT; i++) {
        const t = performance.now();
        const res = await fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: spec, messages: [{ role: "user", content: `Say a number: ${i}` }], max_tokens: 16, temperature: 0 }),
        });
        if (res.status !== 200) failures++;
        await res.arrayBuffer();
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { latencies, failures, wallMs: performance.now() - t0 };
}

async function client(mode: "stream" | "concurrent"): Promise<string> {
  const p = Bun.spawn([process.execPath, import.meta.path, "--client", url, "--mode", mode, "--model", spec, "--tokens", String(TOKENS)], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const out = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`bench client failed: ${out}`);
  return out;
}

const manager = new ModelManager({ resolve: (s) => resolveTarget(s), load: (t) => loadTarget(t), freeMemory: freemem, maxQueue: 64 });
const app = createApp({ manager, listModels: () => [] });
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
const url = `http://127.0.0.1:${server.port}`;

const lease = await manager.lease(spec);
const engine = lease.engine;
lease.release();
await direct(engine); // warm-up (first-call compilation, page-in)
await client("stream");

const d: Sample[] = [];
const s: Sample[] = [];
for (let r = 0; r < ROUNDS; r++) {
  // interleaved so drift (thermal, other load) hits both sides alike
  d.push(await direct(engine));
  // the serving process's CPU: engine + HTTP + SSE (the client runs in its own process; spawning it is counted, a few ms)
  const c0 = process.cpuUsage();
  const sample = JSON.parse(await client("stream")) as Sample;
  s.push({ ...sample, cpuPerToken: cpuMs(process.cpuUsage(c0)) / sample.tokens });
}

const conc = JSON.parse(await client("concurrent")) as { latencies: number[]; failures: number; wallMs: number };
const { latencies, failures } = conc;
const concurrentWall = conc.wallMs;
server.stop(true);

const dTps = median(d.map((x) => x.tps));
const sTps = median(s.map((x) => x.tps));
// per-round ratios: each pair ran back to back, so machine-load drift cancels within a pair
const ratios = d.map((x, i) => s[i]!.tps / x.tps);
const dCpu = median(d.map((x) => x.cpuPerToken!));
const sCpu = median(s.map((x) => x.cpuPerToken!));
const f = (n: number, digits = 1) => n.toFixed(digits);
console.log(`model: ${spec}, ${TOKENS} tokens greedy, ${ROUNDS} rounds (median), ${navigator.hardwareConcurrency} CPUs, free ${f(freemem() / 2 ** 30)} GiB\n`);
console.log("| measure | direct engine | through server (SSE) | server / direct |");
console.log("|---|---|---|---|");
console.log(`| CPU ms per token (serving process) | ${f(dCpu, 2)} | ${f(sCpu, 2)} | throughput ${f((dCpu / sCpu) * 100)} % |`);
console.log(
  `| decode tok/s (wall) | ${f(dTps)} | ${f(sTps)} | ${f(median(ratios) * 100)} % (median of per-round ratios; range ${f(Math.min(...ratios) * 100)}–${f(Math.max(...ratios) * 100)} %) |`,
);
console.log(`| time to first token (ms) | ${f(median(d.map((x) => x.ttftMs)), 0)} | ${f(median(s.map((x) => x.ttftMs)), 0)} | +${f(median(s.map((x) => x.ttftMs)) - median(d.map((x) => x.ttftMs)), 0)} ms |`);
console.log(`| tokens per run | ${median(d.map((x) => x.tokens))} | ${median(s.map((x) => x.tokens))} | |`);
console.log(
  `\n${CLIENTS} concurrent clients × ${PER_CLIENT} requests (max_tokens 16): ${latencies.length - failures}/${latencies.length} succeeded, ` +
    `latency p50 ${f(pct(latencies, 50), 0)} ms, p95 ${f(pct(latencies, 95), 0)} ms, wall ${f(concurrentWall / 1000, 2)} s`,
);

/**
 * Embeddings/s for batches of 1, 16 and 64 short texts: mlxk's Embedder vs sentence-transformers (torch CPU,
 * float32, torch.set_num_threads 1 and 2, the better of the two per batch) on the same random BERT-base- and
 * Qwen3-Embedding-0.6B-shaped weights, in one run (reference first, then ours, per model). Also checks the first
 * vector agrees (cosine). Also embeddings per CPU-second (process CPU time), which a loaded machine disturbs less.
 *
 *   bun bench/embed.ts [--models bert_base,qwen3_06b]
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Embedder } from "../src/embed/embedder.ts";
import { cosine } from "../test/support/vectors.ts";

const PY = "/work/main/.cache/py-ref/bin/python";
const DIR = join(import.meta.dir, "..", ".cache", "bench-embed");
const BATCHES = [1, 16, 64];
const WORDS = "the quick brown fox jumps over a lazy dog while machine learning models embed short retrieval queries about cats cities and rivers".split(" ");

function texts(n: number): string[] {
  let s = 7;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  return Array.from({ length: n }, () => Array.from({ length: 6 + Math.floor(rnd() * 7) }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(" "));
}

async function run(cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if ((await p.exited) !== 0) throw new Error(`${cmd.join(" ")} failed:\n${err}`);
  return out;
}


const models = (process.argv.includes("--models") ? process.argv[process.argv.indexOf("--models") + 1]! : "bert_base,qwen3_06b").split(",");
mkdirSync(DIR, { recursive: true });
if (!models.every((m) => existsSync(join(DIR, m, "config.json")))) await run([PY, join(import.meta.dir, "embed_ref.py"), "make", DIR]);
const textsPath = join(DIR, "texts.json");
const T = texts(64);
writeFileSync(textsPath, JSON.stringify(T));
console.log(`load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
for (const m of models) {
  const dir = join(DIR, m);
  const refs: Array<{ threads: number; rates: Record<string, number>; cpu_rates: Record<string, number>; first: number[] }> = [];
  for (const threads of [1, 2]) refs.push(JSON.parse((await run([PY, join(import.meta.dir, "embed_ref.py"), "measure", dir, textsPath, String(threads), ...BATCHES.map(String)])).trim().split("\n").at(-1)!));
  const best = (b: number) => refs.reduce((a, r) => (r.rates[b]! > a.rates[b]! ? r : a));
  using e = await Embedder.load(dir, { name: m.includes("qwen") ? "bench/qwen3-embedding" : "bench/bert" });
  const ours: Record<string, number> = {};
  const oursCpu: Record<string, number> = {};
  let first: Float32Array | null = null;
  for (const b of BATCHES) {
    const batch = T.slice(0, b);
    e.embed(batch, { batchSize: b });
    const reps = b < 64 ? Math.max(1, Math.floor(8 / b)) : 1;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    let v: Float32Array[] = [];
    for (let i = 0; i < reps; i++) v = e.embed(batch, { batchSize: b }).vectors;
    ours[b] = (reps * b) / ((performance.now() - t0) / 1000);
    const cu = process.cpuUsage(c0);
    oursCpu[b] = (reps * b) / ((cu.user + cu.system) / 1e6);
    if (b === 64) first = v[0]!;
  }
  console.log(`${m}: first-vector cosine vs reference ${cosine(first!, refs[0]!.first).toFixed(6)}`);
  for (const b of BATCHES) {
    const r = best(b);
    console.log(`  batch ${String(b).padStart(2)}: mlxk ${ours[b]!.toFixed(2)}/s, sentence-transformers ${r.rates[b]!.toFixed(2)}/s (${r.threads} thread${r.threads > 1 ? "s" : ""}; ${refs.map((x) => `${x.threads}: ${x.rates[b]!.toFixed(2)}`).join(", ")}), ratio ${(ours[b]! / r.rates[b]!).toFixed(2)}×; per CPU-second ${oursCpu[b]!.toFixed(2)} vs ${Math.max(...refs.map((x) => x.cpu_rates[b]!)).toFixed(2)}`);
  }
}

/**
 * Sampler cost per token at vocab sizes 49k (SmolLM2), 152k (Qwen) and 262k (Gemma), against a
 * reference measured in the same run: a straightforward full-sort top_p/top_k sampler (what a naive
 * port of mlx-lm's argsort-based filters does). Run: bun test/generate/sample.bench.ts
 */
import type { SamplingParams } from "../../src/engine/types.ts";
import { DEFAULT_SAMPLING, Rng, sampleToken } from "../../src/generate/sample.ts";

function logitsLike(n: number, seed: number): Float32Array {
  // Roughly LLM-shaped: a few strong candidates over a long Gaussian-ish tail.
  const r = new Rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r.next() + r.next() + r.next() - 1.5) * 4;
  for (let k = 0; k < 8; k++) a[Math.floor(r.next() * n)] = 12 + r.next() * 4;
  return a;
}

function fullSortSample(logits: Float32Array, p: SamplingParams, rng: Rng): number {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
  let n = p.topK > 0 ? Math.min(p.topK, order.length) : order.length;
  if (p.topP > 0 && p.topP < 1) {
    let mass = 0;
    let m = 0;
    while (m < n && mass < p.topP) mass += Math.exp(logits[order[m++]!]! - lse);
    n = Math.min(n, m);
  }
  let total = 0;
  const w = order.slice(0, n).map((t) => (total += Math.exp((logits[t]! - max) / p.temperature)));
  const u = rng.next() * total;
  return order[w.findIndex((x) => u < x)]!;
}

function time(fn: () => void, reps: number): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return (performance.now() - t0) / reps;
}

const cases: [string, SamplingParams][] = [
  ["greedy (temp 0)", { ...DEFAULT_SAMPLING, temperature: 0, repetitionPenalty: 1 }],
  ["mlxk default (T0.7 top_p 0.9 rep 1.1)", DEFAULT_SAMPLING],
  ["top_k 40", { ...DEFAULT_SAMPLING, topP: 1, topK: 40 }],
  ["min_p 0.05", { ...DEFAULT_SAMPLING, topP: 1, minP: 0.05 }],
  ["temperature only", { ...DEFAULT_SAMPLING, topP: 1 }],
];

console.log("| vocab | sampler settings | sampleToken ms | full-sort ref ms | speedup |");
console.log("|---|---|---|---|---|");
for (const V of [49_152, 151_936, 262_144]) {
  const base = logitsLike(V, V);
  const history = Array.from({ length: 64 }, (_, i) => (i * 7919) % V);
  for (const [name, p] of cases) {
    const rng = new Rng(1);
    const ours = time(() => sampleToken(base.slice(), p, rng, { history }), 30);
    const ref = p.temperature > 0 ? time(() => fullSortSample(base.slice(), p, rng), 5) : NaN;
    const speed = Number.isNaN(ref) ? "-" : `${(ref / ours).toFixed(1)}×`;
    console.log(`| ${V} | ${name} | ${ours.toFixed(2)} | ${Number.isNaN(ref) ? "-" : ref.toFixed(1)} | ${speed} |`);
  }
}

import { describe, expect, test } from "bun:test";
import type { SamplingParams } from "../../src/engine/types.ts";
import { applyRepetitionPenalty, DEFAULT_SAMPLING, Rng, sampleToken, topKIndices } from "../../src/generate/sample.ts";

const P = (o: Partial<SamplingParams>): SamplingParams => ({
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  repetitionContextSize: 20,
  ...o,
});

function randomLogits(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r.next() - 0.5) * 20;
  return a;
}

function histogram(logits: Float32Array, p: SamplingParams, draws: number, seed = 1): Map<number, number> {
  const rng = new Rng(seed);
  const h = new Map<number, number>();
  for (let i = 0; i < draws; i++) {
    const t = sampleToken(logits.slice(), p, rng).token;
    h.set(t, (h.get(t) ?? 0) + 1);
  }
  return h;
}

describe("sampleToken", () => {
  test("mlx-knife defaults", () => {
    expect(DEFAULT_SAMPLING).toMatchObject({ temperature: 0.7, topP: 0.9, repetitionPenalty: 1.1, repetitionContextSize: 20 });
  });

  test("temperature 0 is argmax; top_k=1 equals greedy at any temperature", () => {
    for (let s = 0; s < 20; s++) {
      const l = randomLogits(5000, s);
      const best = topKIndices(l, 1)[0]!;
      expect(sampleToken(l.slice(), P({ temperature: 0 }), new Rng(s)).token).toBe(best);
      expect(sampleToken(l.slice(), P({ temperature: 1.5, topK: 1 }), new Rng(s)).token).toBe(best);
    }
  });

  test("same seed → same tokens; different seeds differ", () => {
    const l = randomLogits(1000, 7).map((x) => x / 5); // flat enough to make draws vary
    const run = (seed: number) => {
      const rng = new Rng(seed);
      return Array.from({ length: 50 }, () => sampleToken(l.slice(), DEFAULT_SAMPLING, rng).token);
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
  });

  test("top_p keeps the smallest prefix whose mass reaches p (the crossing token included)", () => {
    // probs 0.5, 0.3, 0.15, 0.05
    const l = new Float32Array([0.5, 0.3, 0.15, 0.05].map(Math.log));
    expect([...histogram(l, P({ topP: 0.5 }), 200).keys()]).toEqual([0]);
    expect([...histogram(l, P({ topP: 0.75 }), 400).keys()].sort()).toEqual([0, 1]);
    expect([...histogram(l, P({ topP: 0.85 }), 800).keys()].sort()).toEqual([0, 1, 2]);
  });

  test("top_p on a flat 262k vocabulary widens the head until the mass is reached", () => {
    const l = new Float32Array(262_144); // uniform: nucleus for p=0.01 is ~2622 tokens
    const h = histogram(l, P({ topP: 0.01 }), 300);
    for (const t of h.keys()) expect(t).toBeLessThan(2700); // ties resolve to the lowest ids
    expect(h.size).toBeGreaterThan(200);
  });

  test("min_p keeps tokens with p >= min_p * p_max", () => {
    const l = new Float32Array([0.5, 0.3, 0.15, 0.05].map(Math.log));
    expect([...histogram(l, P({ minP: 0.5 }), 400).keys()].sort()).toEqual([0, 1]);
    expect([...histogram(l, P({ minP: 0.2 }), 800).keys()].sort()).toEqual([0, 1, 2]);
  });

  test("top_k restricts to the k best; frequencies follow softmax(l / T)", () => {
    const l = new Float32Array([2, 1, 0, -1, -2]);
    const h = histogram(l, P({ topK: 2 }), 4000);
    expect([...h.keys()].sort()).toEqual([0, 1]);
    const ratio = h.get(0)! / h.get(1)!;
    expect(ratio).toBeGreaterThan(Math.E * 0.85);
    expect(ratio).toBeLessThan(Math.E * 1.15);
  });

  test("logprobs and top_logprobs are log-softmax of the (penalized) logits", () => {
    const l = new Float32Array([1, 3, 2]);
    const r = sampleToken(l.slice(), P({ temperature: 0 }), new Rng(1), { logprobs: true, topLogprobs: 2 });
    const lse = Math.log(Math.E + Math.E ** 3 + Math.E ** 2);
    expect(r.token).toBe(1);
    expect(r.logprob).toBeCloseTo(3 - lse, 5);
    expect(r.top.map((t) => t.token)).toEqual([1, 2]);
    expect(r.top[1]!.logprob).toBeCloseTo(2 - lse, 5);
  });
});

describe("repetition penalty (mlx-lm: l<0 ? l*p : l/p over the last N tokens, once per token)", () => {
  test("math", () => {
    const l = new Float32Array([2, -2, 4, 1]);
    applyRepetitionPenalty(l, [3, 0, 1, 0, 0], 2, 3); // last 3 = [1, 0, 0]: tokens 0 and 1, once each
    expect(Array.from(l)).toEqual([1, -4, 4, 1]);
  });
  test("changes greedy choice when the best token was just used", () => {
    const l = new Float32Array([1.0, 1.05]);
    expect(sampleToken(l.slice(), P({ temperature: 0, repetitionPenalty: 1.1 }), new Rng(1), { history: [1] }).token).toBe(0);
    expect(sampleToken(l.slice(), P({ temperature: 0, repetitionPenalty: 1.1, repetitionContextSize: 1 }), new Rng(1), { history: [1, 0] }).token).toBe(1);
  });
});

test("topKIndices equals a full sort's head", () => {
  const l = randomLogits(10_000, 3);
  const full = Array.from(l.keys()).sort((a, b) => l[b]! - l[a]! || a - b);
  expect(Array.from(topKIndices(l, 50))).toEqual(full.slice(0, 50));
});

/**
 * The repetition penalty of batched greedy rows on the device (src/engine/batch.ts, penalize / chooseRows) gives
 * exactly the host sampler's logits and token (applyRepetitionPenalty in f64 rounded to f32, then argmax):
 * repeated and out-of-vocabulary tokens in the window, a window shorter than the history, rows without a
 * penalty, the newest token still on the device (a pipelined step), and a tie the penalty creates.
 */
import { describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { chooseRows, penalize, type RowPolicy } from "../../src/engine/batch.ts";
import { applyRepetitionPenalty, DEFAULT_SAMPLING, Rng, sampleToken } from "../../src/generate/sample.ts";

const V = 64;
let seed = 7;
function logitsOf(B: number): Float32Array {
  const out = new Float32Array(B * V);
  for (let i = 0; i < out.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    out[i] = ((seed >>> 8) / 2 ** 24 - 0.5) * 20;
  }
  return out;
}

function host(l: Float32Array, b: number, history: number[], p: RowPolicy): Float32Array {
  const row = l.slice(b * V, (b + 1) * V);
  if (p.penalty) applyRepetitionPenalty(row, history, p.penalty.value, p.penalty.window);
  return row;
}

const policies: RowPolicy[] = [
  { penalty: { value: 1.1, window: 20 } },
  {},
  { penalty: { value: 1.3, window: 3 } },
  { penalty: { value: 0.7, window: 20 } },
  { penalty: { value: 1.1, window: 1 } },
  { penalty: { value: 1.1, window: 4 } },
];
const histories = (): number[][] => [
  [3, 5, 3, 9, 63, 0, 5, 12],
  [1, 2, 3],
  [40, 41, 42, 43, 44, 41],
  [7, -1, 7, V + 5, 8],
  [10, 11],
  [-1, V, V + 1, 2],
];

describe("the repetition penalty on the device equals the host sampler's", () => {
  test("f32 division and multiplication would differ here (the test can tell f64 from f32 arithmetic)", () => {
    const l = logitsOf(policies.length);
    let differs = 0;
    for (const v of l) if (Math.fround(v / Math.fround(1.1)) !== Math.fround(v / 1.1) || Math.fround(v * Math.fround(1.3)) !== Math.fround(v * 1.3)) differs++;
    expect(differs).toBeGreaterThan(0);
  });

  test("logits of every row, the newest token known to the host", () => {
    const l = logitsOf(policies.length);
    const hs = histories();
    const got = mx.scope(() => penalize(mx.array(l, { shape: [policies.length, V] }), policies, hs).toFloat32Array());
    policies.forEach((p, b) => expect(Array.from(got.slice(b * V, (b + 1) * V))).toEqual(Array.from(host(l, b, hs[b]!, p))));
  });

  test("logits of every row, the newest token still on the device", () => {
    const l = logitsOf(policies.length);
    const hs = histories();
    const tail = [5, 30, 41, 8, 10, 63];
    const got = mx.scope(() =>
      penalize(mx.array(l, { shape: [policies.length, V] }), policies, hs, mx.array(Uint32Array.from(tail))).toFloat32Array(),
    );
    policies.forEach((p, b) => expect(Array.from(got.slice(b * V, (b + 1) * V))).toEqual(Array.from(host(l, b, [...hs[b]!, tail[b]!], p))));
  });

  test("the chosen token is the host sampler's (greedy), also where the penalty makes a tie", () => {
    const l = logitsOf(policies.length);
    // row 0: token 3 (in its window) at 2.2 becomes 2.2 / 1.1 = 2 exactly in f32, tying token 1; the first wins
    l[3] = 2.2;
    l[1] = 2;
    for (let i = 4; i < V; i++) l[i] = Math.min(l[i]!, 1.5);
    l[0] = Math.min(l[0]!, 1.5);
    l[2] = Math.min(l[2]!, 1.5);
    const hs = histories();
    const want = policies.map((p, b) => {
      const params = { ...DEFAULT_SAMPLING, temperature: 0, repetitionPenalty: p.penalty?.value ?? 1, repetitionContextSize: p.penalty?.window ?? 20 };
      return sampleToken(l.slice(b * V, (b + 1) * V), params, new Rng(1), { history: hs[b] }).token;
    });
    expect(Math.fround(Math.fround(2.2) / 1.1)).toBe(2);
    expect(want[0]).toBe(1);
    const got = chooseRows(mx.array(l, { shape: [policies.length, V] }), policies, hs);
    expect(got.map((t) => (t instanceof Error ? t : t.token))).toEqual(want);
    // every token handed out joins its row's history
    expect(hs.map((h) => h.at(-1))).toEqual(want);
  });
});

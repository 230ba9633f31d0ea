/** Comparing a model loaded from GGUF with its reference from safetensors: prompt logits and greedy tokens. */
import { expect } from "bun:test";
import { tokenLoop } from "../../src/engine/generate.ts";
import type { LoadedModel } from "../../src/engine/load.ts";
import * as mx from "../../src/mlx/index.ts";
import { GOLDEN_PROMPT, GOLDEN_STEPS } from "./tiny-models.ts";

/** f32 logits of the golden prompt, every position. */
export function promptLogits(m: LoadedModel): Float32Array {
  const cache = m.model.makeCache();
  try {
    return mx.scope(() => {
      const ids = mx.array(Int32Array.from(GOLDEN_PROMPT), { shape: [1, GOLDEN_PROMPT.length], dtype: mx.Dtype.int32 });
      return m.model.logits(m.model.hidden(ids, cache)).toFloat32Array();
    });
  } finally {
    for (const c of cache) c[Symbol.dispose]();
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** GOLDEN_STEPS greedy tokens after the golden prompt, through the real decode loop. */
export const greedy = (m: LoadedModel): number[] => [...tokenLoop({ model: m.model, prompt: GOLDEN_PROMPT, maxTokens: GOLDEN_STEPS })].map((s) => s.token);

/** Logits within 1e-3 and the same GOLDEN_STEPS greedy tokens. */
export function expectSameModel(g: LoadedModel, r: LoadedModel): void {
  const [a, b] = [promptLogits(g), promptLogits(r)];
  expect(a.length).toBe(b.length);
  expect(maxAbsDiff(a, b)).toBeLessThan(1e-3);
  const tg = greedy(g);
  expect(tg).toHaveLength(GOLDEN_STEPS);
  expect(tg).toEqual(greedy(r));
}

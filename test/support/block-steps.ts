/**
 * The fused-vs-op-by-op check both block test files run: a 5-row append then 9 one-row steps through the same
 * block twice (op by op into one cache, fused into another), every output and both caches equal bit for bit.
 */
import { expect } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { StandardKVCache } from "../../src/models/cache.ts";

export const bits = (a: mx.Array) => new Uint32Array(a.toFloat32Array().buffer);

export interface BlockPair {
  unfused(x: mx.Array, cache: StandardKVCache): mx.Array;
  fused(x: mx.Array, cache: StandardKVCache): mx.Array;
}

export function appendThenSteps(c: BlockPair, Dm: number, rnd: (shape: number[]) => mx.Array): void {
  using a = new StandardKVCache();
  using b = new StandardKVCache();
  for (const L of [5, 1, 1, 1, 1, 1, 1, 1, 1, 1]) {
    mx.scope(() => {
      const x = rnd([1, L, Dm]);
      const u = c.unfused(x, a);
      const f = c.fused(x, b);
      mx.eval([u, f, ...a.state(), ...b.state()]);
      expect(bits(f)).toEqual(bits(u));
    });
  }
  expect(a.offset).toBe(14);
  expect(b.offset).toBe(14);
  const [ka, va] = a.state(), [kb, vb] = b.state();
  expect(bits(kb!)).toEqual(bits(ka!));
  expect(bits(vb!)).toEqual(bits(va!));
}

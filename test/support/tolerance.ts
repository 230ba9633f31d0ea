/** Elementwise tolerance checks and seeded random inputs shared by the kernel tests. */
import { expect } from "bun:test";
import { type Array, random } from "../../src/mlx/index.ts";

/** |a-b| ≤ atol + rtol·|b| elementwise; returns the worst ratio (≤ 1 passes). */
export function worst(a: Array, b: Array, atol: number, rtol: number): number {
  expect(a.shape).toEqual(b.shape);
  const x = a.toFloat32Array();
  const y = b.toFloat32Array();
  let w = 0;
  for (let i = 0; i < x.length; i++) w = Math.max(w, Math.abs(x[i]! - y[i]!) / (atol + rtol * Math.abs(y[i]!)));
  return w;
}

/** Normal random arrays from consecutive keys starting at `seed` (each file its own range, so inputs differ). */
export function seededNormal(seed: number): (shape: number[], scale?: number) => Array {
  let s = seed;
  return (shape, scale = 1) => random.normal({ shape, scale, key: random.key(s++) });
}

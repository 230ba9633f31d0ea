/**
 * The AVX-512 attention rows (mlx-c/src/kernels/attend.cpp: the query heads of a GQA group against each key in
 * one pass) must give every row bit for bit what the AVX2 rows give it (so goldens and batch-row identity hold
 * under either ISA), and stay within f32 rounding of MLX's attention: head widths 64/72/80/128, a value width
 * unlike the key width, groups 1/2/3/5/6/8, one query and many, causal and not, left-padded decode batches and
 * right-padded encoder batches, 0..few keys and long key ranges.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { type Array, fast, scope, slice } from "../../src/mlx/index.ts";
import { fastScaledDotProductAttention, fastSdpaKeys, fastSdpaRows, forceIsa, kernelInfo, mlxSdpaKeys, mlxSdpaRows } from "../../src/mlx/kernels.ts";
import { seededNormal, worst } from "../support/tolerance.ts";

const info = kernelInfo();
afterAll(() => forceIsa(null));
const rnd = seededNormal(1717);

/** f(), evaluated under the AVX2 and then the AVX-512 rows. */
function both(f: () => Array): [Float32Array, Float32Array, Array] {
  forceIsa("avx2");
  const a = f().toFloat32Array();
  forceIsa("avx512");
  const r = f();
  return [a, r.toFloat32Array(), r];
}

function expectSameBits(a: Float32Array, b: Float32Array): void {
  expect(b.length).toBe(a.length);
  let diff = -1;
  for (let i = 0; i < a.length && diff < 0; i++) if (!Object.is(a[i], b[i])) diff = i;
  expect(diff).toBe(-1);
}

interface Case {
  B: number;
  Hkv: number;
  group: number;
  Lq: number;
  Lk: number;
  D: number;
  Dv: number;
  causal: boolean;
  cap?: number; // keys and values as a slice of a longer cache buffer
}

const CASES: Case[] = [];
for (const D of [64, 80, 128]) {
  for (const group of [1, 2, 3, 6]) {
    CASES.push({ B: 1, Hkv: 2, group, Lq: 1, Lk: 37, D, Dv: D, causal: false, cap: 64 });
    CASES.push({ B: 2, Hkv: 1, group, Lq: 9, Lk: 9, D, Dv: D, causal: true });
  }
}
CASES.push(
  { B: 1, Hkv: 3, group: 5, Lq: 5, Lk: 21, D: 72, Dv: 24, causal: true },
  { B: 1, Hkv: 1, group: 8, Lq: 3, Lk: 300, D: 64, Dv: 96, causal: false },
  { B: 1, Hkv: 2, group: 2, Lq: 1, Lk: 1, D: 128, Dv: 128, causal: false },
  { B: 1, Hkv: 2, group: 3, Lq: 1, Lk: 3, D: 80, Dv: 40, causal: false },
  { B: 1, Hkv: 1, group: 2, Lq: 1, Lk: 1100, D: 128, Dv: 128, causal: false, cap: 1200 },
  { B: 1, Hkv: 2, group: 2, Lq: 64, Lk: 200, D: 64, Dv: 64, causal: true },
  { B: 1, Hkv: 1, group: 6, Lq: 33, Lk: 33, D: 128, Dv: 128, causal: true },
  // D and Dv not multiples of 8: the per-row path under both ISAs
  { B: 1, Hkv: 2, group: 2, Lq: 3, Lk: 10, D: 36, Dv: 20, causal: true },
);

describe.skipIf(info.level !== "avx512")("attention rows: AVX-512 vs AVX2 (needs an AVX-512 CPU)", () => {
  test("fast sdpa: bit-identical rows, within f32 rounding of MLX's attention", () => {
    for (const c of CASES) {
      scope(() => {
        const Hq = c.Hkv * c.group;
        const kv = (Dx: number) =>
          c.cap ? slice(rnd([c.B, c.Hkv, c.cap, Dx]), [0, 0, 0, 0], [c.B, c.Hkv, c.Lk, Dx]) : rnd([c.B, c.Hkv, c.Lk, Dx]);
        const q = rnd([c.B, Hq, c.Lq, c.D]);
        const k = kv(c.D);
        const v = kv(c.Dv);
        const o = { scale: c.D ** -0.5, mask: c.causal ? ("causal" as const) : null };
        const [a, b, r] = both(() => fastScaledDotProductAttention(q, k, v, o));
        expectSameBits(a, b);
        expect(worst(r, fast.scaledDotProductAttention(q, k, v, o), 1e-5, 1e-4)).toBeLessThanOrEqual(1);
      });
    }
  });

  test("causal with more queries than keys: rows with no keys give the same zeros", () => {
    scope(() => {
      const q = rnd([1, 4, 6, 64]);
      const k = rnd([1, 2, 3, 64]);
      const v = rnd([1, 2, 3, 64]);
      const [a, b] = both(() => fastScaledDotProductAttention(q, k, v, { scale: 0.125, mask: "causal" }));
      expectSameBits(a, b);
      // queries 0..2 see no key (MLX's end-aligned mask): all zeros
      for (let h = 0; h < 4; h++) for (let i = 0; i < 3 * 64; i++) expect(b[h * 6 * 64 + i]).toBe(0);
    });
  });

  test("left-padded decode batch (sdpa_rows) and right-padded encoder batch (sdpa_keys)", () => {
    for (const [Hkv, group, D] of [[2, 2, 64], [1, 3, 80], [2, 6, 128]] as const) {
      scope(() => {
        const Hq = Hkv * group;
        const q1 = rnd([3, Hq, 1, D]);
        const k1 = rnd([3, Hkv, 40, D]);
        const v1 = rnd([3, Hkv, 40, D]);
        const starts = [0, 17, 39];
        const [a, b, r] = both(() => fastSdpaRows(q1, k1, v1, D ** -0.5, starts));
        expectSameBits(a, b);
        expect(worst(r, mlxSdpaRows(q1, k1, v1, D ** -0.5, starts), 1e-5, 1e-4)).toBeLessThanOrEqual(1);

        const q = rnd([3, Hq, 12, D]);
        const k = rnd([3, Hkv, 12, D]);
        const v = rnd([3, Hkv, 12, D]);
        const lens = [12, 5, 1];
        const [c, d, s] = both(() => fastSdpaKeys(q, k, v, D ** -0.5, lens));
        expectSameBits(c, d);
        expect(worst(s, mlxSdpaKeys(q, k, v, D ** -0.5, lens), 1e-5, 1e-4)).toBeLessThanOrEqual(1);
      });
    }
  });
});

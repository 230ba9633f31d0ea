/**
 * Batched decode through our kernels: every row of a batch must come out bit-identical to the same row run
 * alone (that is what keeps batched greedy output equal to solo output): quantized matmul of [B, 1, K] rows
 * (all formats, the AVX2 and the scalar path), rope with one offset per row, and attention where each row sees
 * keys from its own start in a left-padded cache. Without our kernels the MLX fallbacks must still be right.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import {
  fastQuantizedMatmul,
  fastRope,
  fastRopeRows,
  fastScaledDotProductAttention,
  fastSdpaRows,
  forceIsa,
  forceScalarKernels,
  type KernelIsa,
  kernelInfo,
  setKernelsEnabled,
} from "../../src/mlx/kernels.ts";
import type { QuantMode } from "../../src/mlx/quant.ts";

const info = kernelInfo();
const ORDER: KernelIsa[] = ["scalar", "avx2", "avx512"];
// every ISA path this CPU runs (each has its own decode tiles: 4-row blocks on AVX2, 8 on AVX-512)
const isas = ORDER.slice(0, Math.max(0, ORDER.indexOf(info.level) + 1)) as Exclude<KernelIsa, "none">[];
afterAll(() => {
  setKernelsEnabled(null);
  forceScalarKernels(false);
  forceIsa(null);
});

let seed = 11;
const normal = (shape: number[], scale = 1) => mx.random.normal({ shape, scale, key: mx.random.key(seed++) });

function rowsOf(a: mx.Array, B: number): Float32Array[] {
  const all = a.toFloat32Array();
  const n = all.length / B;
  return Array.from({ length: B }, (_, b) => all.slice(b * n, (b + 1) * n));
}

describe.skipIf(info.level === "none")("quantized matmul: a decode batch row equals the row alone", () => {
  // N odd and not a multiple of the column chunk (column pairs leave a single column)
  const cases: { mode: QuantMode; bits: number; gs: number; K: number; N: number }[] = [
    { mode: "affine", bits: 4, gs: 32, K: 576, N: 201 },
    { mode: "affine", bits: 4, gs: 64, K: 256, N: 96 },
    { mode: "affine", bits: 4, gs: 128, K: 384, N: 37 },
    { mode: "affine", bits: 8, gs: 64, K: 320, N: 131 },
    { mode: "affine", bits: 8, gs: 32, K: 224, N: 45 },
    { mode: "mxfp4", bits: 4, gs: 32, K: 256, N: 73 },
    // long rows: x past 44 KiB, so a block without column pairs (AVX-512: 5+ rows at 4-bit, 3+ at 8-bit; AVX2: 2+)
    // runs K in blocks with its accumulators carried in memory (97 and 49 groups: a short last block), which the
    // one row (never blocked) must still equal
    { mode: "affine", bits: 4, gs: 32, K: 32 * 97, N: 19 },
    { mode: "affine", bits: 4, gs: 64, K: 64 * 49, N: 21 },
    { mode: "affine", bits: 8, gs: 32, K: 32 * 97, N: 13 },
    { mode: "affine", bits: 8, gs: 64, K: 64 * 49, N: 11 },
  ];
  for (const isa of isas) {
    for (const c of cases) {
      // 1..8 rows: every row-block height of both ISAs, 11 (a full block and a remainder), 8 rows off a cache line
      test(`${isa}: ${c.mode} ${c.bits}-bit gs ${c.gs}, B = 2..8, 11`, () => {
        forceIsa(isa);
        try {
          const w = normal([c.N, c.K], 0.2);
          const q = mx.quantize(w, { groupSize: c.gs, bits: c.bits, mode: c.mode });
          const o = { groupSize: c.gs, bits: c.bits, mode: c.mode, transpose: true };
          for (let B of [2, 3, 4, 5, 6, 7, 8, 11, -8]) {
            // -8: 8 rows starting 4 floats into a buffer (off a cache line: the kernel copies x onto one first)
            const x = B > 0 ? normal([B, 1, c.K]) : mx.reshape(mx.sliceAxis(normal([8 * c.K + 4]), 0, 4, 4 + 8 * c.K), [8, 1, c.K]);
            B = Math.abs(B);
            const batched = rowsOf(fastQuantizedMatmul(x, q.wq, q.scales, q.biases, o), B);
            for (let b = 0; b < B; b++) {
              const alone = fastQuantizedMatmul(mx.sliceAxis(x, 0, b, b + 1), q.wq, q.scales, q.biases, o).toFloat32Array();
              expect(batched[b]).toEqual(alone);
            }
          }
        } finally {
          forceIsa(null);
        }
      });
    }
  }
});

describe("rope and attention of a decode batch", () => {
  const H = 4, Hkv = 2, D = 32;
  const offsets = [5, 0, 17, 9];
  const B = offsets.length;

  for (const kernels of [true, false]) {
    const label = kernels ? "our kernels" : "MLX fallback";
    test.skipIf(kernels && info.level === "none")(`rope: row b rotated at offsets[b] as alone (${label})`, () => {
      setKernelsEnabled(kernels);
      try {
        const x = normal([B, H, 1, D]);
        for (const o of [{ dims: D, base: 10000, traditional: false }, { dims: 16, base: 500000, traditional: true, scale: 0.5 }]) {
          const got = rowsOf(fastRopeRows(x, o, offsets), B);
          offsets.forEach((off, b) => {
            const alone = fastRope(mx.sliceAxis(x, 0, b, b + 1), { ...o, offset: off }).toFloat32Array();
            if (kernels) expect(got[b]).toEqual(alone);
            else got[b]!.forEach((v, i) => expect(v).toBeCloseTo(alone[i]!, 5));
          });
        }
      } finally {
        setKernelsEnabled(null);
      }
    });

    test.skipIf(kernels && info.level === "none")(`attention: row b sees keys [starts[b], Lk) as alone (${label})`, () => {
      setKernelsEnabled(kernels);
      try {
        const Lk = 20;
        const starts = [0, 7, 19, 3];
        const q = normal([B, H, 1, D]);
        const k = normal([B, Hkv, Lk, D]);
        const v = normal([B, Hkv, Lk, D]);
        const got = rowsOf(fastSdpaRows(q, k, v, 0.125, starts), B);
        starts.forEach((s, b) => {
          const one = (a: mx.Array) => mx.slice(a, [b, 0, s, 0], [b + 1, a.shape[1]!, Lk, D]);
          const alone = fastScaledDotProductAttention(mx.sliceAxis(q, 0, b, b + 1), one(k), one(v), { scale: 0.125, mask: null }).toFloat32Array();
          if (kernels) expect(got[b]).toEqual(alone);
          else got[b]!.forEach((x, i) => expect(x).toBeCloseTo(alone[i]!, 5));
        });
      } finally {
        setKernelsEnabled(null);
      }
    });
  }
});

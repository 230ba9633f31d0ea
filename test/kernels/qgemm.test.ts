/**
 * Quantized prefill through the dequantized-panel GEMM (mlx-c/src/kernels/qgemm.cpp), forced on from one row
 * (setQgemmRows(1)) so every shape below runs it:
 * - affine 4/8-bit (groups 32/64/128) and mxfp4: MLX's op and ours both within f32 rounding of an f64 sum over
 *   MLX's dequantized weights, on M not a multiple of the 14/6-row tiles, N not a multiple of the 32-column
 *   panels, K ending mid K-block (256) and at group boundaries, and M past one task's 504 rows;
 * - K-quants (Q4_K/Q5_K/Q6_K): within f32 rounding of f64 over ggml's dequantized values;
 * - the AVX-512, AVX2 and scalar micro-kernels give the same bits (affine/mxfp4 on every ISA; K-quants on
 *   AVX-512 and AVX2, whose dequantization is the same AVX2 code — the scalar one rounds d·q − m twice, as ggml);
 * - a row's result does not depend on the other rows of the call (prefix of a prompt = the prompt's rows);
 * - the per-row kernels (setQgemmRows(0)) agree within f32 rounding, and MoE experts through kqmm_many too.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { fastQuantizedMatmul, forceIsa, int8Available, kernelInfo, setQgemmRows } from "../../src/mlx/kernels.ts";
import { KQUANT_BLOCK_BYTES, type KQuantMode, kernelGatherQmm, kquantDequantize, kquantInt8, kquantMatmul } from "../../src/mlx/kquant.ts";
import { check, FORMATS, inputs, worstRatio } from "../support/qmm-check.ts";
import { f64Matmul } from "../support/f64-ref.ts";

afterAll(() => {
  setQgemmRows(null);
  forceIsa(null);
});

const level = kernelInfo().level;
const ISAS = (level === "avx512" ? ["avx512", "avx2", "scalar"] : level === "avx2" ? ["avx2", "scalar"] : ["scalar"]) as (
  | "avx512"
  | "avx2"
  | "scalar"
)[];

function withRows<T>(n: number, f: () => T): T {
  const prev = setQgemmRows(n);
  try {
    return f();
  } finally {
    setQgemmRows(prev < 0 ? null : prev);
  }
}

function onIsa<T>(isa: "avx512" | "avx2" | "scalar", f: () => T): T {
  forceIsa(isa);
  try {
    return f();
  } finally {
    forceIsa(null);
  }
}

let seed = 29;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;

/** Random K-quant blocks with small finite fp16 d/dmin: every other bit pattern occurs. */
function kblocks(mode: KQuantMode, rows: number, K: number): mx.Array {
  const bb = KQUANT_BLOCK_BYTES[mode];
  const n = (rows * K) / 256;
  const b = Uint8Array.from({ length: n * bb }, () => Math.floor(rnd() * 256));
  for (let i = 0; i < n; i++)
    for (const o of mode === "q6_k" ? [i * bb + 208] : [i * bb, i * bb + 2]) b[o + 1] = (b[o + 1]! & 0x83) | 0x2c;
  return mx.fromBytes(b, [rows, (K / 256) * bb], mx.Dtype.uint8);
}

/** max over outputs of |got − f64| / (K·2⁻²⁴·Σ|x·w|): ≤ 1 is within f32 rounding. */
function kqWorst(x: Float32Array, w: Float32Array, got: Float32Array, M: number, N: number, K: number): number {
  const { y, mags } = f64Matmul(x, w, M, N, K);
  let worst = 0;
  for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(got[i]! - y[i]!) / (K * 2 ** -24 * mags[i]! + 1e-30));
  return worst;
}

describe.skipIf(level === "none")("qgemm: quantized prefill as a dequantized-panel GEMM", () => {
  for (const f of FORMATS) {
    const name = `${f.mode} ${f.bits}-bit gs${f.gs}`;
    test(`${name}: MLX's op and ours within f32 rounding of f64 on odd shapes`, () => {
      withRows(1, () => {
        for (const [M, K, N] of [
          [15, f.gs * 3, 37],
          [29, 256 + f.gs, 70],
          [1, 512, 33],
          [517, f.gs, 5],
        ] as const)
          check({ ...f, M, K, N });
      });
    });

    test(`${name}: AVX-512, AVX2 and scalar micro-kernels give the same bits; rows independent of the batch`, () => {
      withRows(1, () =>
        mx.scope(() => {
          const c = { ...f, M: 45, K: 256 + 2 * f.gs, N: 67 };
          const { x, wq, scales, biases, wdq } = inputs(c);
          const o = { groupSize: f.gs, bits: f.bits, mode: f.mode };
          const outs = ISAS.map((isa) => onIsa(isa, () => fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array()));
          for (const out of outs.slice(1)) expect(out).toEqual(outs[0]!);
          expect(worstRatio(x.toFloat32Array(), wdq, outs[0]!, c)).toBeLessThanOrEqual(1);
          // the first 20 rows alone (a cached prefix's rest, a shorter prompt) = those rows of the 45-row call
          const head = fastQuantizedMatmul(mx.sliceAxis(x, 0, 0, 20), wq, scales, biases, o).toFloat32Array();
          expect(head).toEqual(outs[0]!.slice(0, 20 * c.N));
          // the per-row kernels it replaces: also within f32 rounding
          const old = withRows(0, () => fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array());
          expect(worstRatio(x.toFloat32Array(), wdq, old, c)).toBeLessThanOrEqual(1);
        }),
      );
    });
  }

  test("a decode batch [B, 1, K] keeps the per-row decode kernels (bit-identical to each row alone)", () => {
    withRows(1, () =>
      mx.scope(() => {
        const c = { mode: "affine" as const, bits: 4, gs: 64, M: 20, K: 384, N: 40 };
        const { x, wq, scales, biases } = inputs(c);
        const o = { groupSize: 64, bits: 4 };
        const batch = fastQuantizedMatmul(mx.reshape(x, [20, 1, 384]), wq, scales, biases, o).toFloat32Array();
        const one = withRows(0, () => fastQuantizedMatmul(mx.sliceAxis(x, 0, 3, 4), wq, scales, biases, o).toFloat32Array());
        expect(one).toEqual(batch.slice(3 * 40, 4 * 40));
      }),
    );
  });

  for (const mode of ["q4_k", "q5_k", "q6_k"] as KQuantMode[]) {
    test(`${mode}: within f32 rounding of f64; AVX-512 = AVX2 bitwise; rows independent; per-row kernels agree`, () => {
      withRows(1, () =>
        mx.scope(() => {
          for (const [M, N, K] of [
            [17, 37, 768],
            [60, 70, 256],
            [3, 33, 512],
          ] as const) {
            const w = kblocks(mode, N, K);
            const wf = kquantDequantize(w, mode).toFloat32Array();
            const x = mx.random.normal({ shape: [M, K], key: mx.random.key(M + N) });
            const xs = x.toFloat32Array();
            const outs = ISAS.map((isa) => onIsa(isa, () => kquantMatmul(x, w, mode).toFloat32Array()));
            for (const out of outs) expect(kqWorst(xs, wf, out, M, N, K)).toBeLessThanOrEqual(1);
            if (ISAS[0] === "avx512") expect(outs[0]).toEqual(outs[1]!);
            const head = kquantMatmul(mx.sliceAxis(x, 0, 0, 2), w, mode).toFloat32Array();
            expect(head).toEqual(outs[0]!.slice(0, 2 * N));
            const old = withRows(0, () => kquantMatmul(x, w, mode).toFloat32Array());
            expect(kqWorst(xs, wf, old, M, N, K)).toBeLessThanOrEqual(1);
          }
        }),
      );
    });
  }

  // With VNNI (AVX-512) int8 prefill runs the int8 GEMM instead (kqgemm8.cpp, test/kernels/kqgemm8.test.ts).
  const vnni = level === "avx512" && int8Available();
  test("opt-in int8 activations: K-quant prefill from the threshold runs the f32 GEMM without VNNI (same bits as int8 off), the int8 GEMM with it; fewer rows the int8 tiles", () => {
    mx.scope(() => {
      const N = 37, K = 768;
      const w = mx.fromBytes(kblocks("q4_k", N, K).toUint8Array(), [N, (K / 256) * KQUANT_BLOCK_BYTES.q4_k], mx.Dtype.uint8);
      const run = (M: number, int8: boolean) => {
        const x = mx.random.normal({ shape: [M, K], key: mx.random.key(11) });
        const prev = kquantInt8(int8);
        try {
          return withRows(64, () => kquantMatmul(x, w, "q4_k").toFloat32Array());
        } finally {
          kquantInt8(prev);
        }
      };
      if (vnni) expect(run(70, true)).not.toEqual(run(70, false));
      else expect(run(70, true)).toEqual(run(70, false));
      expect(run(63, true)).not.toEqual(run(63, false));
    });
  });

  test("MoE: K-quant experts with many token rows (kqmm_many) = the per-row kernels within f32 rounding", () => {
    mx.scope(() => {
      const E = 8, N = 40, K = 512, T = 48, k = 2;
      const w = mx.fromBytes(kblocks("q4_k", E * N, K).toUint8Array(), [E, N, (K / 256) * KQUANT_BLOCK_BYTES.q4_k], mx.Dtype.uint8);
      const wf = kquantDequantize(w, "q4_k").toFloat32Array();
      const x = mx.random.normal({ shape: [T, K], key: mx.random.key(3) });
      // skewed routing: expert 0 gets every token (many rows), the others a few or one
      const idx = Int32Array.from({ length: T * k }, (_, i) => (i % k === 0 ? 0 : 1 + ((i * 7) % (E - 1)) * (i % 5 === 0 ? 1 : 0)));
      const ids = mx.array(idx, { shape: [T, k], dtype: mx.Dtype.int32 });
      const q = { groupSize: 256, bits: 4, mode: "q4_k" as const };
      // from 1 row every expert's problem is taken (kqmm_many hands a call over only whole)
      const mine = withRows(1, () => kernelGatherQmm(x, w, null, null, ids, q)!.toFloat32Array());
      const xs = x.toFloat32Array();
      for (let t = 0; t < T; t++)
        for (let s = 0; s < k; s++) {
          const e = idx[t * k + s]!;
          const got = mine.slice((t * k + s) * N, (t * k + s + 1) * N);
          expect(kqWorst(xs.slice(t * K, (t + 1) * K), wf.slice(e * N * K, (e + 1) * N * K), got, 1, N, K)).toBeLessThanOrEqual(1);
        }
    });
  });
});

describe.skipIf(level === "none")("MLXK_QGEMM_ROWS (fresh process)", () => {
  // the setting the process started with: what setQgemmRows hands back as the previous one (-1 = the defaults)
  const started = (value: string) => {
    const code = `const k = await import(${JSON.stringify(`${import.meta.dir}/../../src/mlx/kernels.ts`)}); console.log(k.setQgemmRows(7));`;
    const p = Bun.spawnSync([process.execPath, "-e", code], { env: { ...process.env, MLXK_QGEMM_ROWS: value }, stdout: "pipe", stderr: "pipe" });
    expect(p.exitCode).toBe(0);
    return Number(p.stdout.toString().trim().split("\n").at(-1));
  };

  test("a number sets the threshold (0 = never); anything else leaves the defaults", () => {
    expect(started("32")).toBe(32);
    expect(started("0")).toBe(0);
    expect(started("abc")).toBe(-1);
    expect(started("-3")).toBe(-1);
    expect(started("16x")).toBe(-1);
  });
});

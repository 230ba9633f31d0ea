/**
 * Packed K-quant kernels (mlx-c/src/kernels/kquant*.cpp) and the MoE gather kernel (gather.cpp):
 * - dequantization of Q4_K/Q5_K/Q6_K blocks is exactly ggml's (test/support/kquants.ts, which matches gguf-py
 *   0.17.1), on quantized rows and on random bytes (every scale/min bit pattern);
 * - x·Wᵀ through the AVX-512 path (decode: x split exactly into three bf16 pieces, vdpbf16ps; prefill: dequantized
 *   panels through gemm512's tiles), the AVX2 path, the scalar path and the kernels-off path (per-call
 *   dequantization + MLX matmul) agrees with an f64 reference within f32 rounding on odd shapes (decode M = 1 and
 *   prefill tiles, K up to 4096, activations spanning 2^±20); the opt-in int8-activation path (llama.cpp's q8_K,
 *   AVX2 and AVX-512 VNNI) within 8-bit rounding;
 * - kernelGatherQmm equals MLX's gather_qmm (affine 4/8-bit, mxfp4) and a reference for K-quant experts, with x
 *   shared by the k slots (gate/up) or one row per slot (down), unused experts, prefill-sized token counts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { forceIsa, forceScalarKernels, kernelInfo, setKernelsEnabled, setQgemmRows } from "../../src/mlx/kernels.ts";
import {
  KQUANT_BLOCK_BYTES,
  type KQuantDecode,
  type KQuantMode,
  kernelGatherQmm,
  kquantDecode,
  kquantDequantize,
  kquantInt8,
  kquantMatmul,
} from "../../src/mlx/kquant.ts";
import { dequantizeQ4K, dequantizeQ5K, dequantizeQ6K, quantizeQ4K, quantizeQ5K, quantizeQ6K } from "../support/kquants.ts";
import { f64Matmul, maxAbs } from "../support/f64-ref.ts";

afterAll(() => {
  setKernelsEnabled(null);
  forceScalarKernels(false);
  forceIsa(null);
  kquantDecode("auto");
});

let seed = 17;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const floats = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);

const CODECS: Record<KQuantMode, [(x: Float32Array) => Uint8Array, (b: Uint8Array) => Float32Array]> = {
  q4_k: [quantizeQ4K, dequantizeQ4K],
  q5_k: [quantizeQ5K, dequantizeQ5K],
  q6_k: [quantizeQ6K, dequantizeQ6K],
};
const MODES = Object.keys(CODECS) as KQuantMode[];
/** The K-quant kernels' AVX2 path is available; the AVX-512 one (it also needs AVX512_BF16, else AVX2 runs). */
const vector = () => kernelInfo().level === "avx2" || kernelInfo().level === "avx512";
const has512 = () => kernelInfo().level === "avx512";
/** The AVX-512 decode tiles this CPU runs ("f32": AVX-512 VBMI; "bf16": AVX512_BF16). */
const decodeModes = (): KQuantDecode[] => {
  const runs = (["f32", "bf16"] as const).filter((m) => {
    kquantDecode(m);
    return kquantDecode() === m;
  });
  kquantDecode("auto");
  return has512() ? runs : [];
};

/** Random block bytes with finite fp16 d/dmin (exponent kept small), so every other bit pattern is exercised. */
function randomBlocks(mode: KQuantMode, blocks: number): Uint8Array {
  const bb = KQUANT_BLOCK_BYTES[mode];
  const b = Uint8Array.from({ length: blocks * bb }, () => Math.floor(rnd() * 256));
  for (let i = 0; i < blocks; i++) {
    const halves = mode === "q6_k" ? [i * bb + 208] : [i * bb, i * bb + 2];
    for (const o of halves) b[o + 1] = (b[o + 1]! & 0x83) | 0x2c;
  }
  return b;
}

function weights(mode: KQuantMode, bytes: Uint8Array, rows: number): mx.Array {
  return mx.fromBytes(bytes, [rows, bytes.length / rows], mx.Dtype.uint8);
}

describe.skipIf(kernelInfo().level === "none")("K-quant kernels", () => {
  test.each(MODES)("%s: dequantization is exactly ggml's (quantized rows and random bytes)", (mode) => {
    const [q, dq] = CODECS[mode];
    for (const bytes of [q(floats(7 * 768)), randomBlocks(mode, 7 * 3)]) {
      const got = mx.scope(() => kquantDequantize(weights(mode, bytes, 7), mode).toFloat32Array());
      expect(got.length).toBe(7 * 768);
      expect(maxAbs(got, dq(bytes))).toBe(0);
    }
  });

  const SHAPES: [number, number, number][] = [
    [1, 1, 256],
    [1, 33, 1280],
    [3, 5, 512],
    [70, 37, 768],
    [1, 19, 4096],
    [7, 21, 1024],
  ];
  /** Activations of mixed magnitudes (2^-20..2^20): every bf16 piece of the AVX-512 split carries weight. */
  const wide = (n: number) => Float32Array.from(floats(n), (v, i) => v * 2 ** ((i % 41) - 20));
  // (decode tiles up to 8 rows: M = 1, 3, 7; the prefill tiles from 9)
  test.each(MODES)("%s: x·Wᵀ (AVX-512 f32 and bf16 decode, AVX2, scalar, kernels off) within f32 rounding of f64 on odd shapes", (mode) => {
    const [q, dq] = CODECS[mode];
    const paths = [...decodeModes().map((m) => `avx512 ${m}`), "avx2", "scalar", "off"];
    // plus random block bytes on the decode shapes: every scale/min bit pattern through each tile's unpacking
    const cases = [...SHAPES.map((s) => [s, false] as const), ...SHAPES.filter(([M]) => M <= 8).map((s) => [s, true] as const)];
    for (const [[M, N, K], random] of cases) {
      const bytes = random ? randomBlocks(mode, (N * K) / 256) : q(floats(N * K));
      const x = K === 4096 ? wide(M * K) : floats(M * K);
      const { y, mag } = f64Matmul(x, dq(bytes), M, N, K);
      for (const path of paths) {
        if (path === "avx2" && !vector()) continue;
        forceIsa(path.startsWith("avx512") ? "avx512" : path === "avx2" ? "avx2" : null);
        forceScalarKernels(path === "scalar");
        setKernelsEnabled(path !== "off");
        if (path.startsWith("avx512")) kquantDecode(path.slice(7) as KQuantDecode);
        try {
          const got = mx.scope(() => kquantMatmul(mx.array(x, { shape: [M, K] }), weights(mode, bytes, N), mode).toFloat32Array());
          expect(got.length).toBe(M * N);
          expect(maxAbs(got, y)).toBeLessThan(2e-6 * mag + 1e-6);
        } finally {
          forceScalarKernels(false);
          setKernelsEnabled(null);
          forceIsa(null);
          kquantDecode("auto");
        }
      }
    }
  });

  test.skipIf(!vector()).each(MODES)("%s: a row of a decode batch (up to 8 rows) is bit-identical to the row alone, every path", (mode) => {
    const [q] = CODECS[mode];
    const N = 37;
    const K = 768;
    const bytes = q(floats(N * K));
    const paths = [...decodeModes().map((m) => `avx512 ${m}`), "avx2"];
    for (const path of paths) {
      forceIsa(path.startsWith("avx512") ? "avx512" : "avx2");
      if (path.startsWith("avx512")) kquantDecode(path.slice(7) as KQuantDecode);
      try {
        for (const B of [2, 5, 8]) {
          const x = wide(B * K);
          const run = (rows: Float32Array, M: number) =>
            mx.scope(() => kquantMatmul(mx.array(rows, { shape: [M, 1, K] }), weights(mode, bytes, N), mode).toFloat32Array());
          const batch = run(x, B);
          for (let b = 0; b < B; b++) {
            const alone = run(x.slice(b * K, (b + 1) * K), 1);
            expect(Array.from(batch.subarray(b * N, (b + 1) * N))).toEqual(Array.from(alone));
          }
        }
      } finally {
        forceIsa(null);
        kquantDecode("auto");
      }
    }
  });

  test.skipIf(decodeModes().length < 2)("the f32 and bf16 decode tiles agree within f32 rounding (and MLXK_KQ_DECODE's setter round-trips)", () => {
    for (const mode of MODES) {
      const bytes = CODECS[mode][0](floats(29 * 1280));
      const x = wide(3 * 1280);
      const { mag } = f64Matmul(x, CODECS[mode][1](bytes), 3, 29, 1280);
      const outs = (["f32", "bf16"] as const).map((m) => {
        kquantDecode(m);
        expect(kquantDecode()).toBe(m);
        return mx.scope(() => kquantMatmul(mx.array(x, { shape: [3, 1280] }), weights(mode, bytes, 29), mode).toFloat32Array());
      });
      kquantDecode("auto");
      expect(maxAbs(outs[0]!, outs[1]!)).toBeLessThan(4e-6 * mag + 1e-6);
      expect(maxAbs(outs[0]!, outs[1]!)).toBeGreaterThan(0); // two different paths really ran
    }
  });

  test.skipIf(!vector()).each(MODES)("%s: opt-in int8 activations (q8_K, MLXK_INT8_ACT=1; AVX2 and VNNI) within 8-bit rounding of f64", (mode) => {
    const [q, dq] = CODECS[mode];
    const prev = kquantInt8(true);
    // the int8 tiles at every M (setQgemmRows(0): neither the f32 panel GEMM nor the int8 VNNI GEMM, kqgemm8.test.ts)
    const rows = setQgemmRows(0);
    try {
      for (const [M, N, K] of SHAPES) {
        const bytes = q(floats(N * K));
        const x = floats(M * K);
        const { y, mag } = f64Matmul(x, dq(bytes), M, N, K);
        const outs: Float32Array[] = [];
        for (const isa of has512() ? (["avx512", "avx2"] as const) : (["avx2"] as const)) {
          forceIsa(isa);
          try {
            outs.push(mx.scope(() => kquantMatmul(mx.array(x, { shape: [M, K] }), weights(mode, bytes, N), mode).toFloat32Array()));
          } finally {
            forceIsa(null);
          }
          const err = maxAbs(outs.at(-1)!, y);
          // x rounded to 1/254 of its block's max: errors are ~1% of an output's size, far above f32 rounding
          expect(err).toBeLessThan(2e-3 * mag);
          if (N * M > 100) expect(err).toBeGreaterThan(1e-5 * mag); // the int8 path really ran
        }
        // VNNI and AVX2 compute the same integer sums: equal up to the f32 accumulation order
        if (outs.length === 2) expect(maxAbs(outs[0]!, outs[1]!)).toBeLessThan(2e-5 * mag);
      }
    } finally {
      kquantInt8(prev);
      setQgemmRows(rows < 0 ? null : rows);
    }
    expect(kquantInt8()).toBe(prev);
  });

  test("leading axes of x are kept; a wrong K is refused with a message", () => {
    const bytes = quantizeQ4K(floats(3 * 256));
    mx.scope(() => {
      const w = weights("q4_k", bytes, 3);
      expect(kquantMatmul(mx.array(floats(2 * 5 * 256), { shape: [2, 5, 256] }), w, "q4_k").shape).toEqual([2, 5, 3]);
      expect(() => kquantMatmul(mx.array(floats(512), { shape: [1, 512] }), w, "q4_k")).toThrow(/last axis/);
    });
  });
});

describe.skipIf(kernelInfo().level === "none")("gather_qmm kernel (MoE experts)", () => {
  const E = 7;
  const N = 45;
  const K = 256;
  const wf = floats(E * N * K);

  function routing(T: number, k: number): Int32Array {
    // expert 6 never chosen: unused experts must cost nothing and break nothing
    return Int32Array.from({ length: T * k }, () => Math.floor(rnd() * (E - 1)));
  }

  test.each([
    ["affine", 4, 64],
    ["affine", 8, 32],
    ["mxfp4", 4, 32],
  ] as const)("%s %i-bit (group %i): equal to MLX's gather_qmm, shared and per-slot x, decode and prefill", (mode, bits, gs) => {
    mx.scope(() => {
      const q = mx.quantize(mx.array(wf, { shape: [E, N, K] }), { groupSize: gs, bits, mode });
      for (const [T, k] of [[1, 4], [3, 2], [70, 3]] as const) {
        const idx = mx.array(routing(T, k), { shape: [T, k], dtype: mx.Dtype.int32 });
        for (const perSlot of [false, true]) {
          const R = perSlot ? T * k : T;
          const x = mx.array(floats(R * K), { shape: [R, K] });
          const got = kernelGatherQmm(x, q.wq, q.scales, q.biases, idx, { groupSize: gs, bits, mode });
          expect(got).not.toBeNull();
          const xe = mx.reshape(x, perSlot ? [T, k, 1, K] : [T, 1, 1, K]);
          const ref = mx.squeeze(mx.gatherQmm(xe, q.wq, q.scales, q.biases, { groupSize: gs, bits, mode, transpose: true, rhsIndices: idx }), -2);
          expect(got!.shape).toEqual([T, k, N]);
          expect(maxAbs(got!.toFloat32Array(), ref.toFloat32Array())).toBeLessThan(5e-5);
        }
      }
    });
  });

  test.each(MODES)("%s experts: equal to x · dequant(w[e])ᵀ per (token, slot), every path, shared and per-slot x", (mode) => {
    const [quant, dq] = CODECS[mode];
    const bytes = quant(wf);
    const ref = dq(bytes);
    const paths = [
      ["avx512", false],
      ["avx2", false],
      ["avx512", true],
      ["avx2", true],
    ] as const;
    for (const [T, k, perSlot] of [[9, 3, false], [1, 4, false], [1, 4, true], [5, 2, true]] as const) {
      const route = routing(T, k);
      const R = perSlot ? T * k : T;
      const x = floats(R * K);
      for (const [isa, int8] of paths) {
        if (isa === "avx512" && !has512()) continue;
        if (!vector()) continue;
        forceIsa(isa);
        const prev = kquantInt8(int8);
        try {
          mx.scope(() => {
            const w = mx.fromBytes(bytes, [E, N, bytes.length / (E * N)], mx.Dtype.uint8);
            const got = kernelGatherQmm(mx.array(x, { shape: [R, K] }), w, null, null, mx.array(route, { shape: [T, k], dtype: mx.Dtype.int32 }), {
              groupSize: 256,
              bits: 4,
              mode,
            })!.toFloat32Array();
            for (let p = 0; p < T * k; p++) {
              const row = perSlot ? p : Math.floor(p / k);
              const e = route[p]!;
              const { y, mag } = f64Matmul(x.subarray(row * K, (row + 1) * K), ref.subarray(e * N * K, (e + 1) * N * K), 1, N, K);
              // int8 activations: within 8-bit rounding (as the matmul test above); f32: within f32 rounding
              expect(maxAbs(got.subarray(p * N, (p + 1) * N), y)).toBeLessThan(int8 ? 2e-3 * mag : 2e-6 * mag + 1e-6);
            }
          });
        } finally {
          kquantInt8(prev);
          forceIsa(null);
        }
      }
    }
  });

  test("kernels off: null, so the caller keeps MLX's gather_qmm", () => {
    setKernelsEnabled(false);
    try {
      mx.scope(() => {
        const q = mx.quantize(mx.array(wf, { shape: [E, N, K] }), { groupSize: 64, bits: 4 });
        const idx = mx.array(new Int32Array([0, 1]), { shape: [1, 2], dtype: mx.Dtype.int32 });
        expect(kernelGatherQmm(mx.array(floats(K), { shape: [1, K] }), q.wq, q.scales, q.biases, idx, { groupSize: 64, bits: 4, mode: "affine" })).toBeNull();
      });
    } finally {
      setKernelsEnabled(null);
    }
  });
});

describe.skipIf(kernelInfo().level === "none")("SwitchGLU with K-quant experts", () => {
  test("gather kernel = kernels off (experts dequantized per call, MLX's gather_mm), decode and prefill routing", async () => {
    const { QuantConfig, WeightStore } = await import("../../src/models/base.ts");
    const { SwitchGLU } = await import("../../src/models/switch_layers.ts");
    const E = 5;
    const H = 256;
    const I = 512;
    const parts: [string, KQuantMode, number, number][] = [
      ["gate_proj", "q4_k", I, H],
      ["up_proj", "q5_k", I, H],
      ["down_proj", "q6_k", H, I],
    ];
    const map = new Map<string, mx.Array>();
    const quantization: Record<string, unknown> = { group_size: 64, bits: 4 };
    for (const [name, mode, n, k] of parts) {
      const bytes = CODECS[mode][0](floats(E * n * k, 1 / Math.sqrt(k)));
      map.set(`e.${name}.weight`, mx.keep(mx.fromBytes(bytes, [E, n, bytes.length / (E * n)], mx.Dtype.uint8)));
      quantization[`e.${name}`] = { group_size: 256, bits: 4, mode };
    }
    const store = new WeightStore(map, QuantConfig.from({ quantization }));
    const glu = new SwitchGLU(store, "e", (g, u) => mx.multiply(mx.silu(g), u));
    try {
      for (const T of [1, 37]) {
        const x = floats(T * H);
        const idx = Int32Array.from({ length: T * 2 }, (_, i) => (i * 3 + (i >> 1)) % E);
        const run = (on: boolean) => {
          setKernelsEnabled(on);
          try {
            return mx.scope(() =>
              glu.forward(mx.array(x, { shape: [1, T, H] }), mx.array(idx, { shape: [1, T, 2], dtype: mx.Dtype.int32 })).toFloat32Array(),
            );
          } finally {
            setKernelsEnabled(null);
          }
        };
        const on = run(true);
        const off = run(false);
        expect(on.length).toBe(T * 2 * H);
        expect(maxAbs(on, off)).toBeLessThan(1e-4);
      }
    } finally {
      mx.disposeAll(store.all());
    }
  });
});

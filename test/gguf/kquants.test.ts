/**
 * K- and IQ4-quant decoding against ggml's reference dequantizers (test/support/kquants.ts, identical to
 * llama.cpp's gguf-py 0.17.1 on these blocks, checked once outside the suite): our Q4_K → MLX affine repack, Q5_K codes and Q6_K decode are exact, MLX's own Q6_K
 * decode is right to fp16 rounding, and MLX 0.32.4's own Q4_K decode is wrong — why mlxk reads these itself. When that last
 * test fails, MLX has fixed its reader. Where our kernels run, Q4_K/Q5_K/Q6_K stay packed (the file's bytes) and
 * give the same logits and greedy tokens as the widened layouts, with kernels on and off.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { q4kToAffine } from "../../src/engine/gguf-kquants.ts";
import { loadGgufModel } from "../../src/engine/load.ts";
import { setKernelsEnabled } from "../../src/mlx/kernels.ts";
import { kquantPackable } from "../../src/mlx/kquant.ts";
import { expectSameModel } from "../support/gguf-compare.ts";
import { tinyGguf } from "../support/hf-to-gguf.ts";
import * as mx from "../../src/mlx/index.ts";
import { encodeGguf } from "../support/gguf-writer.ts";
import {
  dequantizeIQ4NL,
  dequantizeIQ4XS,
  dequantizeQ4K,
  dequantizeQ5K,
  dequantizeQ6K,
  quantizeIQ4NL,
  quantizeIQ4XS,
  quantizeQ4K,
  quantizeQ5K,
  quantizeQ6K,
} from "../support/kquants.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-kq-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let seed = 7;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const x = Float32Array.from({ length: 16 * 512 }, () => (rnd() * 2 - 1) * 0.5);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

function mlxDecode(type: "Q4_K" | "Q6_K", data: Uint8Array): Float32Array {
  const p = join(tmp, `${type}.gguf`);
  writeFileSync(p, encodeGguf({ "general.architecture": "llama" }, [{ name: "w.weight", shape: [16, 512], type, data }]));
  const w = mx.loadGguf(p).weights;
  try {
    return w.get("w.weight")!.astype(mx.Dtype.float32).toFloat32Array();
  } finally {
    mx.disposeAll(w);
  }
}

describe("K-quants", () => {
  test("the types health calls runnable are exactly the ones the reader decodes", async () => {
    const { TS_TENSOR_TYPES } = await import("../../src/engine/gguf-tensors.ts");
    const { GGUF_TENSOR_TYPES } = await import("../../src/gguf/config.ts");
    expect([...TS_TENSOR_TYPES].sort()).toEqual([...GGUF_TENSOR_TYPES].sort());
  });

  test("Q4_K repacked as MLX affine 4-bit (group 32) decodes to ggml's values", () => {
    const bytes = quantizeQ4K(x);
    const ref = dequantizeQ4K(bytes);
    expect(maxAbsDiff(ref, x)).toBeLessThan(0.05); // the test quantizer is sane
    const q = q4kToAffine(bytes, [16, 512]);
    try {
      const got = mx.scope(() => mx.dequantize(q.weight, q.scales, q.biases, { groupSize: 32, bits: 4 }).toFloat32Array());
      expect(maxAbsDiff(got, ref)).toBeLessThan(1e-6);
    } finally {
      mx.disposeAll([q.weight, q.scales, q.biases]);
    }
  });

  test("our reader: Q5_K/IQ4_NL/IQ4_XS as 8-bit affine codes and Q6_K as floats give ggml's values exactly", async () => {
    const { loadTensors } = await import("../../src/engine/gguf-tensors.ts");
    const { readGguf } = await import("../../src/gguf/reader.ts");
    for (const [type, q, dq] of [
      ["Q5_K", quantizeQ5K, dequantizeQ5K],
      ["Q6_K", quantizeQ6K, dequantizeQ6K],
      ["IQ4_NL", quantizeIQ4NL, dequantizeIQ4NL],
      ["IQ4_XS", quantizeIQ4XS, dequantizeIQ4XS],
    ] as const) {
      const bytes = q(x);
      const p = join(tmp, `own-${type}.gguf`);
      writeFileSync(p, encodeGguf({ "general.architecture": "llama" }, [{ name: "w.weight", shape: [16, 512], type, data: bytes }]));
      const w = loadTensors(p, readGguf(p).tensors);
      try {
        const got = mx.scope(() => {
          const s = w.get("w.scales");
          const a = s ? mx.dequantize(w.get("w.weight")!, s, w.get("w.biases")!, { groupSize: 32, bits: 8 }) : w.get("w.weight")!;
          return a.astype(mx.Dtype.float32).toFloat32Array();
        });
        expect(maxAbsDiff(got, dq(bytes))).toBeLessThan(1e-6);
      } finally {
        mx.disposeAll(w);
      }
    }
  });

  test("MLX's Q6_K decode matches ggml's to fp16 rounding", () => {
    const bytes = quantizeQ6K(x);
    expect(maxAbsDiff(mlxDecode("Q6_K", bytes), dequantizeQ6K(bytes))).toBeLessThan(2.5e-4);
  });

  test("MLX 0.32.4's own Q4_K decode is wrong (odd sub-blocks), so mlxk never uses it", () => {
    const bytes = quantizeQ4K(x);
    expect(maxAbsDiff(mlxDecode("Q4_K", bytes), dequantizeQ4K(bytes))).toBeGreaterThan(0.01);
  });
});

describe.skipIf(!kquantPackable())("K-quants stay packed (our kernels)", () => {
  test("Q4_K_M file: Q4_K/Q6_K tensors are the file's bytes (uint8 blocks, modes q4_k/q6_k), nothing widened", async () => {
    const { ggufPaths } = tinyGguf("wide_llama", join(tmp, "packed-q4km"), { type: "Q4_K_M" });
    const { ggufToModel } = await import("../../src/engine/gguf.ts");
    const { readGguf } = await import("../../src/gguf/reader.ts");
    const infos = readGguf(ggufPaths[0]!).tensors;
    const kBytes = infos.filter((t) => t.typeName.endsWith("_K")).reduce((a, t) => a + t.byteSize!, 0);
    const { config, tensors } = ggufToModel(ggufPaths[0]!);
    try {
      const q = config.quantization as Record<string, { mode?: string }>;
      const packed = [...tensors].filter(([, a]) => a.dtype === mx.Dtype.uint8);
      expect(packed.length).toBeGreaterThan(0);
      expect(packed.reduce((a, [, t]) => a + t.nbytes, 0)).toBe(kBytes);
      for (const [k] of packed) expect(q[k.replace(/\.weight$/, "")]?.mode).toMatch(/^q[46]_k$/);
      expect([...tensors.keys()].some((k) => k.endsWith(".scales"))).toBe(false);
    } finally {
      mx.disposeAll(tensors);
    }
  });

  test.each(["Q4_K_M", "Q5_K_M"] as const)("%s: packed = widened (logits, 32 greedy tokens), and packed with kernels off", async (type) => {
    const { ggufPaths } = tinyGguf("wide_llama", join(tmp, `packed-${type}`), { type });
    using packed = await loadGgufModel(ggufPaths[0]!, { dtype: "float32" });
    setKernelsEnabled(false); // MLXK_KERNELS=0 at load: K-quants widened to MLX layouts
    using widened = await loadGgufModel(ggufPaths[0]!, { dtype: "float32" }).finally(() => setKernelsEnabled(null));
    expectSameModel(packed, widened); // packed through our kernels
    setKernelsEnabled(false);
    try {
      expectSameModel(packed, widened); // packed with kernels off: dequantized per call
    } finally {
      setKernelsEnabled(null);
    }
  }, 60_000);
});

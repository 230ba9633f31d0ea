/**
 * The fused decode MoE (mlx-c/src/kernels/moe.cpp through softmaxTopKMoe): router top k as MLX's argpartition
 * picks it (ties included), weights, K-quant gate/up/down, SwiGLU and the weighted sum equal the op-by-op graph
 * with our kernels bit for bit, on odd shapes (experts, k, hidden and expert widths, Q4_K/Q5_K/Q6_K mixes,
 * renormalised or not), and the MLX-ops graph (kernels off) within f32 rounding; a decode batch's rows equal each
 * row alone; prefill (tokens grouped by expert in the kernel) equals the graph too; other activations and biased
 * experts keep the graph.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { kernelInfo, setKernelsEnabled } from "../../src/mlx/kernels.ts";
import { type KQuantMode, kquantInt8, kquantPackable } from "../../src/mlx/kquant.ts";
import { fusedMoeBuilt, setFusedMoe } from "../../src/mlx/moe.ts";
import { QuantConfig, WeightStore } from "../../src/models/base.ts";
import { swiglu } from "../../src/models/layers.ts";
import { softmaxTopKMoe, SwitchGLU } from "../../src/models/switch_layers.ts";
import { maxAbs } from "../support/f64-ref.ts";
import { quantizeQ4K, quantizeQ5K, quantizeQ6K } from "../support/kquants.ts";

afterAll(() => {
  setKernelsEnabled(null);
  setFusedMoe(null);
});

let seed = 29;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const floats = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);
const QUANT: Record<KQuantMode, (x: Float32Array) => Uint8Array> = { q4_k: quantizeQ4K, q5_k: quantizeQ5K, q6_k: quantizeQ6K };

function experts(E: number, H: number, I: number, modes: [KQuantMode, KQuantMode, KQuantMode], act = swiglu): { glu: SwitchGLU; store: WeightStore } {
  const map = new Map<string, mx.Array>();
  const quantization: Record<string, unknown> = { group_size: 64, bits: 4 };
  const parts: [string, number, number][] = [["gate_proj", I, H], ["up_proj", I, H], ["down_proj", H, I]];
  parts.forEach(([name, n, k], i) => {
    const bytes = QUANT[modes[i]!](floats(E * n * k, 1 / Math.sqrt(k)));
    map.set(`e.${name}.weight`, mx.keep(mx.fromBytes(bytes, [E, n, bytes.length / (E * n)], mx.Dtype.uint8)));
    quantization[`e.${name}`] = { group_size: 256, bits: 4, mode: modes[i] };
  });
  const store = new WeightStore(map, QuantConfig.from({ quantization }));
  return { glu: new SwitchGLU(store, "e", act), store };
}

/** softmaxTopKMoe's output for x [B, L, H] and logits [B, L, E]: fused (if it runs), graph with kernels, MLX ops. */
function moe(glu: SwitchGLU, x: Float32Array, logits: Float32Array, shape: [number, number, number], E: number, k: number, norm: boolean, how: "fused" | "graph" | "mlx"): Float32Array {
  setKernelsEnabled(how !== "mlx");
  setFusedMoe(how === "fused" ? null : false);
  try {
    return mx.scope(() =>
      softmaxTopKMoe(glu, mx.array(x, { shape }), mx.array(logits, { shape: [shape[0], shape[1], E] }), k, norm).toFloat32Array(),
    );
  } finally {
    setKernelsEnabled(null);
    setFusedMoe(null);
  }
}

describe.skipIf(kernelInfo().level === "none" || !kquantPackable())("fused MoE", () => {
  const shapes: [number, number, number, number, [KQuantMode, KQuantMode, KQuantMode], boolean][] = [
    // E, k, H, I, gate/up/down types, renormalise
    [5, 2, 256, 512, ["q4_k", "q5_k", "q6_k"], true],
    [7, 3, 768, 256, ["q6_k", "q4_k", "q5_k"], false],
    [64, 8, 512, 256, ["q4_k", "q4_k", "q6_k"], true],
    [9, 1, 256, 768, ["q5_k", "q6_k", "q4_k"], true],
    [3, 3, 256, 256, ["q4_k", "q4_k", "q4_k"], false],
  ];
  test.each(shapes)("E %i top %i, H %i, I %i, %j, norm %p: = the graph bit for bit, = MLX's ops within f32 rounding", (E, k, H, I, modes, norm) => {
    const { glu, store } = experts(E, H, I, modes);
    try {
      for (let rep = 0; rep < 3; rep++) {
        const x = floats(H);
        const logits = floats(E, 4);
        const before = fusedMoeBuilt();
        const fused = moe(glu, x, logits, [1, 1, H], E, k, norm, "fused");
        expect(fusedMoeBuilt()).toBe(before + 1);
        const graph = moe(glu, x, logits, [1, 1, H], E, k, norm, "graph");
        expect(fusedMoeBuilt()).toBe(before + 1);
        expect(fused).toEqual(graph);
        const ref = moe(glu, x, logits, [1, 1, H], E, k, norm, "mlx");
        const mag = Math.max(...ref.map(Math.abs));
        expect(maxAbs(fused, ref)).toBeLessThan(1e-5 * mag + 1e-6);
      }
    } finally {
      mx.disposeAll(store.all());
    }
  });

  test("ties in the router resolve as MLX's argpartition (same experts, same slot order)", () => {
    const E = 11, H = 256, I = 256;
    const { glu, store } = experts(E, H, I, ["q4_k", "q4_k", "q6_k"]);
    try {
      const x = floats(H);
      const cases = [
        new Float32Array(E).fill(0.5), // all equal
        Float32Array.from({ length: E }, (_, i) => (i % 3 === 0 ? 1 : i % 3 === 1 ? 0.25 : -1)), // ties across the cut
        Float32Array.from({ length: E }, (_, i) => (i < 4 ? 2 : 2 - 1e-9 * i)), // rounds to ties after softmax
      ];
      for (const logits of cases)
        for (const k of [1, 2, 4, 6]) {
          const fused = moe(glu, x, logits, [1, 1, H], E, k, true, "fused");
          expect(fused).toEqual(moe(glu, x, logits, [1, 1, H], E, k, true, "graph"));
        }
    } finally {
      mx.disposeAll(store.all());
    }
  });

  test("a decode batch [B, 1, H]: each row as it runs alone, = the graph", () => {
    const E = 6, k = 2, H = 512, I = 256, B = 3;
    const { glu, store } = experts(E, H, I, ["q5_k", "q4_k", "q6_k"]);
    try {
      const x = floats(B * H);
      const logits = floats(B * E, 3);
      const batch = moe(glu, x, logits, [B, 1, H], E, k, true, "fused");
      expect(batch).toEqual(moe(glu, x, logits, [B, 1, H], E, k, true, "graph"));
      for (let b = 0; b < B; b++) {
        const one = moe(glu, x.subarray(b * H, (b + 1) * H), logits.subarray(b * E, (b + 1) * E), [1, 1, H], E, k, true, "fused");
        expect(batch.subarray(b * H, (b + 1) * H)).toEqual(one);
      }
    } finally {
      mx.disposeAll(store.all());
    }
  });

  // prefill: tokens grouped by expert inside the kernel; few rows per expert (per-row tiles) and many (the panel GEMM)
  const prefill: [number, number, number, number, number, [KQuantMode, KQuantMode, KQuantMode], boolean][] = [
    // T, E, k, H, I, types, renormalise
    [5, 4, 2, 256, 256, ["q4_k", "q4_k", "q4_k"], true],
    [3, 7, 3, 512, 256, ["q6_k", "q4_k", "q5_k"], false],
    [70, 4, 2, 256, 512, ["q4_k", "q5_k", "q6_k"], true],
    [130, 16, 4, 256, 256, ["q4_k", "q4_k", "q6_k"], true],
  ];
  test.each(prefill)("prefill T %i, E %i top %i, H %i, I %i, %j, norm %p: fused, = the graph bit for bit", (T, E, k, H, I, modes, norm) => {
    const { glu, store } = experts(E, H, I, modes);
    try {
      const x = floats(T * H);
      const logits = floats(T * E, 3);
      const before = fusedMoeBuilt();
      const fused = moe(glu, x, logits, [1, T, H], E, k, norm, "fused");
      expect(fusedMoeBuilt()).toBe(before + 1);
      expect(fused).toEqual(moe(glu, x, logits, [1, T, H], E, k, norm, "graph"));
      const ref = moe(glu, x, logits, [1, T, H], E, k, norm, "mlx");
      const mag = Math.max(...ref.map(Math.abs));
      expect(maxAbs(fused, ref)).toBeLessThan(1e-5 * mag + 1e-6);
    } finally {
      mx.disposeAll(store.all());
    }
  });

  test("prefill with the opt-in int8 activations (q8_K tiles and the VNNI GEMM): = the graph bit for bit", () => {
    const E = 4, k = 2, H = 256, I = 512;
    const { glu, store } = experts(E, H, I, ["q4_k", "q5_k", "q6_k"]);
    const prev = kquantInt8(true);
    try {
      for (const T of [3, 40]) {
        const x = floats(T * H);
        const logits = floats(T * E, 3);
        const fused = moe(glu, x, logits, [1, T, H], E, k, true, "fused");
        expect(fused).toEqual(moe(glu, x, logits, [1, T, H], E, k, true, "graph"));
      }
    } finally {
      kquantInt8(prev);
      mx.disposeAll(store.all());
    }
  });

  test("a batch of prefills [B, L, H]: each sequence as it runs alone, = the graph", () => {
    const E = 5, k = 2, H = 256, I = 256, B = 2, L = 9;
    const { glu, store } = experts(E, H, I, ["q4_k", "q6_k", "q4_k"]);
    try {
      const x = floats(B * L * H);
      const logits = floats(B * L * E, 3);
      const batch = moe(glu, x, logits, [B, L, H], E, k, true, "fused");
      expect(batch).toEqual(moe(glu, x, logits, [B, L, H], E, k, true, "graph"));
      for (let b = 0; b < B; b++) {
        const one = moe(glu, x.subarray(b * L * H, (b + 1) * L * H), logits.subarray(b * L * E, (b + 1) * L * E), [1, L, H], E, k, true, "fused");
        expect(batch.subarray(b * L * H, (b + 1) * L * H)).toEqual(one);
      }
    } finally {
      mx.disposeAll(store.all());
    }
  });

  test("other activations keep the graph", () => {
    const E = 4, k = 2, H = 256, I = 256;
    const { store } = experts(E, H, I, ["q4_k", "q4_k", "q4_k"]);
    const other = new SwitchGLU(store, "e", (g, u) => mx.multiply(mx.silu(g), u));
    try {
      const before = fusedMoeBuilt();
      const x = floats(5 * H);
      const logits = floats(5 * E);
      moe(other, x.subarray(0, H), logits.subarray(0, E), [1, 1, H], E, k, true, "fused");
      moe(other, x, logits, [1, 5, H], E, k, true, "fused");
      expect(fusedMoeBuilt()).toBe(before);
    } finally {
      mx.disposeAll(store.all());
    }
  });
});

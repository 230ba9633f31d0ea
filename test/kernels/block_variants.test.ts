/**
 * The fused decoder block's later cases must give exactly what the op-by-op block gives (as block.test.ts
 * checks for the dense affine block): per-head q/k RMSNorms before rope (qwen3), GGUF K-quant projections
 * (Q4_K / Q5_K / Q6_K blocks mixed with affine ones, biases; f32 and the opt-in int8 activations), and the attention half alone (blockAttn) before
 * an MLP built as a graph (MoE). Bit-identical outputs and KV caches on odd shapes, declines where the
 * kernels cannot take a case, and bit-identical logits and greedy tokens on tiny models (qwen3 and qwen3_moe
 * with q/k norms, K-quant GGUFs, MoE layers). Every case checks the fused path really ran.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadGgufModel, loadModelDir, type LoadedModel } from "../../src/engine/load.ts";
import { kernelOps } from "../../src/mlx/backend.ts";
import {
  type AnyBlockLinear,
  blockAttn,
  blockAttnMlp,
  blockQkv,
  type BlockRope,
  fusedAttnBuilt,
  fusedBlocksBuilt,
  setFusedBlocks,
} from "../../src/mlx/block.ts";
import * as mx from "../../src/mlx/index.ts";
import { kernelInfo } from "../../src/mlx/kernels.ts";
import { KQUANT_BLOCK_BYTES, kquantInt8, type KQuantMode, kquantPackable } from "../../src/mlx/kquant.ts";
import { StandardKVCache } from "../../src/models/cache.ts";
import { tinyGguf } from "../support/hf-to-gguf.ts";
import { quantizeQ4K, quantizeQ5K, quantizeQ6K } from "../support/kquants.ts";
import { appendThenSteps, bits } from "../support/block-steps.ts";
import { seededNormal } from "../support/tolerance.ts";
import { GOLDEN_PROMPT, writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-block-v-"));
afterAll(() => {
  setFusedBlocks(null);
  rmSync(tmp, { recursive: true, force: true });
});
const rnd = seededNormal(4300);
let seed = 11;
const uniform = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296) * 2 - 1;

/** "q4_k" etc.: K-quant blocks of random values; [bits, gs]: MLX affine. */
type Fmt = KQuantMode | [number, number];
const QUANTIZE = { q4_k: quantizeQ4K, q5_k: quantizeQ5K, q6_k: quantizeQ6K };

function qlinear(N: number, K: number, f: Fmt, bias: boolean): AnyBlockLinear {
  const b = bias ? rnd([N], 0.1) : null;
  if (typeof f === "string") {
    const blocks = QUANTIZE[f](Float32Array.from({ length: N * K }, () => uniform() * 0.3));
    const weight = mx.array(blocks, { shape: [N, (K / 256) * KQUANT_BLOCK_BYTES[f]], dtype: mx.Dtype.uint8 });
    return mx.keep({ weight, kquant: f, bias: b });
  }
  const [bits, gs] = f;
  const q = mx.quantize(rnd([N, K], 0.2), { groupSize: gs, bits, mode: "affine" });
  return mx.keep({ weight: q.wq, scales: q.scales, biases: q.biases!, bias: b, bits, groupSize: gs });
}

/** What Linear.forward builds for l. */
function linear(x: mx.Array, l: AnyBlockLinear): mx.Array {
  const y = "kquant" in l
    ? kernelOps.kquantMatmul(x, l.weight, l.kquant)
    : kernelOps.quantizedMatmul(x, l.weight, l.scales, l.biases, { transpose: true, groupSize: l.groupSize, bits: l.bits, mode: "affine" });
  return l.bias ? mx.add(y, l.bias) : y;
}

const parts = (l: AnyBlockLinear) => ("kquant" in l ? [l.weight, l.bias] : [l.weight, l.scales, l.biases, l.bias]);
const heads = (x: mx.Array, n: number) => mx.transpose(mx.reshape(x, [1, x.shape[1]!, n, -1]), [0, 2, 1, 3]);

interface Shape {
  Dm: number;
  Hq: number;
  Hkv: number;
  D: number;
  Dv: number;
  F: number;
  /** q, k, v, o, gate, up, down */
  fmt: [Fmt, Fmt, Fmt, Fmt, Fmt, Fmt, Fmt];
  bias: boolean;
  qkNorm: boolean;
  rope: boolean;
  /** The attention half fused (blockAttn), the MLP as a graph (a MoE block's shape of the fused path). */
  attnOnly: boolean;
}

/** One block of random weights, applied fused and op by op (attention.ts + transformer.ts, pre-norm). */
function blockCase(s: Shape) {
  const [fq, fk, fv, fo, fg, fu, fd] = s.fmt;
  const norm = (n: number) => mx.keep(mx.add(rnd([n], 0.1), mx.scalar(1)));
  const w = {
    q: qlinear(s.Hq * s.D, s.Dm, fq, s.bias),
    k: qlinear(s.Hkv * s.D, s.Dm, fk, s.bias),
    v: qlinear(s.Hkv * s.Dv, s.Dm, fv, s.bias),
    o: qlinear(s.Dm, s.Hq * s.Dv, fo, false),
    gate: qlinear(s.F, s.Dm, fg, false),
    up: qlinear(s.F, s.Dm, fu, false),
    down: qlinear(s.Dm, s.F, fd, false),
  };
  const n = { n1: norm(s.Dm), n2: norm(s.Dm), qn: s.qkNorm ? norm(s.D) : null, kn: s.qkNorm ? norm(s.D) : null };
  const dims = s.D - 8;
  const rope: BlockRope | null = s.rope ? { dims, traditional: false, base: 1000000, scale: 1, freqs: null } : null;
  const eps = 1e-5, qkEps = 1e-6, scale = s.D ** -0.5;
  const mlp = (h: mx.Array) => {
    const m = kernelOps.rmsNorm(h, n.n2, eps);
    return mx.add(h, linear(kernelOps.swiglu(linear(m, w.gate), linear(m, w.up)), w.down));
  };
  const unfused = (x: mx.Array, cache: StandardKVCache) => {
    const xn = kernelOps.rmsNorm(x, n.n1, eps);
    let q = heads(linear(xn, w.q), s.Hq);
    let k = heads(linear(xn, w.k), s.Hkv);
    const v = heads(linear(xn, w.v), s.Hkv);
    if (n.qn) q = kernelOps.rmsNorm(q, n.qn, qkEps);
    if (n.kn) k = kernelOps.rmsNorm(k, n.kn, qkEps);
    if (rope) {
      const o = { dims, traditional: false, base: rope.base, scale: rope.scale, offset: cache.offset };
      q = kernelOps.rope(q, o);
      k = kernelOps.rope(k, o);
    }
    const L = x.shape[1]!;
    const [keys, values] = cache.updateAndFetch(k, v);
    const att = kernelOps.sdpa(q, keys, values, { scale, mask: L > 1 ? "causal" : null });
    return mlp(mx.add(x, linear(mx.reshape(mx.transpose(att, [0, 2, 1, 3]), [1, L, -1]), w.o)));
  };
  const fused = (x: mx.Array, cache: StandardKVCache) => {
    const qkv = blockQkv(x, n.n1, [w.q, w.k, w.v], {
      heads: s.Hq, kvHeads: s.Hkv, headDim: s.D, valueDim: s.Dv, rope, offsets: [cache.offset], eps, qNorm: n.qn, kNorm: n.kn, qkEps,
    });
    expect(qkv).not.toBeNull();
    const [q, k, v] = qkv!;
    const [keys, values, len] = cache.updateBuffers(k, v);
    if (s.attnOnly) {
      const h = blockAttn(q, keys, values, { length: len, starts: [0] }, x, w.o, { scale });
      expect(h).not.toBeNull();
      return mlp(h!);
    }
    const y = blockAttnMlp(q, keys, values, { length: len, starts: [0] }, x, n.n2, { o: w.o, gate: w.gate, up: w.up, down: w.down }, { scale, eps });
    expect(y).not.toBeNull();
    return y!;
  };
  const dispose = () => [...Object.values(w).flatMap(parts), ...Object.values(n)].forEach((a) => a?.dispose());
  return { unfused, fused, dispose };
}

const A4: Fmt = [4, 32], A8: Fmt = [8, 32];

describe.skipIf(kernelInfo().level === "none" || !kquantPackable())("fused block variants = op-by-op block, bit for bit", () => {
  const shapes: [string, Shape][] = [
    ["Qwen3-like per-head q/k norms, affine 4-bit, rope", { Dm: 128, Hq: 4, Hkv: 2, D: 32, Dv: 32, F: 192, fmt: [A4, A4, A4, A4, A4, A4, A4], bias: false, qkNorm: true, rope: true, attnOnly: false }],
    ["Q4_K/Q6_K projections, affine o (rows of 160), head 80, biases", { Dm: 256, Hq: 2, Hkv: 1, D: 80, Dv: 80, F: 512, fmt: ["q4_k", "q4_k", "q6_k", A8, "q4_k", "q4_k", "q6_k"], bias: true, qkNorm: false, rope: true, attnOnly: false }],
    ["all K-quants (Q5_K, Q4_K, Q6_K) with q/k norms, key width 96 ≠ value width 64, no rope", { Dm: 256, Hq: 4, Hkv: 2, D: 96, Dv: 64, F: 512, fmt: ["q5_k", "q4_k", "q6_k", "q4_k", "q5_k", "q6_k", "q4_k"], bias: false, qkNorm: true, rope: false, attnOnly: false }],
    ["attention half alone (MoE-shaped), q/k norms, K-quant o, 3 heads over 1", { Dm: 256, Hq: 3, Hkv: 1, D: 64, Dv: 64, F: 512, fmt: ["q4_k", "q4_k", "q6_k", A4, A4, A4, A4], bias: false, qkNorm: true, rope: true, attnOnly: true }],
    ["attention half alone, affine with biases, no q/k norms", { Dm: 96, Hq: 3, Hkv: 3, D: 32, Dv: 64, F: 64, fmt: [A4, A8, A4, A8, A4, A4, A4], bias: true, qkNorm: false, rope: true, attnOnly: true }],
  ];
  const kShapes = shapes.filter(([, s]) => s.fmt.some((f) => typeof f === "string"));
  const cases: [string, Shape, boolean][] = [...shapes.map(([n, s]): [string, Shape, boolean] => [n, s, false]),
    ...kShapes.map(([n, s]): [string, Shape, boolean] => [`${n}, int8 activations (MLXK_INT8_ACT)`, s, true])];
  test.each(cases)("%s: a 5-row append then 9 one-row steps, outputs and caches", (_, s, int8) => {
    const was = kquantInt8(int8);
    const c = blockCase(s);
    const before = fusedBlocksBuilt(), attnBefore = fusedAttnBuilt();
    try {
      appendThenSteps(c, s.Dm, rnd);
      expect(fusedBlocksBuilt() - before).toBe(10);
      expect(fusedAttnBuilt() - attnBefore).toBe(s.attnOnly ? 10 : 0);
    } finally {
      kquantInt8(was);
      c.dispose();
    }
  });

  test("declined, not mis-computed: q/k norm weights of the wrong width, K-quant rows the input does not match", () => {
    const w = qlinear(64, 128, A4, false);
    const kq = qlinear(64, 256, "q4_k", false);
    const o = { heads: 2, kvHeads: 2, headDim: 32, valueDim: 32, rope: null, offsets: [0], eps: 1e-5 };
    mx.scope(() => {
      const x = rnd([1, 1, 128]);
      expect(blockQkv(x, mx.ones([128]), [w, w, w], { ...o, qNorm: mx.ones([31]) })).toBeNull();
      expect(blockQkv(x, mx.ones([128]), [w, w, w], { ...o, kNorm: mx.ones([64]) })).toBeNull();
      expect(blockQkv(x, mx.ones([128]), [w, kq, w], o)).toBeNull(); // kq's rows hold 256 values, x has 128
      expect(blockQkv(x, mx.ones([128]), [w, w, w], { ...o, qNorm: mx.ones([32]), kNorm: mx.ones([32]) })).not.toBeNull();
    });
    [...parts(w), ...parts(kq)].forEach((a) => a?.dispose());
  });
});

function run(m: LoadedModel, prompt: readonly number[], n: number, fused: boolean): { tokens: number[]; logits: Uint32Array[] } {
  setFusedBlocks(fused);
  try {
    const steps = [...tokenLoop({ model: m.model, prompt, maxTokens: n, wantLogits: true })];
    return { tokens: steps.map((s) => s.token), logits: steps.map((s) => new Uint32Array(s.logits!.buffer.slice(0))) };
  } finally {
    setFusedBlocks(null);
  }
}

function expectSame(m: LoadedModel, attnOnly: boolean): void {
  const before = fusedBlocksBuilt(), attnBefore = fusedAttnBuilt();
  const on = run(m, GOLDEN_PROMPT, 24, true);
  expect(fusedBlocksBuilt()).toBeGreaterThan(before);
  expect(fusedAttnBuilt() > attnBefore).toBe(attnOnly);
  const off = run(m, GOLDEN_PROMPT, 24, false);
  expect(on.tokens).toHaveLength(24);
  expect(on.tokens).toEqual(off.tokens);
  expect(on.logits.length).toBe(off.logits.length);
  on.logits.forEach((l, i) => expect(l).toEqual(off.logits[i]!));
}

describe.skipIf(kernelInfo().level === "none" || !kquantPackable())("models: logits and greedy tokens with the fused block on = off", () => {
  test("qwen3_moe_q4 (q/k norms, every layer MoE: attention half fused), 24 tokens", async () => {
    using m = await loadModelDir(writeTinyModel("qwen3_moe_q4", join(tmp, "qwen3_moe_q4")), { dtype: "float32", streams: 1 });
    expectSame(m, true);
  });

  test.each([
    ["qwen3", "Q4_1", false],
    ["qwen3_moe", "Q8_0", true],
    ["wide_llama", "Q4_K_M", false],
    ["wide_llama", "Q5_K_M", false],
  ] as const)("%s GGUF %s, 24 tokens", async (name, type, attnOnly) => {
    const { ggufPaths } = tinyGguf(name, join(tmp, `${name}-${type}`), { type });
    using m = await loadGgufModel(ggufPaths[0]!, { dtype: "float32", streams: 1 });
    expectSame(m, attnOnly);
  }, 60_000);
});

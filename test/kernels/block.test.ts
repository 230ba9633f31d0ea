/**
 * The fused decoder block (src/mlx/block.ts, mlx-c/src/kernels/block.cpp) must give exactly what the
 * op-by-op block gives: bit-identical outputs and KV caches on odd shapes (4- and 8-bit, group sizes 32/64,
 * biases, grouped heads, a value width unlike the key width, base or explicit rope frequencies, no rope,
 * one row and several), also for a decode batch (left-padded rows of different lengths, B = 1 and odd B: each
 * row also equal to that row decoded alone), and bit-identical logits and greedy tokens on models (tiny
 * fixtures solo and batched, real SmolLM2). Every case also checks the fused path really ran (fusedBlocksBuilt).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DecodeBatch, Prefill } from "../../src/engine/batch.ts";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadGgufModel, loadModelDir, type LoadedModel } from "../../src/engine/load.ts";
import { kernelOps } from "../../src/mlx/backend.ts";
import { type BlockLinear, blockAttnMlp, blockQkv, type BlockRope, fusedAttnBuilt, fusedBlocksBuilt, setFusedBlocks } from "../../src/mlx/block.ts";
import * as mx from "../../src/mlx/index.ts";
import { kernelInfo } from "../../src/mlx/kernels.ts";
import { BatchKVCache } from "../../src/models/batch_cache.ts";
import { StandardKVCache } from "../../src/models/cache.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { appendThenSteps, bits } from "../support/block-steps.ts";
import { seededNormal } from "../support/tolerance.ts";
import { GOLDEN_PROMPT, writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-block-"));
afterAll(() => {
  setFusedBlocks(null);
  rmSync(tmp, { recursive: true, force: true });
});
const rnd = seededNormal(4200);

function qlinear(N: number, K: number, bits: number, gs: number, bias: boolean): BlockLinear {
  const q = mx.quantize(rnd([N, K], 0.2), { groupSize: gs, bits, mode: "affine" });
  return mx.keep({ weight: q.wq, scales: q.scales, biases: q.biases!, bias: bias ? rnd([N], 0.1) : null, bits, groupSize: gs });
}

/** What Linear.forward builds for l. */
function linear(x: mx.Array, l: BlockLinear): mx.Array {
  const y = kernelOps.quantizedMatmul(x, l.weight, l.scales, l.biases, { transpose: true, groupSize: l.groupSize, bits: l.bits, mode: "affine" });
  return l.bias ? mx.add(y, l.bias) : y;
}

const heads = (x: mx.Array, n: number) => mx.transpose(mx.reshape(x, [x.shape[0]!, x.shape[1]!, n, -1]), [0, 2, 1, 3]);

type Cache = StandardKVCache | BatchKVCache;

interface Shape {
  Dm: number;
  Hq: number;
  Hkv: number;
  D: number;
  Dv: number;
  F: number;
  bits: [number, number];
  gs: [number, number];
  bias: boolean;
  rope: "base" | "freqs" | "none";
}

/** One block of random weights, applied fused and op by op (attention.ts + transformer.ts, pre-norm). */
function blockCase(s: Shape) {
  const [b0, b1] = s.bits;
  const [g0, g1] = s.gs;
  const w = {
    q: qlinear(s.Hq * s.D, s.Dm, b0, g0, s.bias),
    k: qlinear(s.Hkv * s.D, s.Dm, b1, g1, s.bias),
    v: qlinear(s.Hkv * s.Dv, s.Dm, b0, g1, s.bias),
    o: qlinear(s.Dm, s.Hq * s.Dv, b1, g0, false),
    gate: qlinear(s.F, s.Dm, b0, g0, false),
    up: qlinear(s.F, s.Dm, b1, g1, false),
    down: qlinear(s.Dm, s.F, b0, g1, false),
    n1: mx.keep(mx.add(rnd([s.Dm], 0.1), mx.scalar(1))),
    n2: mx.keep(mx.add(rnd([s.Dm], 0.1), mx.scalar(1))),
  };
  const dims = s.D - 8;
  const freqs = s.rope === "freqs" ? mx.keep(mx.array(Float32Array.from({ length: dims / 2 }, (_, i) => 1.5 + 10000 ** ((2 * i) / dims)))) : null;
  const rope: BlockRope | null = s.rope === "none" ? null : { dims, traditional: false, base: 50000, scale: 0.75, freqs };
  const eps = 1e-5, scale = s.D ** -0.5;
  // op by op as attention.ts builds it: one sequence, or a decode batch (ropeRows, sdpaRows from each row's start)
  const unfused = (x: mx.Array, cache: Cache) => {
    const xn = kernelOps.rmsNorm(x, w.n1, eps);
    let q = heads(linear(xn, w.q), s.Hq);
    let k = heads(linear(xn, w.k), s.Hkv);
    const v = heads(linear(xn, w.v), s.Hkv);
    if (rope) {
      const o = { dims, traditional: false, base: rope.freqs ? undefined : rope.base, scale: rope.scale, freqs: rope.freqs };
      const at = (t: mx.Array) => (cache instanceof BatchKVCache ? kernelOps.ropeRows(t, o, cache.rowOffsets) : kernelOps.rope(t, { ...o, offset: cache.offset }));
      q = at(q);
      k = at(k);
    }
    const [B, L] = x.shape as [number, number];
    const starts = cache instanceof BatchKVCache ? cache.rowStarts : null;
    const [keys, values] = cache.updateAndFetch(k, v);
    const att = starts ? kernelOps.sdpaRows(q, keys, values, scale, starts) : kernelOps.sdpa(q, keys, values, { scale, mask: L > 1 ? "causal" : null });
    const h = mx.add(x, linear(mx.reshape(mx.transpose(att, [0, 2, 1, 3]), [B, L, -1]), w.o));
    const m = kernelOps.rmsNorm(h, w.n2, eps);
    return mx.add(h, linear(kernelOps.swiglu(linear(m, w.gate), linear(m, w.up)), w.down));
  };
  const fused = (x: mx.Array, cache: Cache) => {
    const batch = cache instanceof BatchKVCache;
    const offsets = batch ? cache.rowOffsets : [cache.offset];
    const starts = batch ? cache.rowStarts : [0];
    const qkv = blockQkv(x, w.n1, [w.q, w.k, w.v], { heads: s.Hq, kvHeads: s.Hkv, headDim: s.D, valueDim: s.Dv, rope, offsets, eps });
    expect(qkv).not.toBeNull();
    const [q, k, v] = qkv!;
    const [keys, values, length] = cache.updateBuffers(k, v);
    const y = blockAttnMlp(q, keys, values, { length, starts }, x, w.n2, { o: w.o, gate: w.gate, up: w.up, down: w.down }, { scale, eps });
    expect(y).not.toBeNull();
    return y!;
  };
  return { unfused, fused, dispose: () => [...Object.values(w).flatMap((l) => ("weight" in l ? [l.weight, l.scales, l.biases, l.bias] : [l])), freqs].forEach((a) => a?.dispose()) };
}

describe.skipIf(kernelInfo().level === "none")("fused decoder block = op-by-op block, bit for bit", () => {
  const shapes: [string, Shape][] = [
    ["SmolLM2-like 4-bit gs32, rope base", { Dm: 96, Hq: 3, Hkv: 1, D: 32, Dv: 32, F: 160, bits: [4, 4], gs: [32, 32], bias: false, rope: "base" }],
    ["Qwen2-like biases, 4/8-bit mixed, gs 32/64, rope freqs", { Dm: 128, Hq: 4, Hkv: 2, D: 32, Dv: 32, F: 192, bits: [4, 8], gs: [32, 64], bias: true, rope: "freqs" }],
    ["value width ≠ key width, no rope, 8-bit", { Dm: 64, Hq: 2, Hkv: 2, D: 48, Dv: 16, F: 96, bits: [8, 8], gs: [32, 32], bias: true, rope: "none" }],
  ];
  test.each(shapes)("%s: a 5-row append then 9 one-row steps, outputs and caches", (_, s) => {
    const c = blockCase(s);
    const before = fusedBlocksBuilt();
    try {
      appendThenSteps(c, s.Dm, rnd);
      expect(fusedBlocksBuilt() - before).toBe(10);
    } finally {
      c.dispose();
    }
  });

  // lens: the rows' lengths before the steps (254 crosses the buffer's 256 during them); different lengths mean
  // left padding of different widths
  const batches: [string, number[]][] = [
    ["B = 1", [9]],
    ["B = 3", [4, 11, 1]],
    ["B = 5, the buffer grows", [254, 2, 17, 6, 1]],
  ];
  describe.each(shapes)("decode batch, %s", (_, s) => {
    test.each(batches)("%s: 4 steps, outputs and caches = op by op; each row = the row alone", (_, lens) => {
      const c = blockCase(s);
      const B = lens.length;
      const rows = lens.map((n) => mx.keep({ keys: rnd([1, s.Hkv, n, s.D]), values: rnd([1, s.Hkv, n, s.Dv]) }));
      const a = BatchKVCache.build(rows), b = BatchKVCache.build(rows);
      const alone = rows.map((r) => StandardKVCache.fromArrays(r.keys.retain(), r.values.retain()));
      mx.eval([...a.state(), ...b.state()]);
      const before = fusedBlocksBuilt();
      try {
        for (let step = 0; step < 4; step++) {
          mx.scope(() => {
            const x = rnd([B, 1, s.Dm]);
            const u = c.unfused(x, a);
            const f = c.fused(x, b);
            const solo = alone.map((cache, r) => c.fused(mx.sliceAxis(x, 0, r, r + 1), cache));
            mx.eval([u, f, ...solo, ...a.state(), ...b.state()]);
            const fb = bits(f);
            expect(fb).toEqual(bits(u));
            solo.forEach((y, r) => expect(Array.from(fb.subarray(r * s.Dm, (r + 1) * s.Dm))).toEqual(Array.from(bits(y))));
          });
        }
        expect(b.rowOffsets).toEqual(lens.map((n) => n + 4));
        expect(b.rowOffsets).toEqual(a.rowOffsets);
        const [ka, va] = a.state(), [kb, vb] = b.state();
        expect(kb!.shape).toEqual(ka!.shape);
        // up to the write position: the capacity past it is unfilled until a step writes it (kv_compose.cpp)
        const upTo = (t: mx.Array) => mx.slice(t, [0, 0, 0, 0], [B, t.shape[1]!, b.offset, t.shape[3]!]);
        expect(b.offset).toBe(a.offset);
        expect(bits(upTo(kb!))).toEqual(bits(upTo(ka!)));
        expect(bits(upTo(vb!))).toEqual(bits(upTo(va!)));
        expect(fusedBlocksBuilt() - before).toBe(4 * (1 + B));
      } finally {
        a[Symbol.dispose]();
        b[Symbol.dispose]();
        alone.forEach((x) => x[Symbol.dispose]());
        rows.forEach((r) => [r.keys, r.values].forEach((t) => t.dispose()));
        c.dispose();
      }
    });
  });

  test("a block the kernels cannot take (group size 48, several rows per batch entry, a key span past the buffer) is declined, not mis-computed", () => {
    const w = qlinear(64, 96, 4, 32, false);
    const bad = { ...w, groupSize: 48 };
    const o = { heads: 2, kvHeads: 2, headDim: 32, valueDim: 32, rope: null, eps: 1e-5 };
    const mlp = { o: qlinear(96, 64, 4, 32, false), gate: qlinear(64, 96, 4, 32, false), up: qlinear(64, 96, 4, 32, false), down: qlinear(96, 64, 4, 32, false) };
    mx.scope(() => {
      expect(blockQkv(rnd([1, 1, 96]), mx.ones([96]), [bad, w, w], { ...o, offsets: [0] })).toBeNull();
      expect(blockQkv(rnd([2, 3, 96]), mx.ones([96]), [w, w, w], { ...o, offsets: [0, 4] })).toBeNull();
      expect(blockQkv(rnd([2, 1, 96]), mx.ones([96]), [w, w, w], { ...o, offsets: [0] })).toBeNull();
      expect(blockQkv(rnd([2, 1, 96]), mx.ones([96]), [w, w, w], { ...o, offsets: [3, 5] })).not.toBeNull();
      const kv = rnd([2, 2, 8, 32]);
      const attn = (q: mx.Array, span: { length: number; starts: number[] }) =>
        blockAttnMlp(q, kv, kv, span, rnd([q.shape[0]!, q.shape[2]!, 96]), mx.ones([96]), { o: mlp.o, gate: mlp.gate, up: mlp.up, down: mlp.down }, { scale: 0.2, eps: 1e-5 });
      expect(attn(rnd([2, 2, 1, 32]), { length: 6, starts: [0, 5] })).not.toBeNull();
      expect(attn(rnd([2, 2, 1, 32]), { length: 6, starts: [0, 6] })).toBeNull();
      expect(attn(rnd([2, 2, 1, 32]), { length: 9, starts: [0, 0] })).toBeNull();
      expect(attn(rnd([2, 2, 1, 32]), { length: 6, starts: [0] })).toBeNull();
      expect(attn(rnd([2, 2, 2, 32]), { length: 6, starts: [0, 0] })).toBeNull();
    });
    Object.values(mlp).forEach((l) => [l.weight, l.scales, l.biases].forEach((a) => a.dispose()));
    [w.weight, w.scales, w.biases].forEach((a) => a.dispose());
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

/** Greedy decode of `prompts` as one decode batch (rows of different lengths), every step's logits. */
function runBatch(m: LoadedModel, prompts: readonly (readonly number[])[], steps: number, fused: boolean): Uint32Array[] {
  setFusedBlocks(fused);
  try {
    using batch = new DecodeBatch(m.model);
    const add = prompts.map((prompt) => {
      const pre = new Prefill({ prompt, cache: m.model.makeCache(), cached: 0, policy: { wantLogits: true } }, m.model);
      const first = pre.chunk()!;
      return { cache: pre.row.cache, policy: pre.row.policy, history: pre.history, first };
    });
    batch.rebuild([], add);
    const out: Uint32Array[] = [];
    let last = add.map((a) => a.first.token);
    for (let i = 0; i < steps; i++) {
      const got = batch.step(last);
      last = got.map((g) => {
        if (g instanceof Error) throw g;
        out.push(new Uint32Array(g.logits!.buffer.slice(0)));
        return g.token;
      });
    }
    return out;
  } finally {
    setFusedBlocks(null);
  }
}

describe.skipIf(kernelInfo().level === "none")("models: logits and greedy tokens with the fused block on = off", () => {
  test.each(["llama_q4", "qwen2_q4", "qwen3_moe_q4"] as const)("%s, a decode batch of 3 rows of different lengths, 12 steps", async (name) => {
    using m = await loadModelDir(writeTinyModel(name, join(tmp, `${name}-batch`)), { dtype: "float32", streams: 1 });
    const prompts = [GOLDEN_PROMPT, GOLDEN_PROMPT.slice(3), [...GOLDEN_PROMPT, ...GOLDEN_PROMPT].slice(0, GOLDEN_PROMPT.length + 5)];
    const before = fusedBlocksBuilt();
    const attnBefore = fusedAttnBuilt();
    const on = runBatch(m, prompts, 12, true);
    const built = fusedBlocksBuilt() - before;
    // a MoE block's attention half fuses in the batch too (its experts run as a graph)
    if (name === "qwen3_moe_q4") expect(fusedAttnBuilt() - attnBefore).toBeGreaterThanOrEqual(12 * m.model.numLayers);
    const off = runBatch(m, prompts, 12, false);
    expect(fusedBlocksBuilt() - before).toBe(built);
    // every batched step of every layer fused (the prefills too)
    expect(built).toBeGreaterThanOrEqual(12 * m.model.numLayers);
    expect(on).toHaveLength(36);
    on.forEach((l, i) => expect(l).toEqual(off[i]!));
  });

  test.each(["llama_q4", "qwen2_q4"] as const)("%s, 24 tokens", async (name) => {
    using m = await loadModelDir(writeTinyModel(name, join(tmp, name)), { dtype: "float32", streams: 1 });
    const before = fusedBlocksBuilt();
    const on = run(m, GOLDEN_PROMPT, 24, true);
    expect(fusedBlocksBuilt()).toBeGreaterThan(before);
    const off = run(m, GOLDEN_PROMPT, 24, false);
    expect(on.tokens).toHaveLength(24);
    expect(on.tokens).toEqual(off.tokens);
    expect(on.logits.length).toBe(off.logits.length);
    on.logits.forEach((l, i) => expect(l).toEqual(off.logits[i]!));
  });

  test("SmolLM2-135M (real Q4_1 weights): 32 tokens after a 24-token prompt", async () => {
    using m = await loadGgufModel(await smollm2Gguf(), { streams: 1 });
    const prompt = Array.from({ length: 24 }, (_, i) => 1000 + ((i * 7919) % 30000));
    const before = fusedBlocksBuilt();
    const on = run(m, prompt, 32, true);
    expect(fusedBlocksBuilt() - before).toBeGreaterThanOrEqual(30 * 32);
    const off = run(m, prompt, 32, false);
    expect(on.tokens).toEqual(off.tokens);
    on.logits.forEach((l, i) => expect(l).toEqual(off.logits[i]!));
  }, 120_000);
});

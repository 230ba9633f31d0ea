/**
 * The dense pre-norm decoder block (transformer.ts) through the backend's two fused halves (src/mlx/block.ts)
 * where they apply: one sequence (a plain StandardKVCache) or a decode batch (a BatchKVCache: one token per
 * row, each at its own position and from its own first key), affine-quantized or GGUF K-quant projections,
 * SwiGLU MLP, a plain or no rope, per-head q/k norms or none, no query scaling, sinks or residual multiplier.
 * Any other MLP (MoE) keeps the fused attention half (blockQkv, blockAttn) and runs as a graph after it.
 * Returns null otherwise (and whenever the kernels decline), and the block runs op by op; the two paths give
 * bit-identical results.
 */
import { layerOps } from "../mlx/backend.ts";
import type { AnyBlockLinear } from "../mlx/block.ts";
import { isKQuantMode } from "../mlx/kquant.ts";
import * as mx from "../mlx/index.ts";
import type { Attention } from "./attention.ts";
import { BatchKVCache } from "./batch_cache.ts";
import { type KVCache, StandardKVCache } from "./cache.ts";
import { type Linear, rmsNorm, sdpa } from "./layers.ts";
import { DenseMlp, type DecoderSpec, type Mlp } from "./transformer.ts";

/** Rows per call the fused path takes: decode steps and short appends (prefill chunks gain nothing from it). */
const MAX_ROWS = 32;

export interface FusableBlock {
  readonly self_attn: Attention;
  readonly mlp: Mlp;
  readonly norm1: mx.Array;
  readonly norm2: mx.Array;
  readonly s: DecoderSpec;
}

function blockLinear(l: Linear): AnyBlockLinear | null {
  const q = l.q;
  if (q && isKQuantMode(q.mode)) return { weight: l.weight, kquant: q.mode, bias: l.bias };
  if (!q || q.mode !== "affine" || !l.scales || !l.biases) return null;
  return { weight: l.weight, scales: l.scales, biases: l.biases, bias: l.bias, bits: q.bits, groupSize: q.groupSize };
}

/** The parts the fused path needs, resolved once per block (null: this block never fuses). */
export interface FusedParts {
  qkv: [AnyBlockLinear, AnyBlockLinear, AnyBlockLinear];
  o: AnyBlockLinear;
  /** null: an MLP other than the dense SwiGLU one (MoE), run op by op after the fused attention half. */
  mlp: { gate: AnyBlockLinear; up: AnyBlockLinear; down: AnyBlockLinear } | null;
}

export function fusedParts(b: FusableBlock): FusedParts | null {
  const s = b.s;
  const a = b.self_attn;
  // a sublayer whose forward was wrapped on the instance (tensor parallel sums its output over the ranks) must
  // run through that forward: the fused kernels would skip the wrapper
  if (Object.hasOwn(a, "forward") || Object.hasOwn(b.mlp, "forward")) return null;
  if (s.postNorms || (s.residualMultiplier ?? 1) !== 1 || s.qkNorm === "full" || s.queryScale) return null;
  // q/k norms only per head (the kernel norms each head's D values)
  if ((a.o.qNorm || a.o.kNorm) && a.o.qkNormScope !== "head") return null;
  if (a.o.sinks || a.o.queryScale) return null;
  if (a.o.rope && !a.o.rope.blockRope?.()) return null;
  const m = b.mlp instanceof DenseMlp ? b.mlp : null;
  const ls = [a.q_proj, a.k_proj, a.v_proj, a.o_proj, ...(m ? [m.gate_proj, m.up_proj, m.down_proj] : [])].map(blockLinear);
  if (ls.some((l) => l === null)) return null;
  const [q, k, v, o, gate, up, down] = ls as AnyBlockLinear[];
  return { qkv: [q!, k!, v!], o: o!, mlp: m ? { gate: gate!, up: up!, down: down! } : null };
}

/** The block's output for x [1, L, Dm] (one sequence) or [B, 1, Dm] (a decode batch), or null (build it op by op). */
export function fusedBlockForward(b: FusableBlock, p: FusedParts, x: mx.Array, cache: KVCache): mx.Array | null {
  const [B, L] = x.shape as [number, number];
  // each row's position and first key, read before the update
  let offsets: readonly number[];
  let starts: readonly number[];
  if (cache instanceof StandardKVCache && B === 1 && L <= MAX_ROWS) {
    offsets = [cache.offset];
    starts = [0];
  } else if (cache instanceof BatchKVCache && L === 1 && B === cache.batch) {
    offsets = cache.rowOffsets;
    starts = cache.rowStarts;
  } else {
    return null;
  }
  const ops = layerOps();
  const a = b.self_attn.o;
  const qkv = ops.blockQkv(x, b.norm1, p.qkv, {
    heads: a.heads,
    kvHeads: a.kvHeads,
    headDim: a.headDim,
    valueDim: p.qkv[2].weight.shape[0]! / a.kvHeads,
    rope: a.rope?.blockRope?.() ?? null,
    offsets,
    eps: b.s.normEps,
    qNorm: a.qNorm ?? null,
    kNorm: a.kNorm ?? null,
    qkEps: a.normEps ?? 1e-6,
  });
  if (!qkv) return null;
  const [q, k, v] = qkv;
  const [keys, values, length] = cache.updateBuffers(k, v);
  const span = { length, starts };
  if (!p.mlp) {
    // the attention half fused, the MLP (MoE) as the op-by-op block builds it
    const h = ops.blockAttn(q, keys, values, span, x, p.o, { scale: a.scale });
    if (h) return mx.add(h, b.mlp.forward(rmsNorm(h, b.norm2, b.s.normEps)));
  }
  const out = p.mlp && ops.blockAttnMlp(q, keys, values, span, x, b.norm2, { o: p.o, ...p.mlp }, { scale: a.scale, eps: b.s.normEps });
  if (out) return out;
  // declined once the cache holds k, v (it should not: fusedParts checked the weights): the rest op by op
  const cut = (t: mx.Array) => mx.slice(t, [0, 0, 0, 0], [B, t.shape[1]!, length, t.shape[3]!]);
  const att = cache instanceof BatchKVCache
    ? ops.sdpaRows(q, cut(keys), cut(values), a.scale, starts)
    : sdpa(q, cut(keys), cut(values), { scale: a.scale, mask: L > 1 ? "causal" : null, sinks: null });
  const h = mx.add(x, b.self_attn.o_proj.forward(mx.reshape(mx.transpose(att, [0, 2, 1, 3]), [B, L, -1])));
  return mx.add(h, b.mlp.forward(rmsNorm(h, b.norm2, b.s.normEps)));
}

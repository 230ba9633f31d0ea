/**
 * Multi-head attention with grouped KV heads as the mlx-lm model files write it (llama.py's Attention and
 * its relatives): q/k/v/o projections (biases picked up when the checkpoint has them), optional RMSNorm of
 * queries and keys — per head (qwen3, gemma3) or over the whole projection (olmo2) — rope, optional
 * learned sinks (gpt_oss), SDPA over the layer's KV cache.
 */
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import type { WeightStore } from "./base.ts";
import { eachRow, isRowsCache, ropeAt } from "./batch_cache.ts";
import type { KVCache } from "./cache.ts";
import { attend, type Fanout, heads, type Linear, rmsNorm } from "./layers.ts";
import type { RopeLayer } from "./rope.ts";

export interface AttentionOptions {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Softmax scale (head_dim ** -0.5 unless the architecture says otherwise). */
  scale: number;
  /** null: no position embedding in this layer (SmolLM3's NoPE layers). */
  rope: RopeLayer | null;
  /** Query/key norm weights, already in the form rmsNorm takes (gemma's 1+w done by the caller). */
  qNorm?: mx.Array | null;
  kNorm?: mx.Array | null;
  /** "head": norm each head's D features; "full": norm the whole projection before the head split. */
  qkNormScope?: "head" | "full";
  normEps?: number;
  sinks?: mx.Array | null;
  /** Per-position multiplier [L, 1] of the rotated queries (ministral3); null = none. */
  queryScale?: (offset: number, L: number) => mx.Array | null;
}

export class Attention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  readonly #qkv: Fanout;

  constructor(
    w: WeightStore,
    prefix: string,
    readonly o: AttentionOptions,
  ) {
    this.q_proj = w.linear(`${prefix}.q_proj`);
    this.k_proj = w.linear(`${prefix}.k_proj`);
    this.v_proj = w.linear(`${prefix}.v_proj`);
    this.o_proj = w.linear(`${prefix}.o_proj`);
    this.#qkv = w.fanout([this.q_proj, this.k_proj, this.v_proj]);
    // A config that disagrees with the weights (a default where the config left a key out) would reshape the
    // projections into other heads and run wrong without an error: refuse it.
    const want = (l: Linear, n: number, what: string) => {
      if (l.outDims !== n * o.headDim) {
        throw new MlxkError("unsupported_model", `${prefix}.${what}: ${l.outDims} outputs in the weights, the config says ${n} heads × head_dim ${o.headDim}`);
      }
    };
    want(this.q_proj, o.heads, "q_proj");
    want(this.k_proj, o.kvHeads, "k_proj");
  }

  forward(x: mx.Array, cache: KVCache): mx.Array {
    const o = this.o;
    let [q0, k0, v0] = this.#qkv.forward(x) as [mx.Array, mx.Array, mx.Array];
    const eps = o.normEps ?? 1e-6;
    const full = o.qkNormScope === "full";
    if (full && o.qNorm) q0 = rmsNorm(q0, o.qNorm, eps);
    if (full && o.kNorm) k0 = rmsNorm(k0, o.kNorm, eps);
    let q = heads(q0, o.heads);
    let k = heads(k0, o.kvHeads);
    if (!full && o.qNorm) q = rmsNorm(q, o.qNorm, eps);
    if (!full && o.kNorm) k = rmsNorm(k, o.kNorm, eps);
    // a decode batch: every row at its own position (src/models/batch_cache.ts)
    if (o.rope) {
      q = ropeAt(o.rope, q, cache);
      k = ropeAt(o.rope, k, cache);
    }
    const qs = o.queryScale;
    if (qs && isRowsCache(cache)) q = eachRow(q, cache.rowOffsets, (qb, off) => scaled(qb, qs(off, 1)));
    else if (qs) q = scaled(q, qs(cache.offset, q.shape[2]!));
    const out = attend({ q, k, v: heads(v0, o.kvHeads), cache, scale: o.scale, sinks: o.sinks ?? null });
    return this.o_proj.forward(out);
  }
}

/** q times a per-position multiplier [L, 1] (none: q). */
function scaled(q: mx.Array, s: mx.Array | null): mx.Array {
  return s ? mx.multiply(q, s.astype(q.dtype)) : q;
}

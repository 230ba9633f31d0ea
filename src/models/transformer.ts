/**
 * The decoder most mlx-lm model files share (llama.py and the families built on it: qwen2, qwen3, smollm3,
 * granite, olmo2, qwen3_moe): token embedding → blocks of attention + MLP with RMSNorms → final norm → head.
 * An architecture file describes its variant as a DecoderSpec (norm placement, q/k norms, per-layer rope,
 * multipliers, dense or MoE MLP) instead of copying the block.
 */
import * as mx from "../mlx/index.ts";
import { Attention } from "./attention.ts";
import type { LanguageModel, ModelContext, WeightStore } from "./base.ts";
import { type KVCache, RotatingKVCache, StandardKVCache } from "./cache.ts";
import { type FusedParts, fusedBlockForward, fusedParts } from "./fused_block.ts";
import { DecoderModel, type Embedding, type Fanout, type Linear, type Projection, rmsNorm, swiglu } from "./layers.ts";
import type { RopeLayer } from "./rope.ts";

export interface Mlp {
  forward(x: mx.Array): mx.Array;
}

/** gate/up/down SwiGLU MLP (llama.py MLP). */
export class DenseMlp implements Mlp {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  readonly #gateUp: Fanout;
  constructor(w: WeightStore, p: string) {
    this.gate_proj = w.linear(`${p}.gate_proj`);
    this.up_proj = w.linear(`${p}.up_proj`);
    this.down_proj = w.linear(`${p}.down_proj`);
    this.#gateUp = w.fanout([this.gate_proj, this.up_proj]);
  }
  forward(x: mx.Array): mx.Array {
    const [g, u] = this.#gateUp.forward(x) as [mx.Array, mx.Array];
    return this.down_proj.forward(swiglu(g, u));
  }
}

export interface DecoderSpec {
  numLayers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  normEps: number;
  tieWordEmbeddings: boolean;
  /** Per layer: "full_attention" or "sliding_attention" (a rotating cache of slidingWindow). */
  layerTypes: readonly string[];
  slidingWindow: number | null;
  /** Rope of layer i (null = no position embedding there); every distinct rope listed in `ropes`. */
  ropeFor(i: number): RopeLayer | null;
  ropes: RopeLayer[];
  attnScale: number;
  /** Query/key RMSNorm: per head (qwen3) or over the projection (olmo2). */
  qkNorm?: "head" | "full" | null;
  /** olmo2: norms after attention / MLP instead of before. */
  postNorms?: boolean;
  /** Per-position query multiplier [L, 1] after rope (ministral3's llama-4 scaling); null = 1. */
  queryScale?: (offset: number, L: number) => mx.Array | null;
  residualMultiplier?: number;
  embeddingMultiplier?: number;
  /** Logits are divided by this (granite's logits_scaling). */
  logitsScaling?: number;
  mlp(w: WeightStore, prefix: string, layer: number): Mlp;
}

class Block {
  readonly self_attn: Attention;
  readonly mlp: Mlp;
  readonly norm1: mx.Array;
  readonly norm2: mx.Array;
  readonly sliding: boolean;

  constructor(
    w: WeightStore,
    p: string,
    readonly s: DecoderSpec,
    i: number,
  ) {
    const qk = s.qkNorm ?? null;
    this.self_attn = new Attention(w, `${p}.self_attn`, {
      heads: s.heads,
      kvHeads: s.kvHeads,
      headDim: s.headDim,
      scale: s.attnScale,
      rope: s.ropeFor(i),
      qNorm: qk ? w.get(`${p}.self_attn.q_norm.weight`) : null,
      kNorm: qk ? w.get(`${p}.self_attn.k_norm.weight`) : null,
      qkNormScope: qk ?? undefined,
      normEps: s.normEps,
      queryScale: s.queryScale,
    });
    this.mlp = s.mlp(w, `${p}.mlp`, i);
    const [n1, n2] = s.postNorms ? ["post_attention_layernorm", "post_feedforward_layernorm"] : ["input_layernorm", "post_attention_layernorm"];
    this.norm1 = w.get(`${p}.${n1}.weight`);
    this.norm2 = w.get(`${p}.${n2}.weight`);
    this.sliding = s.layerTypes[i] === "sliding_attention";
  }

  #fused: FusedParts | null | undefined;

  forward(x: mx.Array, cache: KVCache): mx.Array {
    if (this.#fused === undefined) this.#fused = fusedParts(this);
    const f = this.#fused && fusedBlockForward(this, this.#fused, x, cache);
    if (f) return f;
    const s = this.s;
    const eps = s.normEps;
    const rm = s.residualMultiplier ?? 1;
    const res = (h: mx.Array, r: mx.Array) => mx.add(h, rm === 1 ? r : mx.multiply(r, mx.scalar(rm, r.dtype)));
    if (s.postNorms) {
      const h = res(x, rmsNorm(this.self_attn.forward(x, cache), this.norm1, eps));
      return res(h, rmsNorm(this.mlp.forward(h), this.norm2, eps));
    }
    const h = res(x, this.self_attn.forward(rmsNorm(x, this.norm1, eps), cache));
    return res(h, this.mlp.forward(rmsNorm(h, this.norm2, eps)));
  }
}

export class Decoder extends DecoderModel implements LanguageModel {
  readonly embed_tokens: Embedding;
  readonly layers: Block[];
  readonly norm: mx.Array;
  readonly lm_head: Projection;
  readonly rope: { dispose(): void };
  readonly normEps: number;

  constructor(
    readonly s: DecoderSpec,
    w: WeightStore,
    _ctx: ModelContext,
  ) {
    super();
    this.normEps = s.normEps;
    this.rope = { dispose: () => s.ropes.forEach((r) => r.dispose()) };
    this.embed_tokens = w.embedding("model.embed_tokens");
    this.layers = Array.from({ length: s.numLayers }, (_, i) => new Block(w, `model.layers.${i}`, s, i));
    this.norm = w.get("model.norm.weight");
    const head = s.tieWordEmbeddings ? this.embed_tokens.asLinear() : w.linear("lm_head");
    this.lm_head = w.projection(head);
  }

  override hidden(inputs: mx.Array, cache: KVCache[]): mx.Array {
    const em = this.s.embeddingMultiplier ?? 1;
    let h = this.embed_tokens.forward(inputs);
    if (em !== 1) h = mx.multiply(h, mx.scalar(em, h.dtype));
    this.layers.forEach((layer, i) => {
      h = layer.forward(h, cache[i]!);
    });
    return rmsNorm(h, this.norm, this.normEps);
  }

  override logits(h: mx.Array): mx.Array {
    const y = this.lm_head.forward(h);
    const ls = this.s.logitsScaling ?? 1;
    return ls === 1 ? y : mx.divide(y, mx.scalar(ls, y.dtype));
  }

  /** A decode batch runs through every layer with each row computed as alone (src/engine/batch.ts). */
  readonly rowBatched = true;

  makeCache(): KVCache[] {
    return this.layers.map((l) => (l.sliding && this.s.slidingWindow ? new RotatingKVCache(this.s.slidingWindow) : new StandardKVCache()));
  }
}

/** Drop what no model reads: rotary inv_freq buffers, a tied model's lm_head (mlx-lm llama.py sanitize). */
export function dropUnused(w: Map<string, mx.Array>, tied: boolean): Map<string, mx.Array> {
  for (const k of [...w.keys()]) {
    if (k.includes("rotary_emb.inv_freq") || (tied && k.startsWith("lm_head."))) {
      w.get(k)!.dispose();
      w.delete(k);
    }
  }
  return w;
}

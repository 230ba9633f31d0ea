// LFM2 (Liquid); must agree with mlx-lm 0.32.2 models/lfm2.py. Hybrid: most layers are gated short
// convolutions (in_proj → B·x → depthwise causal conv over the last conv_L_cache inputs → C·conv → out_proj,
// a one-slot recurrent cache), the `full_attention` layers are GQA attention with q/k RMSNorm (a KV cache);
// SwiGLU MLP (w1/w3/w2), a final `embedding_norm`, tied head.
//
// Where mlxk reads configs differently from mlx-lm (transformers is the reference, see README): transformers 5
// configs have no block_dim / block_ff_dim (hidden_size / intermediate_size are used, which mlx-lm requires
// by their old names), the MLP width is rounded to block_multiple_of only when block_ffn_dim_multiplier is
// set (as transformers' Lfm2MLP does), `layer_types` or `full_attn_idxs`, and both rope spellings.
import * as v from "valibot";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { ArraysCache } from "./arrays_cache.ts";
import { ropeAt } from "./batch_cache.ts";
import { bool, int, type LanguageModel, type LayerCache, type ModelContext, num, type WeightStore } from "./base.ts";
import { type KVCache, StandardKVCache } from "./cache.ts";
import type { NormalizeOptions } from "./config.ts";
import { depthwiseConv1d } from "./gated_delta.ts";
import { attend, DecoderModel, type Embedding, type Fanout, heads, type Linear, type Projection, rmsNorm, swiglu } from "./layers.ts";
import { initializeRope, type RopeLayer } from "./rope.ts";

export const configOptions: NormalizeOptions = { layerTypes: ["conv", "full_attention"], ropeTypes: ["default"] };

export const configSchema = v.pipe(
  v.looseObject({
    vocab_size: int(),
    hidden_size: int(),
    num_hidden_layers: int(),
    num_attention_heads: int(),
    num_key_value_heads: v.optional(v.nullable(int())),
    max_position_embeddings: int(128000),
    norm_eps: num(1e-5),
    conv_bias: bool(false),
    conv_L_cache: int(3),
    block_dim: v.optional(int()),
    block_ff_dim: v.optional(int()),
    intermediate_size: v.optional(int()),
    block_multiple_of: int(256),
    block_ffn_dim_multiplier: v.optional(v.nullable(v.number()), 1),
    block_auto_adjust_ff_dim: bool(true),
    rope_theta: num(1000000),
    full_attn_idxs: v.optional(v.nullable(v.array(int()))),
    layer_types: v.optional(v.nullable(v.array(v.picklist(["conv", "full_attention"])))),
    tie_word_embeddings: bool(true),
  }),
  v.transform((c) => {
    const ff0 = c.block_ff_dim ?? c.intermediate_size;
    if (ff0 === undefined) throw new MlxkError("unsupported_model", "LFM2 config.json needs intermediate_size (or block_ff_dim)");
    let ff = ff0;
    if (c.block_auto_adjust_ff_dim) {
      ff = Math.trunc((2 * ff) / 3);
      if (c.block_ffn_dim_multiplier != null) {
        ff = Math.trunc(c.block_ffn_dim_multiplier * ff);
        ff = c.block_multiple_of * Math.ceil(ff / c.block_multiple_of);
      }
    }
    const idxs = c.full_attn_idxs ?? null;
    const types = c.layer_types ?? Array.from({ length: c.num_hidden_layers }, (_, i) => (idxs === null || idxs.includes(i) ? "full_attention" : "conv"));
    return { ...c, ff_dim: ff, layer_types: types, num_key_value_heads: c.num_key_value_heads ?? c.num_attention_heads, block_dim: c.block_dim ?? c.hidden_size };
  }),
  v.check((c) => c.layer_types.length === c.num_hidden_layers, "layer_types must have one entry per layer"),
  v.check((c) => c.block_dim === c.hidden_size, "block_dim must equal hidden_size"),
);
type Lfm2Config = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 128000;
}

/** transformers' depthwise conv weight [C, 1, K] → MLX's [C, K, 1]. */
export function sanitize(w: Map<string, mx.Array>): Map<string, mx.Array> {
  for (const [k, a] of [...w]) {
    if (k.includes("conv.weight") && a.ndim === 3 && a.shape[2]! > a.shape[1]!) {
      w.set(k, mx.scope(() => mx.contiguous(mx.swapaxes(a, 1, 2))));
      a.dispose();
    }
  }
  return w;
}

class Attention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  readonly q_layernorm: mx.Array;
  readonly k_layernorm: mx.Array;
  readonly #qkv: Fanout;
  constructor(
    w: WeightStore,
    p: string,
    readonly c: Lfm2Config,
    readonly rope: RopeLayer,
  ) {
    this.q_proj = w.linear(`${p}.q_proj`);
    this.k_proj = w.linear(`${p}.k_proj`);
    this.v_proj = w.linear(`${p}.v_proj`);
    this.out_proj = w.linear(`${p}.out_proj`);
    this.#qkv = w.fanout([this.q_proj, this.k_proj, this.v_proj]);
    this.q_layernorm = w.get(`${p}.q_layernorm.weight`);
    this.k_layernorm = w.get(`${p}.k_layernorm.weight`);
  }
  forward(x: mx.Array, cache: KVCache): mx.Array {
    const c = this.c;
    const [q0, k0, v0] = this.#qkv.forward(x) as [mx.Array, mx.Array, mx.Array];
    // a decode batch: each row at its own position (src/models/batch_cache.ts)
    const q = ropeAt(this.rope, rmsNorm(heads(q0, c.num_attention_heads), this.q_layernorm, c.norm_eps), cache);
    const k = ropeAt(this.rope, rmsNorm(heads(k0, c.num_key_value_heads), this.k_layernorm, c.norm_eps), cache);
    const o = attend({ q, k, v: heads(v0, c.num_key_value_heads), cache, scale: (c.hidden_size / c.num_attention_heads) ** -0.5 });
    return this.out_proj.forward(o);
  }
}

class ShortConv {
  readonly in_proj: Linear;
  readonly out_proj: Linear;
  readonly weight: mx.Array;
  readonly bias: mx.Array | null;
  constructor(
    w: WeightStore,
    p: string,
    readonly c: Lfm2Config,
  ) {
    this.in_proj = w.linear(`${p}.in_proj`);
    this.out_proj = w.linear(`${p}.out_proj`);
    this.weight = w.get(`${p}.conv.weight`);
    this.bias = c.conv_bias ? w.get(`${p}.conv.bias`) : null;
  }
  forward(x: mx.Array, cache: ArraysCache): mx.Array {
    const [B, L] = x.shape as [number, number];
    const K = this.c.conv_L_cache;
    const [b, cg, xx] = mx.split(this.in_proj.forward(x), 3, -1) as [mx.Array, mx.Array, mx.Array];
    const state = cache.get(0) ?? mx.zeros([B, K - 1, this.c.hidden_size], x.dtype);
    const bx = mx.concatenate([state, mx.multiply(b, xx)], 1);
    cache.set(0, mx.contiguous(mx.sliceAxis(bx, 1, L, L + K - 1)));
    cache.advance(L);
    let conv = depthwiseConv1d(bx, this.weight);
    if (this.bias) conv = mx.add(conv, this.bias);
    return this.out_proj.forward(mx.multiply(cg, conv));
  }
}

class DecoderLayer {
  readonly self_attn: Attention | null;
  readonly conv: ShortConv | null;
  readonly w1: Linear;
  readonly w3: Linear;
  readonly w2: Linear;
  readonly operator_norm: mx.Array;
  readonly ffn_norm: mx.Array;
  readonly #gateUp: Fanout;
  constructor(
    w: WeightStore,
    p: string,
    readonly c: Lfm2Config,
    readonly isAttention: boolean,
    rope: RopeLayer,
  ) {
    this.self_attn = isAttention ? new Attention(w, `${p}.self_attn`, c, rope) : null;
    this.conv = isAttention ? null : new ShortConv(w, `${p}.conv`, c);
    this.w1 = w.linear(`${p}.feed_forward.w1`);
    this.w3 = w.linear(`${p}.feed_forward.w3`);
    this.w2 = w.linear(`${p}.feed_forward.w2`);
    this.#gateUp = w.fanout([this.w1, this.w3]);
    this.operator_norm = w.get(`${p}.operator_norm.weight`);
    this.ffn_norm = w.get(`${p}.ffn_norm.weight`);
  }
  forward(x: mx.Array, cache: LayerCache): mx.Array {
    const n = rmsNorm(x, this.operator_norm, this.c.norm_eps);
    const r = this.self_attn ? this.self_attn.forward(n, cache as KVCache) : this.conv!.forward(n, cache as ArraysCache);
    const h = mx.add(x, r);
    const f = rmsNorm(h, this.ffn_norm, this.c.norm_eps);
    const [g, u] = this.#gateUp.forward(f) as [mx.Array, mx.Array];
    return mx.add(h, this.w2.forward(swiglu(g, u)));
  }
}

export class Model extends DecoderModel implements LanguageModel {
  readonly embed_tokens: Embedding;
  readonly layers: DecoderLayer[];
  /** The final norm (`model.embedding_norm` in the checkpoint). */
  readonly norm: mx.Array;
  readonly lm_head: Projection;
  readonly rope: RopeLayer;
  readonly normEps: number;

  constructor(
    readonly c: Lfm2Config,
    w: WeightStore,
    _ctx: ModelContext,
  ) {
    super();
    this.normEps = c.norm_eps;
    this.rope = initializeRope({ dims: c.hidden_size / c.num_attention_heads, base: c.rope_theta });
    this.embed_tokens = w.embedding("model.embed_tokens");
    this.layers = c.layer_types.map((t, i) => new DecoderLayer(w, `model.layers.${i}`, c, t === "full_attention", this.rope));
    this.norm = w.get("model.embedding_norm.weight");
    const head = !c.tie_word_embeddings && w.has("lm_head.weight") ? w.linear("lm_head") : this.embed_tokens.asLinear();
    this.lm_head = w.projection(head);
  }

  /** A decode batch runs through every layer with each row computed as alone (src/engine/batch.ts). */
  readonly rowBatched = true;

  makeCache(): LayerCache[] {
    return this.layers.map((l) => (l.isAttention ? new StandardKVCache() : new ArraysCache(1)));
  }
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as Lfm2Config, w, ctx);
}

// Llama (also Mistral, SmolLM2; the base of qwen2/qwen3); must agree with mlx-lm models/llama.py.
import * as v from "valibot";
import { RotatingKVCache, StandardKVCache, type KVCache } from "../engine/kv-cache.ts";
import * as mx from "../mlx/index.ts";
import { bool, int, type LanguageModel, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import { attend, DecoderModel, type Embedding, heads, initializeRope, type Linear, rmsNorm, type Rope, SplitLinear, Streams, swiglu } from "./layers.ts";

export const configSchema = v.pipe(
  v.looseObject({
    hidden_size: int(),
    num_hidden_layers: int(),
    intermediate_size: int(),
    num_attention_heads: int(),
    num_key_value_heads: v.optional(v.nullable(int())),
    head_dim: v.optional(v.nullable(int())),
    rms_norm_eps: num(1e-6),
    vocab_size: int(),
    rope_theta: num(10000),
    rope_traditional: bool(false),
    rope_scaling: ropeScaling,
    tie_word_embeddings: bool(true),
    max_position_embeddings: v.optional(v.nullable(int())),
    layer_types: v.optional(v.nullable(v.array(v.string()))),
    sliding_window: v.optional(v.nullable(int())),
  }),
  v.transform((c) => ({
    ...c,
    num_key_value_heads: c.num_key_value_heads ?? c.num_attention_heads,
    head_dim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    layer_types: c.layer_types ?? Array.from({ length: c.num_hidden_layers }, () => "full_attention"),
  })),
);
export type LlamaConfig = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 4096;
}

export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  for (const k of [...w.keys()]) {
    if (k.includes("self_attn.rotary_emb.inv_freq")) {
      w.get(k)!.dispose();
      w.delete(k);
    }
  }
  if (config.tie_word_embeddings !== false && w.has("lm_head.weight")) {
    for (const s of ["weight", "scales", "biases"]) {
      w.get(`lm_head.${s}`)?.dispose();
      w.delete(`lm_head.${s}`);
    }
  }
  return w;
}

class Attention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  /** Per-head RMSNorm of queries/keys before rope (qwen3); absent in llama checkpoints. */
  readonly q_norm: mx.Array | null;
  readonly k_norm: mx.Array | null;
  readonly scale: number;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: LlamaConfig,
    readonly rope: Rope,
  ) {
    this.q_proj = w.linear(`${p}.q_proj`);
    this.k_proj = w.linear(`${p}.k_proj`);
    this.v_proj = w.linear(`${p}.v_proj`);
    this.o_proj = w.linear(`${p}.o_proj`);
    this.q_norm = w.opt(`${p}.q_norm.weight`);
    this.k_norm = w.opt(`${p}.k_norm.weight`);
    this.scale = c.head_dim ** -0.5;
  }

  forward(x: mx.Array, cache: KVCache, streams: Streams): mx.Array {
    const [q0, [k0, v0]] = streams.pair(
      () => this.q_proj.forward(x),
      () => [this.k_proj.forward(x), this.v_proj.forward(x)] as const,
    );
    const offset = cache.offset;
    let q = heads(q0, this.c.num_attention_heads);
    let k = heads(k0, this.c.num_key_value_heads);
    if (this.q_norm) q = rmsNorm(q, this.q_norm, this.c.rms_norm_eps);
    if (this.k_norm) k = rmsNorm(k, this.k_norm, this.c.rms_norm_eps);
    q = this.rope.forward(q, offset);
    k = this.rope.forward(k, offset);
    const vals = heads(v0, this.c.num_key_value_heads);
    const o = attend({ q, k, v: vals, cache, scale: this.scale });
    return this.o_proj.forward(o);
  }
}

class MLP {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  constructor(w: WeightStore, p: string) {
    this.gate_proj = w.linear(`${p}.gate_proj`);
    this.up_proj = w.linear(`${p}.up_proj`);
    this.down_proj = w.linear(`${p}.down_proj`);
  }
  forward(x: mx.Array, streams: Streams): mx.Array {
    const [g, u] = streams.pair(
      () => this.gate_proj.forward(x),
      () => this.up_proj.forward(x),
    );
    return this.down_proj.forward(swiglu(g, u));
  }
}

class TransformerBlock {
  readonly self_attn: Attention;
  readonly mlp: MLP;
  readonly input_layernorm: mx.Array;
  readonly post_attention_layernorm: mx.Array;
  constructor(
    w: WeightStore,
    p: string,
    readonly c: LlamaConfig,
    rope: Rope,
    readonly sliding: boolean,
  ) {
    this.self_attn = new Attention(w, `${p}.self_attn`, c, rope);
    this.mlp = new MLP(w, `${p}.mlp`);
    this.input_layernorm = w.get(`${p}.input_layernorm.weight`);
    this.post_attention_layernorm = w.get(`${p}.post_attention_layernorm.weight`);
  }
  forward(x: mx.Array, cache: KVCache, streams: Streams): mx.Array {
    const r = this.self_attn.forward(rmsNorm(x, this.input_layernorm, this.c.rms_norm_eps), cache, streams);
    const h = mx.add(x, r);
    const m = this.mlp.forward(rmsNorm(h, this.post_attention_layernorm, this.c.rms_norm_eps), streams);
    return mx.add(h, m);
  }
}

export class Model extends DecoderModel implements LanguageModel {
  readonly embed_tokens: Embedding;
  readonly layers: TransformerBlock[];
  readonly norm: mx.Array;
  readonly lm_head: SplitLinear;
  readonly rope: Rope;
  readonly streams: Streams;
  readonly normEps: number;

  constructor(
    readonly c: LlamaConfig,
    w: WeightStore,
    ctx: ModelContext,
  ) {
    super();
    this.normEps = c.rms_norm_eps;
    this.streams = new Streams(ctx.streams);
    this.rope = initializeRope({
      dims: c.head_dim,
      base: c.rope_theta,
      traditional: c.rope_traditional,
      scaling: c.rope_scaling,
      maxPositionEmbeddings: c.max_position_embeddings ?? undefined,
    });
    this.embed_tokens = w.embedding("model.embed_tokens");
    this.layers = c.layer_types.map((t, i) => new TransformerBlock(w, `model.layers.${i}`, c, this.rope, t === "sliding_attention"));
    this.norm = w.get("model.norm.weight");
    const head = c.tie_word_embeddings ? this.embed_tokens.asLinear() : w.linear("lm_head");
    this.lm_head = new SplitLinear(head, this.streams);
  }

  makeCache(): KVCache[] {
    return this.layers.map((l) => (l.sliding && this.c.sliding_window ? new RotatingKVCache(this.c.sliding_window) : new StandardKVCache()));
  }
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as LlamaConfig, w, ctx);
}

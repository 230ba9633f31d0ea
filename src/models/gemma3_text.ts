// Gemma 3 (text); agrees with mlx-lm 0.32.2 models/gemma3_text.py, except that layer_types and per-layer-type
// rope blocks (transformers 5) are read where mlx-lm only knows sliding_window_pattern / rope_local_base_freq.
// RMSNorm scales by (1 + weight), four
// norms per block, GELU-gated MLP, q/k norms, and local sliding-window layers with their own rope base.
import * as v from "valibot";
import { type KVCache, RotatingKVCache, StandardKVCache } from "./cache.ts";
import * as mx from "../mlx/index.ts";
import { Attention } from "./attention.ts";
import { int, type LanguageModel, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import type { Embedding, Linear } from "./layers.ts";
import { type Fanout, type Projection, rmsNorm } from "./layers.ts";
import { initializeRope, type RopeLayer } from "./rope.ts";
import { dropUnused } from "./transformer.ts";

export const configOptions: NormalizeOptions = {
  slidingWindowPattern: true,
  perLayerRope: true,
  activations: ["gelu_pytorch_tanh"],
  ropeTypes: ["default", "linear"],
};

const layerRope = v.object({ rope_theta: v.optional(v.number()), rope_scaling: ropeScaling });

export const configSchema = v.pipe(
  v.looseObject({
    // transformers' Gemma3TextConfig defaults (mlx-lm's are the 1B model's): the text_config of Google's
    // Gemma 3 wrapper configs leaves out what equals them (heads, KV heads, vocab_size, …)
    hidden_size: int(2304),
    num_hidden_layers: int(26),
    intermediate_size: int(9216),
    num_attention_heads: int(8),
    head_dim: int(256),
    rms_norm_eps: num(1e-6),
    vocab_size: int(262208),
    num_key_value_heads: int(4),
    rope_theta: num(1000000),
    rope_local_base_freq: num(10000),
    rope_by_layer_type: v.optional(v.record(v.string(), layerRope)),
    query_pre_attn_scalar: num(256),
    sliding_window: int(4096),
    sliding_window_pattern: int(6),
    layer_types: v.optional(v.array(v.string())),
    max_position_embeddings: int(131072),
    rope_scaling: ropeScaling,
    // EmbeddingGemma's bidirectional attention is not a causal LM
    use_bidirectional_attention: v.optional(v.nullable(v.literal(false))),
    // Gemma 2's soft-capping: Gemma 3 checkpoints set none; one that does would run wrong, so refuse it.
    final_logit_softcapping: v.optional(v.null()),
    attn_logit_softcapping: v.optional(v.null()),
  }),
  v.transform((c) => {
    const layer_types =
      c.layer_types ?? Array.from({ length: c.num_hidden_layers }, (_, i) => ((i + 1) % c.sliding_window_pattern === 0 ? "full_attention" : "sliding_attention"));
    const full = c.rope_by_layer_type?.full_attention;
    const local = c.rope_by_layer_type?.sliding_attention;
    return {
      ...c,
      layer_types,
      global_rope: { theta: full?.rope_theta ?? c.rope_theta, scaling: full ? full.rope_scaling : c.rope_scaling },
      local_rope: { theta: local?.rope_theta ?? c.rope_local_base_freq, scaling: local?.rope_scaling ?? null },
    };
  }),
);
type Gemma3Config = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 131072;
}

/** The value as bfloat16 would hold it (round to nearest even), as mlx-lm builds the embedding scale. */
function toBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16) << 16;
  return f[0]!;
}

/** Gemma's norm weights are stored as offsets from 1. */
class Norms {
  readonly owned: mx.Array[] = [];
  constructor(
    readonly w: WeightStore,
    readonly eps: number,
  ) {}
  take(key: string): mx.Array {
    const a = mx.keep(mx.add(this.w.get(key), 1));
    this.owned.push(a);
    return a;
  }
}

class TransformerBlock {
  readonly self_attn: Attention;
  readonly gate_proj!: Linear;
  readonly up_proj!: Linear;
  readonly down_proj!: Linear;
  readonly input_layernorm: mx.Array;
  readonly post_attention_layernorm: mx.Array;
  readonly pre_feedforward_layernorm: mx.Array;
  readonly post_feedforward_layernorm: mx.Array;
  readonly #gateUp: Fanout;

  constructor(
    w: WeightStore,
    n: Norms,
    p: string,
    readonly c: Gemma3Config,
    rope: RopeLayer,
    readonly sliding: boolean,
  ) {
    this.self_attn = new Attention(w, `${p}.self_attn`, {
      heads: c.num_attention_heads,
      kvHeads: c.num_key_value_heads,
      headDim: c.head_dim,
      scale: c.query_pre_attn_scalar ** -0.5,
      rope,
      qNorm: n.take(`${p}.self_attn.q_norm.weight`),
      kNorm: n.take(`${p}.self_attn.k_norm.weight`),
      normEps: c.rms_norm_eps,
    });
    for (const k of ["gate_proj", "up_proj", "down_proj"] as const) this[k] = w.linear(`${p}.mlp.${k}`);
    this.#gateUp = w.fanout([this.gate_proj, this.up_proj]);
    this.input_layernorm = n.take(`${p}.input_layernorm.weight`);
    this.post_attention_layernorm = n.take(`${p}.post_attention_layernorm.weight`);
    this.pre_feedforward_layernorm = n.take(`${p}.pre_feedforward_layernorm.weight`);
    this.post_feedforward_layernorm = n.take(`${p}.post_feedforward_layernorm.weight`);
  }

  #norm(x: mx.Array, w: mx.Array): mx.Array {
    return rmsNorm(x, w, this.c.rms_norm_eps);
  }

  attention(x: mx.Array, cache: KVCache): mx.Array {
    return this.self_attn.forward(x, cache);
  }

  mlp(x: mx.Array): mx.Array {
    const [g, u] = this.#gateUp.forward(x) as [mx.Array, mx.Array];
    return this.down_proj.forward(mx.multiply(mx.geluApprox(g), u));
  }

  forward(x: mx.Array, cache: KVCache): mx.Array {
    const r = this.#norm(this.attention(this.#norm(x, this.input_layernorm), cache), this.post_attention_layernorm);
    const h = mx.add(x, r);
    const m = this.#norm(this.mlp(this.#norm(h, this.pre_feedforward_layernorm)), this.post_feedforward_layernorm);
    return mx.add(h, m);
  }
}

export class Model implements LanguageModel {
  readonly embed_tokens: Embedding;
  readonly layers: TransformerBlock[];
  readonly norm: mx.Array;
  readonly lm_head: Projection;
  readonly #ropes: RopeLayer[];
  readonly #norms: Norms;
  readonly #embedScale: number;

  constructor(
    readonly c: Gemma3Config,
    w: WeightStore,
    _ctx: ModelContext,
  ) {
    const local = initializeRope({ dims: c.head_dim, base: c.local_rope.theta, scaling: c.local_rope.scaling as never, maxPositionEmbeddings: c.max_position_embeddings });
    const global = initializeRope({ dims: c.head_dim, base: c.global_rope.theta, scaling: c.global_rope.scaling as never, maxPositionEmbeddings: c.max_position_embeddings });
    this.#ropes = [local, global];
    this.#norms = new Norms(w, c.rms_norm_eps);
    this.embed_tokens = w.embedding("model.embed_tokens");
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => {
      const sliding = c.layer_types[i] === "sliding_attention";
      return new TransformerBlock(w, this.#norms, `model.layers.${i}`, c, sliding ? local : global, sliding);
    });
    this.norm = this.#norms.take("model.norm.weight");
    const head = w.has("lm_head.weight") ? w.linear("lm_head") : this.embed_tokens.asLinear();
    this.lm_head = w.projection(head);
    this.#embedScale = toBf16(Math.sqrt(c.hidden_size));
  }

  get numLayers(): number {
    return this.layers.length;
  }

  /** A decode batch runs through every layer with each row computed as alone (src/engine/batch.ts). */
  readonly rowBatched = true;

  makeCache(): KVCache[] {
    return this.layers.map((l) => (l.sliding ? new RotatingKVCache(this.c.sliding_window) : new StandardKVCache()));
  }

  hidden(inputs: mx.Array, cache: KVCache[]): mx.Array {
    const e = this.embed_tokens.forward(inputs);
    let h = mx.multiply(e, mx.scalar(this.#embedScale, e.dtype));
    this.layers.forEach((layer, i) => {
      h = layer.forward(h, cache[i]!);
    });
    return rmsNorm(h, this.norm, this.c.rms_norm_eps);
  }

  logits(h: mx.Array): mx.Array {
    return this.lm_head.forward(h);
  }

  [Symbol.dispose](): void {
    for (const r of this.#ropes) r.dispose();
    for (const a of this.#norms.owned) a.dispose();
    for (const a of this.lm_head.owned()) a.dispose();
  }
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as Gemma3Config, w, ctx);
}

export function sanitize(w: Map<string, mx.Array>): Map<string, mx.Array> {
  return dropUnused(w, false);
}

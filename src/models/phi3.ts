// Phi-3 / Phi-3.5 / Phi-4-mini; agrees with mlx-lm 0.32.2 models/phi3.py. Fused qkv_proj and gate_up_proj,
// partial rotary embedding, "longrope"/"su" scaled rope (short factors inside the original context, as
// transformers does; mlx-lm always uses the long ones, see rope.ts).
import * as v from "valibot";
import { ropeAt } from "./batch_cache.ts";
import { type KVCache, StandardKVCache } from "./cache.ts";
import * as mx from "../mlx/index.ts";
import { bool, int, type LanguageModel, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import { attend, DecoderModel, type Embedding, heads, type Linear, type Projection, rmsNorm, swiglu } from "./layers.ts";
import { initializeRope, type RopeLayer } from "./rope.ts";
import { dropUnused } from "./transformer.ts";

export const configSchema = v.pipe(
  v.looseObject({
    hidden_size: int(),
    num_hidden_layers: int(),
    intermediate_size: int(),
    num_attention_heads: int(),
    num_key_value_heads: v.optional(v.nullable(int())),
    rms_norm_eps: num(1e-5),
    vocab_size: int(),
    rope_theta: num(10000),
    rope_traditional: bool(false),
    rope_scaling: ropeScaling,
    partial_rotary_factor: num(1),
    max_position_embeddings: int(131072),
    original_max_position_embeddings: int(4096),
    tie_word_embeddings: bool(false),
  }),
  v.transform((c) => ({ ...c, num_key_value_heads: c.num_key_value_heads ?? c.num_attention_heads })),
);
type Phi3Config = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 131072;
}

export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  return dropUnused(w, config.tie_word_embeddings === true);
}

function makeRope(c: Phi3Config, headDim: number): RopeLayer {
  return initializeRope({
    dims: Math.floor(headDim * c.partial_rotary_factor),
    base: c.rope_theta,
    traditional: c.rope_traditional,
    scaling: c.rope_scaling as never,
    maxPositionEmbeddings: c.max_position_embeddings,
  });
}

class TransformerBlock {
  readonly qkv_proj: Linear;
  readonly o_proj: Linear;
  readonly gate_up_proj: Linear;
  readonly down_proj: Linear;
  readonly input_layernorm: mx.Array;
  readonly post_attention_layernorm: mx.Array;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: Phi3Config,
    readonly rope: RopeLayer,
    readonly headDim: number,
  ) {
    this.qkv_proj = w.linear(`${p}.self_attn.qkv_proj`);
    this.o_proj = w.linear(`${p}.self_attn.o_proj`);
    this.gate_up_proj = w.linear(`${p}.mlp.gate_up_proj`);
    this.down_proj = w.linear(`${p}.mlp.down_proj`);
    this.input_layernorm = w.get(`${p}.input_layernorm.weight`);
    this.post_attention_layernorm = w.get(`${p}.post_attention_layernorm.weight`);
  }

  attention(x: mx.Array, cache: KVCache): mx.Array {
    const c = this.c;
    const qPos = c.num_attention_heads * this.headDim;
    const kvDim = c.num_key_value_heads * this.headDim;
    const qkv = this.qkv_proj.forward(x);
    const q0 = mx.sliceAxis(qkv, -1, 0, qPos);
    const k0 = mx.sliceAxis(qkv, -1, qPos, qPos + kvDim);
    const v0 = mx.sliceAxis(qkv, -1, qPos + kvDim, qPos + 2 * kvDim);
    // a decode batch: each row at its own position (src/models/batch_cache.ts)
    const q = ropeAt(this.rope, heads(q0, c.num_attention_heads), cache);
    const k = ropeAt(this.rope, heads(k0, c.num_key_value_heads), cache);
    const o = attend({ q, k, v: heads(v0, c.num_key_value_heads), cache, scale: this.headDim ** -0.5 });
    return this.o_proj.forward(o);
  }

  mlp(x: mx.Array): mx.Array {
    const gu = this.gate_up_proj.forward(x);
    const n = gu.shape.at(-1)! / 2;
    const gate = mx.sliceAxis(gu, -1, 0, n);
    const up = mx.sliceAxis(gu, -1, n, 2 * n);
    return this.down_proj.forward(swiglu(gate, up));
  }

  forward(x: mx.Array, cache: KVCache): mx.Array {
    const h = mx.add(x, this.attention(rmsNorm(x, this.input_layernorm, this.c.rms_norm_eps), cache));
    return mx.add(h, this.mlp(rmsNorm(h, this.post_attention_layernorm, this.c.rms_norm_eps)));
  }
}

export class Model extends DecoderModel implements LanguageModel {
  readonly embed_tokens: Embedding;
  readonly layers: TransformerBlock[];
  readonly norm: mx.Array;
  readonly lm_head: Projection;
  readonly rope: RopeLayer;
  readonly normEps: number;

  constructor(
    readonly c: Phi3Config,
    w: WeightStore,
    _ctx: ModelContext,
  ) {
    super();
    this.normEps = c.rms_norm_eps;
    const headDim = c.hidden_size / c.num_attention_heads;
    this.rope = makeRope(c, headDim);
    this.embed_tokens = w.embedding("model.embed_tokens");
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => new TransformerBlock(w, `model.layers.${i}`, c, this.rope, headDim));
    this.norm = w.get("model.norm.weight");
    const head = c.tie_word_embeddings ? this.embed_tokens.asLinear() : w.linear("lm_head");
    this.lm_head = w.projection(head);
  }

  /** A decode batch runs through every layer with each row computed as alone (src/engine/batch.ts). */
  readonly rowBatched = true;

  makeCache(): KVCache[] {
    return this.layers.map(() => new StandardKVCache());
  }

}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as Phi3Config, w, ctx);
}

// ModernBERT encoder (transformers ModernBertModel; nomic-ai/modernbert-embed, gte-modernbert): pre-norm blocks
// with bias-free LayerNorm, fused Wqkv, RoPE (θ per layer type), GeGLU MLP, and alternating global / local
// attention (local: |i − j| ≤ local_attention / 2). Layer 0 has no attention norm. Config in both spellings:
// transformers 5 (`layer_types`, `rope_parameters`) and 4 (`global_attn_every_n_layers`, `global_rope_theta`, `local_rope_theta`).
import * as v from "valibot";
import * as mx from "../mlx/index.ts";
import { int, num, type WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import { type EncoderModel, activation, keyMask, layerNorm, stripPrefixes } from "./encoder.ts";
import { type BiasAct, biasAct, type Embedding, type Linear, rope, sdpa } from "./layers.ts";

const RopeEntry = v.looseObject({ rope_theta: v.optional(v.number()) });

export const configSchema = v.pipe(
  v.looseObject({
    hidden_size: int(),
    num_hidden_layers: int(),
    num_attention_heads: int(),
    intermediate_size: int(),
    vocab_size: int(),
    max_position_embeddings: int(8192),
    norm_eps: num(1e-5),
    norm_bias: v.optional(v.boolean(), false),
    attention_bias: v.optional(v.boolean(), false),
    mlp_bias: v.optional(v.boolean(), false),
    hidden_activation: v.optional(v.string(), "gelu"),
    local_attention: int(128),
    global_attn_every_n_layers: int(3),
    global_rope_theta: num(160000),
    local_rope_theta: num(10000),
    layer_types: v.optional(v.nullable(v.array(v.string())), null),
    rope_parameters: v.optional(v.nullable(v.record(v.string(), RopeEntry)), null),
    /** config.ts's per-layer-type rope (from a transformers 5 `rope_parameters`). */
    rope_by_layer_type: v.optional(v.nullable(v.record(v.string(), RopeEntry)), null),
  }),
  v.transform((c) => {
    const types = c.layer_types ?? Array.from({ length: c.num_hidden_layers }, (_, i) => (i % c.global_attn_every_n_layers === 0 ? "full_attention" : "sliding_attention"));
    const theta = (t: string) => c.rope_by_layer_type?.[t]?.rope_theta ?? c.rope_parameters?.[t]?.rope_theta ?? (t === "full_attention" ? c.global_rope_theta : c.local_rope_theta);
    return { ...c, layer_types: types, full_theta: theta("full_attention"), sliding_theta: theta("sliding_attention") };
  }),
);
type Config = v.InferOutput<typeof configSchema>;

export const configOptions: NormalizeOptions = { perLayerRope: true, ropeTypes: ["default"], activations: ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"] };

export function sanitize(w: Map<string, mx.Array>): Map<string, mx.Array> {
  return stripPrefixes(w, ["model."], (k) => k.startsWith("embeddings.") || k.startsWith("layers.") || k.startsWith("final_norm."));
}

export function maxPositions(c: Record<string, unknown>): number {
  return (c as Config).max_position_embeddings;
}

class Layer {
  readonly attnNorm: mx.Array | null;
  readonly attnNormB: mx.Array | null;
  readonly mlpNormB: mx.Array | null;
  readonly wqkv: Linear;
  readonly wo: Linear;
  readonly mlpNorm: mx.Array;
  readonly wi: Linear;
  readonly mlpOut: Linear;
  constructor(
    w: WeightStore,
    p: string,
    readonly sliding: boolean,
  ) {
    this.attnNorm = w.opt(`${p}.attn_norm.weight`);
    this.attnNormB = w.opt(`${p}.attn_norm.bias`);
    this.mlpNormB = w.opt(`${p}.mlp_norm.bias`);
    this.wqkv = w.linear(`${p}.attn.Wqkv`);
    this.wo = w.linear(`${p}.attn.Wo`);
    this.mlpNorm = w.get(`${p}.mlp_norm.weight`);
    this.wi = w.linear(`${p}.mlp.Wi`);
    this.mlpOut = w.linear(`${p}.mlp.Wo`);
  }
}

export class ModernBertEncoder implements EncoderModel {
  readonly tok: Embedding;
  readonly embNorm: mx.Array;
  readonly finalNorm: mx.Array;
  readonly layers: Layer[];
  readonly act: BiasAct;
  readonly embNormB: mx.Array | null;
  readonly finalNormB: mx.Array | null;

  constructor(
    readonly c: Config,
    w: WeightStore,
  ) {
    this.embNormB = w.opt("embeddings.norm.bias");
    this.finalNormB = w.opt("final_norm.bias");
    this.tok = w.embedding("embeddings.tok_embeddings");
    this.embNorm = w.get("embeddings.norm.weight");
    this.finalNorm = w.get("final_norm.weight");
    this.layers = c.layer_types.map((t, i) => new Layer(w, `layers.${i}`, t === "sliding_attention"));
    this.act = activation(c.hidden_activation);
  }

  private norm(x: mx.Array, weight: mx.Array, bias: mx.Array | null): mx.Array {
    return layerNorm(x, weight, this.c.norm_bias ? bias : null, this.c.norm_eps);
  }

  forward(ids: mx.Array, mask: mx.Array | null): mx.Array {
    const c = this.c;
    const [B, L] = ids.shape as [number, number];
    const nh = c.num_attention_heads;
    const hd = c.hidden_size / nh;
    let x = this.norm(this.tok.forward(ids), this.embNorm, this.embNormB);
    const global = mask ? keyMask(mask, x.dtype) : null;
    // local layers also hide keys farther than half the window
    const pos = mx.arange(0, L, 1, mx.Dtype.int32);
    const dist = mx.abs(mx.subtract(mx.reshape(pos, [L, 1]), mx.reshape(pos, [1, L])));
    const far = mx.multiply(mx.greater(dist, Math.floor(c.local_attention / 2)).astype(x.dtype), -1e9);
    const local = global ? mx.add(global, mx.reshape(far, [1, 1, L, L])) : mx.reshape(far, [1, 1, L, L]);
    for (const l of this.layers) {
      const a = l.attnNorm ? this.norm(x, l.attnNorm, l.attnNormB) : x;
      const qkv = mx.transpose(mx.reshape(l.wqkv.forward(a), [B, L, 3, nh, hd]), [2, 0, 3, 1, 4]);
      const [q0, k0, vv] = mx.split(qkv, 3, 0).map((t) => mx.squeeze(t, 0)) as [mx.Array, mx.Array, mx.Array];
      const base = l.sliding ? c.sliding_theta : c.full_theta;
      const q = rope(q0, { dims: hd, traditional: false, base });
      const k = rope(k0, { dims: hd, traditional: false, base });
      const o = sdpa(q, k, vv, { scale: hd ** -0.5, mask: l.sliding && L > c.local_attention / 2 ? local : global });
      x = mx.add(x, l.wo.forward(mx.reshape(mx.transpose(o, [0, 2, 1, 3]), [B, L, -1])));
      const [inp, gate] = mx.split(l.wi.forward(this.norm(x, l.mlpNorm, l.mlpNormB)), 2, -1) as [mx.Array, mx.Array];
      x = mx.add(x, l.mlpOut.forward(mx.multiply(biasAct(inp, null, this.act), gate)));
    }
    return this.norm(x, this.finalNorm, this.finalNormB);
  }
}

export function createEncoder(config: Record<string, unknown>, w: WeightStore): EncoderModel {
  return new ModernBertEncoder(config as Config, w);
}

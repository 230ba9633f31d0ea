// Gemma 3 (text); must agree with mlx-lm models/gemma3_text.py. RMSNorm scales by (1 + weight), four
// norms per block, GELU-gated MLP, q/k norms, and local sliding-window layers with their own rope base.
import * as v from "valibot";
import { type KVCache, RotatingKVCache, StandardKVCache } from "../engine/kv-cache.ts";
import * as mx from "../mlx/index.ts";
import { int, type LanguageModel, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import { attend, type Embedding, heads, initializeRope, type Linear, type Rope, SplitLinear, Streams } from "./layers.ts";

export const configSchema = v.looseObject({
  hidden_size: int(1152),
  num_hidden_layers: int(26),
  intermediate_size: int(6912),
  num_attention_heads: int(4),
  head_dim: int(256),
  rms_norm_eps: num(1e-6),
  vocab_size: int(262144),
  num_key_value_heads: int(1),
  rope_theta: num(1000000),
  rope_local_base_freq: num(10000),
  query_pre_attn_scalar: num(256),
  sliding_window: int(512),
  sliding_window_pattern: int(6),
  max_position_embeddings: int(32768),
  rope_scaling: ropeScaling,
});
type Gemma3Config = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 32768;
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
  readonly q_proj!: Linear;
  readonly k_proj!: Linear;
  readonly v_proj!: Linear;
  readonly o_proj!: Linear;
  readonly gate_proj!: Linear;
  readonly up_proj!: Linear;
  readonly down_proj!: Linear;
  readonly q_norm: mx.Array;
  readonly k_norm: mx.Array;
  readonly input_layernorm: mx.Array;
  readonly post_attention_layernorm: mx.Array;
  readonly pre_feedforward_layernorm: mx.Array;
  readonly post_feedforward_layernorm: mx.Array;

  constructor(
    w: WeightStore,
    n: Norms,
    p: string,
    readonly c: Gemma3Config,
    readonly rope: Rope,
    readonly sliding: boolean,
    readonly streams: Streams,
  ) {
    for (const k of ["q_proj", "k_proj", "v_proj", "o_proj"] as const) this[k] = w.linear(`${p}.self_attn.${k}`);
    for (const k of ["gate_proj", "up_proj", "down_proj"] as const) this[k] = w.linear(`${p}.mlp.${k}`);
    this.q_norm = n.take(`${p}.self_attn.q_norm.weight`);
    this.k_norm = n.take(`${p}.self_attn.k_norm.weight`);
    this.input_layernorm = n.take(`${p}.input_layernorm.weight`);
    this.post_attention_layernorm = n.take(`${p}.post_attention_layernorm.weight`);
    this.pre_feedforward_layernorm = n.take(`${p}.pre_feedforward_layernorm.weight`);
    this.post_feedforward_layernorm = n.take(`${p}.post_feedforward_layernorm.weight`);
  }

  #norm(x: mx.Array, w: mx.Array): mx.Array {
    return mx.fast.rmsNorm(x, w, this.c.rms_norm_eps);
  }

  attention(x: mx.Array, cache: KVCache): mx.Array {
    const c = this.c;
    const [q0, [k0, v0]] = this.streams.pair(
      () => this.q_proj.forward(x),
      () => [this.k_proj.forward(x), this.v_proj.forward(x)] as const,
    );
    const offset = cache.offset;
    const q = this.rope.forward(this.#norm(heads(q0, c.num_attention_heads), this.q_norm), offset);
    const k = this.rope.forward(this.#norm(heads(k0, c.num_key_value_heads), this.k_norm), offset);
    const o = attend({ q, k, v: heads(v0, c.num_key_value_heads), cache, scale: c.query_pre_attn_scalar ** -0.5 });
    return this.o_proj.forward(o);
  }

  mlp(x: mx.Array): mx.Array {
    const [g, u] = this.streams.pair(
      () => this.gate_proj.forward(x),
      () => this.up_proj.forward(x),
    );
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
  readonly lm_head: SplitLinear;
  readonly #ropes: Rope[];
  readonly #norms: Norms;
  readonly #embedScale: number;

  constructor(
    readonly c: Gemma3Config,
    w: WeightStore,
    ctx: ModelContext,
  ) {
    const streams = new Streams(ctx.streams);
    const local = initializeRope({ dims: c.head_dim, base: c.rope_local_base_freq });
    const global = initializeRope({ dims: c.head_dim, base: c.rope_theta, scaling: c.rope_scaling, maxPositionEmbeddings: c.max_position_embeddings });
    this.#ropes = [local, global];
    this.#norms = new Norms(w, c.rms_norm_eps);
    this.embed_tokens = w.embedding("model.embed_tokens");
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => {
      const sliding = (i + 1) % c.sliding_window_pattern !== 0;
      return new TransformerBlock(w, this.#norms, `model.layers.${i}`, c, sliding ? local : global, sliding, streams);
    });
    this.norm = this.#norms.take("model.norm.weight");
    const head = w.has("lm_head.weight") ? w.linear("lm_head") : this.embed_tokens.asLinear();
    this.lm_head = new SplitLinear(head, streams);
    this.#embedScale = toBf16(Math.sqrt(c.hidden_size));
  }

  get numLayers(): number {
    return this.layers.length;
  }

  makeCache(): KVCache[] {
    return this.layers.map((l) => (l.sliding ? new RotatingKVCache(this.c.sliding_window) : new StandardKVCache()));
  }

  hidden(inputs: mx.Array, cache: KVCache[]): mx.Array {
    const e = this.embed_tokens.forward(inputs);
    let h = mx.multiply(e, mx.scalar(this.#embedScale, e.dtype));
    this.layers.forEach((layer, i) => {
      h = layer.forward(h, cache[i]!);
    });
    return mx.fast.rmsNorm(h, this.norm, this.c.rms_norm_eps);
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

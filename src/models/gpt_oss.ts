// gpt-oss; agrees with mlx-lm 0.32.2 models/gpt_oss.py (except yarn `truncate` and the unquantized layout, see rope.ts / sanitize). Attention with biases and learned per-head sinks,
// alternating sliding/full layers, and a mixture of experts (top-k router, softmax over the chosen
// logits, clamped SwiGLU experts with biases) computed with gather_qmm / gather_mm.
import * as v from "valibot";
import { type KVCache, RotatingKVCache, StandardKVCache } from "./cache.ts";
import * as mx from "../mlx/index.ts";
import { Attention } from "./attention.ts";
import { int, type LanguageModel, type ModelContext, num, type WeightStore } from "./base.ts";
import { DecoderModel, type Embedding, type Linear, type Projection, rmsNorm } from "./layers.ts";
import { initializeRope, type RopeLayer } from "./rope.ts";
import { combine, SwitchGLU, sliceRows, topKSoftmax } from "./switch_layers.ts";

export const configSchema = v.pipe(
  v.looseObject({
    num_hidden_layers: int(36),
    num_local_experts: int(128),
    num_experts_per_tok: int(4),
    vocab_size: int(201088),
    rms_norm_eps: num(1e-5),
    hidden_size: int(2880),
    intermediate_size: int(2880),
    head_dim: int(64),
    num_attention_heads: int(64),
    num_key_value_heads: int(8),
    sliding_window: int(128),
    rope_theta: num(150000),
    // transformers' GptOssConfig default (mlx-lm falls back to plain rope when a config omits it)
    rope_scaling: v.optional(v.nullable(v.looseObject({ rope_type: v.string() })), {
      rope_type: "yarn",
      factor: 32,
      beta_fast: 32,
      beta_slow: 1,
      truncate: false,
      original_max_position_embeddings: 4096,
    }),
    max_position_embeddings: int(131072),
    layer_types: v.optional(v.nullable(v.array(v.string())), null),
  }),
  v.transform((c) => ({
    ...c,
    layer_types: c.layer_types ?? Array.from({ length: c.num_hidden_layers }, (_, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention")),
  })),
);
type GptOssConfig = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 131072;
}

/**
 * transformers' layouts → the split experts the model reads. MXFP4 checkpoints store fused gate_up_proj
 * `_blocks`/`_scales` [E, 2I, …] (gate and up rows interleaved); unquantized ones (`save_pretrained` of a
 * dequantized model) store `gate_up_proj` [E, H, 2I] and `down_proj` [E, I, H] as x @ W, so they are also
 * transposed to [E, out, in] (mlx-lm 0.32.2 slices those along the wrong axis). MLX exports are already split.
 */
export function sanitize(w: Map<string, mx.Array>): Map<string, mx.Array> {
  if ([...w.keys()].some((k) => k.includes("gate_proj.weight"))) return w;
  const out = new Map<string, mx.Array>();
  const put = (k: string, a: mx.Array) => out.set(k, a);
  for (const [k, a] of w) {
    if (k.endsWith("gate_up_proj_bias")) {
      put(k.replace("gate_up_proj_bias", "gate_proj.bias"), sliceRows(a, -1, 0, a.shape.at(-1)!, 2));
      put(k.replace("gate_up_proj_bias", "up_proj.bias"), sliceRows(a, -1, 1, a.shape.at(-1)!, 2));
      a.dispose();
    } else if (k.endsWith("down_proj_bias")) {
      put(k.replace("down_proj_bias", "down_proj.bias"), a);
    } else if (/(gate_up_proj|down_proj)_(blocks|scales)$/.test(k)) {
      const blocks = k.endsWith("_blocks");
      const arr = blocks ? mx.keep(mx.flatten(mx.view(a, mx.Dtype.uint32), -2, -1)) : a;
      const key = k.replace(/_blocks$/, ".weight").replace(/_scales$/, ".scales");
      if (key.includes("gate_up_proj")) {
        const n = arr.shape.at(-2)!;
        put(key.replace("gate_up_proj", "gate_proj"), sliceRows(arr, -2, 0, n, 2));
        put(key.replace("gate_up_proj", "up_proj"), sliceRows(arr, -2, 1, n, 2));
        arr.dispose();
      } else put(key, arr);
      if (arr !== a) a.dispose();
    } else if (k.endsWith("experts.gate_up_proj")) {
      const n = a.shape.at(-1)!;
      for (const [part, start] of [["gate_proj", 0], ["up_proj", 1]] as const) {
        const half = sliceRows(a, -1, start, n, 2);
        put(`${k.replace("gate_up_proj", part)}.weight`, mx.keep(mx.contiguous(mx.swapaxes(half, -1, -2))));
        half.dispose();
      }
      a.dispose();
    } else if (k.endsWith("experts.down_proj")) {
      put(`${k}.weight`, mx.keep(mx.contiguous(mx.swapaxes(a, -1, -2))));
      a.dispose();
    } else put(k, a);
  }
  return out;
}

/** gpt-oss's SwiGLU: gate clamped from above, linear part clamped and shifted by one. */
function swigluOai(gate: mx.Array, up: mx.Array): mx.Array {
  const g = mx.minimum(gate, 7);
  const u = mx.clip(up, -7, 7);
  const glu = mx.multiply(g, mx.sigmoid(mx.multiply(g, 1.702)));
  return mx.multiply(mx.add(u, 1), glu);
}

class TransformerBlock {
  readonly self_attn: Attention;
  readonly router: Linear;
  readonly experts: SwitchGLU;
  readonly input_layernorm: mx.Array;
  readonly post_attention_layernorm: mx.Array;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: GptOssConfig,
    rope: RopeLayer,
    readonly sliding: boolean,
  ) {
    this.self_attn = new Attention(w, `${p}.self_attn`, {
      heads: c.num_attention_heads,
      kvHeads: c.num_key_value_heads,
      headDim: c.head_dim,
      scale: 1 / Math.sqrt(c.head_dim),
      rope,
      sinks: w.get(`${p}.self_attn.sinks`),
    });
    this.router = w.linear(`${p}.mlp.router`);
    this.experts = new SwitchGLU(w, `${p}.mlp.experts`, swigluOai);
    this.input_layernorm = w.get(`${p}.input_layernorm.weight`);
    this.post_attention_layernorm = w.get(`${p}.post_attention_layernorm.weight`);
  }

  moe(x: mx.Array): mx.Array {
    const { indices, weights } = topKSoftmax(this.router.forward(x), this.c.num_experts_per_tok);
    return combine(this.experts.forward(x, indices), weights);
  }

  forward(x: mx.Array, cache: KVCache): mx.Array {
    const h = mx.add(x, this.self_attn.forward(rmsNorm(x, this.input_layernorm, this.c.rms_norm_eps), cache));
    return mx.add(h, this.moe(rmsNorm(h, this.post_attention_layernorm, this.c.rms_norm_eps)));
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
    readonly c: GptOssConfig,
    w: WeightStore,
    _ctx: ModelContext,
  ) {
    super();
    this.normEps = c.rms_norm_eps;
    this.rope = initializeRope({ dims: c.head_dim, base: c.rope_theta, scaling: c.rope_scaling as never, maxPositionEmbeddings: c.max_position_embeddings });
    this.embed_tokens = w.embedding("model.embed_tokens");
    this.layers = c.layer_types.map((t, i) => new TransformerBlock(w, `model.layers.${i}`, c, this.rope, t === "sliding_attention"));
    this.norm = w.get("model.norm.weight");
    this.lm_head = w.projection(w.linear("lm_head"));
  }

  /** A decode batch runs through every layer with each row computed as alone (src/engine/batch.ts). */
  readonly rowBatched = true;

  makeCache(): KVCache[] {
    return this.layers.map((l) => (l.sliding ? new RotatingKVCache(this.c.sliding_window) : new StandardKVCache()));
  }

}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as GptOssConfig, w, ctx);
}

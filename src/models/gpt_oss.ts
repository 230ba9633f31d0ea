// gpt-oss; must agree with mlx-lm models/gpt_oss.py. Attention with biases and learned per-head sinks,
// alternating sliding/full layers, and a mixture of experts (top-k router, softmax over the chosen
// logits, clamped SwiGLU experts with biases) computed with gather_qmm / gather_mm.
import * as v from "valibot";
import { type KVCache, RotatingKVCache, StandardKVCache } from "../engine/kv-cache.ts";
import * as mx from "../mlx/index.ts";
import { int, type LanguageModel, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import { attend, DecoderModel, type Embedding, heads, initializeRope, type Linear, type QuantParams, rmsNorm, type Rope, SplitLinear, Streams } from "./layers.ts";

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
    rope_scaling: ropeScaling,
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

/** Every other row (the interleaved gate/up halves of HF's fused gate_up_proj), along `axis`. */
function everyOther(a: mx.Array, axis: number, start: number): mx.Array {
  const ax = axis < 0 ? axis + a.ndim : axis;
  const lo = a.shape.map(() => 0);
  const hi = [...a.shape];
  const st = a.shape.map(() => 1);
  lo[ax] = start;
  st[ax] = 2;
  return mx.keep(mx.contiguous(mx.slice(a, lo, hi, st)));
}

/** HF checkpoints store experts as fused gate_up_proj MXFP4 `_blocks`/`_scales`; MLX ones are already split. */
export function sanitize(w: Map<string, mx.Array>): Map<string, mx.Array> {
  if ([...w.keys()].some((k) => k.includes("gate_proj.weight"))) return w;
  const out = new Map<string, mx.Array>();
  for (const [k0, a0] of w) {
    let k = k0;
    let a = a0;
    const isBias = k.endsWith("_bias");
    if (!isBias && (k.includes("gate_up_proj") || k.includes("down_proj")) && (k.endsWith("_blocks") || k.endsWith("_scales"))) {
      if (k.endsWith("_blocks")) {
        a = mx.keep(mx.flatten(mx.view(a0, mx.Dtype.uint32), -2, -1));
        k = k.replace(/_blocks$/, ".weight");
      } else k = k.replace(/_scales$/, ".scales");
    }
    if (k.includes("gate_up_proj")) {
      const bias = isBias;
      const name = (part: string) => (bias ? k.replace("gate_up_proj_bias", `${part}.bias`) : k.replace("gate_up_proj", part));
      out.set(name("gate_proj"), everyOther(a, bias ? -1 : -2, 0));
      out.set(name("up_proj"), everyOther(a, bias ? -1 : -2, 1));
      if (a !== a0) a.dispose();
      a0.dispose();
      continue;
    }
    if (k.endsWith("down_proj_bias")) k = k.replace("down_proj_bias", "down_proj.bias");
    out.set(k, a);
    if (a !== a0) a0.dispose();
  }
  return out;
}

/** Expert weights [E, out, in] (float or quantized) applied per token to its chosen experts. */
class SwitchLinear {
  readonly weight: mx.Array;
  readonly scales: mx.Array | null;
  readonly biases: mx.Array | null;
  readonly bias: mx.Array | null;
  readonly q: QuantParams | null;
  constructor(w: WeightStore, p: string) {
    const l: Linear = w.linear(p);
    this.weight = l.weight;
    this.scales = l.scales;
    this.biases = l.biases;
    this.bias = l.bias;
    this.q = l.q;
  }
  /** x [..., 1, 1|k?, in] with indices [..., k] → [..., k, 1, out]. */
  forward(x: mx.Array, indices: mx.Array): mx.Array {
    const y = this.q
      ? mx.gatherQmm(x, this.weight, this.scales!, this.biases, { ...this.q, transpose: true, rhsIndices: indices })
      : mx.gatherMm(x, mx.swapaxes(this.weight, -1, -2), { rhsIndices: indices });
    return this.bias ? mx.add(y, mx.expandDims(mx.take(this.bias, indices, 0), -2)) : y;
  }
}

/** gpt-oss's SwiGLU: gate clamped from above, linear part clamped and shifted by one. */
function swigluOai(gate: mx.Array, up: mx.Array): mx.Array {
  const g = mx.minimum(gate, 7);
  const u = mx.clip(up, -7, 7);
  const glu = mx.multiply(g, mx.sigmoid(mx.multiply(g, 1.702)));
  return mx.multiply(mx.add(u, 1), glu);
}

class TransformerBlock {
  readonly q_proj!: Linear;
  readonly k_proj!: Linear;
  readonly v_proj!: Linear;
  readonly o_proj!: Linear;
  readonly sinks: mx.Array;
  readonly router: Linear;
  readonly gate_proj!: SwitchLinear;
  readonly up_proj!: SwitchLinear;
  readonly down_proj!: SwitchLinear;
  readonly input_layernorm: mx.Array;
  readonly post_attention_layernorm: mx.Array;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: GptOssConfig,
    readonly rope: Rope,
    readonly sliding: boolean,
  ) {
    for (const k of ["q_proj", "k_proj", "v_proj", "o_proj"] as const) this[k] = w.linear(`${p}.self_attn.${k}`);
    this.sinks = w.get(`${p}.self_attn.sinks`);
    this.router = w.linear(`${p}.mlp.router`);
    for (const k of ["gate_proj", "up_proj", "down_proj"] as const) this[k] = new SwitchLinear(w, `${p}.mlp.experts.${k}`);
    this.input_layernorm = w.get(`${p}.input_layernorm.weight`);
    this.post_attention_layernorm = w.get(`${p}.post_attention_layernorm.weight`);
  }

  attention(x: mx.Array, cache: KVCache): mx.Array {
    const c = this.c;
    const offset = cache.offset;
    const q = this.rope.forward(heads(this.q_proj.forward(x), c.num_attention_heads), offset);
    const k = this.rope.forward(heads(this.k_proj.forward(x), c.num_key_value_heads), offset);
    const vals = heads(this.v_proj.forward(x), c.num_key_value_heads);
    const o = attend({ q, k, v: vals, cache, scale: 1 / Math.sqrt(c.head_dim), sinks: this.sinks });
    return this.o_proj.forward(o);
  }

  experts(x: mx.Array): mx.Array {
    const k = this.c.num_experts_per_tok;
    const E = this.c.num_local_experts;
    const g = this.router.forward(x);
    const idx = mx.sliceAxis(mx.argpartition(g, E - k, -1), -1, E - k, E);
    const weights = mx.softmax(mx.takeAlongAxis(g, idx, -1), -1, true);
    const xe = mx.expandDims(x, [-2, -3]);
    const up = this.up_proj.forward(xe, idx);
    const gate = this.gate_proj.forward(xe, idx);
    const y = mx.squeeze(this.down_proj.forward(swigluOai(gate, up), idx), -2);
    return mx.sum(mx.multiply(y, mx.expandDims(weights, -1)), -2);
  }

  forward(x: mx.Array, cache: KVCache): mx.Array {
    const h = mx.add(x, this.attention(rmsNorm(x, this.input_layernorm, this.c.rms_norm_eps), cache));
    return mx.add(h, this.experts(rmsNorm(h, this.post_attention_layernorm, this.c.rms_norm_eps)));
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
    readonly c: GptOssConfig,
    w: WeightStore,
    ctx: ModelContext,
  ) {
    super();
    this.normEps = c.rms_norm_eps;
    this.streams = new Streams(ctx.streams);
    this.rope = initializeRope({ dims: c.head_dim, base: c.rope_theta, scaling: c.rope_scaling, maxPositionEmbeddings: c.max_position_embeddings });
    this.embed_tokens = w.embedding("model.embed_tokens");
    this.layers = c.layer_types.map((t, i) => new TransformerBlock(w, `model.layers.${i}`, c, this.rope, t === "sliding_attention"));
    this.norm = w.get("model.norm.weight");
    this.lm_head = new SplitLinear(w.linear("lm_head"), this.streams);
  }

  makeCache(): KVCache[] {
    return this.layers.map((l) => (l.sliding ? new RotatingKVCache(this.c.sliding_window) : new StandardKVCache()));
  }

}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as GptOssConfig, w, ctx);
}

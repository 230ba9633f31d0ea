// Qwen3.5 (dense; the MoE variant is qwen3_5_moe.ts); must agree with mlx-lm 0.32.2 models/qwen3_5.py.
// Hybrid: most layers are Gated DeltaNet linear attention (depthwise causal conv + gated delta rule, a
// recurrent-state cache), every `full_attention_interval`-th layer is Qwen3-Next's gated full attention
// (a KV cache). The text path of the multimodal wrapper: weights sit under `language_model.` (MLX) or
// `model.language_model.` (transformers); vision tensors are dropped.
//
// Where mlxk reads configs differently from mlx-lm (transformers is the reference, see README): `layer_types`
// (what transformers 5 writes and its model obeys) decides linear vs full layers; mlx-lm only reads
// `full_attention_interval`. Without `layer_types` both use the interval. Both rope spellings are read
// (config.ts); mlx-lm ignores a top-level rope_theta.
import * as v from "valibot";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { ArraysCache } from "./arrays_cache.ts";
import { bool, int, type LanguageModel, type LayerCache, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import { type KVCache, StandardKVCache } from "./cache.ts";
import type { NormalizeOptions, RopeScaling } from "./config.ts";
import { convSilu, gatedDeltaUpdate, normalizeQk } from "./gated_delta.ts";
import { DecoderModel, type Embedding, type Linear, rmsNorm, SplitLinear, Streams } from "./layers.ts";
import { initializeRope, type RopeLayer as Rope } from "./rope.ts";
import { Qwen3NextAttention, Qwen3NextMLP, Qwen3NextSparseMoeBlock, rmsNormGated } from "./qwen3_next.ts";

/** The normaliser hoists a wrapper's text_config and reads both rope spellings (rope_parameters / rope_theta). */
export const configOptions: NormalizeOptions = { textConfig: true, layerTypes: ["linear_attention", "full_attention"], activations: ["silu"] };

export const configSchema = v.pipe(
  v.looseObject({
    hidden_size: int(),
    num_hidden_layers: int(),
    intermediate_size: int(0),
    num_attention_heads: int(),
    num_key_value_heads: int(),
    head_dim: v.optional(int()),
    rms_norm_eps: num(1e-6),
    vocab_size: int(),
    max_position_embeddings: int(131072),
    linear_num_value_heads: int(),
    linear_num_key_heads: int(),
    linear_key_head_dim: int(),
    linear_value_head_dim: int(),
    linear_conv_kernel_dim: int(4),
    tie_word_embeddings: bool(false),
    full_attention_interval: int(4),
    layer_types: v.optional(v.nullable(v.array(v.picklist(["linear_attention", "full_attention"])))),
    num_experts: int(0),
    num_experts_per_tok: int(0),
    shared_expert_intermediate_size: int(0),
    moe_intermediate_size: int(0),
    norm_topk_prob: bool(true),
    rope_theta: num(100000),
    partial_rotary_factor: num(0.25),
    rope_scaling: ropeScaling,
  }),
  v.transform((c) => ({
    ...c,
    head_dim: c.head_dim ?? Math.floor(c.hidden_size / c.num_attention_heads),
    layer_types:
      c.layer_types ?? Array.from({ length: c.num_hidden_layers }, (_, i) => ((i + 1) % c.full_attention_interval === 0 ? "full_attention" : "linear_attention")),
  })),
  v.check((c) => c.linear_num_value_heads % c.linear_num_key_heads === 0, "linear_num_value_heads must be a multiple of linear_num_key_heads"),
);
export type Qwen3_5Config = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 131072;
}

/** Rename a wrapper checkpoint's keys to mlx-lm's (`language_model.model.…`); vision and MTP tensors dropped. */
export function wrapperKeys(w: Map<string, mx.Array>): Map<string, mx.Array> {
  const out = new Map<string, mx.Array>();
  for (const [k0, a] of w) {
    let k = k0;
    if (k.startsWith("vision_tower") || k.startsWith("model.visual") || k.startsWith("mtp.")) {
      a.dispose();
      continue;
    }
    if (k.startsWith("model.language_model")) k = k.replace("model.language_model", "language_model.model");
    else if (!k.startsWith("language_model.")) k = `language_model.${k}`;
    out.set(k, a);
  }
  return out;
}

const NORM_SUFFIXES = [".input_layernorm.weight", ".post_attention_layernorm.weight", "model.norm.weight", ".q_norm.weight", ".k_norm.weight"];

/**
 * mlx-lm's TextModel.sanitize: transformers checkpoints (conv1d weight [C, 1, K]) get the conv weight
 * moved to MLX's [C, K, 1] and their zero-centred RMSNorm weights shifted by one; a tied head is dropped.
 */
export function sanitizeText(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  const c = config as Qwen3_5Config;
  const hf = [...w].some(([k, a]) => k.includes("conv1d.weight") && a.shape.at(-1) !== 1);
  for (const [k, a] of [...w]) {
    if (k.includes("mtp.") || (c.tie_word_embeddings && k === "language_model.lm_head.weight")) {
      a.dispose();
      w.delete(k);
      continue;
    }
    const conv = k.includes("conv1d.weight") && a.shape.at(-1) !== 1;
    const norm = hf && a.ndim === 1 && NORM_SUFFIXES.some((s) => k.endsWith(s));
    if (conv || norm) {
      w.set(k, mx.scope(() => mx.contiguous(conv ? mx.swapaxes(a, 1, 2) : mx.add(a, 1))));
      a.dispose();
    }
  }
  return w;
}

export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  return sanitizeText(wrapperKeys(w), config);
}

class GatedDeltaNet {
  readonly in_proj_qkv: Linear;
  readonly in_proj_z: Linear;
  readonly in_proj_b: Linear;
  readonly in_proj_a: Linear;
  readonly out_proj: Linear;
  readonly conv1d: mx.Array;
  readonly dt_bias: mx.Array;
  readonly A_log: mx.Array;
  readonly norm: mx.Array;
  readonly keyDim: number;
  readonly convDim: number;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: Qwen3_5Config,
  ) {
    this.in_proj_qkv = w.linear(`${p}.in_proj_qkv`);
    this.in_proj_z = w.linear(`${p}.in_proj_z`);
    this.in_proj_b = w.linear(`${p}.in_proj_b`);
    this.in_proj_a = w.linear(`${p}.in_proj_a`);
    this.out_proj = w.linear(`${p}.out_proj`);
    this.conv1d = w.get(`${p}.conv1d.weight`);
    this.dt_bias = w.get(`${p}.dt_bias`);
    this.A_log = w.get(`${p}.A_log`);
    this.norm = w.get(`${p}.norm.weight`);
    this.keyDim = c.linear_key_head_dim * c.linear_num_key_heads;
    this.convDim = 2 * this.keyDim + c.linear_value_head_dim * c.linear_num_value_heads;
    const want = [this.convDim, c.linear_conv_kernel_dim, 1];
    if (this.conv1d.shape.join() !== want.join()) {
      throw new MlxkError("execution_error", `Weight '${p}.conv1d.weight' has shape [${this.conv1d.shape}], expected [${want}]`);
    }
  }

  forward(x: mx.Array, cache: ArraysCache): mx.Array {
    const c = this.c;
    const [B, S] = x.shape as [number, number];
    const [Hk, Hv, Dk, Dv, K] = [c.linear_num_key_heads, c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim, c.linear_conv_kernel_dim];
    const qkv = this.in_proj_qkv.forward(x);
    const z = mx.reshape(this.in_proj_z.forward(x), [B, S, Hv, Dv]);
    const b = this.in_proj_b.forward(x);
    const a = this.in_proj_a.forward(x);
    const convState = cache.get(0) ?? mx.zeros([B, K - 1, this.convDim], x.dtype);
    const convInput = mx.concatenate([convState, qkv], 1);
    cache.set(0, mx.contiguous(mx.sliceAxis(convInput, 1, S, S + K - 1)));
    const convOut = convSilu(convInput, this.conv1d);
    const [q0, k0, v0] = mx.split(convOut, [this.keyDim, 2 * this.keyDim], -1) as [mx.Array, mx.Array, mx.Array];
    const [q, k] = normalizeQk(mx.reshape(q0, [B, S, Hk, Dk]), mx.reshape(k0, [B, S, Hk, Dk]), Dk ** -0.5, 1e-6);
    const [out, state] = gatedDeltaUpdate({ q, k, v: mx.reshape(v0, [B, S, Hv, Dv]), a, b, aLog: this.A_log, dtBias: this.dt_bias, state: cache.get(1) });
    cache.set(1, state);
    cache.advance(S);
    const o = rmsNormGated(out, this.norm, z, c.rms_norm_eps);
    return this.out_proj.forward(mx.reshape(o, [B, S, -1]));
  }
}

/** What a decoder layer's feed-forward part is: the dense MLP, or qwen3_5_moe's sparse MoE block. */
export interface FeedForward {
  forward(x: mx.Array, streams: Streams): mx.Array;
}

class DecoderLayer {
  readonly linear_attn: GatedDeltaNet | null;
  readonly self_attn: Qwen3NextAttention | null;
  readonly input_layernorm: mx.Array;
  readonly post_attention_layernorm: mx.Array;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: Qwen3_5Config,
    readonly isLinear: boolean,
    rope: Rope,
    readonly mlp: FeedForward,
  ) {
    this.linear_attn = isLinear ? new GatedDeltaNet(w, `${p}.linear_attn`, c) : null;
    this.self_attn = isLinear ? null : new Qwen3NextAttention(w, `${p}.self_attn`, c, rope);
    this.input_layernorm = w.get(`${p}.input_layernorm.weight`);
    this.post_attention_layernorm = w.get(`${p}.post_attention_layernorm.weight`);
  }

  forward(x: mx.Array, cache: LayerCache, streams: Streams): mx.Array {
    const n = rmsNorm(x, this.input_layernorm, this.c.rms_norm_eps);
    const r = this.linear_attn ? this.linear_attn.forward(n, cache as ArraysCache) : this.self_attn!.forward(n, cache as KVCache, streams);
    const h = mx.add(x, r);
    return mx.add(h, this.mlp.forward(rmsNorm(h, this.post_attention_layernorm, this.c.rms_norm_eps), streams));
  }
}

export type MlpFactory = (w: WeightStore, prefix: string, c: Qwen3_5Config) => FeedForward;

export class Model extends DecoderModel implements LanguageModel {
  readonly embed_tokens: Embedding;
  readonly layers: DecoderLayer[];
  readonly norm: mx.Array;
  readonly lm_head: SplitLinear;
  readonly rope: Rope;
  readonly streams: Streams;
  readonly normEps: number;

  constructor(
    readonly c: Qwen3_5Config,
    w: WeightStore,
    ctx: ModelContext,
    mlp: MlpFactory = (ws, p) => (c.num_experts > 0 ? new Qwen3NextSparseMoeBlock(ws, p, c) : new Qwen3NextMLP(ws, p)),
  ) {
    super();
    this.normEps = c.rms_norm_eps;
    this.streams = new Streams(ctx.streams);
    this.rope = initializeRope({
      dims: Math.floor(c.head_dim * c.partial_rotary_factor),
      base: c.rope_theta,
      scaling: c.rope_scaling as RopeScaling | null,
      maxPositionEmbeddings: c.max_position_embeddings,
    });
    const m = "language_model.model";
    this.embed_tokens = w.embedding(`${m}.embed_tokens`);
    this.layers = c.layer_types.map((t, i) => new DecoderLayer(w, `${m}.layers.${i}`, c, t === "linear_attention", this.rope, mlp(w, `${m}.layers.${i}.mlp`, c)));
    this.norm = w.get(`${m}.norm.weight`);
    const head = c.tie_word_embeddings ? this.embed_tokens.asLinear() : w.linear("language_model.lm_head");
    this.lm_head = new SplitLinear(head, this.streams);
  }

  makeCache(): LayerCache[] {
    return this.layers.map((l) => (l.isLinear ? new ArraysCache(2) : new StandardKVCache()));
  }
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as Qwen3_5Config, w, ctx);
}

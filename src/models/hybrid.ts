// The hybrid decoder of the Qwen3-Next family; must agree with mlx-lm 0.32.2 models/qwen3_next.py (whose
// classes qwen3_5.py imports): Gated DeltaNet linear-attention layers (a recurrent-state cache) and, every
// few layers, gated full attention (a KV cache); the SwiGLU MLP or the sparse MoE block with a gated
// shared expert; the gated RMSNorm after the delta rule. qwen3_next.ts and qwen3_5.ts (+ qwen3_5_moe.ts)
// are the model_type files: configs, checkpoint renames, where the weights sit.
import * as v from "valibot";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { ArraysCache } from "./arrays_cache.ts";
import { ropeAt } from "./batch_cache.ts";
import { bool, int, type LanguageModel, type LayerCache, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import { type KVCache, StandardKVCache } from "./cache.ts";
import type { RopeScaling } from "./config.ts";
import { convSilu, gatedDeltaUpdate, normalizeQk } from "./gated_delta.ts";
import { attend, DecoderModel, type Embedding, type Fanout, type Linear, type Projection, rmsNorm, swiglu } from "./layers.ts";
import { DenseMlp } from "./transformer.ts";
import { initializeRope, type RopeLayer as Rope } from "./rope.ts";
import { softmaxTopKMoe, SwitchGLU } from "./switch_layers.ts";

/** The config keys qwen3_5 and qwen3_next share (their defaults in `d`); each file adds its own. */
export function hybridFields(d: { max_position_embeddings: number; rope_theta: number; partial_rotary_factor: number; norm_topk_prob: boolean; intermediate_size?: number }) {
  return {
    hidden_size: int(),
    num_hidden_layers: int(),
    intermediate_size: int(d.intermediate_size),
    num_attention_heads: int(),
    num_key_value_heads: int(),
    head_dim: v.optional(int()),
    rms_norm_eps: num(1e-6),
    vocab_size: int(),
    max_position_embeddings: int(d.max_position_embeddings),
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
    norm_topk_prob: bool(d.norm_topk_prob),
    rope_theta: num(d.rope_theta),
    partial_rotary_factor: num(d.partial_rotary_factor),
    rope_scaling: ropeScaling,
  };
}

type HybridFields = v.InferOutput<v.ObjectSchema<ReturnType<typeof hybridFields>, undefined>>;

/** head_dim derived, layer_types from `full_attention_interval` when the config has none. */
export function hybridDerived<T extends HybridFields>(c: T) {
  if (c.linear_num_value_heads % c.linear_num_key_heads !== 0) {
    throw new MlxkError("unsupported_model", `config.json linear_num_value_heads ${c.linear_num_value_heads} is not a multiple of linear_num_key_heads ${c.linear_num_key_heads}`);
  }
  return {
    ...c,
    head_dim: c.head_dim ?? Math.floor(c.hidden_size / c.num_attention_heads),
    layer_types:
      c.layer_types ?? Array.from({ length: c.num_hidden_layers }, (_, i) => ((i + 1) % c.full_attention_interval === 0 ? "full_attention" : "linear_attention")),
  };
}


/** The config keys the hybrid decoder reads (qwen3_next.ts / qwen3_5.ts schemas produce them). */
export interface HybridConfig {
  hidden_size: number;
  num_hidden_layers: number;
  intermediate_size: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  max_position_embeddings: number;
  linear_num_value_heads: number;
  linear_num_key_heads: number;
  linear_key_head_dim: number;
  linear_value_head_dim: number;
  linear_conv_kernel_dim: number;
  layer_types: readonly ("linear_attention" | "full_attention")[];
  tie_word_embeddings: boolean;
  rope_theta: number;
  partial_rotary_factor: number;
  rope_scaling: unknown;
  num_experts: number;
  num_experts_per_tok: number;
  norm_topk_prob: boolean;
}

interface AttentionShape {
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
}

/** Qwen3NextRMSNormGated: rms_norm(x)·silu(gate), the product in float32 (precise_swiglu). */
export function rmsNormGated(x: mx.Array, weight: mx.Array, gate: mx.Array, eps: number): mx.Array {
  const n = rmsNorm(x, weight, eps);
  if (x.dtype === mx.Dtype.float32 && gate.dtype === mx.Dtype.float32) return swiglu(gate, n);
  const g = mx.silu(gate.astype(mx.Dtype.float32));
  return mx.multiply(g, n.astype(mx.Dtype.float32)).astype(x.dtype);
}

export class Qwen3NextAttention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  readonly q_norm: mx.Array;
  readonly k_norm: mx.Array;
  readonly #qkv: Fanout;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: AttentionShape,
    readonly rope: Rope,
  ) {
    this.q_proj = w.linear(`${p}.q_proj`);
    this.k_proj = w.linear(`${p}.k_proj`);
    this.v_proj = w.linear(`${p}.v_proj`);
    this.o_proj = w.linear(`${p}.o_proj`);
    this.#qkv = w.fanout([this.q_proj, this.k_proj, this.v_proj]);
    this.q_norm = w.get(`${p}.q_norm.weight`);
    this.k_norm = w.get(`${p}.k_norm.weight`);
  }

  forward(x: mx.Array, cache: KVCache): mx.Array {
    const { num_attention_heads: H, num_key_value_heads: Hkv, head_dim: D, rms_norm_eps: eps } = this.c;
    const [B, L] = x.shape as [number, number];
    const [qg, k0, v0] = this.#qkv.forward(x) as [mx.Array, mx.Array, mx.Array];
    // Each head's q_proj rows are [queries (D) | gate (D)].
    const [queries, gate] = mx.split(mx.reshape(qg, [B, L, H, 2 * D]), 2, -1) as [mx.Array, mx.Array];
    // a decode batch: each row at its own position (src/models/batch_cache.ts)
    const q = ropeAt(this.rope, mx.transpose(rmsNorm(queries, this.q_norm, eps), [0, 2, 1, 3]), cache);
    const k = ropeAt(this.rope, mx.transpose(rmsNorm(mx.reshape(k0, [B, L, Hkv, D]), this.k_norm, eps), [0, 2, 1, 3]), cache);
    const v = mx.transpose(mx.reshape(v0, [B, L, Hkv, D]), [0, 2, 1, 3]);
    const o = attend({ q, k, v, cache, scale: D ** -0.5 });
    return this.o_proj.forward(mx.multiply(o, mx.sigmoid(mx.reshape(gate, [B, L, H * D]))));
  }
}


interface MoeShape {
  num_experts: number;
  num_experts_per_tok: number;
  norm_topk_prob: boolean;
}

/**
 * Qwen3NextSparseMoeBlock: softmax router, top-k (renormalised), SwiGLU experts, plus a shared expert
 * scaled by a sigmoid gate.
 */
export class Qwen3NextSparseMoeBlock {
  readonly gate: Linear;
  readonly switch_mlp: SwitchGLU;
  readonly shared_expert: DenseMlp;
  readonly shared_expert_gate: Linear;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: MoeShape,
  ) {
    this.gate = w.linear(`${p}.gate`);
    this.switch_mlp = new SwitchGLU(w, `${p}.switch_mlp`, swiglu);
    this.shared_expert = new DenseMlp(w, `${p}.shared_expert`);
    this.shared_expert_gate = w.linear(`${p}.shared_expert_gate`);
  }

  forward(x: mx.Array): mx.Array {
    const y = softmaxTopKMoe(this.switch_mlp, x, this.gate.forward(x), this.c.num_experts_per_tok, this.c.norm_topk_prob);
    const shared = mx.multiply(mx.sigmoid(this.shared_expert_gate.forward(x)), this.shared_expert.forward(x));
    return mx.add(y, shared);
  }
}

/** The projections of a Gated DeltaNet layer for x [B, S, H]: conv input, output gate, beta and decay logits. */
interface Projected {
  qkv: mx.Array;
  z: mx.Array;
  b: mx.Array;
  a: mx.Array;
}

class GatedDeltaNet {
  readonly proj: Record<string, Linear>;
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
    readonly c: HybridConfig,
    readonly fused: boolean,
  ) {
    const names = fused ? ["in_proj_qkvz", "in_proj_ba"] : ["in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"];
    this.proj = Object.fromEntries(names.map((n) => [n, w.linear(`${p}.${n}`)]));
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

  #project(x: mx.Array): Projected {
    const c = this.c;
    const [B, S] = x.shape as [number, number];
    const [nk, dk, nv, dv] = [c.linear_num_key_heads, c.linear_key_head_dim, c.linear_num_value_heads, c.linear_value_head_dim];
    if (!this.fused) {
      const p = this.proj;
      return { qkv: p.in_proj_qkv!.forward(x), z: mx.reshape(p.in_proj_z!.forward(x), [B, S, nv, dv]), b: p.in_proj_b!.forward(x), a: p.in_proj_a!.forward(x) };
    }
    // qwen3_next: per key head [q (dk) | k (dk) | v (nv/nk·dv) | z (nv/nk·dv)] and [b (nv/nk) | a (nv/nk)].
    const r = nv / nk;
    const qkvz = mx.reshape(this.proj.in_proj_qkvz!.forward(x), [B, S, nk, -1]);
    const [q, k, v, z] = mx.split(qkvz, [dk, 2 * dk, 2 * dk + r * dv], -1) as [mx.Array, mx.Array, mx.Array, mx.Array];
    const [b, a] = mx.split(mx.reshape(this.proj.in_proj_ba!.forward(x), [B, S, nk, -1]), [r], -1) as [mx.Array, mx.Array];
    const flat = (t: mx.Array) => mx.reshape(t, [B, S, -1]);
    return { qkv: mx.concatenate([flat(q), flat(k), flat(v)], -1), z: mx.reshape(z, [B, S, nv, dv]), b: mx.reshape(b, [B, S, nv]), a: mx.reshape(a, [B, S, nv]) };
  }

  forward(x: mx.Array, cache: ArraysCache): mx.Array {
    const c = this.c;
    const [B, S] = x.shape as [number, number];
    const [Hk, Hv, Dk, Dv, K] = [c.linear_num_key_heads, c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim, c.linear_conv_kernel_dim];
    const { qkv, z, b, a } = this.#project(x);
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
  forward(x: mx.Array): mx.Array;
}

class DecoderLayer {
  readonly linear_attn: GatedDeltaNet | null;
  readonly self_attn: Qwen3NextAttention | null;
  readonly input_layernorm: mx.Array;
  readonly post_attention_layernorm: mx.Array;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: HybridConfig,
    readonly isLinear: boolean,
    rope: Rope,
    readonly mlp: FeedForward,
    fused: boolean,
  ) {
    this.linear_attn = isLinear ? new GatedDeltaNet(w, `${p}.linear_attn`, c, fused) : null;
    this.self_attn = isLinear ? null : new Qwen3NextAttention(w, `${p}.self_attn`, c, rope);
    this.input_layernorm = w.get(`${p}.input_layernorm.weight`);
    this.post_attention_layernorm = w.get(`${p}.post_attention_layernorm.weight`);
  }

  forward(x: mx.Array, cache: LayerCache): mx.Array {
    const n = rmsNorm(x, this.input_layernorm, this.c.rms_norm_eps);
    const r = this.linear_attn ? this.linear_attn.forward(n, cache as ArraysCache) : this.self_attn!.forward(n, cache as KVCache);
    const h = mx.add(x, r);
    return mx.add(h, this.mlp.forward(rmsNorm(h, this.post_attention_layernorm, this.c.rms_norm_eps)));
  }
}

export interface HybridOptions {
  /** Where the text model's weights sit ("model", or "language_model.model" in the qwen3_5 wrapper). */
  prefix: string;
  headKey: string;
  /** qwen3_next's fused in_proj_qkvz / in_proj_ba (head-grouped) instead of qwen3_5's four projections. */
  fusedProjections: boolean;
  /** Whether layer i's feed-forward is the sparse MoE block. */
  moeLayer(i: number): boolean;
}

export class HybridModel extends DecoderModel implements LanguageModel {
  readonly embed_tokens: Embedding;
  readonly layers: DecoderLayer[];
  readonly norm: mx.Array;
  readonly lm_head: Projection;
  readonly rope: Rope;
  readonly normEps: number;

  constructor(
    readonly c: HybridConfig,
    w: WeightStore,
    _ctx: ModelContext,
    o: HybridOptions,
  ) {
    super();
    this.normEps = c.rms_norm_eps;
    this.rope = initializeRope({
      dims: Math.floor(c.head_dim * c.partial_rotary_factor),
      base: c.rope_theta,
      scaling: c.rope_scaling as RopeScaling | null,
      maxPositionEmbeddings: c.max_position_embeddings,
    });
    const m = o.prefix;
    this.embed_tokens = w.embedding(`${m}.embed_tokens`);
    this.layers = c.layer_types.map((t, i) => {
      const p = `${m}.layers.${i}`;
      const mlp = o.moeLayer(i) ? new Qwen3NextSparseMoeBlock(w, `${p}.mlp`, c) : new DenseMlp(w, `${p}.mlp`);
      return new DecoderLayer(w, p, c, t === "linear_attention", this.rope, mlp, o.fusedProjections);
    });
    this.norm = w.get(`${m}.norm.weight`);
    const head = c.tie_word_embeddings ? this.embed_tokens.asLinear() : w.linear(o.headKey);
    this.lm_head = w.projection(head);
  }

  /** A decode batch runs through every layer with each row computed as alone (src/engine/batch.ts). */
  readonly rowBatched = true;

  makeCache(): LayerCache[] {
    return this.layers.map((l) => (l.isLinear ? new ArraysCache(2) : new StandardKVCache()));
  }
}


const NORM_SUFFIXES = [".input_layernorm.weight", ".post_attention_layernorm.weight", "model.norm.weight", ".q_norm.weight", ".k_norm.weight"];

/**
 * The text-model sanitize of mlx-lm's qwen3_5 / qwen3_next: transformers checkpoints (conv1d weight
 * [C, 1, K]) get the conv weight moved to MLX's [C, K, 1] and their zero-centred RMSNorm weights shifted
 * by one; MTP tensors and a tied head (`headKey`) are dropped.
 */
export function sanitizeHybrid(w: Map<string, mx.Array>, c: HybridConfig, headKey: string): Map<string, mx.Array> {
  const hf = [...w].some(([k, a]) => k.includes("conv1d.weight") && a.shape.at(-1) !== 1);
  for (const [k, a] of [...w]) {
    if (k.includes("mtp.") || (c.tie_word_embeddings && k === `${headKey}.weight`)) {
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


/** mlx-lm's cast_predicate for these models: A_log stays in its checkpoint precision (it is exponentiated twice). */
export function castPredicate(key: string): boolean {
  return !key.endsWith("A_log");
}

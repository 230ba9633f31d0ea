// Gemma 4 (text); must agree with mlx-lm 0.32.2 models/gemma4_text.py (the wrapper is gemma4.ts).
// Sliding and full attention layers with their own head sizes and rope (proportional rope on full
// layers), q/k RMSNorm and a scale-free v norm, attention scale 1, the last `num_kv_shared_layers` layers
// reusing the K/V of the last earlier layer of their type, per-layer input embeddings (PLE), a GELU-gated
// MLP (double width on KV-shared layers when asked) next to a routed GeGLU expert block (26B-A4B's
// enable_moe_block), a learned per-layer scalar and a final logit softcap.
//
// Where mlxk reads configs differently from mlx-lm (transformers 5 is the reference, see README):
//   - `per_layer_config` (what transformers 5 writes: per-layer head_dim / num_key_value_heads) is obeyed;
//     mlx-lm ignores it and takes `global_head_dim` (default 512) for every full layer. Without
//     per_layer_config both read `global_head_dim` / `num_global_key_value_heads`.
//   - missing keys take transformers' defaults, not mlx-lm's: final_logit_softcapping none (mlx-lm 30),
//     use_double_wide_mlp false (mlx-lm true), num_kv_shared_layers 0 (mlx-lm 20), num_key_value_heads 4,
//     layer_types every 6th full with the last layer forced full (mlx-lm: every 5th).
import * as v from "valibot";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { bool, int, type LanguageModel, type LayerCache, type ModelContext, num, type WeightStore } from "./base.ts";
import { layerOps } from "../mlx/backend.ts";
import { isRowsCache, ropeAt, ropeRows, type RowsCache } from "./batch_cache.ts";
import { type BatchRotatingKVCache, isPerRowCache } from "./batch_rows_cache.ts";
import { type KVCache, RotatingKVCache, StandardKVCache } from "./cache.ts";
import type { LayerRope, NormalizeOptions, RopeScaling } from "./config.ts";
import { type Embedding, type Fanout, type Linear, type Projection, rmsNorm, sdpa } from "./layers.ts";
import { combine, splitFusedExperts, SwitchGLU, topK } from "./switch_layers.ts";
import { initializeRope, type RopeLayer as Rope } from "./rope.ts";

/** The normaliser reads both rope spellings into rope_by_layer_type and derives layer_types from a pattern. */
export const configOptions: NormalizeOptions = { perLayerRope: true, slidingWindowPattern: true, activations: ["gelu_pytorch_tanh"] };

const LayerRopeSchema = v.looseObject({
  rope_theta: v.optional(v.number()),
  rope_scaling: v.nullable(v.looseObject({ rope_type: v.string() })),
  partial_rotary_factor: v.optional(v.number()),
});
const LayerOverride = v.looseObject({ head_dim: v.optional(int()), num_key_value_heads: v.optional(int()) });

export const textSchema = v.looseObject({
  hidden_size: int(),
  num_hidden_layers: int(),
  intermediate_size: int(),
  num_attention_heads: int(8),
  num_key_value_heads: int(4),
  head_dim: int(256),
  global_head_dim: v.optional(v.nullable(int())),
  num_global_key_value_heads: v.optional(v.nullable(int())),
  per_layer_config: v.optional(v.nullable(v.record(v.string(), LayerOverride))),
  rms_norm_eps: num(1e-6),
  vocab_size: int(262144),
  vocab_size_per_layer_input: int(262144),
  hidden_size_per_layer_input: v.optional(v.nullable(int()), 256),
  num_kv_shared_layers: int(0),
  sliding_window: int(512),
  sliding_window_pattern: v.optional(int()),
  layer_types: v.optional(v.nullable(v.array(v.picklist(["sliding_attention", "full_attention"])))),
  rope_parameters: v.optional(v.unknown()),
  rope_by_layer_type: v.optional(v.record(v.string(), LayerRopeSchema)),
  rope_traditional: bool(false),
  max_position_embeddings: int(131072),
  attention_k_eq_v: bool(false),
  final_logit_softcapping: v.optional(v.nullable(v.number()), null),
  use_double_wide_mlp: bool(false),
  enable_moe_block: bool(false),
  num_experts: v.optional(v.nullable(int()), null),
  top_k_experts: v.optional(v.nullable(int()), null),
  moe_intermediate_size: v.optional(v.nullable(int()), null),
  use_bidirectional_attention: v.optional(v.nullable(v.string()), null),
  tie_word_embeddings: bool(true),
});

/** transformers' Gemma4TextConfig rope when the config has no rope_parameters. */
const DEFAULT_ROPE: Record<string, LayerRope> = {
  sliding_attention: { rope_theta: 10000, rope_scaling: null },
  full_attention: { rope_theta: 1000000, rope_scaling: { rope_type: "proportional" }, partial_rotary_factor: 0.25 },
};

export interface LayerSpec {
  type: "sliding_attention" | "full_attention";
  headDim: number;
  kvHeads: number;
  /** Index of the layer whose K/V this layer attends to (itself unless KV-shared). */
  kvSource: number;
  /** MLP width (doubled on KV-shared layers with use_double_wide_mlp). */
  ffDim: number;
}

/** Resolve per-layer settings as transformers' Gemma4TextConfig does (per_layer_config, kv_sharing_modes). */
export function normalizeText(c: v.InferOutput<typeof textSchema>) {
  const N = c.num_hidden_layers;
  if (c.use_bidirectional_attention === "all") {
    throw new MlxkError("unsupported_model", "Gemma 4 with use_bidirectional_attention 'all' is an encoder, not a text generator");
  }
  if (c.enable_moe_block && !(c.num_experts && c.top_k_experts && c.moe_intermediate_size)) {
    throw new MlxkError("unsupported_model", "Gemma 4 enable_moe_block needs num_experts, top_k_experts and moe_intermediate_size");
  }
  let types = c.layer_types ? [...c.layer_types] : null;
  if (!types) {
    const p = c.sliding_window_pattern ?? 6;
    types = Array.from({ length: N }, (_, i) => ((i + 1) % p === 0 ? "full_attention" : "sliding_attention") as LayerSpec["type"]);
  }
  if (types.length !== N) throw new MlxkError("unsupported_model", `layer_types has ${types.length} entries for ${N} layers`);
  types[N - 1] = "full_attention";
  const rope: Record<string, LayerRope> = c.rope_parameters == null ? DEFAULT_ROPE : { ...DEFAULT_ROPE, ...(c.rope_by_layer_type as Record<string, LayerRope>) };
  const firstShared = N - c.num_kv_shared_layers;
  const lastOfType = new Map<string, number>();
  for (let i = 0; i < firstShared; i++) lastOfType.set(types[i]!, i);
  const layers: LayerSpec[] = types.map((type, i) => {
    const full = type === "full_attention";
    const o = c.per_layer_config ? (c.per_layer_config[String(i)] ?? {}) : null;
    const headDim = o ? (o.head_dim ?? c.head_dim) : full ? (c.global_head_dim ?? 512) : c.head_dim;
    const kEqV = c.attention_k_eq_v && full;
    const kvHeads = o ? (o.num_key_value_heads ?? c.num_key_value_heads) : kEqV && c.num_global_key_value_heads ? c.num_global_key_value_heads : c.num_key_value_heads;
    const shared = i >= firstShared && firstShared > 0;
    const kvSource = shared ? lastOfType.get(type) : i;
    if (kvSource === undefined) throw new MlxkError("unsupported_model", `Gemma 4 layer ${i} shares K/V with no earlier ${type} layer`);
    return { type, headDim, kvHeads, kvSource, ffDim: c.intermediate_size * (c.use_double_wide_mlp && shared ? 2 : 1) };
  });
  return { ...c, layers, rope_by_layer_type: rope, hidden_size_per_layer_input: c.hidden_size_per_layer_input ?? 0 };
}

export const configSchema = v.pipe(textSchema, v.transform(normalizeText));
export type Gemma4Config = ReturnType<typeof normalizeText>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 131072;
}

/** mlx-lm's sanitize: drop rotary buffers, clipping ranges and the K/V projections of KV-shared layers; split fused experts. */
export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  const c = config as Gemma4Config;
  for (const k of [...w.keys()]) {
    const m = /^(.*layers\.\d+)\.experts\.gate_up_proj$/.exec(k);
    if (m) splitFusedExperts(w, m[1]!, `${m[1]}.experts.switch_glu`);
  }
  for (const [k, a] of [...w]) {
    const m = /layers\.(\d+)\.self_attn\.(k_proj|v_proj|k_norm)/.exec(k);
    const sharedKv = m !== null && c.layers[Number(m[1])]!.kvSource !== Number(m[1]);
    if (sharedKv || ["self_attn.rotary_emb", "input_max", "input_min", "output_max", "output_min"].some((s) => k.includes(s))) {
      a.dispose();
      w.delete(k);
    }
  }
  return w;
}

/** The K/V a layer attends to, shared with the KV-shared layers after it. */
interface SharedKv {
  /** Rotate queries [B, H, L, D] at the positions of the new tokens (each row at its own in a decode batch). */
  rotate(rope: Rope, q: mx.Array): mx.Array;
  /** Attention of q over the K/V (scale 1) → [B, H, L, D]. */
  attend(q: mx.Array): mx.Array;
}

/**
 * Append k, v [B, Hkv, L, D] to the cache and keep what its queries attend to: alone, the keys with the mask; in a
 * decode batch each row from its own first key (src/models/batch_cache.ts), or per row in its own sliding-window
 * ring (src/models/batch_rows_cache.ts), every row with the call it gets alone.
 */
function updateShared(c: KVCache, k: mx.Array, v: mx.Array, L: number): SharedKv {
  if (isPerRowCache(c)) {
    const offsets = [...(c as unknown as RowsCache).rowOffsets];
    const rows = (c as unknown as BatchRotatingKVCache).update(k, v);
    return { rotate: (rope, q) => ropeRows(rope, q, offsets), attend: (q) => rows.attend(q, (qb, K, V) => sdpa(qb, K, V, { scale: 1, mask: null })) };
  }
  if (isRowsCache(c)) {
    const offsets = [...c.rowOffsets];
    const starts = [...c.rowStarts];
    const [keys, values] = c.updateAndFetch(k, v);
    return { rotate: (rope, q) => ropeRows(rope, q, offsets), attend: (q) => layerOps().sdpaRows(q, keys, values, 1, starts) };
  }
  const offset = c.offset;
  const mask = c.makeMask(L);
  const [keys, values] = c.updateAndFetch(k, v);
  return { rotate: (rope, q) => rope.forward(q, offset), attend: (q) => sdpa(q, keys, values, { scale: 1, mask: mask ?? null }) };
}

class Attention {
  readonly q_proj: Linear;
  readonly k_proj: Linear | null;
  readonly v_proj: Linear | null;
  readonly o_proj: Linear;
  readonly q_norm: mx.Array;
  readonly k_norm: mx.Array | null;

  constructor(
    w: WeightStore,
    p: string,
    readonly spec: LayerSpec,
    readonly own: boolean,
    readonly c: Gemma4Config,
    readonly rope: Rope,
  ) {
    this.q_proj = w.linear(`${p}.q_proj`);
    this.o_proj = w.linear(`${p}.o_proj`);
    this.q_norm = w.get(`${p}.q_norm.weight`);
    const kEqV = c.attention_k_eq_v && spec.type === "full_attention";
    this.k_proj = own ? w.linear(`${p}.k_proj`) : null;
    this.v_proj = own && !kEqV ? w.linear(`${p}.v_proj`) : null;
    this.k_norm = own ? w.get(`${p}.k_norm.weight`) : null;
  }

  forward(x: mx.Array, cache: KVCache | null, shared: SharedKv | null): [mx.Array, SharedKv] {
    const [B, L] = x.shape as [number, number];
    const { headDim: D, kvHeads } = this.spec;
    const eps = this.c.rms_norm_eps;
    let kv: SharedKv;
    if (this.own) {
      const c = cache!;
      const k0 = mx.reshape(this.k_proj!.forward(x), [B, L, kvHeads, D]);
      const v0 = this.v_proj ? mx.reshape(this.v_proj.forward(x), [B, L, kvHeads, D]) : k0;
      // a decode batch: each row at its own position (src/models/batch_cache.ts)
      const k = ropeAt(this.rope, mx.transpose(rmsNorm(k0, this.k_norm!, eps), [0, 2, 1, 3]), c);
      const vals = mx.transpose(rmsNorm(v0, null, eps), [0, 2, 1, 3]);
      kv = updateShared(c, k, vals, L);
    } else {
      kv = shared!;
    }
    const q = kv.rotate(this.rope, mx.transpose(rmsNorm(mx.reshape(this.q_proj.forward(x), [B, L, -1, D]), this.q_norm, eps), [0, 2, 1, 3]));
    const o = kv.attend(q);
    return [this.o_proj.forward(mx.reshape(mx.transpose(o, [0, 2, 1, 3]), [B, L, -1])), kv];
  }
}

const geglu = (gate: mx.Array, up: mx.Array) => mx.multiply(mx.geluApprox(gate), up);

/**
 * The MoE half of a 26B-A4B layer: router (scale-free RMSNorm · scale · H^-0.5 → proj → top-k → softmax of
 * the chosen logits · per_expert_scale) and GeGLU experts, with their own pre/post norms.
 */
class MoeBlock {
  readonly proj: Linear;
  readonly scale: mx.Array;
  readonly per_expert_scale: mx.Array;
  readonly experts: SwitchGLU;
  readonly pre: mx.Array;
  readonly post: mx.Array;
  readonly postMlp: mx.Array;
  readonly #normWeight: mx.Array;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: Gemma4Config,
  ) {
    this.proj = w.linear(`${p}.router.proj`);
    this.scale = w.get(`${p}.router.scale`);
    this.per_expert_scale = w.get(`${p}.router.per_expert_scale`);
    this.experts = new SwitchGLU(w, `${p}.experts.switch_glu`, geglu);
    this.pre = w.get(`${p}.pre_feedforward_layernorm_2.weight`);
    this.post = w.get(`${p}.post_feedforward_layernorm_2.weight`);
    this.postMlp = w.get(`${p}.post_feedforward_layernorm_1.weight`);
    this.#normWeight = mx.keep(mx.multiply(this.scale, c.hidden_size ** -0.5));
  }

  /** h: the residual stream after attention; returns the expert output, post-normed. */
  forward(h: mx.Array): mx.Array {
    const eps = this.c.rms_norm_eps;
    const scores = this.proj.forward(rmsNorm(h, this.#normWeight, eps));
    const indices = topK(scores, this.c.top_k_experts!);
    const weights = mx.multiply(mx.softmax(mx.takeAlongAxis(scores, indices, -1), -1, true), mx.take(this.per_expert_scale, indices, 0));
    return rmsNorm(combine(this.experts.forward(rmsNorm(h, this.pre, eps), indices), weights), this.post, eps);
  }

  dispose(): void {
    this.#normWeight.dispose();
  }
}

class DecoderLayer {
  readonly self_attn: Attention;
  readonly moe: MoeBlock | null;
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  readonly norms: Record<"input" | "postAttn" | "preFf" | "postFf", mx.Array>;
  readonly per_layer_input_gate: Linear | null;
  readonly per_layer_projection: Linear | null;
  readonly post_per_layer_input_norm: mx.Array | null;
  readonly layer_scalar: mx.Array | null;
  readonly #gateUp: Fanout;

  constructor(
    w: WeightStore,
    p: string,
    readonly spec: LayerSpec,
    own: boolean,
    readonly c: Gemma4Config,
    rope: Rope,
  ) {
    this.self_attn = new Attention(w, `${p}.self_attn`, spec, own, c, rope);
    this.gate_proj = w.linear(`${p}.mlp.gate_proj`);
    this.up_proj = w.linear(`${p}.mlp.up_proj`);
    this.down_proj = w.linear(`${p}.mlp.down_proj`);
    this.#gateUp = w.fanout([this.gate_proj, this.up_proj]);
    this.norms = {
      input: w.get(`${p}.input_layernorm.weight`),
      postAttn: w.get(`${p}.post_attention_layernorm.weight`),
      preFf: w.get(`${p}.pre_feedforward_layernorm.weight`),
      postFf: w.get(`${p}.post_feedforward_layernorm.weight`),
    };
    const ple = c.hidden_size_per_layer_input > 0;
    this.per_layer_input_gate = ple ? w.linear(`${p}.per_layer_input_gate`) : null;
    this.per_layer_projection = ple ? w.linear(`${p}.per_layer_projection`) : null;
    this.post_per_layer_input_norm = ple ? w.get(`${p}.post_per_layer_input_norm.weight`) : null;
    this.layer_scalar = w.opt(`${p}.layer_scalar`);
    this.moe = c.enable_moe_block ? new MoeBlock(w, p, c) : null;
  }

  forward(x: mx.Array, cache: KVCache | null, shared: SharedKv | null, perLayerInput: mx.Array | null): [mx.Array, SharedKv] {
    const eps = this.c.rms_norm_eps;
    const [a, kv] = this.self_attn.forward(rmsNorm(x, this.norms.input, eps), cache, shared);
    let h = mx.add(x, rmsNorm(a, this.norms.postAttn, eps));
    const n = rmsNorm(h, this.norms.preFf, eps);
    const [g, u] = this.#gateUp.forward(n) as [mx.Array, mx.Array];
    let f = this.down_proj.forward(geglu(g, u));
    if (this.moe) f = mx.add(rmsNorm(f, this.moe.postMlp, eps), this.moe.forward(h));
    h = mx.add(h, rmsNorm(f, this.norms.postFf, eps));
    if (this.per_layer_input_gate && perLayerInput) {
      const gate = mx.multiply(mx.geluApprox(this.per_layer_input_gate.forward(h)), perLayerInput);
      h = mx.add(h, rmsNorm(this.per_layer_projection!.forward(gate), this.post_per_layer_input_norm!, eps));
    }
    if (this.layer_scalar) h = mx.multiply(h, this.layer_scalar);
    return [h, kv];
  }
}

export class Model implements LanguageModel {
  readonly embed_tokens: Embedding;
  readonly embed_tokens_per_layer: Embedding | null;
  readonly per_layer_model_projection: Linear | null;
  readonly per_layer_projection_norm: mx.Array | null;
  readonly layers: DecoderLayer[];
  readonly norm: mx.Array;
  readonly lm_head: Projection;
  readonly #ropes: Rope[] = [];

  /** `prefix`: where the text model's weights sit ("model" for gemma4_text, "language_model.model" in the wrapper). */
  constructor(
    readonly c: Gemma4Config,
    w: WeightStore,
    _ctx: ModelContext,
    prefix = "model",
    headKey = "lm_head",
  ) {
    const ropeFor = new Map<string, Rope>();
    const rope = (s: LayerSpec): Rope => {
      const key = `${s.type}:${s.headDim}`;
      let r = ropeFor.get(key);
      if (!r) {
        r = makeRope(c, s);
        ropeFor.set(key, r);
        this.#ropes.push(r);
      }
      return r;
    };
    this.embed_tokens = w.embedding(`${prefix}.embed_tokens`);
    const ple = c.hidden_size_per_layer_input > 0;
    this.embed_tokens_per_layer = ple ? w.embedding(`${prefix}.embed_tokens_per_layer`) : null;
    this.per_layer_model_projection = ple ? w.linear(`${prefix}.per_layer_model_projection`) : null;
    this.per_layer_projection_norm = ple ? w.get(`${prefix}.per_layer_projection_norm.weight`) : null;
    this.layers = c.layers.map((s, i) => new DecoderLayer(w, `${prefix}.layers.${i}`, s, s.kvSource === i, c, rope(s)));
    this.norm = w.get(`${prefix}.norm.weight`);
    const head = c.tie_word_embeddings || !w.has(`${headKey}.weight`) ? this.embed_tokens.asLinear() : w.linear(headKey);
    this.lm_head = w.projection(head);
  }

  get numLayers(): number {
    return this.layers.length;
  }

  /** A decode batch runs through every layer with each row computed as alone (src/engine/batch.ts). */
  readonly rowBatched = true;

  /** Caches only for the layers that own K/V (KV-shared layers read their source's). */
  makeCache(): LayerCache[] {
    return this.c.layers
      .filter((s, i) => s.kvSource === i)
      .map((s) => (s.type === "full_attention" ? new StandardKVCache() : new RotatingKVCache(this.c.sliding_window)));
  }

  #perLayerInputs(ids: mx.Array, h: mx.Array): mx.Array | null {
    if (!this.embed_tokens_per_layer) return null;
    const c = this.c;
    const [B, L] = ids.shape as [number, number];
    const P = c.hidden_size_per_layer_input;
    const tok = mx.reshape(mx.multiply(this.embed_tokens_per_layer.forward(ids), P ** 0.5), [B, L, c.num_hidden_layers, P]);
    const proj = mx.reshape(mx.multiply(this.per_layer_model_projection!.forward(h), c.hidden_size ** -0.5), [B, L, c.num_hidden_layers, P]);
    return mx.multiply(mx.add(rmsNorm(proj, this.per_layer_projection_norm!, c.rms_norm_eps), tok), 2 ** -0.5);
  }

  hidden(inputs: mx.Array, cache: LayerCache[]): mx.Array {
    let h = mx.multiply(this.embed_tokens.forward(inputs), this.c.hidden_size ** 0.5);
    const pli = this.#perLayerInputs(inputs, h);
    const kvs: (SharedKv | null)[] = [];
    let ci = 0;
    this.layers.forEach((layer, i) => {
      const own = layer.spec.kvSource === i;
      const c = own ? (cache[ci++] as KVCache) : null;
      const input = pli ? mx.squeeze(mx.sliceAxis(pli, 2, i, i + 1), 2) : null;
      const [out, kv] = layer.forward(h, c, own ? null : kvs[layer.spec.kvSource]!, input);
      h = out;
      kvs.push(kv);
    });
    return rmsNorm(h, this.norm, this.c.rms_norm_eps);
  }

  logits(h: mx.Array): mx.Array {
    const out = this.lm_head.forward(h);
    const cap = this.c.final_logit_softcapping;
    return cap ? mx.multiply(mx.tanh(mx.divide(out, cap)), cap) : out;
  }

  [Symbol.dispose](): void {
    for (const r of this.#ropes) r.dispose();
    for (const l of this.layers) l.moe?.dispose();
    for (const a of this.lm_head.owned()) a.dispose();
  }
}

/** The layer type's rope over its whole head (proportional rope rotates only part of its frequencies). */
function makeRope(c: Gemma4Config, s: LayerSpec): Rope {
  const r = c.rope_by_layer_type[s.type] ?? { rope_scaling: null };
  return initializeRope({
    dims: s.headDim,
    base: r.rope_theta ?? 10000,
    traditional: c.rope_traditional,
    scaling: r.rope_scaling as RopeScaling | null,
    maxPositionEmbeddings: c.max_position_embeddings,
    partialRotaryFactor: r.partial_rotary_factor,
  });
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as Gemma4Config, w, ctx);
}

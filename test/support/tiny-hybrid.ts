/**
 * Tiny random checkpoints of the hybrid / newest families (qwen3_5, qwen3_5_moe, gemma4, …) in the layout
 * mlx-lm converts to, built with the shared generator pieces of tiny-models.ts. Goldens from mlx-lm:
 * scripts/gen-goldens.ts writes test/fixtures/goldens/tiny-hybrid.json.
 * The `_hf` models are the same weights as transformers 5 saves them (its key names, conv layout,
 * zero-centred norms, fused experts, `per_layer_config`); their reference is transformers itself
 * (test/fixtures/goldens/transformers-hybrid.json). The `_hf_wrapper` ones are the multimodal-wrapper layout of
 * the same weights and must match the same reference.
 */
import { Gen, H, Q4, type Quant, quantize, type Tensor, type Tensors, VOCAB, writeBuilt } from "./tiny-models.ts";

interface Built {
  config: Record<string, unknown>;
  tensors: Tensors;
}

export type HybridName = "qwen3_5" | "qwen3_5_q4" | "gemma4_text" | "gemma4" | "gemma4_q4" | "qwen3_5_moe" | "qwen3_5_moe_q4" | "qwen3_next" | "qwen3_next_q4" | "lfm2" | "lfm2_q4" | "glm4_moe" | "glm4_moe_q4" | "gemma4_moe" | "gemma4_moe_q4";
export const HYBRID_MODELS: readonly HybridName[] = [
  "qwen3_5", "qwen3_5_q4", "gemma4_text", "gemma4", "gemma4_q4", "qwen3_5_moe", "qwen3_5_moe_q4", "qwen3_next", "qwen3_next_q4",
  "lfm2", "lfm2_q4", "glm4_moe", "glm4_moe_q4", "gemma4_moe", "gemma4_moe_q4",
];

/** transformers-saved layouts: the reference model each one is the float weights of. */
export const HF_MODELS = {
  qwen3_5_hf: "qwen3_5",
  qwen3_5_moe_hf: "qwen3_5_moe",
  qwen3_next_hf: "qwen3_next",
  lfm2_hf: "lfm2",
  glm4_moe_hf: "glm4_moe",
  gemma4_moe_hf: "gemma4_moe",
  gemma4_text_hf: "gemma4_text",
} as const satisfies Record<string, HybridName>;
export type HfName = keyof typeof HF_MODELS;
/** Wrapper layouts of the same weights, checked against the text model's transformers reference. */
export const HF_WRAPPERS = { qwen3_5_hf_wrapper: "qwen3_5_hf", gemma4_hf_wrapper: "gemma4_text_hf" } as const satisfies Record<string, HfName>;

/** mlx-lm's quant_predicate for qwen3_5 MoE: router and shared-expert gate at 8 bits, group 64. */
const Q8_64: Quant = { mode: "affine", bits: 8, groupSize: 64 };

/** A float Linear, or quantized when `q` is set and the input size divides into groups (mlx-lm's predicate). */
function lin(g: Gen, prefix: string, out: number, inp: number, q?: Quant): void {
  g.linear(prefix, [out, inp], { q: q && inp % q.groupSize === 0 ? q : undefined });
}

/** An embedding table, quantized like lin(). */
function embed(g: Gen, prefix: string, rows: number, dim: number, scale: number, q?: Quant): void {
  g.float(`${prefix}.weight`, [rows, dim], scale);
  if (q && dim % q.groupSize === 0) Object.assign(g.t, quantize(prefix, g.t[`${prefix}.weight`]!.data as Float32Array, [rows, dim], q, () => 0));
}

/** Stacked expert weights [E, out, in] (quantized like lin()). */
function experts(g: Gen, prefix: string, e: number, out: number, inp: number, q?: Quant): void {
  const w = g.uniform([e, out, inp], Math.sqrt(3 / inp));
  if (q) Object.assign(g.t, quantize(prefix, w, [e, out, inp], q, () => 0));
  else g.t[`${prefix}.weight`] = { dtype: "F32", shape: [e, out, inp], data: w };
}

/** qwen3_5 (dense / MoE, wrapper keys) or, with `next`, qwen3_next (fused projections, "model." keys, one dense layer). */
function qwen3_5(seed: number, q?: Quant, moe = false, next = false): Built {
  const g = new Gen(seed);
  const layers = 4;
  const [heads, kv, hd, ff] = [4, 2, 16, 128];
  const [hk, hv, dk, dv, kconv] = [2, 4, 16, 16, 4];
  const convDim = 2 * hk * dk + hv * dv;
  const [nExperts, topK, moeFf, sharedFf] = [4, 2, 32, 48];
  const overrides: Record<string, unknown> = {};
  const m = next ? "model" : "language_model.model";
  g.float(`${m}.embed_tokens.weight`, [VOCAB, H], 1);
  if (q) Object.assign(g.t, quantize(`${m}.embed_tokens`, g.t[`${m}.embed_tokens.weight`]!.data as Float32Array, [VOCAB, H], q, () => 0));
  const layerTypes: string[] = [];
  for (let i = 0; i < layers; i++) {
    const p = `${m}.layers.${i}`;
    const linear = (i + 1) % 2 !== 0;
    layerTypes.push(linear ? "linear_attention" : "full_attention");
    if (linear) {
      const a = `${p}.linear_attn`;
      if (next) {
        lin(g, `${a}.in_proj_qkvz`, hk * (2 * dk + (2 * hv * dv) / hk), H, q);
        lin(g, `${a}.in_proj_ba`, 2 * hv, H, q);
      } else {
        lin(g, `${a}.in_proj_qkv`, convDim, H, q);
        lin(g, `${a}.in_proj_z`, hv * dv, H, q);
        lin(g, `${a}.in_proj_b`, hv, H, q);
        lin(g, `${a}.in_proj_a`, hv, H, q);
      }
      lin(g, `${a}.out_proj`, H, hv * dv, q);
      g.float(`${a}.conv1d.weight`, [convDim, kconv, 1], 0.5);
      g.float(`${a}.dt_bias`, [hv], 0.5, 1);
      g.float(`${a}.A_log`, [hv], 1, 0.5);
      g.norm(`${a}.norm`, dv);
    } else {
      const a = `${p}.self_attn`;
      lin(g, `${a}.q_proj`, heads * hd * 2, H, q);
      lin(g, `${a}.k_proj`, kv * hd, H, q);
      lin(g, `${a}.v_proj`, kv * hd, H, q);
      lin(g, `${a}.o_proj`, H, heads * hd, q);
      g.norm(`${a}.q_norm`, hd);
      g.norm(`${a}.k_norm`, hd);
    }
    if (moe && !(next && i === 2)) {
      lin(g, `${p}.mlp.gate`, nExperts, H, q && Q8_64);
      lin(g, `${p}.mlp.shared_expert_gate`, 1, H, q && Q8_64);
      if (q) for (const n of ["gate", "shared_expert_gate"]) overrides[`${p}.mlp.${n}`] = { group_size: 64, bits: 8 };
      for (const n of ["gate_proj", "up_proj"]) experts(g, `${p}.mlp.switch_mlp.${n}`, nExperts, moeFf, H, q);
      experts(g, `${p}.mlp.switch_mlp.down_proj`, nExperts, H, moeFf, q);
      lin(g, `${p}.mlp.shared_expert.gate_proj`, sharedFf, H, q);
      lin(g, `${p}.mlp.shared_expert.up_proj`, sharedFf, H, q);
      lin(g, `${p}.mlp.shared_expert.down_proj`, H, sharedFf, q);
    } else {
      lin(g, `${p}.mlp.gate_proj`, ff, H, q);
      lin(g, `${p}.mlp.up_proj`, ff, H, q);
      lin(g, `${p}.mlp.down_proj`, H, ff, q);
    }
    g.norm(`${p}.input_layernorm`, H);
    g.norm(`${p}.post_attention_layernorm`, H);
  }
  g.norm(`${m}.norm`, H);
  lin(g, next ? "lm_head" : "language_model.lm_head", VOCAB, H, q);
  const text: Record<string, unknown> = {
    model_type: "qwen3_5_text",
    hidden_size: H,
    num_hidden_layers: layers,
    intermediate_size: ff,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: hd,
    rms_norm_eps: 1e-6,
    vocab_size: VOCAB,
    max_position_embeddings: 4096,
    linear_num_key_heads: hk,
    linear_num_value_heads: hv,
    linear_key_head_dim: dk,
    linear_value_head_dim: dv,
    linear_conv_kernel_dim: kconv,
    full_attention_interval: 2,
    rope_parameters: { rope_type: "default", rope_theta: 10000, partial_rotary_factor: 0.25, mrope_section: [1, 1, 0], mrope_interleaved: true },
    tie_word_embeddings: false,
  };
  if (moe) Object.assign(text, { num_experts: nExperts, num_experts_per_tok: topK, moe_intermediate_size: moeFf, shared_expert_intermediate_size: sharedFf });
  const modelType = moe ? "qwen3_5_moe" : "qwen3_5";
  if (next) {
    // mlx-lm's qwen3_next reads rope keys at the top level only; layer 2 is dense (mlp_only_layers).
    const { rope_parameters: _r, model_type: _m, ...flat } = text;
    const cfg = { ...flat, model_type: "qwen3_next", rope_theta: 10000, partial_rotary_factor: 0.25, decoder_sparse_step: 1, mlp_only_layers: [2], norm_topk_prob: true };
    return { config: q ? { ...cfg, quantization: { group_size: q.groupSize, bits: q.bits, mode: q.mode, ...overrides } } : cfg, tensors: g.t };
  }
  // The float model uses the transformers-5 spelling (wrapper + layer_types), the quantized one mlx-lm's flat one.
  const config: Record<string, unknown> = q
    ? { ...text, model_type: modelType, quantization: { group_size: q.groupSize, bits: q.bits, mode: q.mode, ...overrides } }
    : { model_type: modelType, text_config: { ...text, layer_types: layerTypes }, vision_config: { depth: 1 }, tie_word_embeddings: false };
  return { config, tensors: g.t };
}

/**
 * Gemma 4 text: sliding + full layers with their own head sizes, proportional rope on full layers,
 * per-layer inputs, two KV-shared layers (one per type) with double-wide MLPs, softcapped logits.
 */
function gemma4(seed: number, wrapper: boolean, q?: Quant): Built {
  const g = new Gen(seed);
  const types = ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention", "full_attention"];
  const [heads, kv, hd, ghd, ff, ple, shared] = [4, 2, 16, 32, 96, 32, 2];
  const m = wrapper ? "language_model.model" : "model";
  embed(g, `${m}.embed_tokens`, VOCAB, H, 0.1, q);
  embed(g, `${m}.embed_tokens_per_layer`, VOCAB, types.length * ple, 1, q);
  lin(g, `${m}.per_layer_model_projection`, types.length * ple, H, q);
  g.norm(`${m}.per_layer_projection_norm`, ple);
  types.forEach((t, i) => {
    const p = `${m}.layers.${i}`;
    const d = t === "full_attention" ? ghd : hd;
    const own = i < types.length - shared;
    lin(g, `${p}.self_attn.q_proj`, heads * d, H, q);
    lin(g, `${p}.self_attn.o_proj`, H, heads * d, q);
    g.norm(`${p}.self_attn.q_norm`, d);
    if (own) {
      lin(g, `${p}.self_attn.k_proj`, kv * d, H, q);
      lin(g, `${p}.self_attn.v_proj`, kv * d, H, q);
      g.norm(`${p}.self_attn.k_norm`, d);
    }
    const f = own ? ff : 2 * ff;
    lin(g, `${p}.mlp.gate_proj`, f, H, q);
    lin(g, `${p}.mlp.up_proj`, f, H, q);
    lin(g, `${p}.mlp.down_proj`, H, f, q);
    for (const n of ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm", "post_per_layer_input_norm"]) {
      g.norm(`${p}.${n}`, H);
    }
    lin(g, `${p}.per_layer_input_gate`, ple, H, q);
    lin(g, `${p}.per_layer_projection`, H, ple, q);
    g.float(`${p}.layer_scalar`, [1], 0.2, 1);
  });
  g.norm(`${m}.norm`, H);
  const text: Record<string, unknown> = {
    model_type: "gemma4_text",
    hidden_size: H,
    num_hidden_layers: types.length,
    intermediate_size: ff,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: hd,
    global_head_dim: ghd,
    rms_norm_eps: 1e-6,
    vocab_size: VOCAB,
    vocab_size_per_layer_input: VOCAB,
    hidden_size_per_layer_input: ple,
    num_kv_shared_layers: shared,
    sliding_window: 8,
    layer_types: types,
    rope_parameters: {
      sliding_attention: { rope_type: "default", rope_theta: 10000 },
      full_attention: { rope_type: "proportional", partial_rotary_factor: 0.25, rope_theta: 1000000 },
    },
    max_position_embeddings: 4096,
    final_logit_softcapping: 25.5,
    use_double_wide_mlp: true,
    hidden_activation: "gelu_pytorch_tanh",
    tie_word_embeddings: true,
  };
  const quant = q ? { quantization: { group_size: q.groupSize, bits: q.bits, mode: q.mode } } : {};
  // mlx-lm's wrapper takes vocab_size from the top level, so the wrapper fixtures state it there too.
  const config = wrapper ? { model_type: "gemma4", text_config: text, vocab_size: VOCAB, vision_config: { hidden_size: 16 }, ...quant } : { ...text, ...quant };
  return { config, tensors: g.t };
}

/** LFM2: gated short-conv layers (with biases in the float model) and two attention layers; tied head. */
function lfm2(seed: number, q?: Quant): Built {
  const g = new Gen(seed);
  const types = ["conv", "full_attention", "conv", "conv", "full_attention"];
  const [heads, kv, ff, K] = [4, 2, 128, 3];
  const hd = H / heads;
  const bias = !q;
  embed(g, "model.embed_tokens", VOCAB, H, 0.5, q);
  types.forEach((t, i) => {
    const p = `model.layers.${i}`;
    if (t === "conv") {
      g.linear(`${p}.conv.in_proj`, [3 * H, H], { q, bias });
      g.linear(`${p}.conv.out_proj`, [H, H], { q, bias });
      g.float(`${p}.conv.conv.weight`, [H, K, 1], 0.6);
      if (bias) g.float(`${p}.conv.conv.bias`, [H], 0.1);
    } else {
      lin(g, `${p}.self_attn.q_proj`, heads * hd, H, q);
      lin(g, `${p}.self_attn.k_proj`, kv * hd, H, q);
      lin(g, `${p}.self_attn.v_proj`, kv * hd, H, q);
      lin(g, `${p}.self_attn.out_proj`, H, heads * hd, q);
      g.norm(`${p}.self_attn.q_layernorm`, hd);
      g.norm(`${p}.self_attn.k_layernorm`, hd);
    }
    lin(g, `${p}.feed_forward.w1`, ff, H, q);
    lin(g, `${p}.feed_forward.w3`, ff, H, q);
    lin(g, `${p}.feed_forward.w2`, H, ff, q);
    g.norm(`${p}.operator_norm`, H);
    g.norm(`${p}.ffn_norm`, H);
  });
  g.norm("model.embedding_norm", H);
  // mlx-lm's spelling (block_* keys, which it requires); the _hf variant drops them as transformers 5 does.
  const config: Record<string, unknown> = {
    model_type: "lfm2",
    vocab_size: VOCAB,
    hidden_size: H,
    num_hidden_layers: types.length,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    max_position_embeddings: 4096,
    norm_eps: 1e-5,
    conv_bias: bias,
    conv_L_cache: K,
    block_dim: H,
    block_ff_dim: (ff * 3) / 2,
    intermediate_size: (ff * 3) / 2,
    block_multiple_of: 32,
    block_ffn_dim_multiplier: 1.0,
    block_auto_adjust_ff_dim: true,
    layer_types: types,
    rope_parameters: { rope_type: "default", rope_theta: 1000000 },
    tie_word_embeddings: true,
  };
  if (q) config.quantization = { group_size: q.groupSize, bits: q.bits, mode: q.mode };
  return { config, tensors: g.t };
}

/**
 * Gemma 4 26B-A4B-shaped: every layer has the dense GeGLU MLP plus routed GeGLU experts; full layers share
 * K and V (attention_k_eq_v) with their own head size and KV head count; no per-layer inputs.
 */
function gemma4Moe(seed: number, q?: Quant): Built {
  const g = new Gen(seed);
  const types = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"];
  const [heads, kv, gkv, hd, ghd, ff, E, moeFf] = [4, 2, 1, 16, 32, 64, 4, 32];
  embed(g, "model.embed_tokens", VOCAB, H, 0.1, q);
  const overrides: Record<string, unknown> = {};
  types.forEach((t, i) => {
    const p = `model.layers.${i}`;
    const full = t === "full_attention";
    const d = full ? ghd : hd;
    const nkv = full ? gkv : kv;
    lin(g, `${p}.self_attn.q_proj`, heads * d, H, q);
    lin(g, `${p}.self_attn.o_proj`, H, heads * d, q);
    g.norm(`${p}.self_attn.q_norm`, d);
    lin(g, `${p}.self_attn.k_proj`, nkv * d, H, q);
    if (!full) lin(g, `${p}.self_attn.v_proj`, nkv * d, H, q);
    g.norm(`${p}.self_attn.k_norm`, d);
    lin(g, `${p}.mlp.gate_proj`, ff, H, q);
    lin(g, `${p}.mlp.up_proj`, ff, H, q);
    lin(g, `${p}.mlp.down_proj`, H, ff, q);
    lin(g, `${p}.router.proj`, E, H, q && Q8_64);
    if (q) overrides[`${p}.router.proj`] = { group_size: 64, bits: 8 };
    g.float(`${p}.router.scale`, [H], 0.2, 1);
    g.float(`${p}.router.per_expert_scale`, [E], 0.2, 1);
    for (const n of ["gate_proj", "up_proj"]) experts(g, `${p}.experts.switch_glu.${n}`, E, moeFf, H, q);
    experts(g, `${p}.experts.switch_glu.down_proj`, E, H, moeFf, q);
    const norms = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"];
    for (const n of [...norms, "pre_feedforward_layernorm_2", "post_feedforward_layernorm_1", "post_feedforward_layernorm_2"]) g.norm(`${p}.${n}`, H);
    g.float(`${p}.layer_scalar`, [1], 0.2, 1);
  });
  g.norm("model.norm", H);
  const config: Record<string, unknown> = {
    model_type: "gemma4_text",
    hidden_size: H,
    num_hidden_layers: types.length,
    intermediate_size: ff,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    num_global_key_value_heads: gkv,
    head_dim: hd,
    global_head_dim: ghd,
    attention_k_eq_v: true,
    rms_norm_eps: 1e-6,
    vocab_size: VOCAB,
    vocab_size_per_layer_input: VOCAB,
    hidden_size_per_layer_input: 0,
    num_kv_shared_layers: 0,
    sliding_window: 8,
    layer_types: types,
    rope_parameters: {
      sliding_attention: { rope_type: "default", rope_theta: 10000 },
      full_attention: { rope_type: "proportional", partial_rotary_factor: 0.25, rope_theta: 1000000 },
    },
    max_position_embeddings: 4096,
    final_logit_softcapping: 25.5,
    use_double_wide_mlp: false,
    enable_moe_block: true,
    num_experts: E,
    top_k_experts: 2,
    moe_intermediate_size: moeFf,
    hidden_activation: "gelu_pytorch_tanh",
    tie_word_embeddings: true,
  };
  if (q) config.quantization = { group_size: q.groupSize, bits: q.bits, mode: q.mode, ...overrides };
  return { config, tensors: g.t };
}

/** GLM-4.5-style MoE: a dense first layer, sigmoid group-limited router with correction bias, shared expert. */
function glm4Moe(seed: number, q?: Quant): Built {
  const g = new Gen(seed);
  const [layers, heads, kv, hd, ff, E, moeFf] = [3, 4, 2, 16, 128, 8, 32];
  embed(g, "model.embed_tokens", VOCAB, H, 1, q);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    for (const [n, out] of [["q_proj", heads * hd], ["k_proj", kv * hd], ["v_proj", kv * hd]] as const) {
      g.linear(`${p}.self_attn.${n}`, [out, H], { q, bias: true });
    }
    lin(g, `${p}.self_attn.o_proj`, H, heads * hd, q);
    g.norm(`${p}.self_attn.q_norm`, hd);
    g.norm(`${p}.self_attn.k_norm`, hd);
    if (i === 0) {
      lin(g, `${p}.mlp.gate_proj`, ff, H, q);
      lin(g, `${p}.mlp.up_proj`, ff, H, q);
      lin(g, `${p}.mlp.down_proj`, H, ff, q);
    } else {
      g.float(`${p}.mlp.gate.weight`, [E, H], 0.3);
      g.float(`${p}.mlp.gate.e_score_correction_bias`, [E], 0.05);
      for (const n of ["gate_proj", "up_proj"]) experts(g, `${p}.mlp.switch_mlp.${n}`, E, moeFf, H, q);
      experts(g, `${p}.mlp.switch_mlp.down_proj`, E, H, moeFf, q);
      lin(g, `${p}.mlp.shared_experts.gate_proj`, moeFf, H, q);
      lin(g, `${p}.mlp.shared_experts.up_proj`, moeFf, H, q);
      lin(g, `${p}.mlp.shared_experts.down_proj`, H, moeFf, q);
    }
    g.norm(`${p}.input_layernorm`, H);
    g.norm(`${p}.post_attention_layernorm`, H);
  }
  g.norm("model.norm", H);
  lin(g, "lm_head", VOCAB, H, q);
  // mlx-lm's spelling: top-level rope_theta / partial_rotary_factor (it reads nothing else).
  const config: Record<string, unknown> = {
    model_type: "glm4_moe",
    vocab_size: VOCAB,
    hidden_size: H,
    intermediate_size: ff,
    max_position_embeddings: 4096,
    moe_intermediate_size: moeFf,
    norm_topk_prob: true,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: hd,
    n_group: 2,
    topk_group: 1,
    n_shared_experts: 1,
    n_routed_experts: E,
    routed_scaling_factor: 2.5,
    num_experts_per_tok: 2,
    first_k_dense_replace: 1,
    num_hidden_layers: layers,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_scaling: null,
    use_qk_norm: true,
    tie_word_embeddings: false,
    attention_bias: true,
    partial_rotary_factor: 0.5,
  };
  if (q) config.quantization = { group_size: q.groupSize, bits: q.bits, mode: q.mode };
  return { config, tensors: g.t };
}

export function buildHybrid(name: HybridName): Built {
  const seed = 2000 + HYBRID_MODELS.indexOf(name);
  switch (name) {
    case "qwen3_5":
      return qwen3_5(seed);
    case "qwen3_5_q4":
      return qwen3_5(seed, Q4);
    case "qwen3_5_moe":
      return qwen3_5(seed, undefined, true);
    case "qwen3_5_moe_q4":
      return qwen3_5(seed, Q4, true);
    case "qwen3_next":
      return qwen3_5(seed, undefined, true, true);
    case "qwen3_next_q4":
      return qwen3_5(seed, Q4, true, true);
    case "gemma4_moe":
      return gemma4Moe(seed);
    case "gemma4_moe_q4":
      return gemma4Moe(seed, Q4);
    case "glm4_moe":
      return glm4Moe(seed);
    case "glm4_moe_q4":
      return glm4Moe(seed, Q4);
    case "lfm2":
      return lfm2(seed);
    case "lfm2_q4":
      return lfm2(seed, Q4);
    case "gemma4_text":
      return gemma4(seed, false);
    case "gemma4":
      return gemma4(seed, true);
    case "gemma4_q4":
      return gemma4(seed, true, Q4);
  }
}

/** Write tiny hybrid model `name` into `dir`; same name → same bytes. */
export function writeHybridModel(name: HybridName, dir: string): string {
  return writeBuilt(buildHybrid(name), dir);
}

// ---- transformers layouts -------------------------------------------------------------------------------

const ZERO_CENTRED = [".input_layernorm.weight", ".post_attention_layernorm.weight", ".q_norm.weight", ".k_norm.weight"];

function f32(t: Tensor): Float32Array {
  return t.data as Float32Array;
}

/** [C, K, 1] (MLX Conv1d) → [C, 1, K] (torch Conv1d): the same numbers, since the singleton axis moves. */
function torchConv(t: Tensor): Tensor {
  return { ...t, shape: [t.shape[0]!, 1, t.shape[1]!] };
}

/** MLX-layout qwen3_5 tensors → transformers' (`prefix` "model." for the text model, "model.language_model." in the wrapper). */
/** MLX's stacked switch_mlp experts → transformers 5's fused `experts.gate_up_proj` (gate half first) + `experts.down_proj`. */
function fuseExperts(t: Tensors): Tensors {
  const out: Tensors = {};
  for (const [k, v] of Object.entries(t)) {
    // qwen/glm: <layer>.mlp.switch_mlp.*; gemma4: <layer>.experts.switch_glu.* — both become <…>.experts.*
    const m = /^(.*?)(?:\.switch_mlp|\.experts\.switch_glu)\.(gate_proj|up_proj|down_proj)\.weight$/.exec(k);
    if (!m) {
      out[k] = v;
      continue;
    }
    if (m[2] === "down_proj") out[`${m[1]}.experts.down_proj`] = v;
    if (m[2] !== "gate_proj") continue;
    const up = t[k.replace("gate_proj", "up_proj")]!;
    const [E, I, Hd] = v.shape as [number, number, number];
    const data = new Float32Array(E * 2 * I * Hd);
    for (let e = 0; e < E; e++) {
      data.set(f32(v).subarray(e * I * Hd, (e + 1) * I * Hd), e * 2 * I * Hd);
      data.set(f32(up).subarray(e * I * Hd, (e + 1) * I * Hd), e * 2 * I * Hd + I * Hd);
    }
    out[`${m[1]}.experts.gate_up_proj`] = { dtype: "F32", shape: [E, 2 * I, Hd], data };
  }
  return out;
}

function qwen3_5ToHf(t0: Tensors, prefix: string): Tensors {
  const t = fuseExperts(t0);
  const out: Tensors = {};
  for (const [k0, v] of Object.entries(t)) {
    const k = k0.replace(/^language_model\.model\./, prefix).replace(/^language_model\.lm_head/, "lm_head");
    let x = v;
    if (k.includes("conv1d.weight")) x = torchConv(v);
    if (ZERO_CENTRED.some((s) => k.endsWith(s)) || k === `${prefix}norm.weight`) x = { ...v, data: f32(v).map((a) => a - 1) };
    out[k] = x;
  }
  return out;
}

function qwen3_5Hf(moe: boolean, wrapper: boolean): Built {
  const src = buildHybrid(moe ? "qwen3_5_moe" : "qwen3_5");
  const wrapped = src.config as { text_config: Record<string, unknown> };
  const text = { ...wrapped.text_config, model_type: moe ? "qwen3_5_moe_text" : "qwen3_5_text" };
  delete (text as Record<string, unknown>).full_attention_interval;
  const config = wrapper ? { model_type: moe ? "qwen3_5_moe" : "qwen3_5", text_config: text, tie_word_embeddings: false } : text;
  return { config, tensors: qwen3_5ToHf(src.tensors, wrapper ? "model.language_model." : "model.") };
}

/** gemma4 as transformers 5.24 saves it: per_layer_config instead of global_head_dim (which mlx-lm needs). */
function gemma4Hf(wrapper: boolean): Built {
  const src = buildHybrid("gemma4_text");
  const { global_head_dim, ...text } = src.config as Record<string, unknown>;
  const types = text.layer_types as string[];
  const perLayer = Object.fromEntries(types.flatMap((t, i) => (t === "full_attention" ? [[String(i), { head_dim: global_head_dim }]] : [])));
  const textConfig = { ...text, per_layer_config: perLayer };
  if (!wrapper) return { config: textConfig, tensors: src.tensors };
  const tensors = Object.fromEntries(Object.entries(src.tensors).map(([k, v]) => [k.replace(/^model\./, "model.language_model."), v]));
  return { config: { model_type: "gemma4", text_config: textConfig, vision_config: null, audio_config: null }, tensors };
}

export function buildHf(name: HfName | keyof typeof HF_WRAPPERS): Built {
  switch (name) {
    case "qwen3_5_hf":
      return qwen3_5Hf(false, false);
    case "qwen3_5_moe_hf":
      return qwen3_5Hf(true, false);
    case "qwen3_next_hf": {
      const src = buildHybrid("qwen3_next");
      const { full_attention_interval: _i, ...config } = src.config as Record<string, unknown>;
      const types = Array.from({ length: config.num_hidden_layers as number }, (_, i) => ((i + 1) % 2 === 0 ? "full_attention" : "linear_attention"));
      return { config: { ...config, layer_types: types }, tensors: qwen3_5ToHf(src.tensors, "model.") };
    }
    case "qwen3_5_hf_wrapper":
      return qwen3_5Hf(false, true);
    case "lfm2_hf": {
      const src = buildHybrid("lfm2");
      const { block_dim: _d, block_ff_dim: _f, ...config } = src.config as Record<string, unknown>;
      const tensors = Object.fromEntries(Object.entries(src.tensors).map(([k, v]) => [k, k.endsWith("conv.conv.weight") ? torchConv(v) : v]));
      return { config, tensors };
    }
    case "glm4_moe_hf": {
      const src = buildHybrid("glm4_moe");
      const { rope_theta, partial_rotary_factor, rope_scaling: _s, ...config } = src.config as Record<string, unknown>;
      const rope_parameters = { rope_type: "default", rope_theta, partial_rotary_factor };
      return { config: { ...config, rope_parameters }, tensors: fuseExperts(src.tensors) };
    }
    case "gemma4_text_hf":
      return gemma4Hf(false);
    case "gemma4_moe_hf": {
      const src = buildHybrid("gemma4_moe");
      const { global_head_dim: ghd, num_global_key_value_heads: gkv, ...config } = src.config as Record<string, unknown>;
      const types = config.layer_types as string[];
      const perLayer = Object.fromEntries(types.flatMap((t, i) => (t === "full_attention" ? [[String(i), { head_dim: ghd, num_key_value_heads: gkv }]] : [])));
      return { config: { ...config, per_layer_config: perLayer }, tensors: fuseExperts(src.tensors) };
    }
    case "gemma4_hf_wrapper":
      return gemma4Hf(true);
  }
}

export function writeHfModel(name: HfName | keyof typeof HF_WRAPPERS, dir: string): string {
  return writeBuilt(buildHf(name), dir, "pt");
}

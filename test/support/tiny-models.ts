/**
 * Tiny random-weight models, one per architecture, written deterministically from a seeded PRNG:
 * config.json + model*.safetensors (+ a byte-level tokenizer.json with a ChatML template). Each model is a
 * config plus an architecture description (ARCHS); tensor names and shapes follow from them, in two layouts
 * (MLX-converted, transformers-saved) and two config spellings (transformers 4 / mlx-lm, transformers 5).
 * The same weights feed our engine, mlx-lm and transformers (scripts/gen-goldens.ts), so logits compare.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Prompt token ids the goldens were computed for (all < 256, so plain byte tokens). */
export const GOLDEN_PROMPT: readonly number[] = [72, 101, 108, 108, 111, 32, 116, 105, 110, 121, 32, 109, 111, 100, 101, 108];
export const GOLDEN_STEPS = 32;

export const H = 64; // hidden size: a multiple of 32 so every group size used here divides it
export const VOCAB = 272; // 256 byte tokens + specials + padding

export { Gen, Q4, quantize, writeSafetensors, type Quant, type Tensor, type Tensors } from "./tiny-tensors.ts";
import { Gen, MXFP4, Q4, quantize, type Quant, type Tensor, type Tensors, writeSafetensors } from "./tiny-tensors.ts";


/**
 * How an architecture lays out its tensors, in words the generator turns into names and shapes from the
 * config (hidden_size, heads, head_dim, intermediate sizes, experts): adding an architecture is a config
 * and one of these, not a list of tensor names.
 */
interface ArchDesc {
  /** config.json as mlx-lm and transformers 4 spell it (the v5 spelling is what transformers writes from it). */
  config: Record<string, unknown>;
  attn?: { fused?: boolean; bias?: "qkv" | "all"; qkNorm?: "head" | "full"; sinks?: boolean };
  mlp?: "dense" | "fused" | "moe" | "gpt_oss_moe";
  /** Per-layer norm names (default llama's two). */
  norms?: string[];
  /** Norm weights around this (gemma stores offsets from 1, so 0). */
  normBase?: number;
  /** Scale of the embedding table (tied heads echo the input when it dominates). */
  embedScale?: number;
  /** Multimodal wrapper: the text model sits under language_model. */
  wrapper?: boolean;
  quant?: Quant;
  /** Quantize only the experts (and everything else float). */
  expertQuant?: Quant;
  shards?: number;
  /** Dtype of the transformers layout (values rounded to it in every layout). */
  hfDtype?: "F32" | "F16" | "BF16";
  /** Extra tensors the transformers layout carries that no model reads (inv_freq buffers, a vision tower). */
  hfExtras?: Record<string, number[]>;
}

const base = (modelType: string, o: Record<string, unknown> = {}): Record<string, unknown> => ({
  model_type: modelType,
  hidden_size: H,
  num_hidden_layers: 2,
  intermediate_size: 128,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  vocab_size: VOCAB,
  max_position_embeddings: 512,
  hidden_act: "silu",
  ...o,
});

const GEMMA_NORMS = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"];
const gemmaText = (o: Record<string, unknown> = {}) =>
  base("gemma3_text", {
    num_hidden_layers: 3,
    num_key_value_heads: 1,
    head_dim: 32,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    rope_local_base_freq: 10000,
    query_pre_attn_scalar: 32,
    sliding_window: 8,
    sliding_window_pattern: 3,
    hidden_activation: "gelu_pytorch_tanh",
    hidden_act: undefined,
    ...o,
  });
const gemmaDesc = { attn: { qkNorm: "head" as const }, norms: GEMMA_NORMS, normBase: 0, embedScale: 0.03 };
const TINY_VISION = { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, image_size: 32, patch_size: 16 };
const mistralText = (o: Record<string, unknown> = {}) => base("mistral", { head_dim: 16, rope_theta: 1000000, tie_word_embeddings: false, ...o });
const ministral = (o: Record<string, unknown> = {}) =>
  base("ministral3", {
    head_dim: 16,
    tie_word_embeddings: false,
    rope_parameters: { rope_type: "yarn", rope_theta: 1000000, factor: 2, original_max_position_embeddings: 8, beta_fast: 32, beta_slow: 1, llama_4_scaling_beta: 0.1, mscale: 1, mscale_all_dim: 1 },
    ...o,
  });

const qwen3Moe = (o: Record<string, unknown>) =>
  base("qwen3_moe", { head_dim: 16, rope_theta: 1000000, tie_word_embeddings: false, num_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: 32, decoder_sparse_step: 1, ...o });

const gptOss = (o: Record<string, unknown> = {}) =>
  base("gpt_oss", {
    intermediate_size: 64,
    head_dim: 16,
    num_local_experts: 4,
    num_experts_per_tok: 2,
    rope_theta: 150000,
    sliding_window: 8,
    layer_types: ["sliding_attention", "full_attention"],
    tie_word_embeddings: false,
    ...o,
  });

const ARCHS = {
  llama: { config: base("llama", { rope_theta: 10000, tie_word_embeddings: false }), hfExtras: { "model.layers.0.self_attn.rotary_emb.inv_freq": [8] } },
  llama_q4: { config: base("llama", { tie_word_embeddings: true }), quant: Q4, embedScale: 0.15 },
  llama3: {
    config: base("llama", { tie_word_embeddings: false, rope_theta: 500000, rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }),
    hfDtype: "BF16",
  },
  qwen2: { config: base("qwen2", { rope_theta: 1000000, tie_word_embeddings: true }), attn: { bias: "qkv" }, embedScale: 0.15, shards: 2, hfDtype: "F16" },
  qwen2_q4: { config: base("qwen2", { rope_theta: 1000000, tie_word_embeddings: true }), attn: { bias: "qkv" }, embedScale: 0.15, quant: Q4 },
  qwen3: { config: base("qwen3", { head_dim: 32, rope_theta: 1000000, tie_word_embeddings: true }), attn: { qkNorm: "head" }, embedScale: 0.15 },
  qwen3_moe: { config: qwen3Moe({ norm_topk_prob: true, mlp_only_layers: [1] }), attn: { qkNorm: "head" }, mlp: "moe" },
  qwen3_moe_q4: { config: qwen3Moe({ norm_topk_prob: false, mlp_only_layers: [] }), attn: { qkNorm: "head" }, mlp: "moe", quant: Q4 },
  phi3: {
    config: base("phi3", {
      intermediate_size: 96,
      rope_theta: 10000,
      partial_rotary_factor: 0.5,
      max_position_embeddings: 4096,
      original_max_position_embeddings: 1024,
      rope_scaling: { type: "longrope", short_factor: [1, 1.05, 1.1, 1.15], long_factor: [1, 1.3, 1.6, 1.9] },
      tie_word_embeddings: false,
    }),
    attn: { fused: true },
    mlp: "fused",
  },
  gemma3_text: { config: gemmaText(), ...gemmaDesc },
  gemma3: {
    config: { model_type: "gemma3", text_config: gemmaText(), vision_config: { model_type: "siglip_vision_model", ...TINY_VISION }, mm_tokens_per_image: 4, image_token_index: 262 },
    ...gemmaDesc,
    wrapper: true,
    hfExtras: { "model.vision_tower.vision_model.post_layernorm.weight": [16] },
  },
  mistral3: {
    config: { model_type: "mistral3", text_config: mistralText(), vision_config: { model_type: "pixtral", ...TINY_VISION, head_dim: 8 }, image_token_index: 262 },
    wrapper: true,
    hfExtras: { "model.multi_modal_projector.linear_1.weight": [64, 16] },
  },
  ministral3: { config: ministral(), hfDtype: "BF16" },
  smollm3: { config: base("smollm3", { num_hidden_layers: 4, rope_theta: 2000000, no_rope_layer_interval: 2, tie_word_embeddings: true }), embedScale: 0.15 },
  granite: {
    config: base("granite", {
      tie_word_embeddings: false,
      rope_theta: 10000,
      attention_multiplier: 0.2,
      embedding_multiplier: 2,
      residual_multiplier: 0.5,
      logits_scaling: 1.5,
      attention_bias: false,
      mlp_bias: false,
    }),
  },
  olmo2: { config: base("olmo2", { rope_theta: 500000, tie_word_embeddings: false }), attn: { qkNorm: "full" }, norms: ["post_attention_layernorm", "post_feedforward_layernorm"] },
  gpt_oss: {
    // gpt-oss's real yarn block: with truncate false the correction range is not rounded (mlx-lm rounds it)
    config: gptOss({ rope_scaling: { rope_type: "yarn", factor: 32, beta_fast: 32, beta_slow: 1, original_max_position_embeddings: 4096, truncate: false }, attention_bias: true }),
    attn: { bias: "all", sinks: true },
    mlp: "gpt_oss_moe",
  },
  // no rope block: transformers' gpt-oss default (yarn) applies
  gpt_oss_mxfp4: { config: gptOss(), attn: { bias: "all", sinks: true }, mlp: "gpt_oss_moe", expertQuant: MXFP4 },
  // Seeds follow the position in this table (1000 + index) and committed fixtures (goldens, llama.cpp GGUFs)
  // hold those weights: append new models here, never insert above.
  mistral_swa: { config: base("mistral", { head_dim: 16, rope_theta: 1000000, tie_word_embeddings: false, sliding_window: 8 }) },
  llama_linear: { config: base("llama", { tie_word_embeddings: false, rope_theta: 10000, rope_scaling: { type: "linear", factor: 4 } }) },
  // max_position_embeddings below the golden sequence, so the NTK base grows while decoding
  llama_dynamic: { config: base("llama", { tie_word_embeddings: false, rope_theta: 10000, max_position_embeddings: 20, rope_scaling: { type: "dynamic", factor: 2 } }) },
} satisfies Record<string, ArchDesc>;

export type TinyName = keyof typeof ARCHS;
export const TINY_MODELS = Object.keys(ARCHS) as TinyName[];
/** Models whose weights are quantized: MLX layout only (transformers has no such checkpoint). */
export const QUANTIZED: ReadonlySet<TinyName> = new Set(TINY_MODELS.filter((n) => "quant" in ARCHS[n] || "expertQuant" in ARCHS[n]));

/** Quantized models transformers also ships (gpt-oss's MXFP4 experts): they have a transformers layout too. */
export const HF_QUANTIZED: ReadonlySet<TinyName> = new Set<TinyName>(["gpt_oss_mxfp4"]);

/** The text config of a (possibly wrapped) description. */
function textConfig(d: ArchDesc): Record<string, unknown> {
  return (d.wrapper ? d.config.text_config : d.config) as Record<string, unknown>;
}

/** Tensors in the MLX layout (mlx-lm's names after sanitize; quantized where the description says). */
function buildMlx(d: ArchDesc, seed: number): Tensors {
  const c = textConfig(d);
  const round = d.hfDtype === "BF16" ? toBf16 : d.hfDtype === "F16" ? toF16 : null;
  const g = new Gen(seed, round);
  const h = c.hidden_size as number;
  const heads = c.num_attention_heads as number;
  const kv = (c.num_key_value_heads as number | undefined) ?? heads;
  const hd = (c.head_dim as number | undefined) ?? h / heads;
  const ff = c.intermediate_size as number;
  const E = (c.num_experts ?? c.num_local_experts) as number;
  const moeFf = (c.moe_intermediate_size as number | undefined) ?? ff;
  const q = d.quant;
  const a = d.attn ?? {};
  const tied = c.tie_word_embeddings === true || (c.tie_word_embeddings === undefined && c.model_type === "gemma3_text");
  g.linear("model.embed_tokens", [VOCAB, h], { q });
  // the generator's linear() scales by fan-in; embeddings want their own scale
  if (!q) g.float("model.embed_tokens.weight", [VOCAB, h], d.embedScale ?? 1);
  const layers = c.num_hidden_layers as number;
  const onlyDense = (c.mlp_only_layers as number[] | undefined) ?? [];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    const qkvBias = a.bias !== undefined;
    if (a.fused) g.linear(`${p}.self_attn.qkv_proj`, [(heads + 2 * kv) * hd, h], { q });
    else {
      g.linear(`${p}.self_attn.q_proj`, [heads * hd, h], { bias: qkvBias, q });
      g.linear(`${p}.self_attn.k_proj`, [kv * hd, h], { bias: qkvBias, q });
      g.linear(`${p}.self_attn.v_proj`, [kv * hd, h], { bias: qkvBias, q });
    }
    g.linear(`${p}.self_attn.o_proj`, [h, heads * hd], { bias: a.bias === "all", q });
    if (a.qkNorm) {
      const nb = d.normBase ?? 1;
      g.norm(`${p}.self_attn.q_norm`, a.qkNorm === "head" ? hd : heads * hd, nb);
      g.norm(`${p}.self_attn.k_norm`, a.qkNorm === "head" ? hd : kv * hd, nb);
    }
    if (a.sinks) g.float(`${p}.self_attn.sinks`, [heads], 1);
    const mlp = d.mlp === "moe" && onlyDense.includes(i) ? "dense" : (d.mlp ?? "dense");
    if (mlp === "dense") {
      g.linear(`${p}.mlp.gate_proj`, [ff, h], { q });
      g.linear(`${p}.mlp.up_proj`, [ff, h], { q });
      g.linear(`${p}.mlp.down_proj`, [h, ff], { q });
    } else if (mlp === "fused") {
      g.linear(`${p}.mlp.gate_up_proj`, [2 * ff, h], { q });
      g.linear(`${p}.mlp.down_proj`, [h, ff], { q });
    } else if (mlp === "moe") {
      g.linear(`${p}.mlp.gate`, [E, h], { q });
      g.linear(`${p}.mlp.switch_mlp.gate_proj`, [E, moeFf, h], { q });
      g.linear(`${p}.mlp.switch_mlp.up_proj`, [E, moeFf, h], { q });
      g.linear(`${p}.mlp.switch_mlp.down_proj`, [E, h, moeFf], { q });
    } else {
      g.linear(`${p}.mlp.router`, [E, h], { bias: true });
      const eq = d.expertQuant;
      g.linear(`${p}.mlp.experts.gate_proj`, [E, ff, h], { bias: true, q: eq });
      g.linear(`${p}.mlp.experts.up_proj`, [E, ff, h], { bias: true, q: eq });
      g.linear(`${p}.mlp.experts.down_proj`, [E, h, ff], { bias: true, q: eq });
    }
    for (const n of d.norms ?? ["input_layernorm", "post_attention_layernorm"]) g.norm(`${p}.${n}`, h, d.normBase ?? 1);
  }
  g.norm("model.norm", h, d.normBase ?? 1);
  if (!tied) g.linear("lm_head", [VOCAB, h], { q });
  if (!d.wrapper) return g.t;
  return Object.fromEntries(Object.entries(g.t).map(([k, t]) => [`language_model.${k}`, t]));
}

/** An f32 [rows, cols] view of a tensor as [.., cols, rows] (transposed last two axes). */
function transpose2(t: Tensor): Tensor {
  const shape = [...t.shape];
  const [r, c] = [shape.at(-2)!, shape.at(-1)!];
  const batch = t.data.length / (r * c);
  const src = t.data as Float32Array;
  const out = new Float32Array(src.length);
  for (let b = 0; b < batch; b++) for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[b * r * c + j * r + i] = src[b * r * c + i * c + j]!;
  shape.splice(-2, 2, c, r);
  return { dtype: "F32", shape, data: out };
}

/** Interleave two [.., n] f32 tensors along the last axis (gpt-oss stores gate at even, up at odd columns). */
function interleave(x: Tensor, y: Tensor): Tensor {
  const n = x.shape.at(-1)!;
  const rows = x.data.length / n;
  const out = new Float32Array(2 * x.data.length);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) {
      out[r * 2 * n + 2 * j] = x.data[r * n + j]!;
      out[r * 2 * n + 2 * j + 1] = y.data[r * n + j]!;
    }
  }
  return { dtype: "F32", shape: [...x.shape.slice(0, -1), 2 * n], data: out };
}

/** Rows of a and b alternating (a's row i → 2i, b's → 2i+1); `rowLen` elements per row. */
function interleaveRows<T extends Uint8Array | Float32Array>(a: T, b: T, rowLen: number): T {
  const out = new (a.constructor as new (n: number) => T)(a.length * 2);
  for (let r = 0; r < a.length / rowLen; r++) {
    out.set(a.subarray(r * rowLen, (r + 1) * rowLen), 2 * r * rowLen);
    out.set(b.subarray(r * rowLen, (r + 1) * rowLen), (2 * r + 1) * rowLen);
  }
  return out;
}

/**
 * gpt-oss as OpenAI ships it (transformers' MXFP4 layout): fused, row-interleaved gate_up_proj `_blocks`
 * [E, 2I, H/32, 16] / `_scales` [E, 2I, H/32] / `_bias`, and down_proj likewise.
 */
function toHfMxfp4(mlx: Tensors): Tensors {
  const out: Tensors = {};
  const bytes = (t: Tensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  for (const [k, t] of Object.entries(mlx)) {
    const m = /^(.*)\.mlp\.experts\.(gate_proj|up_proj|down_proj)\.(weight|scales|bias)$/.exec(k);
    if (!m) {
      out[k] = t;
      continue;
    }
    const [, p, n, part] = m;
    if (n === "up_proj") continue;
    const src = (nm: string) => mlx[`${p}.mlp.experts.${nm}.${part}`]!;
    const fused = n === "gate_proj";
    const name = fused ? "gate_up_proj" : "down_proj";
    const [E, rows] = t.shape as [number, number];
    if (part === "bias") {
      const data = fused ? interleaveRows(src("gate_proj").data as Float32Array, src("up_proj").data as Float32Array, 1) : (t.data as Float32Array);
      out[`${p}.mlp.experts.${name}_bias`] = { dtype: "F32", shape: [E, fused ? 2 * rows : rows], data };
      continue;
    }
    const rowBytes = t.data.byteLength / (E * rows);
    const data = fused ? interleaveRows(bytes(src("gate_proj")), bytes(src("up_proj")), rowBytes) : bytes(t);
    const R = fused ? 2 * rows : rows;
    if (part === "weight") out[`${p}.mlp.experts.${name}_blocks`] = { dtype: "U8", shape: [E, R, rowBytes / 16, 16], data };
    else out[`${p}.mlp.experts.${name}_scales`] = { dtype: "U8", shape: [E, R, rowBytes], data };
  }
  return out;
}

/** The same weights as `save_pretrained` of transformers 5 names and lays them out. */
function toHf(d: ArchDesc, mlx: Tensors): Tensors {
  if (d.expertQuant?.mode === "mxfp4") return toHfMxfp4(mlx);
  const out: Tensors = {};
  const put = (k: string, t: Tensor) => {
    out[k] = t;
  };
  for (const [k0, t] of Object.entries(mlx)) {
    let k = k0;
    if (d.wrapper) k = k.startsWith("language_model.model.") ? `model.language_model.${k.slice("language_model.model.".length)}` : k.slice("language_model.".length);
    const sw = /^(.*)\.mlp\.switch_mlp\.(gate_proj|up_proj|down_proj)\.weight$/.exec(k);
    if (sw) {
      const [E, o, i] = t.shape as [number, number, number];
      for (let e = 0; e < E; e++) put(`${sw[1]}.mlp.experts.${e}.${sw[2]}.weight`, { dtype: "F32", shape: [o, i], data: (t.data as Float32Array).slice(e * o * i, (e + 1) * o * i) });
      continue;
    }
    const ex = /^(.*)\.mlp\.experts\.(gate_proj|up_proj|down_proj)\.(weight|bias)$/.exec(k);
    if (ex) {
      const [, p, n, part] = ex;
      if (n === "up_proj") continue;
      if (n === "down_proj") put(part === "weight" ? `${p}.mlp.experts.down_proj` : `${p}.mlp.experts.down_proj_bias`, part === "weight" ? transpose2(t) : t);
      else {
        const up = mlx[k0.replace("gate_proj", "up_proj")]!;
        put(part === "weight" ? `${p}.mlp.experts.gate_up_proj` : `${p}.mlp.experts.gate_up_proj_bias`, part === "weight" ? interleave(transpose2(t), transpose2(up)) : interleave(t, up));
      }
      continue;
    }
    put(k, t);
  }
  for (const [k, shape] of Object.entries(d.hfExtras ?? {})) put(k, { dtype: "F32", shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) });
  const dt = d.hfDtype ?? "F32";
  if (dt === "F32") return out;
  const conv = dt === "BF16" ? bf16Bits : f16Bits;
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { dtype: dt, shape: t.shape, data: Uint16Array.from(t.data as Float32Array, conv) }]));
}

/** f32 → bf16 bits, round to nearest even. */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function toBf16(x: number): number {
  return new Float32Array(new Uint32Array([bf16Bits(x) << 16]).buffer)[0]!;
}
/** f32 → f16 bits (normal range and subnormals, round to nearest even; our weights stay far from overflow). */
function f16Bits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  if (e < -14) return sign | Math.round(a / 2 ** -24);
  let m = a / 2 ** e - 1;
  let mi = Math.round(m * 1024);
  const frac = m * 1024 - Math.floor(m * 1024);
  if (frac === 0.5 && Math.floor(m * 1024) % 2 === 0) mi = Math.floor(m * 1024);
  if (mi === 1024) {
    mi = 0;
    e += 1;
  }
  m = mi;
  return sign | ((e + 15) << 10) | m;
}
function toF16(x: number): number {
  const b = f16Bits(x);
  const s = b & 0x8000 ? -1 : 1;
  const e = (b >> 10) & 0x1f;
  const m = b & 0x3ff;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

/** v4 config as written for mlx-lm: quantization block for quantized models. */
function mlxConfig(d: ArchDesc): Record<string, unknown> {
  const c = JSON.parse(JSON.stringify(d.config)) as Record<string, unknown>;
  if (d.quant) c.quantization = { group_size: d.quant.groupSize, bits: d.quant.bits, mode: d.quant.mode };
  if (d.expertQuant) c.quantization = { group_size: d.expertQuant.groupSize, bits: d.expertQuant.bits, mode: d.expertQuant.mode };
  return c;
}

const CHATML =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** A byte-level BPE tokenizer without merges: every byte is one token, plus three specials at 256..258. */
function tokenizerJson(): unknown {
  const bytes: string[] = [];
  // GPT-2 byte→unicode table: printable bytes map to themselves, the rest to 256+n.
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    bytes.push(printable ? String.fromCharCode(b) : String.fromCharCode(256 + n++));
  }
  const vocab: Record<string, number> = {};
  bytes.forEach((c, i) => {
    vocab[c] = i;
  });
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  specials.forEach((s, i) => {
    vocab[s] = 256 + i;
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((s, i) => ({
      id: 256 + i,
      content: s,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

export interface TinyOptions {
  /** "mlx": as mlx_lm.convert writes it (default); "hf": as transformers' save_pretrained writes it. */
  layout?: "mlx" | "hf";
  /** "v4": config.json spelled as transformers 4 / mlx-lm read it (default); "v5": as transformers 5 writes it. */
  spelling?: "v4" | "v5";
}

const CONFIGS = join(import.meta.dir, "../fixtures/configs");

/** The config.json transformers 5 wrote for this model (scripts/gen-goldens-hf.py), committed as a fixture. */
export function v5Config(name: TinyName): Record<string, unknown> {
  const f = join(CONFIGS, `${name}.json`);
  if (!existsSync(f)) throw new Error(`No transformers 5 config for ${name}: run bun scripts/gen-goldens.ts`);
  return JSON.parse(readFileSync(f, "utf8")) as Record<string, unknown>;
}

/** The v4 (mlx-lm) config of `name`, as the golden scripts feed it to mlx-lm and transformers. */
export function tinyConfig(name: TinyName): Record<string, unknown> {
  return { eos_token_id: 258, bos_token_id: 256, pad_token_id: 256, ...mlxConfig(ARCHS[name]) };
}

/** Write tiny model `name` into `dir` (created if needed); returns `dir`. Same name and options → same bytes. */
/**
 * Write a model built elsewhere (test/support/tiny-hybrid.ts: architectures the description table does not
 * cover) with the same byte tokenizer; `format` "pt" for transformers layouts. Returns `dir`.
 */
export function writeBuilt(b: { config: Record<string, unknown>; tensors: Tensors; shards?: number }, dir: string, format = "mlx"): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ eos_token_id: 258, bos_token_id: 256, pad_token_id: 256, ...b.config }, null, 2));
  writeSafetensors(dir, b.tensors, b.shards ?? 1, format);
  writeTokenizer(dir);
  return dir;
}

function writeTokenizer(dir: string): void {
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson()));
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({ chat_template: CHATML, eos_token: "<|im_end|>", bos_token: null, pad_token: "<|endoftext|>", add_bos_token: false }, null, 2),
  );
}

export function writeTinyModel(name: TinyName, dir: string, opts: TinyOptions = {}): string {
  mkdirSync(dir, { recursive: true });
  const d: ArchDesc = ARCHS[name];
  const layout = opts.layout ?? "mlx";
  if (layout === "hf" && QUANTIZED.has(name) && !HF_QUANTIZED.has(name)) throw new Error(`${name} is quantized: there is no transformers layout`);
  const mlx = buildMlx(d, 1000 + TINY_MODELS.indexOf(name));
  let config = opts.spelling === "v5" ? v5Config(name) : tinyConfig(name);
  if (layout === "hf" && HF_QUANTIZED.has(name)) {
    const { quantization: _q, ...rest } = config;
    config = { ...rest, quantization_config: { quant_method: "mxfp4", modules_to_not_convert: ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"] } };
  }
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  if (layout === "hf") writeSafetensors(dir, toHf(d, mlx), d.shards ?? 1, "pt");
  else writeSafetensors(dir, mlx, d.shards ?? 1);
  writeTokenizer(dir);
  return dir;
}

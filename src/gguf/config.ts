/**
 * An HF-style config.json from GGUF metadata (`<arch>.*` keys), for the engine to build the model from a
 * GGUF file alone, plus what mlxk's GGUF loader can run. Pure TypeScript over the header (no MLX), so the
 * cache commands use it too.
 *
 * Per architecture (llama.cpp's writer, convert_hf_to_gguf.py): gemma3 has no sliding-window pattern key
 * (llama.cpp hard-codes 6) and writes its local rope base as `rope.freq_base_swa` (older files: fixed 10000); phi3 stores its rope dims as
 * `rope.dimension_count` (partial rotary) and longrope factors as tensors (read by the engine).
 *
 * Exports: GGUF_ARCHS, GGUF_TENSOR_TYPES, ggufModelType(f), ggufModelConfig(f), ggufRuntimeProblem(f, types)
 */
import { MlxkError } from "../errors.ts";
import { isSupportedModelType } from "../models/supported.ts";
import { type GgufFile, GgufValueType, metaArrayLength, metaNumber, metaString } from "./reader.ts";

/** GGUF `general.architecture` → HF `model_type` for the architectures mlxk loads from GGUF. */
export const GGUF_ARCHS: Readonly<Record<string, string>> = {
  llama: "llama",
  mistral: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  qwen3moe: "qwen3_moe",
  gemma3: "gemma3_text",
  phi3: "phi3",
};

/**
 * Tensor types mlxk loads (src/engine/gguf*.ts): Q4_0/Q4_1/Q4_K as affine 4-bit and Q5_0/Q5_1/Q5_K/Q8_0/IQ4_NL/
 * IQ4_XS as affine 8-bit codes (group 32, lossless) stay quantized; F32/F16/BF16 and Q6_K are floats. Others are
 * refused: Q2_K/Q3_K and the other IQ types have no decoder here yet.
 */
export const GGUF_TENSOR_TYPES: ReadonlySet<string> = new Set(["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]);

/** Other names llama.cpp uses for HF model types that mlxk does not load from GGUF (for messages only). */
const OTHER_TYPES: Record<string, string> = { qwen2moe: "qwen2_moe", "gpt-oss": "gpt_oss" };

export function ggufModelType(f: GgufFile): string | null {
  const arch = metaString(f, "general.architecture");
  if (arch === undefined) return null;
  return GGUF_ARCHS[arch] ?? OTHER_TYPES[arch] ?? arch;
}

/** Why mlxk cannot run this GGUF (architecture or tensor types), or null when it can. */
export function ggufRuntimeProblem(f: GgufFile, tensorTypes: Iterable<string>): string | null {
  const arch = metaString(f, "general.architecture");
  if (arch === undefined) return "GGUF file has no general.architecture";
  const loadable = Object.keys(GGUF_ARCHS).filter((a) => isSupportedModelType(GGUF_ARCHS[a]!));
  if (!loadable.includes(arch)) return `GGUF architecture '${arch}' is not supported by mlxk (supported: ${loadable.join(", ")})`;
  const bad = [...new Set(tensorTypes)].filter((t) => !GGUF_TENSOR_TYPES.has(t)).sort();
  if (bad.length > 0) {
    return `GGUF tensor type${bad.length > 1 ? "s" : ""} ${bad.join(", ")} not supported by mlxk (supported: ${[...GGUF_TENSOR_TYPES].join(", ")}); use a Q4_K_M, Q5_K_M, Q4_0, Q8_0 or F16 file`;
  }
  return null;
}

/** `<arch>.attention.sliding_window_pattern` as a number, or a per-layer bool array (true = sliding). */
function slidingPattern(f: GgufFile, arch: string): { pattern?: number; layerTypes?: string[] } {
  const e = f.metadata.get(`${arch}.attention.sliding_window_pattern`);
  if (!e) return {};
  if (typeof e.value === "number") return { pattern: e.value };
  // (a header read with skipArrays has no elements: no pattern then)
  if (e.type === GgufValueType.ARRAY && Array.isArray(e.value) && e.value.length > 0 && e.value.every((x) => typeof x === "boolean")) {
    return { layerTypes: (e.value as boolean[]).map((s) => (s ? "sliding_attention" : "full_attention")) };
  }
  return {};
}

export function ggufModelConfig(f: GgufFile): Record<string, unknown> {
  const arch = metaString(f, "general.architecture");
  if (arch === undefined) throw new MlxkError("unsupported_model", "GGUF file has no general.architecture");
  const n = (k: string) => metaNumber(f, `${arch}.${k}`);
  const heads = n("attention.head_count");
  const hidden = n("embedding_length");
  const cfg: Record<string, unknown> = {
    model_type: GGUF_ARCHS[arch] ?? OTHER_TYPES[arch] ?? arch,
    num_hidden_layers: n("block_count"),
    hidden_size: hidden,
    intermediate_size: n("feed_forward_length"),
    num_attention_heads: heads,
    num_key_value_heads: n("attention.head_count_kv") ?? heads,
    rms_norm_eps: n("attention.layer_norm_rms_epsilon"),
    rope_theta: n("rope.freq_base"),
    max_position_embeddings: n("context_length"),
    vocab_size: metaArrayLength(f, "tokenizer.ggml.tokens") ?? n("vocab_size"),
    // No separate output matrix means the LM head reuses the embeddings.
    tie_word_embeddings: !f.tensors.some((t) => t.name === "output.weight"),
    bos_token_id: metaNumber(f, "tokenizer.ggml.bos_token_id"),
    eos_token_id: metaNumber(f, "tokenizer.ggml.eos_token_id"),
  };
  const headDim = n("attention.key_length");
  if (headDim !== undefined && (hidden === undefined || heads === undefined || headDim !== hidden / heads || arch === "qwen3" || arch === "qwen3moe")) {
    cfg.head_dim = headDim;
  }
  const window = n("attention.sliding_window");
  if (window !== undefined) cfg.sliding_window = window;
  const scaling = metaString(f, `${arch}.rope.scaling.type`);
  const factor = n("rope.scaling.factor");
  if (scaling === "linear" && factor !== undefined && factor !== 1) cfg.rope_scaling = { type: "linear", factor };
  else if (scaling === "yarn" && factor !== undefined) {
    cfg.rope_scaling = { type: "yarn", factor, original_max_position_embeddings: n("rope.scaling.original_context_length") };
  }
  if (arch === "gemma3") {
    const sw = slidingPattern(f, arch);
    cfg.sliding_window_pattern = sw.pattern ?? 6;
    if (sw.layerTypes) cfg.layer_types = sw.layerTypes;
    // newer llama.cpp writes the local (sliding) rope base; older files leave it at its fixed 10000
    cfg.rope_local_base_freq = n("rope.freq_base_swa") ?? 10000;
    cfg.head_dim = headDim ?? (hidden ?? 0) / (heads ?? 1);
    cfg.query_pre_attn_scalar = cfg.head_dim;
    if (cfg.rope_theta === undefined) cfg.rope_theta = 1000000;
  }
  if (arch === "phi3") {
    const ropeDims = n("rope.dimension_count");
    const hd = hidden !== undefined && heads !== undefined ? hidden / heads : undefined;
    if (ropeDims !== undefined && hd !== undefined) cfg.partial_rotary_factor = ropeDims / hd;
    const orig = n("rope.scaling.original_context_length");
    if (orig !== undefined) cfg.original_max_position_embeddings = orig;
  }
  if (arch === "qwen3moe") {
    cfg.num_experts = n("expert_count");
    cfg.num_experts_per_tok = n("expert_used_count");
    cfg.moe_intermediate_size = n("expert_feed_forward_length");
    cfg.norm_topk_prob = true;
    cfg.decoder_sparse_step = 1;
    cfg.mlp_only_layers = [];
  }
  for (const k of Object.keys(cfg)) if (cfg[k] === undefined) delete cfg[k];
  return cfg;
}

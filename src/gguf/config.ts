/**
 * An HF-style config.json from GGUF metadata (`<arch>.*` keys), for the engine to build the model
 * from a GGUF file alone. Covers the keys shared by llama-like architectures; anything else the
 * model code needs can be read from the GgufFile directly.
 */
import { MlxkError } from "../errors.ts";
import { type GgufFile, metaNumber, metaString, metaStrings } from "./reader.ts";

/** GGUF `general.architecture` → HF `model_type` where the names differ. */
const MODEL_TYPES: Record<string, string> = {
  qwen2moe: "qwen2_moe",
  qwen3moe: "qwen3_moe",
  gemma3: "gemma3_text",
  "gpt-oss": "gpt_oss",
  gpt_oss: "gpt_oss",
};

export function ggufModelConfig(f: GgufFile): Record<string, unknown> {
  const arch = metaString(f, "general.architecture");
  if (arch === undefined) throw new MlxkError("unsupported_model", "GGUF file has no general.architecture");
  const n = (k: string) => metaNumber(f, `${arch}.${k}`);
  const cfg: Record<string, unknown> = {
    model_type: MODEL_TYPES[arch] ?? arch,
    num_hidden_layers: n("block_count"),
    hidden_size: n("embedding_length"),
    intermediate_size: n("feed_forward_length"),
    num_attention_heads: n("attention.head_count"),
    num_key_value_heads: n("attention.head_count_kv") ?? n("attention.head_count"),
    rms_norm_eps: n("attention.layer_norm_rms_epsilon"),
    rope_theta: n("rope.freq_base"),
    max_position_embeddings: n("context_length"),
    vocab_size: metaStrings(f, "tokenizer.ggml.tokens")?.length ?? n("vocab_size"),
    // No separate output matrix means the LM head reuses the embeddings.
    tie_word_embeddings: !f.tensors.some((t) => t.name === "output.weight"),
    bos_token_id: metaNumber(f, "tokenizer.ggml.bos_token_id"),
    eos_token_id: metaNumber(f, "tokenizer.ggml.eos_token_id"),
  };
  const headDim = n("attention.key_length");
  if (headDim !== undefined) cfg.head_dim = headDim;
  const window = n("attention.sliding_window");
  if (window !== undefined) cfg.sliding_window = window;
  for (const k of Object.keys(cfg)) if (cfg[k] === undefined) delete cfg[k];
  return cfg;
}

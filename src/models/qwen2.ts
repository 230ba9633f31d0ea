// Qwen2 / Qwen2.5; must agree with mlx-lm models/qwen2.py. The block is llama's (q/k/v carry biases,
// which the weight store picks up); only the config defaults differ.
import * as v from "valibot";
import { bool, int, type LanguageModel, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import { configSchema as llamaSchema, Model, sanitize } from "./llama.ts";

export const configSchema = v.pipe(
  v.looseObject({
    hidden_size: int(),
    num_hidden_layers: int(),
    intermediate_size: int(),
    num_attention_heads: int(),
    num_key_value_heads: int(),
    rms_norm_eps: num(1e-6),
    vocab_size: int(),
    max_position_embeddings: int(32768),
    rope_theta: num(1000000),
    rope_traditional: bool(false),
    rope_scaling: ropeScaling,
    tie_word_embeddings: bool(true),
  }),
  // Sliding-window settings of HF Qwen2 configs are ignored, as in mlx-lm.
  v.transform((c) => ({ ...c, layer_types: null, sliding_window: null, head_dim: null })),
  v.transform((c) => v.parse(llamaSchema, c)),
);

export { sanitize };

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 32768;
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as v.InferOutput<typeof llamaSchema>, w, ctx);
}

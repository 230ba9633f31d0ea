// Qwen3 (dense); agrees with mlx-lm 0.32.2 models/qwen3.py: llama's block plus per-head RMSNorm of
// queries and keys before rope, an explicit head_dim, untied head by default.
import * as v from "valibot";
import { bool, int, type LanguageModel, type ModelContext, type WeightStore } from "./base.ts";
import { Decoder } from "./transformer.ts";
import { derived, type LlamaConfig, llamaFields, llamaSpec } from "./llama.ts";
import { qwenLayerTypes } from "./qwen2.ts";

export { configOptions, sanitize } from "./llama.ts";

export const configSchema = v.pipe(
  v.looseObject({
    ...llamaFields({ rope_theta: 1000000 }),
    num_key_value_heads: int(),
    head_dim: int(),
    tie_word_embeddings: bool(false),
    use_sliding_window: bool(false),
    max_window_layers: v.optional(int()),
  }),
  v.transform((c) => derived({ ...c, layer_types: qwenLayerTypes(c) })),
);

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 40960;
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Decoder(llamaSpec(config as LlamaConfig, { qkNorm: "head" }), w, ctx);
}

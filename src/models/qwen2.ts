// Qwen2 / Qwen2.5; agrees with mlx-lm 0.32.2 models/qwen2.py: llama's block (q/k/v biases come with the
// weights), rope base 1e6. Unlike mlx-lm, `use_sliding_window: true` is honoured as transformers does
// (layers from max_window_layers on attend within sliding_window) instead of being ignored.
import * as v from "valibot";
import { bool, int, type LanguageModel, type ModelContext, type WeightStore } from "./base.ts";
import { Decoder } from "./transformer.ts";
import { derived, type LlamaConfig, llamaFields, llamaSpec } from "./llama.ts";

export { configOptions, sanitize } from "./llama.ts";

export const configSchema = v.pipe(
  v.looseObject({
    ...llamaFields({ rope_theta: 1000000, max_position_embeddings: 32768 }),
    num_key_value_heads: int(),
    use_sliding_window: bool(false),
    max_window_layers: v.optional(int()),
  }),
  v.transform((c) => derived({ ...c, head_dim: undefined, layer_types: qwenLayerTypes(c) })),
);

/** transformers' Qwen rule: with use_sliding_window, layers from max_window_layers on are sliding. */
export function qwenLayerTypes(c: { layer_types?: string[]; use_sliding_window: boolean; sliding_window?: number | null; max_window_layers?: number; num_hidden_layers: number }): string[] {
  if (c.layer_types) return c.layer_types;
  const swa = c.use_sliding_window && c.sliding_window;
  const mwl = c.max_window_layers ?? c.num_hidden_layers;
  return Array.from({ length: c.num_hidden_layers }, (_, i) => (swa && i >= mwl ? "sliding_attention" : "full_attention"));
}

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 32768;
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Decoder(llamaSpec(config as LlamaConfig), w, ctx);
}

// Qwen3 (dense); must agree with mlx-lm models/qwen3.py. Llama's block plus per-head q_norm/k_norm
// (present in the weights) and an explicit head_dim; rope_theta may sit under rope_parameters.
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
    head_dim: int(),
    rms_norm_eps: num(1e-6),
    vocab_size: int(),
    max_position_embeddings: int(40960),
    rope_theta: v.optional(v.number()),
    rope_scaling: ropeScaling,
    rope_parameters: v.optional(v.nullable(v.looseObject({ rope_theta: v.optional(v.number()) })), null),
    tie_word_embeddings: bool(false),
  }),
  v.transform((c) => ({
    ...c,
    rope_theta: c.rope_theta ?? c.rope_parameters?.rope_theta ?? 1000000,
    rope_scaling: c.rope_scaling ?? (c.rope_parameters?.rope_type && c.rope_parameters.rope_type !== "default" ? c.rope_parameters : null),
    layer_types: null,
    sliding_window: null,
  })),
  v.transform((c) => v.parse(llamaSchema, c)),
);

export { sanitize };

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 40960;
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as v.InferOutput<typeof llamaSchema>, w, ctx);
}

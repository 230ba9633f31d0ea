// OLMo 2; agrees with mlx-lm 0.32.2 models/olmo2.py: RMSNorm of the whole query/key projections (before
// the head split) and norms after attention and MLP (post-norm residuals) instead of before. The untied
// head is transformers' default (mlx-lm defaults to tied; configs saved by transformers omit the key).
import * as v from "valibot";
import { bool, type LanguageModel, type ModelContext, type WeightStore } from "./base.ts";
import { derived, type LlamaConfig, llamaFields, llamaSpec } from "./llama.ts";
import { Decoder } from "./transformer.ts";

export { configOptions, sanitize } from "./llama.ts";

export const configSchema = v.pipe(v.looseObject({ ...llamaFields({ rms_norm_eps: 1e-5 }), tie_word_embeddings: bool(false) }), v.transform(derived));

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 4096;
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Decoder(llamaSpec(config as LlamaConfig, { qkNorm: "full", postNorms: true }), w, ctx);
}

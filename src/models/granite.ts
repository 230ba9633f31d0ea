// IBM Granite (3.x dense); agrees with mlx-lm 0.32.2 models/granite.py: llama with an attention scale of
// attention_multiplier, embeddings × embedding_multiplier, residual branches × residual_multiplier and
// logits ÷ logits_scaling.
import * as v from "valibot";
import { bool, type LanguageModel, type ModelContext, num, type WeightStore } from "./base.ts";
import { derived, type LlamaConfig, llamaFields, llamaSpec } from "./llama.ts";
import { Decoder } from "./transformer.ts";

export { configOptions, sanitize } from "./llama.ts";

export const configSchema = v.pipe(
  v.looseObject({
    ...llamaFields({ rms_norm_eps: 1e-6 }),
    tie_word_embeddings: bool(true),
    logits_scaling: num(1),
    attention_multiplier: num(1),
    embedding_multiplier: num(1),
    residual_multiplier: num(1),
  }),
  v.transform(derived),
);
type GraniteConfig = LlamaConfig & v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 4096;
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  const c = config as GraniteConfig;
  const spec = llamaSpec(c, {
    attnScale: c.attention_multiplier,
    embeddingMultiplier: c.embedding_multiplier,
    residualMultiplier: c.residual_multiplier,
    logitsScaling: c.logits_scaling,
  });
  return new Decoder(spec, w, ctx);
}

// Mistral 3 multimodal wrapper (Mistral3ForConditionalGeneration: Mistral-Small-3.1/3.2, Ministral 3), text
// path; agrees with mlx-lm 0.32.2 models/mistral3.py: the text model is ministral3 or llama (mistral) by
// text_config.model_type — ministral3 without llama_4_scaling_beta is exactly llama, so one schema serves
// both; mistral4 is refused. Untied head unless text_config says otherwise.
import * as v from "valibot";
import type * as mx from "../mlx/index.ts";
import type { LanguageModel, ModelContext, WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import * as ministral3 from "./ministral3.ts";
import { dropUnused } from "./transformer.ts";
import { stripWrapper } from "./wrapper.ts";

export const configOptions: NormalizeOptions = { ...ministral3.configOptions, textConfig: true };

export const configSchema = v.pipe(
  v.looseObject({
    model_type: v.optional(v.picklist(["mistral", "llama", "ministral3"], "text_config.model_type must be mistral, llama or ministral3 (mistral4 is not supported)")),
  }),
  v.transform((c) => ({ tie_word_embeddings: false, ...c })),
  ministral3.configSchema,
);

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 131072;
}

export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  return dropUnused(stripWrapper(w), config.tie_word_embeddings === true);
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return ministral3.createModel(config, w, ctx);
}

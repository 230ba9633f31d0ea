// Gemma 4 multimodal wrapper, text path; must agree with mlx-lm 0.32.2 models/gemma4.py. The text model
// (gemma4_text.ts) reads `text_config`; vision / audio towers and their embedders are dropped (the server
// refuses image and audio content parts for every model until vision lands).
//
// Where mlxk differs from mlx-lm (transformers 5 is the reference, see README): the vocabulary size is
// text_config's (mlx-lm overwrites it with the top-level `vocab_size`, default 262144), and missing text
// keys take transformers' defaults (mlx-lm's wrapper fills num_key_value_heads 1).
import * as v from "valibot";
import type * as mx from "../mlx/index.ts";
import type { LanguageModel, ModelContext, WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import { configOptions as textOptions, type Gemma4Config, Model, normalizeText, sanitize as sanitizeText, textSchema } from "./gemma4_text.ts";

/** The normaliser hoists text_config over the top level (text_config's vocab_size wins, as in transformers). */
export const configOptions: NormalizeOptions = { ...textOptions, textConfig: true };
export const configSchema = v.pipe(textSchema, v.transform(normalizeText));

export { contextLength } from "./gemma4_text.ts";

const DROPPED = ["vision_tower", "multi_modal_projector", "audio_tower", "embed_audio", "embed_vision", "vision_embedder"];

/** Wrapper keys to mlx-lm's (`language_model.model.…`), then the text model's sanitize. */
export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  const out = new Map<string, mx.Array>();
  for (const [k0, a] of w) {
    const fromModel = k0.startsWith("model.");
    let k = fromModel ? k0.slice("model.".length) : k0;
    if (DROPPED.some((p) => k.startsWith(p))) {
      a.dispose();
      continue;
    }
    if (fromModel && k.startsWith("language_model.")) k = k.replace("language_model.", "language_model.model.");
    // A transformers-saved untied head sits at the top level.
    if (k.startsWith("lm_head.")) k = `language_model.${k}`;
    out.set(k, a);
  }
  return sanitizeText(out, config);
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Model(config as Gemma4Config, w, ctx, "language_model.model", "language_model.lm_head");
}

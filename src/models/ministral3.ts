// Ministral 3 (text model of Mistral 3 / Ministral 3 repos); agrees with mlx-lm 0.32.2 models/ministral3.py:
// llama with optional sliding layers and, past original_max_position_embeddings, queries scaled by
// 1 + β·log(1 + ⌊pos / original⌋) (rope_parameters.llama_4_scaling_beta), as transformers' Ministral3 does.
import * as v from "valibot";
import * as mx from "../mlx/index.ts";
import { bool, int, type LanguageModel, type ModelContext, num, type WeightStore } from "./base.ts";
import { derived, type LlamaConfig, llamaFields, llamaSpec, mistralWindow } from "./llama.ts";
import { Decoder } from "./transformer.ts";

export { configOptions, sanitize } from "./llama.ts";

const scaleParams = v.optional(
  v.nullable(v.looseObject({ llama_4_scaling_beta: v.optional(v.number()), original_max_position_embeddings: v.optional(v.number()) })),
  null,
);

export const configSchema = v.pipe(
  v.looseObject({
    ...llamaFields({ rms_norm_eps: 1e-5 }),
    tie_word_embeddings: bool(false),
    rope_parameters: scaleParams,
    llama_4_scaling_beta: v.optional(num()),
    original_max_position_embeddings: v.optional(int()),
  }),
  v.transform((c) => {
    const beta = c.rope_parameters?.llama_4_scaling_beta ?? c.llama_4_scaling_beta ?? 0;
    const orig =
      c.rope_parameters?.original_max_position_embeddings ??
      (c.rope_scaling?.original_max_position_embeddings as number | undefined) ??
      c.original_max_position_embeddings ??
      c.max_position_embeddings ??
      262144;
    // mistral3's text model may be plain mistral (this schema serves both)
    return { ...derived(mistralWindow(c)), llama4_beta: beta, llama4_original: orig };
  }),
);
type Ministral3Config = LlamaConfig & { llama4_beta: number; llama4_original: number };

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 262144;
}

/** Per-position query scale [L, 1] for L queries at `offset`; null when it is 1 everywhere. */
export function llama4AttnScale(offset: number, L: number, beta: number, original: number): mx.Array | null {
  if (beta === 0 || offset + L <= original) return null;
  const s = new Float32Array(L);
  for (let i = 0; i < L; i++) s[i] = 1 + beta * Math.log(1 + Math.floor((offset + i) / original));
  return mx.array(s, { shape: [L, 1], dtype: mx.Dtype.float32 });
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  const c = config as Ministral3Config;
  const spec = llamaSpec(c, { queryScale: (offset, L) => llama4AttnScale(offset, L, c.llama4_beta, c.llama4_original) });
  return new Decoder(spec, w, ctx);
}

// Qwen3.5 (dense; the MoE variant is qwen3_5_moe.ts); must agree with mlx-lm 0.32.2 models/qwen3_5.py.
// Hybrid: most layers are Gated DeltaNet linear attention (depthwise causal conv + gated delta rule, a
// recurrent-state cache), every `full_attention_interval`-th layer is Qwen3-Next's gated full attention
// (a KV cache); the decoder is hybrid.ts (mlx-lm's qwen3_next.py classes). The text path of the multimodal wrapper: weights sit under `language_model.` (MLX) or
// `model.language_model.` (transformers); vision tensors are dropped.
//
// Where mlxk reads configs differently from mlx-lm (transformers is the reference, see README): `layer_types`
// (what transformers 5 writes and its model obeys) decides linear vs full layers; mlx-lm only reads
// `full_attention_interval`. Without `layer_types` both use the interval. Both rope spellings are read
// (config.ts); mlx-lm ignores a top-level rope_theta.
import * as v from "valibot";
import type * as mx from "../mlx/index.ts";
import type { LanguageModel, ModelContext, WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import { hybridDerived, hybridFields, HybridModel, sanitizeHybrid } from "./hybrid.ts";

export { castPredicate } from "./hybrid.ts";

/** The normaliser hoists a wrapper's text_config and reads both rope spellings (rope_parameters / rope_theta). */
export const configOptions: NormalizeOptions = { textConfig: true, layerTypes: ["linear_attention", "full_attention"], activations: ["silu"] };

export const configSchema = v.pipe(
  v.looseObject(hybridFields({ max_position_embeddings: 131072, rope_theta: 100000, partial_rotary_factor: 0.25, norm_topk_prob: true, intermediate_size: 0 })),
  v.transform(hybridDerived),
);
export type Qwen3_5Config = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 131072;
}

/** Rename a wrapper checkpoint's keys to mlx-lm's (`language_model.model.…`); vision and MTP tensors dropped. */
export function wrapperKeys(w: Map<string, mx.Array>): Map<string, mx.Array> {
  const out = new Map<string, mx.Array>();
  for (const [k0, a] of w) {
    let k = k0;
    if (k.startsWith("vision_tower") || k.startsWith("model.visual") || k.startsWith("mtp.")) {
      a.dispose();
      continue;
    }
    if (k.startsWith("model.language_model")) k = k.replace("model.language_model", "language_model.model");
    else if (!k.startsWith("language_model.")) k = `language_model.${k}`;
    out.set(k, a);
  }
  return out;
}

/** mlx-lm's TextModel.sanitize (hybrid.ts). */
export function sanitizeText(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  return sanitizeHybrid(w, config as Qwen3_5Config, HEAD);
}

export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  return sanitizeText(wrapperKeys(w), config);
}

const PREFIX = "language_model.model";
const HEAD = "language_model.lm_head";

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  const c = config as Qwen3_5Config;
  // mlx-lm's DecoderLayer: every layer is sparse when the config has experts (qwen3_5_moe).
  return new HybridModel(c, w, ctx, { prefix: PREFIX, headKey: HEAD, fusedProjections: false, moeLayer: () => c.num_experts > 0 });
}

// Qwen3-Next; must agree with mlx-lm 0.32.2 models/qwen3_next.py. The hybrid decoder (Gated DeltaNet +
// gated full attention, sparse MoE) is hybrid.ts, shared with qwen3_5; here: the config, the fused
// in_proj_qkvz / in_proj_ba projections, MoE on every `decoder_sparse_step`-th layer except
// `mlp_only_layers`, and the checkpoint renames (per-expert or fused experts stacked into switch_mlp,
// transformers' conv layout and zero-centred norms).
//
// Where mlxk reads configs differently from mlx-lm (transformers is the reference, see README): both rope
// spellings (`rope_parameters` / top-level `rope_theta`, config.ts; mlx-lm reads only the top level),
// `num_local_experts` as well as `num_experts`, `layer_types` when the config has it, and transformers'
// default norm_topk_prob true (mlx-lm: false).
import * as v from "valibot";
import type * as mx from "../mlx/index.ts";
import { int, type LanguageModel, type ModelContext, type WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import { hybridDerived, hybridFields, HybridModel, sanitizeHybrid } from "./hybrid.ts";

export { castPredicate } from "./hybrid.ts";
import { splitFusedExperts, stackExperts } from "./switch_layers.ts";

export const configOptions: NormalizeOptions = { layerTypes: ["linear_attention", "full_attention"], activations: ["silu"] };

export const configSchema = v.pipe(
  v.looseObject({
    ...hybridFields({ max_position_embeddings: 262144, rope_theta: 10000, partial_rotary_factor: 1, norm_topk_prob: true }),
    decoder_sparse_step: int(1),
    mlp_only_layers: v.optional(v.array(int()), []),
  }),
  v.transform(hybridDerived),
);
type Qwen3NextConfig = v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 262144;
}

function moeLayer(c: Qwen3NextConfig, i: number): boolean {
  return !c.mlp_only_layers.includes(i) && c.num_experts > 0 && (i + 1) % c.decoder_sparse_step === 0;
}

export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  const c = config as Qwen3NextConfig;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.mlp`;
    splitFusedExperts(w, p, `${p}.switch_mlp`);
    stackExperts(w, p, `${p}.switch_mlp`, ["gate_proj", "up_proj", "down_proj"]);
  }
  return sanitizeHybrid(w, c, "lm_head");
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  const c = config as Qwen3NextConfig;
  return new HybridModel(c, w, ctx, { prefix: "model", headKey: "lm_head", fusedProjections: true, moeLayer: (i: number) => moeLayer(c, i) });
}

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
import { bool, int, type LanguageModel, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import { HybridModel, sanitizeHybrid } from "./hybrid.ts";
import { splitFusedExperts, stackExperts } from "./switch_layers.ts";

export const configOptions: NormalizeOptions = { layerTypes: ["linear_attention", "full_attention"], activations: ["silu"] };

export const configSchema = v.pipe(
  v.looseObject({
    hidden_size: int(),
    num_hidden_layers: int(),
    intermediate_size: int(),
    num_attention_heads: int(),
    num_key_value_heads: int(),
    head_dim: v.optional(int()),
    rms_norm_eps: num(1e-6),
    vocab_size: int(),
    max_position_embeddings: int(262144),
    linear_num_value_heads: int(),
    linear_num_key_heads: int(),
    linear_key_head_dim: int(),
    linear_value_head_dim: int(),
    linear_conv_kernel_dim: int(4),
    num_experts: int(0),
    num_experts_per_tok: int(0),
    decoder_sparse_step: int(1),
    shared_expert_intermediate_size: int(0),
    moe_intermediate_size: int(0),
    mlp_only_layers: v.optional(v.array(int()), []),
    norm_topk_prob: bool(true),
    tie_word_embeddings: bool(false),
    full_attention_interval: int(4),
    layer_types: v.optional(v.nullable(v.array(v.picklist(["linear_attention", "full_attention"])))),
    rope_theta: num(10000),
    partial_rotary_factor: num(1),
    rope_scaling: ropeScaling,
  }),
  v.transform((c) => ({
    ...c,
    head_dim: c.head_dim ?? Math.floor(c.hidden_size / c.num_attention_heads),
    layer_types:
      c.layer_types ?? Array.from({ length: c.num_hidden_layers }, (_, i) => ((i + 1) % c.full_attention_interval === 0 ? "full_attention" : "linear_attention")),
  })),
  v.check((c) => c.linear_num_value_heads % c.linear_num_key_heads === 0, "linear_num_value_heads must be a multiple of linear_num_key_heads"),
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

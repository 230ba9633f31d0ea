// Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B); agrees with mlx-lm 0.32.2 models/qwen3_moe.py: qwen3's attention
// (per-head q/k norms), and on every decoder_sparse_step-th layer not in mlp_only_layers a sparse MoE block
// (softmax router, top-k, optionally renormalised; SwitchGLU experts). Reads num_experts or
// num_local_experts (mlx-lm only the former) and rope_parameters (mlx-lm only top-level rope_theta).
import * as v from "valibot";
import type * as mx from "../mlx/index.ts";
import { bool, int, type LanguageModel, type ModelContext, type WeightStore } from "./base.ts";
import type { Linear } from "./layers.ts";
import { swiglu } from "./layers.ts";
import { derived, type LlamaConfig, llamaFields, llamaSpec } from "./llama.ts";
import { softmaxTopKMoe, splitFusedExperts, stackExperts, SwitchGLU } from "./switch_layers.ts";
import { Decoder, DenseMlp, dropUnused, type Mlp } from "./transformer.ts";

export { configOptions } from "./llama.ts";

export const configSchema = v.pipe(
  v.looseObject({
    ...llamaFields({ rope_theta: 1000000 }),
    num_key_value_heads: int(),
    head_dim: v.optional(int()),
    tie_word_embeddings: bool(false),
    num_experts: int(),
    num_experts_per_tok: int(),
    moe_intermediate_size: int(),
    decoder_sparse_step: int(1),
    mlp_only_layers: v.optional(v.nullable(v.array(v.number())), null),
    norm_topk_prob: bool(false),
    // transformers' Qwen3-MoE attention never slides; a config asking for it would run otherwise than trained
    use_sliding_window: v.optional(v.literal(false)),
  }),
  v.transform((c) => ({ ...derived(c), mlp_only_layers: c.mlp_only_layers ?? [] })),
);
type Qwen3MoeConfig = LlamaConfig & v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 32768;
}

/** MLX exports name the experts `mlp.switch_mlp.*`; transformers stores them per expert (v4) or fused (v5). */
export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  dropUnused(w, config.tie_word_embeddings === true);
  const layers = Number(config.num_hidden_layers);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.mlp`;
    stackExperts(w, p, `${p}.switch_mlp`, ["gate_proj", "up_proj", "down_proj"]);
    splitFusedExperts(w, p, `${p}.switch_mlp`);
  }
  return w;
}

class SparseMoe implements Mlp {
  readonly gate: Linear;
  readonly switch_mlp: SwitchGLU;
  constructor(
    w: WeightStore,
    p: string,
    readonly c: Qwen3MoeConfig,
  ) {
    this.gate = w.linear(`${p}.gate`);
    this.switch_mlp = new SwitchGLU(w, `${p}.switch_mlp`, swiglu);
  }
  forward(x: mx.Array): mx.Array {
    return softmaxTopKMoe(this.switch_mlp, x, this.gate.forward(x), this.c.num_experts_per_tok, this.c.norm_topk_prob);
  }
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  const c = config as Qwen3MoeConfig;
  const sparse = (i: number) => !c.mlp_only_layers.includes(i) && c.num_experts > 0 && (i + 1) % c.decoder_sparse_step === 0;
  return new Decoder(
    llamaSpec(c, { qkNorm: "head", mlp: (ws, p, i) => (sparse(i) ? new SparseMoe(ws, p, c) : new DenseMlp(ws, p)) }),
    w,
    ctx,
  );
}

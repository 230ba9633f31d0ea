// GLM-4.5 / GLM-4.6 MoE; agrees with mlx-lm 0.32.2 models/glm4_moe.py: llama-style attention with partial
// rotary and optional per-head q/k norms, the first `first_k_dense_replace` layers dense, the rest a MoE
// block: sigmoid router with a score-correction bias and group-limited top-k (noaux_tc), weights taken from
// the uncorrected scores, renormalised and scaled by routed_scaling_factor, plus always-on shared experts.
// Differs from mlx-lm where transformers 5 reads otherwise (README): both rope spellings and rope scaling
// (mlx-lm builds a plain RoPE from top-level rope_theta only) and transformers' defaults for missing MoE keys
// (mlx-lm requires them); the multi-token-prediction layer is dropped.
import * as v from "valibot";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { bool, int, type LanguageModel, type ModelContext, num, type WeightStore } from "./base.ts";
import { swiglu } from "./layers.ts";
import { derived, type LlamaConfig, llamaFields, llamaSpec } from "./llama.ts";
import { combine, splitFusedExperts, stackExperts, SwitchGLU } from "./switch_layers.ts";
import { Decoder, DenseMlp, dropUnused, type Mlp } from "./transformer.ts";

export { configOptions } from "./llama.ts";

export const configSchema = v.pipe(
  v.looseObject({
    ...llamaFields({ rope_theta: 1000000, tie_word_embeddings: false, rms_norm_eps: 1e-5 }),
    moe_intermediate_size: int(),
    norm_topk_prob: bool(true),
    n_group: int(1),
    topk_group: int(1),
    n_shared_experts: v.optional(v.nullable(int()), 1),
    n_routed_experts: v.optional(v.nullable(int()), 128),
    routed_scaling_factor: num(1),
    num_experts_per_tok: int(),
    first_k_dense_replace: int(1),
    use_qk_norm: bool(false),
    scoring_func: v.optional(v.literal("sigmoid"), "sigmoid"),
    topk_method: v.optional(v.literal("noaux_tc"), "noaux_tc"),
  }),
  v.transform(derived),
);
type Glm4MoeConfig = LlamaConfig & v.InferOutput<typeof configSchema>;

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 131072;
}

/** Experts per expert (v4) or fused (v5) → switch_mlp; the MTP layer (index num_hidden_layers) dropped. */
export function sanitize(w: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  const c = config as Glm4MoeConfig;
  dropUnused(w, c.tie_word_embeddings);
  for (const k of [...w.keys()]) {
    if (k.startsWith(`model.layers.${c.num_hidden_layers}.`)) {
      w.get(k)!.dispose();
      w.delete(k);
    }
  }
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.mlp`;
    stackExperts(w, p, `${p}.switch_mlp`, ["gate_proj", "up_proj", "down_proj"]);
    splitFusedExperts(w, p, `${p}.switch_mlp`);
  }
  return w;
}

/** mlx-lm's group_expert_select: indices [.., k] and weights [.., k] from router logits [.., E]. */
function groupExpertSelect(logits: mx.Array, bias: mx.Array, c: Glm4MoeConfig): { indices: mx.Array; weights: mx.Array } {
  const orig = mx.sigmoid(logits.astype(mx.Dtype.float32));
  let scores = mx.add(orig, bias);
  const E = scores.shape.at(-1)!;
  if (c.n_group > 1) {
    const lead = scores.shape.slice(0, -1);
    scores = mx.reshape(scores, [...lead, c.n_group, E / c.n_group]);
    const groupScores = mx.sum(mx.topk(scores, 2, -1), -1, true);
    const drop = c.n_group - c.topk_group;
    const idx = mx.sliceAxis(mx.argpartition(groupScores, drop - 1, -2), -2, 0, drop);
    scores = mx.putAlongAxis(scores, idx, mx.scalar(0, scores.dtype), -2);
    scores = mx.reshape(scores, [...lead, E]);
  }
  const k = c.num_experts_per_tok;
  const indices = mx.sliceAxis(mx.argpartition(mx.negative(scores), k - 1, -1), -1, 0, k);
  let weights = mx.takeAlongAxis(orig, indices, -1);
  if (k > 1 && c.norm_topk_prob) weights = mx.divide(weights, mx.sum(weights, -1, true));
  return { indices, weights: mx.multiply(weights, c.routed_scaling_factor) };
}

class MoE implements Mlp {
  readonly gate: mx.Array;
  readonly e_score_correction_bias: mx.Array;
  readonly switch_mlp: SwitchGLU;
  readonly shared_experts: DenseMlp | null;
  constructor(
    w: WeightStore,
    p: string,
    readonly c: Glm4MoeConfig,
  ) {
    this.gate = w.get(`${p}.gate.weight`);
    this.e_score_correction_bias = w.get(`${p}.gate.e_score_correction_bias`);
    this.switch_mlp = new SwitchGLU(w, `${p}.switch_mlp`, swiglu);
    this.shared_experts = c.n_shared_experts ? new DenseMlp(w, `${p}.shared_experts`) : null;
  }
  forward(x: mx.Array): mx.Array {
    const { indices, weights } = groupExpertSelect(mx.matmul(x, mx.swapaxes(this.gate, -1, -2)), this.e_score_correction_bias, this.c);
    const y = combine(this.switch_mlp.forward(x, indices), weights);
    return this.shared_experts ? mx.add(y, this.shared_experts.forward(x)) : y;
  }
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  const c = config as Glm4MoeConfig;
  if (c.n_group > 1 && (c.n_routed_experts ?? 0) % c.n_group !== 0) {
    throw new MlxkError("unsupported_model", `glm4_moe: n_routed_experts ${c.n_routed_experts} is not a multiple of n_group ${c.n_group}`);
  }
  const sparse = (i: number) => c.n_routed_experts !== null && i >= c.first_k_dense_replace;
  return new Decoder(
    llamaSpec(c, { qkNorm: c.use_qk_norm ? "head" : null, mlp: (ws, p, i) => (sparse(i) ? new MoE(ws, p, c) : new DenseMlp(ws, p)) }),
    w,
    ctx,
  );
}

/**
 * Which tensors `convert --quantize` quantizes, as mlx-lm does: the weight of every Linear, Embedding and
 * SwitchLinear (2-D `*.weight`, or 3-D under `experts` / `switch_mlp`) whose last dim divides the group size, with
 * the per-layer overrides mlx-lm's model files declare (routers and gates at 8 bits), which it records in
 * config.json `quantization`. Pure: shapes and names in, decisions out.
 *
 * Exports: QuantParamsOut, quantDecision(modelType, key, shape, defaults), QUANT_BITS, DEFAULT_GROUP
 */
export interface QuantParamsOut {
  group_size: number;
  bits: number;
  mode?: "affine" | "mxfp4";
}

export const QUANT_BITS = [2, 3, 4, 5, 6, 8] as const;

/** mlx-lm models' `quant_predicate`s (mlx-lm 0.32): module paths kept at 8 bits / group 64. */
const OVERRIDES: Record<string, (path: string) => boolean> = {
  qwen3_moe: (p) => p.endsWith("mlp.gate"),
  qwen3_next: (p) => p.endsWith("mlp.gate") || p.endsWith("shared_expert_gate"),
  qwen3_5: (p) => p.endsWith("mlp.gate") || p.endsWith("shared_expert_gate"),
  qwen3_5_moe: (p) => p.endsWith("mlp.gate") || p.endsWith("shared_expert_gate"),
  gpt_oss: (p) => p.endsWith("router"),
  lfm2_moe: (p) => p.endsWith("feed_forward.gate"),
  gemma4_text: (p) => p.endsWith("router.proj"),
  granite: (p) => p.endsWith("self_attn.o_proj") || p.endsWith("mlp.down_proj") || p === "lm_head",
  granitemoe: (p) => p.endsWith("block_sparse_moe.router.layer") || p.endsWith("self_attn.o_proj") || p.endsWith("mlp.down_proj") || p === "lm_head",
};

export type Decision = { quantize: false } | { quantize: true; params: QuantParamsOut; override: boolean };

export function quantDecision(modelType: string, key: string, shape: readonly number[], defaults: QuantParamsOut): Decision {
  if (!key.endsWith(".weight")) return { quantize: false };
  const path = key.slice(0, -".weight".length);
  const switchLinear = shape.length === 3 && /(^|\.)(experts|switch_mlp)(\.|$)/.test(path);
  if (shape.length !== 2 && !switchLinear) return { quantize: false };
  const override = OVERRIDES[modelType]?.(path) === true;
  const params: QuantParamsOut = override ? { group_size: 64, bits: 8 } : defaults;
  // mlx-lm checks the divisibility against the run's group size before asking the model's predicate
  if (shape.at(-1)! % defaults.group_size !== 0 || shape.at(-1)! % params.group_size !== 0) return { quantize: false };
  return { quantize: true, params, override };
}

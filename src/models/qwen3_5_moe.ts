// Qwen3.5 MoE; must agree with mlx-lm 0.32.2 models/qwen3_5_moe.py (the model is qwen3_5.py's with
// qwen3_next.py's sparse MoE block in every layer). Only the checkpoint renames differ: transformers 5's
// fused experts (`experts.gate_up_proj` [E, 2I, H], gate half first, and `experts.down_proj`) become
// `switch_mlp.{gate,up,down}_proj`; per-expert tensors (`experts.<e>.…`) are stacked the same way. The
// sparse block itself is chosen by qwen3_5.ts's createModel whenever num_experts > 0, as mlx-lm's DecoderLayer does.
import type * as mx from "../mlx/index.ts";
import { castPredicate, configOptions, configSchema, contextLength, createModel, type Qwen3_5Config, sanitizeText, wrapperKeys } from "./qwen3_5.ts";
import { splitFusedExperts, stackExperts } from "./switch_layers.ts";

export { castPredicate, configOptions, configSchema, contextLength, createModel };

export function sanitize(w0: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array> {
  const c = config as Qwen3_5Config;
  const w = wrapperKeys(w0);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `language_model.model.layers.${l}.mlp`;
    splitFusedExperts(w, p, `${p}.switch_mlp`);
    stackExperts(w, p, `${p}.switch_mlp`, ["gate_proj", "up_proj", "down_proj"]);
  }
  return sanitizeText(w, config);
}

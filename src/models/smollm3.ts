// SmolLM3; agrees with mlx-lm 0.32.2 models/smollm3.py: llama with no position embedding (NoPE) on the
// layers `no_rope_layers` marks 0 (default: every no_rope_layer_interval-th layer).
import * as v from "valibot";
import { int, type LanguageModel, type ModelContext, type WeightStore } from "./base.ts";
import { derived, type LlamaConfig, llamaFields, llamaSpec, makeRope } from "./llama.ts";
import { Decoder } from "./transformer.ts";

export { configOptions, sanitize } from "./llama.ts";

export const configSchema = v.pipe(
  v.looseObject({
    ...llamaFields({ rope_theta: 2000000 }),
    no_rope_layer_interval: int(4),
    no_rope_layers: v.optional(v.nullable(v.array(v.number())), null),
    // transformers' SmolLM3 slides on every layer with use_sliding_window; mlx-lm has no such path
    use_sliding_window: v.optional(v.literal(false)),
  }),
  v.transform((c) => {
    const d = derived(c);
    const noRope = c.no_rope_layers ?? Array.from({ length: c.num_hidden_layers }, (_, i) => Number((i + 1) % c.no_rope_layer_interval !== 0));
    return { ...d, no_rope_layers: noRope };
  }),
  v.check((c) => c.no_rope_layers.length === c.num_hidden_layers, "no_rope_layers must have one entry per layer"),
);

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 65536;
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  const c = config as LlamaConfig & { no_rope_layers: number[] };
  const rope = makeRope(c);
  return new Decoder(llamaSpec(c, { ropes: [rope], ropeFor: (i) => (c.no_rope_layers[i] ? rope : null) }), w, ctx);
}

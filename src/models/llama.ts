// Llama (also Mistral, SmolLM2); agrees with mlx-lm 0.32.2 models/llama.py, except that Mistral's sliding
// window is honoured as transformers does. The shared decoder is
// transformer.ts; this file holds the llama config (both transformers spellings via config.ts) and the
// pieces the llama-derived families reuse.
import * as v from "valibot";
import { bool, int, type LanguageModel, type ModelContext, num, ropeScaling, type WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import { initializeRope, type RopeLayer } from "./rope.ts";
import { Decoder, DenseMlp, type DecoderSpec, dropUnused } from "./transformer.ts";

/** The config keys of llama.py's ModelArgs; families override the defaults they differ in. */
export function llamaFields(d: { rope_theta?: number; tie_word_embeddings?: boolean; rms_norm_eps?: number; max_position_embeddings?: number } = {}) {
  return {
    hidden_size: int(),
    num_hidden_layers: int(),
    intermediate_size: int(),
    num_attention_heads: int(),
    num_key_value_heads: v.optional(int()),
    head_dim: v.optional(int()),
    rms_norm_eps: num(d.rms_norm_eps ?? 1e-6),
    vocab_size: int(),
    rope_theta: num(d.rope_theta ?? 10000),
    rope_traditional: bool(false),
    rope_scaling: ropeScaling,
    partial_rotary_factor: num(1),
    tie_word_embeddings: bool(d.tie_word_embeddings ?? true),
    max_position_embeddings: v.optional(int()),
    layer_types: v.optional(v.array(v.string())),
    sliding_window: v.optional(v.nullable(int())),
  };
}

type LlamaFields = v.InferOutput<v.ObjectSchema<ReturnType<typeof llamaFields>, undefined>>;

/** head_dim, kv heads and layer types filled in. */
export function derived<T extends LlamaFields>(c: T) {
  return {
    ...c,
    num_key_value_heads: c.num_key_value_heads ?? c.num_attention_heads,
    head_dim: c.head_dim ?? Math.floor(c.hidden_size / c.num_attention_heads),
    layer_types: c.layer_types ?? Array.from({ length: c.num_hidden_layers }, () => "full_attention"),
  };
}
export type LlamaConfig = ReturnType<typeof derived<LlamaFields>>;

export const configOptions: NormalizeOptions = { activations: ["silu"] };
export const configSchema = v.pipe(
  v.looseObject(llamaFields()),
  v.transform((c) => derived(mistralWindow(c))),
);

/**
 * transformers' Mistral slides every layer over sliding_window (default 4096; null = full attention); mlx-lm's
 * llama ignores it, which changes the answer past the window. Other model types pass through.
 */
export function mistralWindow<T extends LlamaFields>(c: T): T {
  if ((c as { model_type?: unknown }).model_type !== "mistral") return c;
  const sliding_window = c.sliding_window === undefined ? 4096 : c.sliding_window;
  const slide = !c.layer_types && typeof sliding_window === "number";
  return { ...c, sliding_window, layer_types: slide ? Array.from({ length: c.num_hidden_layers }, () => "sliding_attention") : c.layer_types };
}

export function contextLength(c: Record<string, unknown>): number {
  return typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : 4096;
}

export function sanitize(w: Map<string, import("../mlx/index.ts").Array>, config: Record<string, unknown>) {
  return dropUnused(w, config.tie_word_embeddings !== false);
}

export function makeRope(c: LlamaConfig): RopeLayer {
  return initializeRope({
    dims: Math.floor(c.head_dim * c.partial_rotary_factor),
    base: c.rope_theta,
    traditional: c.rope_traditional,
    scaling: c.rope_scaling as never,
    maxPositionEmbeddings: c.max_position_embeddings,
  });
}

/** The llama decoder for config `c`; families pass what differs. */
export function llamaSpec(c: LlamaConfig, over: Partial<DecoderSpec> = {}): DecoderSpec {
  const rope = over.ropes ? null : makeRope(c);
  return {
    numLayers: c.num_hidden_layers,
    heads: c.num_attention_heads,
    kvHeads: c.num_key_value_heads,
    headDim: c.head_dim,
    normEps: c.rms_norm_eps,
    tieWordEmbeddings: c.tie_word_embeddings,
    layerTypes: c.layer_types,
    slidingWindow: c.sliding_window ?? null,
    ropeFor: () => rope,
    ropes: rope ? [rope] : [],
    attnScale: c.head_dim ** -0.5,
    mlp: (w, p) => new DenseMlp(w, p),
    ...over,
  };
}

export function createModel(config: Record<string, unknown>, w: WeightStore, ctx: ModelContext): LanguageModel {
  return new Decoder(llamaSpec(config as LlamaConfig), w, ctx);
}

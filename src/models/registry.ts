/**
 * The one table of architectures mlxk can run, keyed by config.json `model_type`.
 * Each row is a lazy loader, so importing this file never loads libmlx (`list`/`health` read it too).
 * Aliases are rows pointing at another model's file (mistral → llama), never copies.
 */
import { MlxkError } from "../errors.ts";
import type { ModelModule } from "./base.ts";

type Loader = () => Promise<ModelModule>;

const MODELS: Record<string, Loader> = {
  llama: () => import("./llama.ts"),
  mistral: () => import("./llama.ts"),
  qwen2: () => import("./qwen2.ts"),
  qwen3: () => import("./qwen3.ts"),
  phi3: () => import("./phi3.ts"),
  gemma3_text: () => import("./gemma3_text.ts"),
  gpt_oss: () => import("./gpt_oss.ts"),
  gemma3: () => import("./gemma3.ts"),
  qwen3_moe: () => import("./qwen3_moe.ts"),
  mistral3: () => import("./mistral3.ts"),
  ministral3: () => import("./ministral3.ts"),
  smollm3: () => import("./smollm3.ts"),
  granite: () => import("./granite.ts"),
  olmo2: () => import("./olmo2.ts"),
  qwen3_5: () => import("./qwen3_5.ts"),
  // transformers' text-only Qwen3_5ForCausalLM checkpoints (mlx-lm has no row for them).
  qwen3_5_text: () => import("./qwen3_5.ts"),
  qwen3_5_moe: () => import("./qwen3_5_moe.ts"),
  qwen3_5_moe_text: () => import("./qwen3_5_moe.ts"),
  qwen3_next: () => import("./qwen3_next.ts"),
  lfm2: () => import("./lfm2.ts"),
  glm4_moe: () => import("./glm4_moe.ts"),
  gemma4: () => import("./gemma4.ts"),
  gemma4_text: () => import("./gemma4_text.ts"),
};

/** Every `model_type` in the registry, sorted. */
export const MODEL_TYPES: readonly string[] = Object.keys(MODELS).sort();

export function hasModelType(modelType: string): boolean {
  return Object.hasOwn(MODELS, modelType);
}

/** The model module for `modelType`; an unknown type is an `unsupported_model` error naming the supported ones. */
export async function loadModelModule(modelType: string | undefined): Promise<ModelModule> {
  const loader = modelType === undefined ? undefined : MODELS[modelType];
  if (!loader || !Object.hasOwn(MODELS, modelType!)) {
    const what = modelType === undefined ? "config.json has no model_type" : `model_type '${modelType}' is not supported`;
    throw new MlxkError("unsupported_model", `${what} (supported: ${MODEL_TYPES.join(", ")})`);
  }
  return loader();
}

/**
 * Embedding models: encoder architectures (one file each, exporting an EncoderModule) and the decoder
 * `model_type`s whose language model doubles as an embedder (Qwen3-Embedding: last-token pooling).
 */
type EncoderLoader = () => Promise<import("./encoder.ts").EncoderModule>;
const ENCODERS: Record<string, EncoderLoader> = {
  bert: () => import("./bert.ts"),
  "xlm-roberta": () => import("./xlm_roberta.ts"),
  modernbert: () => import("./modernbert.ts"),
  nomic_bert: () => import("./nomic_bert.ts"),
};
const DECODER_EMBEDDERS: ReadonlySet<string> = new Set(["qwen3"]);

export const ENCODER_MODEL_TYPES: readonly string[] = Object.keys(ENCODERS).sort();

/** Runnable as an embedder: an encoder row, or a decoder type we pool over. */
export function isEmbeddingModelType(modelType: string, kind: "encoder" | "decoder"): boolean {
  return kind === "encoder" ? Object.hasOwn(ENCODERS, modelType) : DECODER_EMBEDDERS.has(modelType);
}

export async function loadEncoderModule(modelType: string): Promise<import("./encoder.ts").EncoderModule> {
  const loader = Object.hasOwn(ENCODERS, modelType) ? ENCODERS[modelType] : undefined;
  if (!loader) throw new MlxkError("unsupported_model", `encoder model_type '${modelType}' is not supported for embeddings (supported: ${ENCODER_MODEL_TYPES.join(", ")})`);
  return loader();
}

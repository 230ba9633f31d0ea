/**
 * The `model_type`s mlxk can run. The ONE place `list`, `health`, `show` and the server read runtime
 * compatibility from; the inference work replaces this set with its model registry.
 *
 * Exports: SUPPORTED_MODEL_TYPES, isSupportedModelType(modelType)
 */
export const SUPPORTED_MODEL_TYPES: ReadonlySet<string> = new Set([
  "llama",
  "mistral",
  "qwen2",
  "qwen3",
  "phi3",
  "gemma3_text",
  "gpt_oss",
]);

export function isSupportedModelType(modelType: string): boolean {
  return SUPPORTED_MODEL_TYPES.has(modelType);
}

/**
 * The `model_type`s mlxk can run. The ONE place `list`, `health`, `show` and the server read runtime
 * compatibility from; derived from the model registry (which loads no MLX code at import time).
 *
 * Exports: SUPPORTED_MODEL_TYPES, isSupportedModelType(modelType)
 */
import { MODEL_TYPES, hasModelType } from "./registry.ts";

export const SUPPORTED_MODEL_TYPES: ReadonlySet<string> = new Set(MODEL_TYPES);

export function isSupportedModelType(modelType: string): boolean {
  return hasModelType(modelType);
}

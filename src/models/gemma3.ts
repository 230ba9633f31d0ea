// Gemma 3 multimodal wrapper (Gemma3ForConditionalGeneration: gemma-3-4b/12b/27b), text path; agrees with
// mlx-lm 0.32.2 models/gemma3.py except that the text model's keys (vocab_size included) are read from
// text_config, where mlx-lm takes vocab_size from the top level.
import type * as mx from "../mlx/index.ts";
import type { NormalizeOptions } from "./config.ts";
import { configOptions as textOptions, sanitize as textSanitize } from "./gemma3_text.ts";
import { stripWrapper } from "./wrapper.ts";

export { configSchema, contextLength, createModel } from "./gemma3_text.ts";

export const configOptions: NormalizeOptions = { ...textOptions, textConfig: true };

export function sanitize(w: Map<string, mx.Array>): Map<string, mx.Array> {
  return textSanitize(stripWrapper(w));
}

/**
 * Text side of generation (no MLX needed). Exports:
 *
 * - `TextPipeline`, `loadTextPipeline(dirOrGguf)`, `textPipelineFromGguf(gguf)`: tokenizer + chat template +
 *   eos ids + factories for the streaming pieces below; `encodePrompt` applies the BOS rule of mlx-lm.
 * - `TextTokenizer`: HF tokenizer.json over `@huggingface/tokenizers` (encode/decode, vocab, special tokens).
 * - Chat templates: `renderChatTemplate`, `loadChatTemplates`, `parseChatTemplateField`, `selectChatTemplate`.
 * - `createDetokenizer(tokenizer)`: streaming detokenizer that never emits broken UTF-8.
 * - `StopStringMatcher`, `CHAT_STOP_STRINGS`: user/chat stop strings over streamed text.
 * - `resolveStopTokens`: the multi-EOS id set (config, generation_config, tokenizer_config, contract rules).
 * - `ReasoningParser`, `detectReasoningFormat`, `promptOpensReasoning`: `<think>` / harmony channel split.
 * - `sampleToken`, `Rng`, `DEFAULT_SAMPLING`, `applyRepetitionPenalty`, `topKIndices`: sampling over Float32Array logits.
 *
 * The decode loop (engine) lives elsewhere and combines these per token:
 *   id = sampleToken(logits, params, rng, {history}).token → stop if pipeline.eosTokenIds.has(id)
 *   → text = detok.add(id) → stopMatcher.push(text) → reasoningParser.push(...) → emit.
 */
export { TextPipeline, loadTextPipeline, textPipelineFromGguf, fallbackChatFormat, type ChatTemplateOptions } from "./text.ts";
export { TextTokenizer, patchTokenizerJson, tokenString, type DecoderKind } from "./tokenizer.ts";
export {
  renderChatTemplate,
  loadChatTemplates,
  parseChatTemplateField,
  selectChatTemplate,
  TemplateError,
  type ChatMessage,
  type ChatTemplates,
  type RenderOptions,
} from "./chat-template.ts";
export { createDetokenizer, type StreamingDetokenizer, type DetokenizerOptions } from "./detokenizer.ts";
export { StopStringMatcher, CHAT_STOP_STRINGS, type StopResult } from "./stop.ts";
export { resolveStopTokens, type StopToken } from "./stop-tokens.ts";
export {
  ReasoningParser,
  detectReasoningFormat,
  promptOpensReasoning,
  type ReasoningFormat,
  type ReasoningDelta,
} from "./reasoning.ts";
export {
  sampleToken,
  Rng,
  DEFAULT_SAMPLING,
  applyRepetitionPenalty,
  topKIndices,
  type SampledToken,
  type SampleOptions,
} from "./sample.ts";

/**
 * The text side of a model, in one object: tokenizer, chat template, stop tokens, streaming
 * detokenizer, stop strings and reasoning parser. Built from a model directory (tokenizer.json,
 * tokenizer_config.json, config.json, generation_config.json, chat_template.*) or from a GGUF file
 * (everything from its metadata). The decode loop plugs these together; nothing here needs MLX.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { MlxkError } from "../errors.ts";
import { ggufTokenizer } from "../gguf/tokenizer.ts";
import { type GgufFile, readGguf } from "../gguf/reader.ts";
import {
  type ChatMessage,
  type ChatTemplates,
  loadChatTemplates,
  parseChatTemplateField,
  renderChatTemplate,
  selectChatTemplate,
} from "./chat-template.ts";
import { createDetokenizer, type DetokenizerOptions, type StreamingDetokenizer } from "./detokenizer.ts";
import { detectReasoningFormat, promptOpensReasoning, ReasoningParser, type ReasoningFormat } from "./reasoning.ts";
import { StopStringMatcher } from "./stop.ts";
import { resolveStopTokens, type StopToken } from "./stop-tokens.ts";
import { TextTokenizer } from "./tokenizer.ts";

export interface ChatTemplateOptions {
  /** @default true */
  addGenerationPrompt?: boolean;
  tools?: unknown[];
  /** chat_template_kwargs, e.g. `{ enable_thinking: false }`. */
  kwargs?: Record<string, unknown>;
  /** A named template from a template list (tokenizer_config `chat_template: [{name, template}]`). */
  templateName?: string;
  /** Override the model's template source. */
  template?: string;
}

export interface TextPipelineParts {
  tokenizer: TextTokenizer;
  chatTemplates: ChatTemplates | null;
  config?: Record<string, unknown>;
  generationConfig?: Record<string, unknown>;
  warnings?: string[];
}

export class TextPipeline {
  readonly tokenizer: TextTokenizer;
  readonly chatTemplates: ChatTemplates | null;
  readonly config: Record<string, unknown>;
  readonly generationConfig: Record<string, unknown>;
  readonly reasoningFormat: ReasoningFormat | null;
  /** Generation ends when one of these ids is sampled (multi-EOS). */
  readonly eosTokenIds: ReadonlySet<number>;
  /** The same set with where each id came from. */
  readonly stopTokens: readonly StopToken[];
  /** Non-fatal notes from loading (e.g. GGUF pre-tokenizer fallbacks). */
  readonly warnings: readonly string[];

  constructor(parts: TextPipelineParts) {
    this.tokenizer = parts.tokenizer;
    this.chatTemplates = parts.chatTemplates;
    this.config = parts.config ?? {};
    this.generationConfig = parts.generationConfig ?? {};
    this.warnings = parts.warnings ?? [];
    const tok = this.tokenizer;
    this.reasoningFormat = detectReasoningFormat({
      chatTemplate: this.chatTemplates ? Object.values(this.chatTemplates).join("\n") : null,
      hasToken: (t) => tok.tokenToId(t) !== undefined,
    });
    const stop = resolveStopTokens({
      tokenizer: tok,
      config: this.config,
      generationConfig: this.generationConfig,
      reasoning: this.reasoningFormat,
    });
    this.eosTokenIds = stop.ids;
    this.stopTokens = stop.tokens;
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplates !== null;
  }

  /** Plain encode (post-processor BOS/EOS applied unless `addSpecialTokens: false`). */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, opts);
  }

  /** Encode a prompt for generation: add BOS only when the text does not already start with it (mlx-lm rule). */
  encodePrompt(prompt: string): number[] {
    const bos = this.tokenizer.bosToken;
    const hasBos = bos !== null && bos.length > 0 && prompt.startsWith(bos);
    return this.tokenizer.encode(prompt, { addSpecialTokens: !hasBos });
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    return this.tokenizer.decode(ids, opts);
  }

  /**
   * Render messages to a prompt string with the model's chat template; without a template, the
   * mlx-knife fallback format (`System:`/`Human:`/`Assistant:` blocks, then `Assistant: `).
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    const source =
      opts.template ??
      (this.chatTemplates
        ? selectChatTemplate(this.chatTemplates, { name: opts.templateName, hasTools: (opts.tools?.length ?? 0) > 0 })
        : null);
    if (source === null) return fallbackChatFormat(messages);
    const tok = this.tokenizer;
    return renderChatTemplate(source, {
      messages: [...messages],
      addGenerationPrompt: opts.addGenerationPrompt ?? true,
      bosToken: tok.bosToken,
      eosToken: tok.eosToken,
      specialTokens: { unk_token: tok.unkToken, pad_token: tok.padToken },
      tools: opts.tools,
      kwargs: opts.kwargs,
    });
  }

  createDetokenizer(opts: DetokenizerOptions = {}): StreamingDetokenizer {
    return createDetokenizer(this.tokenizer, opts);
  }

  createStopMatcher(stops: readonly string[]): StopStringMatcher {
    return new StopStringMatcher(stops);
  }

  /** A reasoning parser for output following `prompt`, or null when the model has no reasoning markers. */
  createReasoningParser(prompt: string, opts: { toolCalls?: boolean } = {}): ReasoningParser | null {
    const format = this.reasoningFormat;
    if (format === null) return null;
    return new ReasoningParser({ format, startInReasoning: promptOpensReasoning(prompt, format), toolCalls: opts.toolCalls });
  }
}

const ROLE_LABELS: Record<string, string> = { system: "System", user: "Human", assistant: "Assistant" };

/** mlx-knife's format for models without a chat template. */
export function fallbackChatFormat(messages: readonly ChatMessage[]): string {
  const blocks = messages.map((m) => {
    const content = typeof m.content === "string" ? m.content : "";
    return `${ROLE_LABELS[m.role] ?? m.role}: ${content}`;
  });
  return `${blocks.join("\n\n")}\n\nAssistant: `;
}

function readJson(path: string, required: boolean): Record<string, unknown> | undefined {
  if (!existsSync(path)) {
    if (required) throw new MlxkError("unsupported_model", `Missing ${path}`);
    return undefined;
  }
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new MlxkError("unsupported_model", `Invalid JSON in ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** Load the text pipeline of a model directory (HF layout) or a `.gguf` file. */
export function loadTextPipeline(path: string): TextPipeline {
  if (statSync(path).isFile()) return textPipelineFromGguf(readGguf(path), path);
  const tokenizerJson = readJson(join(path, "tokenizer.json"), true) as Record<string, unknown>;
  const tokenizerConfig = readJson(join(path, "tokenizer_config.json"), false) ?? {};
  return new TextPipeline({
    tokenizer: new TextTokenizer(tokenizerJson, tokenizerConfig),
    chatTemplates: loadChatTemplates(path, tokenizerConfig),
    config: readJson(join(path, "config.json"), false),
    generationConfig: readJson(join(path, "generation_config.json"), false),
  });
}

/** The text pipeline of a GGUF file, from its `tokenizer.*` metadata alone. */
export function textPipelineFromGguf(f: GgufFile, path = "file"): TextPipeline {
  const g = ggufTokenizer(f, path);
  return new TextPipeline({
    tokenizer: new TextTokenizer(g.tokenizerJson, g.tokenizerConfig),
    chatTemplates: parseChatTemplateField(g.tokenizerConfig.chat_template),
    warnings: g.warnings,
  });
}

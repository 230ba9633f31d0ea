/**
 * Anthropic Messages API ⇄ the engine contract. Pure: a request becomes chat messages + sampling, engine
 * events become content blocks (non-streamed) or the SSE event sequence of the Anthropic SDKs. What this
 * server cannot honour (images, documents, server tools) is a 400 naming the field.
 */
import * as v from "valibot";
import type { ChatMessage, GenerateChunk, GenerateDone, GenerateRequest, SamplingParams } from "../../engine/types.ts";
import { DEFAULT_SAMPLING } from "../../generate/sample.ts";
import { badRequest } from "../errors.ts";

const nullish = <T extends v.GenericSchema>(s: T) => v.optional(v.nullable(s));
const num = (min: number, max: number) => v.pipe(v.number("must be a number"), v.minValue(min, `must be >= ${min}`), v.maxValue(max, `must be <= ${max}`));
const int = (min: number) => v.pipe(v.number("must be an integer"), v.integer("must be an integer"), v.minValue(min, `must be >= ${min}`));

const Block = v.looseObject({ type: v.string("must be a string") });
const Content = v.union([v.string(), v.array(Block, "must be an array of content blocks")], "must be a string or an array of content blocks");

export const MessageParamSchema = v.looseObject({
  role: v.picklist(["user", "assistant"], "must be 'user' or 'assistant'"),
  content: Content,
});

const common = {
  model: nullish(v.string("must be a string")),
  messages: v.pipe(v.array(MessageParamSchema, "must be an array of messages"), v.minLength(1, "must contain at least one message")),
  system: nullish(Content),
  tools: nullish(v.array(v.looseObject({ name: v.optional(v.string()) }), "must be an array of tools")),
  tool_choice: nullish(v.looseObject({ type: v.string() })),
  thinking: nullish(v.looseObject({ type: v.string(), budget_tokens: v.optional(v.number()) })),
};

export const MessagesRequestSchema = v.looseObject({
  ...common,
  max_tokens: int(1),
  temperature: nullish(num(0, 1)),
  top_p: nullish(num(0, 1)),
  top_k: nullish(int(0)),
  stop_sequences: nullish(v.pipe(v.array(v.pipe(v.string(), v.minLength(1, "must not be empty"))), v.maxLength(16, "at most 16 stop sequences"))),
  stream: nullish(v.boolean("must be a boolean")),
  metadata: nullish(v.looseObject({})),
  service_tier: nullish(v.string()),
});
export type MessagesRequest = v.InferOutput<typeof MessagesRequestSchema>;

export const CountTokensRequestSchema = v.looseObject(common);
export type CountTokensRequest = v.InferOutput<typeof CountTokensRequestSchema>;

function blocksText(content: string | { type: string }[], param: string): string {
  if (typeof content === "string") return content;
  const texts: string[] = [];
  content.forEach((raw, j) => {
    const b = raw as { type: string; text?: unknown };
    const p = `${param}[${j}]`;
    if (b.type === "text") {
      if (typeof b.text !== "string") throw badRequest(`${p}.text must be a string`, `${p}.text`, "invalid_value");
      texts.push(b.text);
    } else if (b.type === "thinking" || b.type === "redacted_thinking") {
      // past thinking is not re-rendered: chat templates strip earlier reasoning
    } else if (b.type === "tool_use" || b.type === "tool_result") {
      throw badRequest(`${p}.type '${b.type}': tool use is not available on this server yet`, `${p}.type`);
    } else {
      throw badRequest(`${p}.type '${b.type}' is not supported: this server accepts text blocks only`, `${p}.type`);
    }
  });
  return texts.join("\n");
}

/** Requests → chat messages (system first). Shared by /v1/messages and count_tokens. */
export function toMessages(body: Pick<MessagesRequest, "messages" | "system" | "tools" | "tool_choice" | "thinking">): GenerateRequest["input"] {
  if (body.tools != null && body.tools.length > 0) throw badRequest("Parameter 'tools' is not supported: tool use is not available on this server yet", "tools");
  if (body.tool_choice != null && body.tool_choice.type !== "none" && body.tool_choice.type !== "auto") {
    throw badRequest("Parameter 'tool_choice' is not supported: tool use is not available on this server yet", "tool_choice");
  }
  const messages: ChatMessage[] = [];
  if (body.system != null) {
    const s = blocksText(body.system, "system");
    if (s !== "") messages.push({ role: "system", content: s });
  }
  body.messages.forEach((m, i) => messages.push({ role: m.role, content: blocksText(m.content, `messages[${i}].content`) }));
  const t = body.thinking?.type;
  if (t != null && t !== "enabled" && t !== "disabled" && t !== "adaptive") throw badRequest(`thinking.type '${t}' must be 'enabled', 'disabled' or 'adaptive'`, "thinking.type", "invalid_value");
  // "disabled" flips the template switch where the model has one; a thinking budget is bounded by max_tokens
  return t === "disabled" ? { messages, templateKwargs: { enable_thinking: false } } : { messages };
}

export interface MessagesPlan {
  input: GenerateRequest["input"];
  maxTokens: number;
  sampling: SamplingParams;
  stop: string[];
  stream: boolean;
}

export function fromMessagesRequest(body: MessagesRequest): MessagesPlan {
  const budget = body.thinking?.budget_tokens;
  if (budget != null && budget >= body.max_tokens) {
    throw badRequest("thinking.budget_tokens must be less than max_tokens", "thinking.budget_tokens", "invalid_value");
  }
  return {
    input: toMessages(body),
    maxTokens: body.max_tokens,
    sampling: {
      ...DEFAULT_SAMPLING,
      temperature: body.temperature ?? DEFAULT_SAMPLING.temperature,
      topP: body.top_p ?? DEFAULT_SAMPLING.topP,
      topK: body.top_k ?? DEFAULT_SAMPLING.topK,
    },
    stop: body.stop_sequences ?? [],
    stream: body.stream === true,
  };
}

// ---- output -------------------------------------------------------------------------------------------

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use";

export function toStopReason(done: GenerateDone): { stop_reason: StopReason; stop_sequence: string | null } {
  if (done.finishReason === "length") return { stop_reason: "max_tokens", stop_sequence: null };
  if (done.stopSequence !== undefined) return { stop_reason: "stop_sequence", stop_sequence: done.stopSequence };
  return { stop_reason: "end_turn", stop_sequence: null };
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

export function toUsage(u: GenerateDone["usage"]): Usage {
  return { input_tokens: u.promptTokens, output_tokens: u.completionTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
}

export type ContentBlock = { type: "thinking"; thinking: string; signature: string } | { type: "text"; text: string };

export interface MessageObject {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: ContentBlock[];
  stop_reason: StopReason | null;
  stop_sequence: string | null;
  usage: Usage;
}

export function newMessageId(): string {
  return `msg_${crypto.randomUUID().replaceAll("-", "")}`;
}

/** Thinking carries no signature here (no hosted verification); an empty string is what local servers send. */
export function toMessage(id: string, model: string, out: { text: string; reasoning: string; done: GenerateDone }): MessageObject {
  const content: ContentBlock[] = [];
  if (out.reasoning !== "") content.push({ type: "thinking", thinking: out.reasoning, signature: "" });
  content.push({ type: "text", text: out.text });
  return { id, type: "message", role: "assistant", model, content, ...toStopReason(out.done), usage: toUsage(out.done.usage) };
}

export type StreamEvent = { type: string } & Record<string, unknown>;

/** The streamed event sequence: message_start, ping, blocks (start/delta/stop), message_delta, message_stop. */
export class MessageEvents {
  private index = -1;
  private open: "thinking" | "text" | null = null;

  constructor(
    private readonly id: string,
    private readonly model: string,
  ) {}

  start(promptTokens: number): StreamEvent[] {
    const message: MessageObject = {
      id: this.id,
      type: "message",
      role: "assistant",
      model: this.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: promptTokens, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    };
    return [{ type: "message_start", message }, { type: "ping" }];
  }

  private openBlock(kind: "thinking" | "text"): StreamEvent[] {
    const out = this.closeBlock();
    this.index++;
    this.open = kind;
    const block = kind === "thinking" ? { type: "thinking", thinking: "", signature: "" } : { type: "text", text: "" };
    out.push({ type: "content_block_start", index: this.index, content_block: block });
    return out;
  }

  private closeBlock(): StreamEvent[] {
    if (this.open === null) return [];
    const out: StreamEvent[] = [];
    if (this.open === "thinking") out.push({ type: "content_block_delta", index: this.index, delta: { type: "signature_delta", signature: "" } });
    out.push({ type: "content_block_stop", index: this.index });
    this.open = null;
    return out;
  }

  chunk(c: GenerateChunk): StreamEvent[] {
    const out: StreamEvent[] = [];
    if (c.reasoning !== "") {
      if (this.open !== "thinking") out.push(...this.openBlock("thinking"));
      out.push({ type: "content_block_delta", index: this.index, delta: { type: "thinking_delta", thinking: c.reasoning } });
    }
    if (c.text !== "") {
      if (this.open !== "text") out.push(...this.openBlock("text"));
      out.push({ type: "content_block_delta", index: this.index, delta: { type: "text_delta", text: c.text } });
    }
    return out;
  }

  finish(done: GenerateDone): StreamEvent[] {
    const out = this.open === "text" ? [] : this.openBlock("text");
    out.push(...this.closeBlock());
    out.push({ type: "message_delta", delta: toStopReason(done), usage: { output_tokens: done.usage.completionTokens } });
    out.push({ type: "message_stop" });
    return out;
  }
}

/**
 * Pure translation between the OpenAI wire format and the engine contract (src/engine/types.ts).
 * No HTTP, no engine calls: request → GenerateRequest parts, engine events → response bodies and chunks.
 * Anything a request asks for that we cannot honour is a 400 naming the field, never silently dropped.
 */
import type { ChatMessage, GenerateDone, GenerateRequest, SamplingParams, TokenLogprob, ToolCall } from "../../engine/types.ts";
import type * as v from "valibot";
import type {
  CompletionLogprobsSchema,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatMessageIn,
  CompletionRequest,
  TextCompletion,
} from "../../schemas/openai.ts";
import { DEFAULT_SAMPLING } from "../../generate/sample.ts";
import { badRequest } from "../errors.ts";
import { rejectUnhonoured } from "./unhonoured.ts";
import { type OpenAIToolCall, parseMessageToolCalls, type ToolFields, toolFields, toOpenAIToolCalls } from "./tools.ts";

export { chatDelta } from "./tools.ts";

/** What the route needs besides the engine request: how to shape the answer. */
export interface Plan {
  /** Null when the request names no limit; the model manager then picks the server default. */
  maxTokens: number | null;
  sampling: SamplingParams;
  stop: string[];
  /** Top alternatives per token; undefined = no logprobs. */
  topLogprobs: number | undefined;
  stream: boolean;
  includeUsage: boolean;
  /** tools, tool_choice, parallel_tool_calls, response_format (chat only). */
  tools?: ToolFields;
}

type Common = Pick<
  ChatCompletionRequest,
  | "max_tokens"
  | "temperature"
  | "top_p"
  | "top_k"
  | "min_p"
  | "repetition_penalty"
  | "seed"
  | "stop"
  | "stream"
  | "stream_options"
  | "n"
  | "presence_penalty"
  | "frequency_penalty"
  | "logit_bias"
>;

function rejectUnsupportedCommon(body: Common): void {
  if (body.n != null && body.n > 1) throw badRequest("Parameter 'n' > 1 is not supported: this server returns one choice per request", "n");
  if (body.presence_penalty) {
    throw badRequest("Parameter 'presence_penalty' is not supported; use 'repetition_penalty' (e.g. 1.1) instead", "presence_penalty");
  }
  if (body.frequency_penalty) {
    throw badRequest("Parameter 'frequency_penalty' is not supported; use 'repetition_penalty' (e.g. 1.1) instead", "frequency_penalty");
  }
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) throw badRequest("Parameter 'logit_bias' is not supported", "logit_bias");
  if (body.stream_options != null && !body.stream) {
    throw badRequest("Parameter 'stream_options' is only allowed when 'stream' is true", "stream_options");
  }
}

function commonPlan(body: Common, maxTokens: number | null | undefined): Omit<Plan, "topLogprobs"> {
  const stop = body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
  return {
    maxTokens: maxTokens ?? null,
    sampling: {
      temperature: body.temperature ?? DEFAULT_SAMPLING.temperature,
      topP: body.top_p ?? DEFAULT_SAMPLING.topP,
      topK: body.top_k ?? DEFAULT_SAMPLING.topK,
      minP: body.min_p ?? DEFAULT_SAMPLING.minP,
      repetitionPenalty: body.repetition_penalty ?? DEFAULT_SAMPLING.repetitionPenalty,
      repetitionContextSize: DEFAULT_SAMPLING.repetitionContextSize,
      ...(body.seed != null ? { seed: body.seed } : {}),
    },
    stop,
    stream: body.stream === true,
    includeUsage: body.stream === true && body.stream_options?.include_usage === true,
  };
}

function messageText(m: ChatMessageIn, i: number): string {
  if (m.content == null) {
    if (m.role === "assistant") return "";
    throw badRequest(`messages[${i}].content is required for role '${m.role}'`, `messages[${i}].content`, "missing_required_parameter");
  }
  if (m.tool_calls != null && m.role !== "assistant") {
    throw badRequest(`messages[${i}].tool_calls is only allowed on assistant messages`, `messages[${i}].tool_calls`, "invalid_value");
  }
  if (typeof m.content === "string") return m.content;
  const texts: string[] = [];
  m.content.forEach((part, j) => {
    const param = `messages[${i}].content[${j}]`;
    if (part.type !== "text") {
      throw badRequest(`${param}.type '${part.type}' is not supported: this server accepts text content only`, `${param}.type`);
    }
    if (typeof part.text !== "string") throw badRequest(`${param}.text must be a string`, `${param}.text`, "invalid_value");
    texts.push(part.text);
  });
  return texts.join("\n");
}

function chatMessage(m: ChatMessageIn, i: number): ChatMessage {
  const msg: ChatMessage = { role: m.role, content: messageText(m, i) };
  if (m.role === "assistant" && m.tool_calls != null) msg.toolCalls = parseMessageToolCalls(m.tool_calls, i);
  if (m.role === "tool") {
    if (m.tool_call_id === undefined) throw badRequest(`messages[${i}].tool_call_id is required for role 'tool'`, `messages[${i}].tool_call_id`, "missing_required_parameter");
    msg.toolCallId = m.tool_call_id;
  }
  if (m.name !== undefined) msg.name = m.name;
  return msg;
}

/** Chat request → engine input + plan. Throws a 400 MlxkError naming the offending field. */
export function fromChatRequest(body: ChatCompletionRequest): { input: GenerateRequest["input"]; plan: Plan } {
  rejectUnsupportedCommon(body);
  rejectUnhonoured(body);
  const tools = toolFields(body);
  if (body.top_logprobs != null && body.logprobs !== true) {
    throw badRequest("Parameter 'top_logprobs' requires 'logprobs': true", "top_logprobs", "invalid_value");
  }
  const messages: ChatMessage[] = body.messages.map((m, i) => chatMessage(m, i));
  const plan: Plan = {
    ...commonPlan(body, body.max_completion_tokens ?? body.max_tokens),
    topLogprobs: body.logprobs === true ? (body.top_logprobs ?? 0) : undefined,
    tools,
  };
  const input: GenerateRequest["input"] = body.chat_template_kwargs ? { messages, templateKwargs: body.chat_template_kwargs } : { messages };
  return { input, plan };
}

/** Legacy completions request → raw prompt (no chat template) + plan. */
export function fromCompletionRequest(body: CompletionRequest): { input: GenerateRequest["input"]; plan: Plan } {
  rejectUnsupportedCommon(body);
  let prompt: string;
  if (typeof body.prompt === "string") prompt = body.prompt;
  else if (body.prompt.length === 1 && typeof body.prompt[0] === "string") prompt = body.prompt[0];
  else if (body.prompt.length > 1) throw badRequest("Parameter 'prompt': only one prompt per request is supported", "prompt");
  else throw badRequest("Parameter 'prompt' must be a string (token-id prompts are not supported)", "prompt", "invalid_value");
  if (body.echo) throw badRequest("Parameter 'echo' is not supported", "echo");
  if (body.suffix) throw badRequest("Parameter 'suffix' is not supported (no fill-in-the-middle)", "suffix");
  if (body.best_of != null && body.best_of > 1) throw badRequest("Parameter 'best_of' > 1 is not supported", "best_of");
  const plan: Plan = { ...commonPlan(body, body.max_tokens), topLogprobs: body.logprobs ?? undefined };
  return { input: { prompt }, plan };
}

export type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number; prompt_tokens_details?: { cached_tokens: number } };

export function toUsage(u: GenerateDone["usage"]): Usage {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    ...(u.cachedTokens !== undefined ? { prompt_tokens_details: { cached_tokens: u.cachedTokens } } : {}),
  };
}

/** The engine's "cancelled" never reaches a client (it is gone); anything else maps 1:1. */
export function toFinishReason(r: GenerateDone["finishReason"]): "stop" | "length" | "tool_calls" {
  return r === "length" ? "length" : r === "tool_calls" ? "tool_calls" : "stop";
}

function bytesOf(s: string): number[] {
  return [...new TextEncoder().encode(s)];
}

export type TokenLp = TokenLogprob & { top: TokenLogprob[] };

export function toChatLogprobs(tokens: TokenLp[]): NonNullable<ChatCompletion["choices"][0]["logprobs"]> {
  return {
    content: tokens.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      bytes: bytesOf(t.token),
      top_logprobs: t.top.map((a) => ({ token: a.token, logprob: a.logprob, bytes: bytesOf(a.token) })),
    })),
    refusal: null,
  };
}

/** Legacy completions logprobs; `offset0` is the text offset of the first token. */
type CompletionLogprobs = v.InferOutput<typeof CompletionLogprobsSchema>;

export function toCompletionLogprobs(tokens: TokenLp[], offset0 = 0): CompletionLogprobs {
  let offset = offset0;
  const text_offset: number[] = [];
  for (const t of tokens) {
    text_offset.push(offset);
    offset += t.token.length;
  }
  return {
    tokens: tokens.map((t) => t.token),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((a) => [a.token, a.logprob]))),
    text_offset,
  };
}

/** Identity of one response: shared by every chunk of a stream (clients key on it). */
export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
  fingerprint: string;
}

export function newMeta(prefix: "chatcmpl" | "cmpl", model: string, fingerprint: string, now = Date.now()): ResponseMeta {
  return { id: `${prefix}-${crypto.randomUUID().replaceAll("-", "")}`, created: Math.floor(now / 1000), model, fingerprint };
}

export function toChatCompletion(
  meta: ResponseMeta,
  out: { text: string; reasoning: string; toolCalls?: ToolCall[]; finishReason: "stop" | "length" | "tool_calls"; usage: Usage; logprobs: TokenLp[] | null },
): ChatCompletion {
  const calls: OpenAIToolCall[] = out.toolCalls && out.toolCalls.length > 0 ? toOpenAIToolCalls(out.toolCalls) : [];
  return {
    id: meta.id,
    object: "chat.completion",
    created: meta.created,
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          // OpenAI sends null content next to tool calls when the model said nothing else.
          content: calls.length > 0 && out.text.trim() === "" ? null : out.text,
          refusal: null,
          ...(out.reasoning ? { reasoning_content: out.reasoning } : {}),
          ...(calls.length > 0 ? { tool_calls: calls } : {}),
        },
        logprobs: out.logprobs ? toChatLogprobs(out.logprobs) : null,
        finish_reason: out.finishReason,
      },
    ],
    usage: out.usage,
  };
}

type Delta = ChatCompletionChunk["choices"] extends infer C ? (C extends [infer E] ? (E extends { delta: infer D } ? D : never) : never) : never;

/** One chat stream chunk; `usage: null` on every chunk only when the client asked for a usage chunk. */
export function chatChunk(
  meta: ResponseMeta,
  part: { delta: Delta; finishReason?: "stop" | "length" | "tool_calls" | null; logprobs?: TokenLp[] | null; includeUsage: boolean },
): ChatCompletionChunk {
  return {
    id: meta.id,
    object: "chat.completion.chunk",
    created: meta.created,
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    choices: [
      {
        index: 0,
        delta: part.delta,
        logprobs: part.logprobs ? toChatLogprobs(part.logprobs) : null,
        finish_reason: part.finishReason ?? null,
      },
    ],
    ...(part.includeUsage ? { usage: null } : {}),
  };
}

/** The final `choices: []` chunk of `stream_options.include_usage`. */
export function chatUsageChunk(meta: ResponseMeta, usage: Usage): ChatCompletionChunk {
  return { id: meta.id, object: "chat.completion.chunk", created: meta.created, model: meta.model, system_fingerprint: meta.fingerprint, choices: [], usage };
}

export function toTextCompletion(
  meta: ResponseMeta,
  out: { text: string; finishReason: "stop" | "length" | null; usage: Usage | null; logprobs: TokenLp[] | null; offset?: number },
  opts: { chunk?: boolean; includeUsage?: boolean } = {},
): TextCompletion {
  const base = { id: meta.id, object: "text_completion" as const, created: meta.created, model: meta.model, system_fingerprint: meta.fingerprint };
  const choice = {
    index: 0 as const,
    text: out.text,
    logprobs: out.logprobs ? toCompletionLogprobs(out.logprobs, out.offset) : null,
    finish_reason: out.finishReason,
  };
  if (!opts.chunk) return { ...base, choices: [choice], usage: out.usage };
  return { ...base, choices: [choice], ...(opts.includeUsage ? { usage: null } : {}) };
}

export function textUsageChunk(meta: ResponseMeta, usage: Usage): TextCompletion {
  return { id: meta.id, object: "text_completion", created: meta.created, model: meta.model, system_fingerprint: meta.fingerprint, choices: [], usage };
}

/**
 * Anthropic Messages API ⇄ the engine contract. Pure: a request becomes chat messages + sampling, engine
 * events become content blocks (non-streamed) or the SSE event sequence of the Anthropic SDKs. What this
 * server cannot honour (images, documents, server tools) is a 400 naming the field. Tools map onto the engine's
 * tool calling: `tool_use` blocks ⇄ tool calls (`input` objects ⇄ arguments JSON text), `tool_result` → tool turns.
 */
import * as v from "valibot";
import type { ChatMessage, GenerateChunk, GenerateDone, GenerateRequest, SamplingParams, ToolCall, ToolChoice, ToolDefinition } from "../../engine/types.ts";
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

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Text of a system prompt or tool_result content (string or text blocks). */
function plainText(content: unknown, param: string): string {
  if (typeof content === "string") return content;
  if (content == null) return "";
  if (!Array.isArray(content)) throw badRequest(`${param} must be a string or an array of text blocks`, param, "invalid_value");
  return content
    .map((b: { type?: unknown; text?: unknown }, j) => {
      if (b.type !== "text" || typeof b.text !== "string") throw badRequest(`${param}[${j}].type '${String(b.type)}' is not supported: text blocks only`, `${param}[${j}].type`);
      return b.text;
    })
    .join("\n");
}

/** One Anthropic message → engine messages: tool results become tool turns (before the user's own text). */
function toEngineMessages(m: { role: "user" | "assistant"; content: string | { type: string }[] }, i: number, names: Map<string, string>): ChatMessage[] {
  const param = `messages[${i}].content`;
  if (typeof m.content === "string") return [{ role: m.role, content: m.content }];
  const texts: string[] = [];
  const calls: ToolCall[] = [];
  const results: ChatMessage[] = [];
  m.content.forEach((raw, j) => {
    const b = raw as Record<string, unknown> & { type: string };
    const p = `${param}[${j}]`;
    if (b.type === "text") {
      if (typeof b.text !== "string") throw badRequest(`${p}.text must be a string`, `${p}.text`, "invalid_value");
      texts.push(b.text);
    } else if (b.type === "thinking" || b.type === "redacted_thinking") {
      // past thinking is not re-rendered: chat templates strip earlier reasoning
    } else if (b.type === "tool_use") {
      if (m.role !== "assistant") throw badRequest(`${p}: tool_use blocks belong to assistant messages`, `${p}.type`, "invalid_value");
      if (typeof b.id !== "string" || typeof b.name !== "string") throw badRequest(`${p} needs 'id' and 'name'`, p, "invalid_value");
      names.set(b.id, b.name);
      calls.push({ id: b.id, name: b.name, arguments: JSON.stringify(b.input ?? {}) });
    } else if (b.type === "tool_result") {
      if (m.role !== "user") throw badRequest(`${p}: tool_result blocks belong to user messages`, `${p}.type`, "invalid_value");
      if (typeof b.tool_use_id !== "string") throw badRequest(`${p}.tool_use_id is required`, `${p}.tool_use_id`, "missing_required_parameter");
      const text = plainText(b.content, `${p}.content`);
      const name = names.get(b.tool_use_id);
      // is_error has no field in chat templates: say it in the content the model reads
      results.push({ role: "tool", content: b.is_error === true ? `Error: ${text}` : text, toolCallId: b.tool_use_id, ...(name ? { name } : {}) });
    } else {
      throw badRequest(`${p}.type '${b.type}' is not supported: this server accepts text, tool_use, tool_result and thinking blocks`, `${p}.type`);
    }
  });
  const out: ChatMessage[] = [...results];
  if (m.role === "assistant") out.push({ role: "assistant", content: texts.join("\n"), ...(calls.length > 0 ? { toolCalls: calls } : {}) });
  else if (texts.length > 0 || results.length === 0) out.push({ role: "user", content: texts.join("\n") });
  return out;
}

/** Custom tools `{name, description, input_schema}`; Anthropic's server tools (typed, e.g. web_search_…) do not run here. */
export function parseTools(tools: MessagesRequest["tools"]): ToolDefinition[] {
  return (tools ?? []).map((raw, i) => {
    const t = raw as Record<string, unknown>;
    const at = `tools[${i}]`;
    if (t.type != null && t.type !== "custom") throw badRequest(`${at}.type '${String(t.type)}' is not supported: server tools do not run here (custom tools only)`, `${at}.type`);
    if (typeof t.name !== "string") throw badRequest(`${at}.name must be a string`, `${at}.name`, "invalid_value");
    if (t.input_schema != null && !isObject(t.input_schema)) throw badRequest(`${at}.input_schema must be a JSON Schema object`, `${at}.input_schema`, "invalid_value");
    return { name: t.name, ...(typeof t.description === "string" ? { description: t.description } : {}), parameters: (t.input_schema as Record<string, unknown> | undefined) ?? {} };
  });
}

/** auto / any (→ required) / tool (→ that function) / none; disable_parallel_tool_use → one call at most. */
function parseToolChoice(c: MessagesRequest["tool_choice"]): { toolChoice?: ToolChoice; parallelToolCalls?: boolean } {
  if (c == null) return {};
  const parallel = (c as { disable_parallel_tool_use?: unknown }).disable_parallel_tool_use === true ? { parallelToolCalls: false } : {};
  if (c.type === "auto" || c.type === "none") return { toolChoice: c.type, ...parallel };
  if (c.type === "any") return { toolChoice: "required", ...parallel };
  const name = (c as { name?: unknown }).name;
  if (c.type === "tool" && typeof name === "string") return { toolChoice: { name }, ...parallel };
  throw badRequest("tool_choice must be {type: auto|any|none} or {type: tool, name}", "tool_choice", "invalid_value");
}

export type ToolFields = Pick<GenerateRequest, "tools" | "toolChoice" | "parallelToolCalls">;

export function toolFields(body: Pick<MessagesRequest, "tools" | "tool_choice">): ToolFields {
  const tools = parseTools(body.tools);
  const choice = parseToolChoice(body.tool_choice);
  if (tools.length === 0) return {};
  return { tools, ...choice };
}

/** Requests → chat messages (system first). Shared by /v1/messages and count_tokens. */
export function toMessages(body: Pick<MessagesRequest, "messages" | "system" | "thinking">): GenerateRequest["input"] {
  const messages: ChatMessage[] = [];
  if (body.system != null) {
    const s = plainText(body.system, "system");
    if (s !== "") messages.push({ role: "system", content: s });
  }
  const names = new Map<string, string>();
  body.messages.forEach((m, i) => messages.push(...toEngineMessages(m, i, names)));
  const t = body.thinking?.type;
  if (t != null && t !== "enabled" && t !== "disabled" && t !== "adaptive") throw badRequest(`thinking.type '${t}' must be 'enabled', 'disabled' or 'adaptive'`, "thinking.type", "invalid_value");
  // "disabled" flips the template switch where the model has one; a thinking budget is bounded by max_tokens
  return t === "disabled" ? { messages, templateKwargs: { enable_thinking: false } } : { messages };
}

export interface MessagesPlan {
  /** What the run core needs (src/server/run.ts RunSpec, less the model and prompt field). */
  run: { input: GenerateRequest["input"]; tools: ToolFields; maxTokens: number; sampling: SamplingParams; stop: string[] };
  stream: boolean;
}

export function fromMessagesRequest(body: MessagesRequest): MessagesPlan {
  const extra = body as Record<string, unknown>;
  // server-side features of Anthropic's API that would change the answer: refused by name
  if (Array.isArray(extra.mcp_servers) && extra.mcp_servers.length > 0) throw badRequest("Parameter 'mcp_servers' is not supported: this server runs no MCP connector", "mcp_servers");
  if (extra.container != null) throw badRequest("Parameter 'container' is not supported: this server runs no code-execution container", "container");
  const budget = body.thinking?.budget_tokens;
  if (budget != null && budget >= body.max_tokens) {
    throw badRequest("thinking.budget_tokens must be less than max_tokens", "thinking.budget_tokens", "invalid_value");
  }
  return {
    run: {
      input: toMessages(body),
      tools: toolFields(body),
      maxTokens: body.max_tokens,
      sampling: {
        ...DEFAULT_SAMPLING,
        temperature: body.temperature ?? DEFAULT_SAMPLING.temperature,
        topP: body.top_p ?? DEFAULT_SAMPLING.topP,
        topK: body.top_k ?? DEFAULT_SAMPLING.topK,
      },
      stop: body.stop_sequences ?? [],
    },
    stream: body.stream === true,
  };
}

// ---- output -------------------------------------------------------------------------------------------

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use";

export function toStopReason(done: GenerateDone): { stop_reason: StopReason; stop_sequence: string | null } {
  if (done.finishReason === "length") return { stop_reason: "max_tokens", stop_sequence: null };
  if (done.finishReason === "tool_calls") return { stop_reason: "tool_use", stop_sequence: null };
  if (done.stopSequence !== undefined) return { stop_reason: "stop_sequence", stop_sequence: done.stopSequence };
  return { stop_reason: "end_turn", stop_sequence: null };
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

/**
 * Anthropic's split of the prompt: `input_tokens` are the ones prefilled, `cache_read_input_tokens` the ones
 * reused from the prompt cache (the three input fields add up to the prompt). `cache_creation_input_tokens` is 0:
 * the cache keeps KV on its own (no cache_control breakpoints, nothing written at a client's request).
 */
export function toUsage(u: GenerateDone["usage"]): Usage {
  return { ...inputUsage(u.promptTokens, u.cachedTokens), output_tokens: u.completionTokens };
}

function inputUsage(promptTokens: number, cached = 0): Omit<Usage, "output_tokens"> {
  return { input_tokens: promptTokens - cached, cache_creation_input_tokens: 0, cache_read_input_tokens: cached };
}

export type ContentBlock =
  | { type: "thinking"; thinking: string; signature: string }
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: unknown };

/** A call's arguments text as the `input` object (the engine's parsers emit JSON objects). */
function toolInput(args: string): unknown {
  try {
    return JSON.parse(args === "" ? "{}" : args);
  } catch {
    return {};
  }
}

/** Anthropic ids look like toolu_…; the engine's call ids are kept when they already do. */
export function toolUseId(id: string): string {
  return id.startsWith("toolu_") ? id : `toolu_${id.replace(/[^A-Za-z0-9_]/g, "") || crypto.randomUUID().replaceAll("-", "")}`;
}

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
export function toMessage(id: string, model: string, out: { text: string; reasoning: string; done: GenerateDone; toolCalls: ToolCall[] }): MessageObject {
  const content: ContentBlock[] = [];
  if (out.reasoning !== "") content.push({ type: "thinking", thinking: out.reasoning, signature: "" });
  if (out.text !== "" || out.toolCalls.length === 0) content.push({ type: "text", text: out.text });
  for (const c of out.toolCalls) content.push({ type: "tool_use", id: toolUseId(c.id), name: c.name, input: toolInput(c.arguments) });
  return { id, type: "message", role: "assistant", model, content, ...toStopReason(out.done), usage: toUsage(out.done.usage) };
}

export type StreamEvent = { type: string } & Record<string, unknown>;

/** The streamed event sequence: message_start, ping, blocks (start/delta/stop), message_delta, message_stop. */
export class MessageEvents {
  private index = -1;
  private open: "thinking" | "text" | "tool_use" | null = null;
  private openCall = -1;
  private calls = 0;

  constructor(
    private readonly id: string,
    private readonly model: string,
    private readonly promptTokens: number,
    /** What the prompt cache holds for this prompt as the stream opens; message_delta carries the exact count. */
    private readonly cachedTokens?: number,
  ) {}

  start(): StreamEvent[] {
    const promptTokens = this.promptTokens;
    const message: MessageObject = {
      id: this.id,
      type: "message",
      role: "assistant",
      model: this.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...inputUsage(promptTokens, this.cachedTokens), output_tokens: 0 },
    };
    return [{ type: "message_start", message }, { type: "ping" }];
  }

  private openBlock(kind: "thinking" | "text" | "tool_use", call?: { id: string; name: string }): StreamEvent[] {
    const out = this.closeBlock();
    this.index++;
    this.open = kind;
    const block =
      kind === "thinking"
        ? { type: "thinking", thinking: "", signature: "" }
        : kind === "tool_use"
          ? { type: "tool_use", id: toolUseId(call!.id), name: call!.name, input: {} }
          : { type: "text", text: "" };
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
    for (const d of c.toolCalls ?? []) {
      if (this.open !== "tool_use" || this.openCall !== d.index) {
        out.push(...this.openBlock("tool_use", { id: d.id ?? `call_${d.index}`, name: d.name ?? "" }));
        this.openCall = d.index;
        this.calls++;
      }
      if (d.arguments !== "") out.push({ type: "content_block_delta", index: this.index, delta: { type: "input_json_delta", partial_json: d.arguments } });
    }
    return out;
  }

  finish(done: GenerateDone): StreamEvent[] {
    // an answer with neither text nor calls still has its (empty) text block
    const out = this.open === "text" || this.calls > 0 ? [] : this.openBlock("text");
    out.push(...this.closeBlock());
    // The usage totals of the whole message (the SDKs overwrite message_start's with them).
    out.push({ type: "message_delta", delta: toStopReason(done), usage: toUsage(done.usage) });
    out.push({ type: "message_stop" });
    return out;
  }
}

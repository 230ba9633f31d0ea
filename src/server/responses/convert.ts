/**
 * OpenAI Responses API (stateless) ⇄ the engine contract. Pure: a request becomes a RunSpec part, engine
 * events become output items (non-streamed) or the event sequence clients validate (streamed). What this
 * server cannot honour is a 400 naming the field: stored state (`previous_response_id`, `store: true`,
 * `conversation`, `background`), non-text inputs, hosted tools (only `function` tools run here).
 */
import * as v from "valibot";
import type { ChatMessage, GenerateChunk, GenerateDone, GenerateRequest, SamplingParams, ToolCall, ToolChoice, ToolDefinition } from "../../engine/types.ts";
import { DEFAULT_SAMPLING } from "../../generate/sample.ts";
import { badRequest } from "../errors.ts";

const nullish = <T extends v.GenericSchema>(s: T) => v.optional(v.nullable(s));
const num = (min: number, max: number) => v.pipe(v.number("must be a number"), v.minValue(min, `must be >= ${min}`), v.maxValue(max, `must be <= ${max}`));
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => v.pipe(v.number("must be an integer"), v.integer("must be an integer"), v.minValue(min, `must be >= ${min}`), v.maxValue(max, `must be <= ${max}`));

const InputItem = v.looseObject({ type: v.optional(v.string()), role: v.optional(v.string()) });

export const ResponsesRequestSchema = v.looseObject({
  model: nullish(v.string("must be a string")),
  input: v.union([v.string(), v.array(InputItem, "must be an array of input items")], "must be a string or an array of input items"),
  instructions: nullish(v.string("must be a string")),
  max_output_tokens: nullish(int(1)),
  temperature: nullish(num(0, 2)),
  top_p: nullish(num(0, 1)),
  top_logprobs: nullish(int(0, 20)),
  stream: nullish(v.boolean("must be a boolean")),
  store: nullish(v.boolean("must be a boolean")),
  previous_response_id: nullish(v.string()),
  conversation: nullish(v.unknown()),
  background: nullish(v.boolean("must be a boolean")),
  prompt: nullish(v.unknown()),
  tools: nullish(v.array(v.looseObject({ type: v.string() }), "must be an array of tools")),
  tool_choice: nullish(v.unknown()),
  parallel_tool_calls: nullish(v.boolean("must be a boolean")),
  text: nullish(v.looseObject({ format: nullish(v.looseObject({ type: v.string() })), verbosity: nullish(v.string()) })),
  max_tool_calls: nullish(v.number()),
  reasoning: nullish(v.looseObject({ effort: nullish(v.string()), summary: nullish(v.string()) })),
  truncation: nullish(v.string()),
  include: nullish(v.array(v.string())),
  metadata: nullish(v.record(v.string(), v.unknown())),
  seed: nullish(v.pipe(v.number("must be an integer"), v.integer("must be an integer"))),
  user: nullish(v.string()),
});
export type ResponsesRequest = v.InferOutput<typeof ResponsesRequestSchema>;

export type ToolFields = Pick<GenerateRequest, "tools" | "toolChoice" | "parallelToolCalls" | "constraint">;

export interface ResponsesPlan {
  /** What the run core needs (src/server/run.ts RunSpec, less the model and prompt field). */
  run: { input: GenerateRequest["input"]; tools: ToolFields; maxTokens: number | null; sampling: SamplingParams; stop: string[]; topLogprobs: number | undefined };
  stream: boolean;
  /** Echoed back on the response object, as OpenAI does. */
  echo: Pick<ResponseObject, "instructions" | "max_output_tokens" | "temperature" | "top_p" | "tools" | "tool_choice" | "parallel_tool_calls" | "text" | "reasoning" | "metadata">;
}

function textOf(content: unknown, param: string): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw badRequest(`${param} must be a string or an array of content parts`, param, "invalid_value");
  return content
    .map((part: { type?: unknown; text?: unknown; refusal?: unknown }, j) => {
      const p = `${param}[${j}]`;
      if (part.type === "input_text" || part.type === "output_text" || part.type === "text") {
        if (typeof part.text !== "string") throw badRequest(`${p}.text must be a string`, `${p}.text`, "invalid_value");
        return part.text;
      }
      if (part.type === "refusal" && typeof part.refusal === "string") return part.refusal;
      throw badRequest(`${p}.type '${String(part.type)}' is not supported: this server accepts text input only`, `${p}.type`);
    })
    .join("\n");
}

const ROLES = new Set(["system", "developer", "user", "assistant"]);

function functionCall(item: Record<string, unknown>, param: string): ToolCall {
  if (typeof item.call_id !== "string") throw badRequest(`${param}.call_id is required`, `${param}.call_id`, "missing_required_parameter");
  if (typeof item.name !== "string") throw badRequest(`${param}.name is required`, `${param}.name`, "missing_required_parameter");
  if (typeof item.arguments !== "string") throw badRequest(`${param}.arguments must be the JSON text of the arguments`, `${param}.arguments`, "invalid_value");
  return { id: item.call_id, name: item.name, arguments: item.arguments };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Responses tools are flat: `{type: "function", name, description, parameters, strict}`; hosted tools do not run here. */
export function parseTools(tools: ResponsesRequest["tools"]): ToolDefinition[] {
  return (tools ?? []).map((raw, i) => {
    const t = raw as Record<string, unknown>;
    const at = `tools[${i}]`;
    if (t.type !== "function") throw badRequest(`${at}.type '${String(t.type)}' is not supported: only 'function' tools run on this server`, `${at}.type`);
    if (typeof t.name !== "string") throw badRequest(`${at}.name must be a string`, `${at}.name`, "invalid_value");
    if (t.parameters != null && !isObject(t.parameters)) throw badRequest(`${at}.parameters must be a JSON Schema object`, `${at}.parameters`, "invalid_value");
    return {
      name: t.name,
      ...(typeof t.description === "string" ? { description: t.description } : {}),
      parameters: (t.parameters as Record<string, unknown> | null | undefined) ?? {},
      ...(typeof t.strict === "boolean" ? { strict: t.strict } : {}),
    };
  });
}

export function parseToolChoice(c: unknown): ToolChoice | undefined {
  if (c == null) return undefined;
  if (c === "auto" || c === "none" || c === "required") return c;
  if (isObject(c) && c.type === "function" && typeof c.name === "string") return { name: c.name };
  throw badRequest("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": …}", "tool_choice", "invalid_value");
}

/** `text.format` → the constraint the decoder enforces. */
function parseFormat(format: Record<string, unknown> | null | undefined): GenerateRequest["constraint"] {
  if (format == null || format.type === "text") return undefined;
  if (format.type === "json_object") return { type: "json_object" };
  if (format.type !== "json_schema") throw badRequest(`text.format.type '${String(format.type)}' is not supported (text, json_object, json_schema)`, "text.format.type");
  const schema = format.schema ?? {};
  if (!isObject(schema)) throw badRequest("text.format.schema must be a JSON Schema object", "text.format.schema", "invalid_value");
  return { type: "json_schema", schema, ...(typeof format.name === "string" ? { name: format.name } : {}), ...(typeof format.strict === "boolean" ? { strict: format.strict } : {}) };
}

/** Input items → chat messages. Past reasoning items are dropped, as chat templates drop past thinking. */
export function toMessages(body: Pick<ResponsesRequest, "input" | "instructions">): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (body.instructions) messages.push({ role: "system", content: body.instructions });
  if (typeof body.input === "string") {
    messages.push({ role: "user", content: body.input });
    return messages;
  }
  body.input.forEach((raw, i) => {
    const item = raw as Record<string, unknown>;
    const param = `input[${i}]`;
    const type = item.type ?? "message";
    if (type === "message") {
      const role = String(item.role);
      if (!ROLES.has(role)) throw badRequest(`${param}.role must be one of system, developer, user, assistant`, `${param}.role`, "invalid_value");
      messages.push({ role: role as ChatMessage["role"], content: textOf(item.content, `${param}.content`) });
    } else if (type === "reasoning") {
      // earlier reasoning is not re-rendered (templates strip it); encrypted content is never produced here
    } else if (type === "function_call") {
      const call = functionCall(item, param);
      // consecutive calls belong to one assistant turn (the previous one when it has no text after them)
      const prev = messages.at(-1);
      if (prev?.role === "assistant") prev.toolCalls = [...(prev.toolCalls ?? []), call];
      else messages.push({ role: "assistant", content: "", toolCalls: [call] });
    } else if (type === "function_call_output") {
      if (typeof item.call_id !== "string") throw badRequest(`${param}.call_id is required`, `${param}.call_id`, "missing_required_parameter");
      const name = messages.flatMap((m) => m.toolCalls ?? []).find((c) => c.id === item.call_id)?.name;
      messages.push({ role: "tool", content: textOf(item.output, `${param}.output`), toolCallId: item.call_id, ...(name ? { name } : {}) });
    } else if (type === "item_reference") {
      throw badRequest(`${param}: item references need stored responses; this server is stateless (send the items themselves)`, `${param}.type`);
    } else {
      throw badRequest(`${param}.type '${String(type)}' is not supported`, `${param}.type`);
    }
  });
  if (messages.length === 0) throw badRequest("Parameter 'input' holds no message", "input", "invalid_value");
  return messages;
}

const STATELESS = "this server is stateless (it stores no responses or conversations): send the whole conversation in 'input'";

export function fromResponsesRequest(body: ResponsesRequest): ResponsesPlan {
  if (body.previous_response_id) throw badRequest(`Parameter 'previous_response_id' is not supported: ${STATELESS}`, "previous_response_id");
  if (body.store === true) throw badRequest(`Parameter 'store': true is not supported: ${STATELESS}; send store: false`, "store");
  if (body.conversation != null) throw badRequest(`Parameter 'conversation' is not supported: ${STATELESS}`, "conversation");
  if (body.background === true) throw badRequest(`Parameter 'background': true is not supported: ${STATELESS}`, "background");
  if (body.prompt != null) throw badRequest("Parameter 'prompt' (stored prompt templates) is not supported: send 'instructions' and 'input'", "prompt");
  if (body.truncation != null && body.truncation !== "disabled") {
    throw badRequest("Parameter 'truncation': only 'disabled' is supported (a prompt that does not fit is an error, never cut silently)", "truncation");
  }
  const tools = parseTools(body.tools);
  const toolChoice = parseToolChoice(body.tool_choice);
  if (toolChoice !== undefined && toolChoice !== "none" && toolChoice !== "auto" && tools.length === 0) throw badRequest("tool_choice is set but 'tools' is empty", "tool_choice", "invalid_value");
  const constraint = parseFormat(body.text?.format);
  for (const inc of body.include ?? []) {
    if (inc !== "reasoning.encrypted_content" && inc !== "message.output_text.logprobs") {
      throw badRequest(`include '${inc}' is not supported (only 'message.output_text.logprobs'; 'reasoning.encrypted_content' yields plain reasoning items)`, "include");
    }
  }
  const verbosity = body.text?.verbosity;
  if (verbosity != null && verbosity !== "medium") {
    throw badRequest(`text.verbosity '${verbosity}' cannot be honoured: local models have no verbosity control (leave it at 'medium')`, "text.verbosity");
  }
  if (body.max_tool_calls != null) throw badRequest("Parameter 'max_tool_calls' is not supported (it limits hosted tools, which do not run here)", "max_tool_calls");
  const wantLp = (body.include ?? []).includes("message.output_text.logprobs") || body.top_logprobs != null;
  const effort = body.reasoning?.effort;
  const messages = toMessages(body);
  if (effort != null && !["none", "minimal", "low", "medium", "high"].includes(effort)) {
    throw badRequest(`reasoning.effort '${effort}' must be none, minimal, low, medium or high`, "reasoning.effort", "invalid_value");
  }
  // thinking is on or off here: none/minimal turn it off where the template has the switch, other efforts keep it on
  const input: GenerateRequest["input"] = effort === "none" || effort === "minimal" ? { messages, templateKwargs: { enable_thinking: false } } : { messages };
  return {
    run: {
      input,
      tools: {
        ...(tools.length > 0 ? { tools } : {}),
        ...(toolChoice !== undefined && tools.length > 0 ? { toolChoice } : {}),
        ...(body.parallel_tool_calls != null ? { parallelToolCalls: body.parallel_tool_calls } : {}),
        ...(constraint ? { constraint } : {}),
      },
      maxTokens: body.max_output_tokens ?? null,
      sampling: {
        ...DEFAULT_SAMPLING,
        temperature: body.temperature ?? DEFAULT_SAMPLING.temperature,
        topP: body.top_p ?? DEFAULT_SAMPLING.topP,
        ...(body.seed != null ? { seed: body.seed } : {}),
      },
      stop: [],
      topLogprobs: wantLp ? (body.top_logprobs ?? 0) : undefined,
    },
    stream: body.stream === true,
    echo: {
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      temperature: body.temperature ?? DEFAULT_SAMPLING.temperature,
      top_p: body.top_p ?? DEFAULT_SAMPLING.topP,
      tools: body.tools ?? [],
      tool_choice: body.tool_choice ?? "auto",
      parallel_tool_calls: body.parallel_tool_calls ?? true,
      text: { format: body.text?.format ?? { type: "text" } },
      reasoning: { effort: effort ?? null, summary: body.reasoning?.summary ?? null },
      metadata: body.metadata ?? {},
    },
  };
}

// ---- output -------------------------------------------------------------------------------------------

export interface Logprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export type FunctionCallItem = { id: string; type: "function_call"; status: "in_progress" | "completed" | "incomplete"; call_id: string; name: string; arguments: string };

export type OutputItem =
  | FunctionCallItem
  | { id: string; type: "reasoning"; status: "in_progress" | "completed" | "incomplete"; summary: []; content: { type: "reasoning_text"; text: string }[] }
  | {
      id: string;
      type: "message";
      status: "in_progress" | "completed" | "incomplete";
      role: "assistant";
      content: { type: "output_text"; text: string; annotations: []; logprobs: Logprob[] }[];
    };

export interface ResponseObject {
  id: string;
  object: "response";
  created_at: number;
  status: "in_progress" | "completed" | "incomplete";
  error: null;
  incomplete_details: { reason: "max_output_tokens" } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  model: string;
  output: OutputItem[];
  output_text?: string;
  parallel_tool_calls: boolean;
  previous_response_id: null;
  reasoning: { effort: string | null; summary: string | null };
  store: false;
  temperature: number;
  text: { format: Record<string, unknown> };
  tool_choice: unknown;
  tools: unknown[];
  top_p: number;
  truncation: "disabled";
  usage: ResponseUsage | null;
  metadata: Record<string, unknown>;
}

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number; cache_write_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export function toResponseUsage(u: GenerateDone["usage"], reasoningTokens: number): ResponseUsage {
  return {
    input_tokens: u.promptTokens,
    // cache_write_tokens: 0, the prompt cache keeps KV on its own (nothing is written at a client's request).
    input_tokens_details: { cached_tokens: u.cachedTokens ?? 0, cache_write_tokens: 0 },
    output_tokens: u.completionTokens,
    output_tokens_details: { reasoning_tokens: reasoningTokens },
    total_tokens: u.promptTokens + u.completionTokens,
  };
}

const hex = () => crypto.randomUUID().replaceAll("-", "");

export interface ResponseMeta {
  id: string;
  createdAt: number;
  model: string;
  echo: ResponsesPlan["echo"];
}

export function newResponseMeta(model: string, echo: ResponsesPlan["echo"], now = Date.now()): ResponseMeta {
  return { id: `resp_${hex()}`, createdAt: Math.floor(now / 1000), model, echo };
}

function responseObject(meta: ResponseMeta, status: ResponseObject["status"], output: OutputItem[], usage: ResponseUsage | null): ResponseObject {
  const text = output.flatMap((o) => (o.type === "message" ? o.content.map((c) => c.text) : [])).join("");
  return {
    id: meta.id,
    object: "response",
    created_at: meta.createdAt,
    status,
    error: null,
    incomplete_details: status === "incomplete" ? { reason: "max_output_tokens" } : null,
    ...meta.echo,
    model: meta.model,
    output,
    ...(status === "in_progress" ? {} : { output_text: text }),
    previous_response_id: null,
    store: false,
    truncation: "disabled",
    usage,
  };
}

function bytesOf(s: string): number[] {
  return [...new TextEncoder().encode(s)];
}

export function toLogprob(c: GenerateChunk): Logprob | null {
  if (!c.logprob) return null;
  return {
    token: c.logprob.token,
    logprob: c.logprob.logprob,
    bytes: bytesOf(c.logprob.token),
    top_logprobs: c.logprob.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytesOf(t.token) })),
  };
}

/** The non-streamed response: reasoning item (when the model thought), the message (when it wrote text or called nothing), then its function calls. */
export function toResponse(
  meta: ResponseMeta,
  out: { text: string; reasoning: string; reasoningTokens: number; done: GenerateDone; logprobs: Logprob[]; toolCalls: ToolCall[] },
): ResponseObject {
  const status = out.done.finishReason === "length" ? "incomplete" : "completed";
  const output: OutputItem[] = [];
  if (out.reasoning !== "") output.push({ id: `rs_${hex()}`, type: "reasoning", status: "completed", summary: [], content: [{ type: "reasoning_text", text: out.reasoning }] });
  if (out.text !== "" || out.toolCalls.length === 0) {
    output.push({ id: `msg_${hex()}`, type: "message", status, role: "assistant", content: [{ type: "output_text", text: out.text, annotations: [], logprobs: out.logprobs }] });
  }
  for (const c of out.toolCalls) output.push({ id: `fc_${hex()}`, type: "function_call", status: "completed", call_id: c.id, name: c.name, arguments: c.arguments });
  return responseObject(meta, status, output, toResponseUsage(out.done.usage, out.reasoningTokens));
}

export type StreamEvent = { type: string; sequence_number: number } & Record<string, unknown>;

/**
 * The streamed event sequence as a state machine: `start()`, then `chunk()` per engine chunk, then `finish()`.
 * Every event carries `type` (also its SSE `event:` name) and a strictly increasing `sequence_number`.
 */
export class ResponseEvents {
  private seq = 0;
  private readonly output: OutputItem[] = [];
  private open: { kind: "reasoning" | "message" | "call"; index: number; call?: number } | null = null;
  private reasoningTokens = 0;

  constructor(private readonly meta: ResponseMeta) {}

  private ev(type: string, fields: Record<string, unknown>): StreamEvent {
    return { type, sequence_number: this.seq++, ...fields };
  }

  start(): StreamEvent[] {
    const r = responseObject(this.meta, "in_progress", [], null);
    return [this.ev("response.created", { response: r }), this.ev("response.in_progress", { response: r })];
  }

  private openItem(kind: "reasoning" | "message"): StreamEvent[] {
    const out = this.close("completed");
    const index = this.output.length;
    const item: OutputItem =
      kind === "reasoning"
        ? { id: `rs_${hex()}`, type: "reasoning", status: "in_progress", summary: [], content: [] }
        : { id: `msg_${hex()}`, type: "message", status: "in_progress", role: "assistant", content: [] };
    this.output.push(item);
    this.open = { kind, index };
    const part = kind === "reasoning" ? { type: "reasoning_text", text: "" } : { type: "output_text", text: "", annotations: [], logprobs: [] };
    out.push(this.ev("response.output_item.added", { output_index: index, item: structuredClone(item) }));
    out.push(this.ev("response.content_part.added", { item_id: item.id, output_index: index, content_index: 0, part }));
    if (item.type === "reasoning") item.content.push({ type: "reasoning_text", text: "" });
    else item.content.push({ type: "output_text", text: "", annotations: [], logprobs: [] });
    return out;
  }

  private openCall(call: number, id: string, name: string): StreamEvent[] {
    const out = this.close("completed");
    const index = this.output.length;
    const item: FunctionCallItem = { id: `fc_${hex()}`, type: "function_call", status: "in_progress", call_id: id, name, arguments: "" };
    this.output.push(item);
    this.open = { kind: "call", index, call };
    out.push(this.ev("response.output_item.added", { output_index: index, item: structuredClone(item) }));
    return out;
  }

  /** Close the open item (if any) with its `…done` events. */
  private close(status: "completed" | "incomplete"): StreamEvent[] {
    if (!this.open) return [];
    const { index } = this.open;
    const item = this.output[index]!;
    this.open = null;
    item.status = status;
    const base = { item_id: item.id, output_index: index, content_index: 0 };
    const out: StreamEvent[] = [];
    if (item.type === "function_call") {
      out.push(this.ev("response.function_call_arguments.done", { item_id: item.id, output_index: index, arguments: item.arguments, name: item.name }));
    } else if (item.type === "reasoning") {
      const part = item.content[0]!;
      out.push(this.ev("response.reasoning_text.done", { ...base, text: part.text }));
      out.push(this.ev("response.content_part.done", { ...base, part: structuredClone(part) }));
    } else {
      const part = item.content[0]!;
      out.push(this.ev("response.output_text.done", { ...base, text: part.text, logprobs: part.logprobs }));
      out.push(this.ev("response.content_part.done", { ...base, part: structuredClone(part) }));
    }
    out.push(this.ev("response.output_item.done", { output_index: index, item: structuredClone(item) }));
    return out;
  }

  chunk(c: GenerateChunk): StreamEvent[] {
    const out: StreamEvent[] = [];
    if (c.reasoning !== "") {
      this.reasoningTokens++;
      if (this.open?.kind !== "reasoning") out.push(...this.openItem("reasoning"));
      const item = this.output[this.open!.index]!;
      if (item.type === "reasoning") item.content[0]!.text += c.reasoning;
      out.push(this.ev("response.reasoning_text.delta", { item_id: item.id, output_index: this.open!.index, content_index: 0, delta: c.reasoning }));
    }
    const lp = toLogprob(c);
    if (c.text !== "" || (lp && c.reasoning === "")) {
      if (this.open?.kind !== "message") out.push(...this.openItem("message"));
      const item = this.output[this.open!.index]!;
      const logprobs = lp ? [lp] : [];
      if (item.type === "message") {
        item.content[0]!.text += c.text;
        item.content[0]!.logprobs.push(...logprobs);
      }
      out.push(this.ev("response.output_text.delta", { item_id: item.id, output_index: this.open!.index, content_index: 0, delta: c.text, logprobs }));
    }
    for (const d of c.toolCalls ?? []) {
      if (d.id !== undefined || this.open?.kind !== "call" || this.open.call !== d.index) out.push(...this.openCall(d.index, d.id ?? `call_${d.index}`, d.name ?? ""));
      const item = this.output[this.open!.index]!;
      if (item.type !== "function_call" || d.arguments === "") continue;
      item.arguments += d.arguments;
      out.push(this.ev("response.function_call_arguments.delta", { item_id: item.id, output_index: this.open!.index, delta: d.arguments }));
    }
    return out;
  }

  /** The closing events; `response.completed` (or `response.incomplete` at the token limit) holds the whole output and usage. */
  finish(done: GenerateDone): StreamEvent[] {
    const status = done.finishReason === "length" ? "incomplete" : "completed";
    // an answer with no text and no call still has its (empty) message item, as OpenAI sends it
    const called = this.output.some((o) => o.type === "function_call");
    const out = this.open?.kind === "message" || called ? [] : this.openItem("message");
    out.push(...this.close(status));
    const r = responseObject(this.meta, status, this.output, toResponseUsage(done.usage, this.reasoningTokens));
    out.push(this.ev(status === "completed" ? "response.completed" : "response.incomplete", { response: r }));
    return out;
  }

  /** A failure after the stream began: OpenAI's `error` event. */
  error(e: { message: string; code: string | null; param: string | null }): StreamEvent {
    return this.ev("error", { code: e.code, message: e.message, param: e.param });
  }
}

/**
 * The OpenAI chat fields of tool calling and structured output, to and from the engine contract:
 * `tools`, `tool_choice`, `parallel_tool_calls`, `response_format`, assistant `tool_calls` and
 * `role: "tool"` messages in; `message.tool_calls` and tool-call stream deltas out. Pure functions.
 */
import type { GenerateChunk, GenerateRequest, ToolCall, ToolChoice, ToolDefinition } from "../../engine/types.ts";
import type { ChatCompletionRequest } from "../../schemas/openai.ts";
import { badRequest } from "../errors.ts";

export type ToolFields = Pick<GenerateRequest, "tools" | "toolChoice" | "parallelToolCalls" | "constraint">;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function invalid(message: string, param: string) {
  return badRequest(message, param, "invalid_value");
}

export function parseTools(tools: unknown[] | null | undefined): ToolDefinition[] {
  return (tools ?? []).map((t, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t)) throw invalid(`${at} must be an object`, at);
    if (t.type !== "function") throw badRequest(`${at}.type ${JSON.stringify(t.type)} is not supported (only 'function')`, `${at}.type`);
    const f = t.function;
    if (!isObject(f)) throw invalid(`${at}.function must be an object`, `${at}.function`);
    if (typeof f.name !== "string") throw invalid(`${at}.function.name must be a string`, `${at}.function.name`);
    if (f.description != null && typeof f.description !== "string") throw invalid(`${at}.function.description must be a string`, `${at}.function.description`);
    if (f.parameters != null && !isObject(f.parameters)) throw invalid(`${at}.function.parameters must be a JSON Schema object`, `${at}.function.parameters`);
    if (f.strict != null && typeof f.strict !== "boolean") throw invalid(`${at}.function.strict must be a boolean`, `${at}.function.strict`);
    return {
      name: f.name,
      ...(typeof f.description === "string" ? { description: f.description } : {}),
      parameters: (f.parameters as Record<string, unknown> | undefined) ?? {},
      ...(typeof f.strict === "boolean" ? { strict: f.strict } : {}),
    };
  });
}

export function parseToolChoice(c: unknown): ToolChoice | undefined {
  if (c == null) return undefined;
  if (c === "auto" || c === "none" || c === "required") return c;
  if (isObject(c) && c.type === "function" && isObject(c.function) && typeof c.function.name === "string") return { name: c.function.name };
  throw invalid("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": …}}", "tool_choice");
}

function parseResponseFormat(rf: ChatCompletionRequest["response_format"]): GenerateRequest["constraint"] {
  if (rf == null || rf.type === "text") return undefined;
  if (rf.type === "json_object") return { type: "json_object" };
  if (rf.type !== "json_schema") throw badRequest(`response_format.type '${rf.type}' is not supported (text, json_object, json_schema)`, "response_format.type");
  const js = (rf as { json_schema?: unknown }).json_schema;
  if (!isObject(js)) throw invalid("response_format.json_schema must be an object", "response_format.json_schema");
  if (typeof js.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(js.name)) {
    throw invalid("response_format.json_schema.name must be 1-64 letters, digits, '_' or '-'", "response_format.json_schema.name");
  }
  const schema = js.schema ?? {};
  if (!isObject(schema)) throw invalid("response_format.json_schema.schema must be a JSON Schema object", "response_format.json_schema.schema");
  return { type: "json_schema", schema, name: js.name, ...(typeof js.strict === "boolean" ? { strict: js.strict } : {}) };
}

/** The tool and response-format fields of a chat request; every refusal names its field. */
export function toolFields(body: ChatCompletionRequest): ToolFields {
  const tools = parseTools(body.tools);
  const toolChoice = parseToolChoice(body.tool_choice);
  if (toolChoice !== undefined && toolChoice !== "none" && tools.length === 0) {
    throw invalid("tool_choice is set but 'tools' is empty", "tool_choice");
  }
  const constraint = parseResponseFormat(body.response_format);
  return {
    ...(tools.length > 0 ? { tools } : {}),
    ...(toolChoice !== undefined ? { toolChoice } : {}),
    ...(body.parallel_tool_calls != null ? { parallelToolCalls: body.parallel_tool_calls } : {}),
    ...(constraint ? { constraint } : {}),
  };
}

/** `messages[i].tool_calls` of an assistant turn. */
export function parseMessageToolCalls(raw: unknown, i: number): ToolCall[] {
  const at = `messages[${i}].tool_calls`;
  if (!Array.isArray(raw)) throw invalid(`${at} must be an array`, at);
  return raw.map((c, j) => {
    const p = `${at}[${j}]`;
    if (!isObject(c) || !isObject(c.function)) throw invalid(`${p} must be {id, type: "function", function: {name, arguments}}`, p);
    if (c.type != null && c.type !== "function") throw badRequest(`${p}.type ${JSON.stringify(c.type)} is not supported (only 'function')`, `${p}.type`);
    const f = c.function;
    if (typeof f.name !== "string") throw invalid(`${p}.function.name must be a string`, `${p}.function.name`);
    const args = typeof f.arguments === "string" ? f.arguments : f.arguments == null ? "{}" : JSON.stringify(f.arguments);
    return { id: typeof c.id === "string" ? c.id : `call_${j}`, name: f.name, arguments: args };
  });
}

export type OpenAIToolCall = { id: string; type: "function"; function: { name: string; arguments: string } };

export function toOpenAIToolCalls(calls: readonly ToolCall[]): OpenAIToolCall[] {
  return calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
}

type ToolDelta = { index: number; id?: string; type?: "function"; function: { name?: string; arguments: string } };

/** A chunk's stream delta (null when it carries nothing to send): id, type and name only in a call's first delta. */
export function chatDelta(ev: GenerateChunk): { content?: string | null; reasoning_content?: string; tool_calls?: ToolDelta[] } | null {
  const calls = ev.toolCalls ?? [];
  if (ev.text === "" && ev.reasoning === "" && calls.length === 0) return null;
  const tool_calls = calls.map((d): ToolDelta =>
    d.id !== undefined ? { index: d.index, id: d.id, type: "function", function: { name: d.name ?? "", arguments: d.arguments } } : { index: d.index, function: { arguments: d.arguments } },
  );
  return {
    ...(ev.reasoning !== "" ? { reasoning_content: ev.reasoning } : {}),
    ...(ev.text !== "" || (ev.reasoning === "" && calls.length === 0) ? { content: ev.text } : {}),
    ...(tool_calls.length > 0 ? { tool_calls } : {}),
  };
}

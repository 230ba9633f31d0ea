/**
 * Tools in a generate request: checks (a 400 naming the field), the HF chat-template shapes of tools and
 * tool turns, and the grammar a request needs (response_format, or a forced call's arguments).
 */
import { MlxkError } from "../errors.ts";
import type { ChatMessage as TemplateMessage } from "../generate/chat-template.ts";
import { checkSchema } from "../generate/json-schema-check.ts";
import type { ForcedChoice } from "../generate/tool-calls/forced.ts";
import type { ToolCallFormat } from "../generate/tool-calls/index.ts";
import type { ChatMessage, GenerateRequest, ToolDefinition } from "./types.ts";

function invalid(message: string, param: string): MlxkError {
  return new MlxkError("validation_error", message, { extra: { param, code: "invalid_value" } });
}

/** One call in a family's own syntax: fixed text, the arguments (a JSON Schema), fixed text. */
export interface CallTag {
  begin: string;
  schema: Record<string, unknown>;
  end: string;
}

/**
 * What the decoder must enforce: any JSON object; a JSON Schema; or calls in the model's own call syntax —
 * exactly one (`one`), one or more (`any`), or free text in which every call that starts must be valid
 * (`triggered`, tool_choice auto).
 */
export type GrammarSpec =
  | { kind: "json_object" }
  | { kind: "schema"; schema: Record<string, unknown>; param: string }
  | { kind: "tags"; mode: "one" | "any" | "triggered"; tags: CallTag[]; separator: string; trigger: string; stopAfterFirst: boolean; param: string };

interface NativeSyntax {
  begin: (name: string) => string;
  end: string;
  separator: string;
  /** Text that opens a call inside free text (tool_choice auto); null: calls are not enforced under auto. */
  trigger: string | null;
}

/** Families whose call syntax wraps a JSON arguments object in fixed text the grammar can force. */
const NATIVE: Partial<Record<ToolCallFormat, NativeSyntax>> = {
  hermes: { begin: (n) => `<tool_call>\n{"name": "${n}", "arguments": `, end: "}\n</tool_call>", separator: "\n", trigger: "<tool_call>" },
  // <|python_tag|> is a special token (never produced under a grammar) and a bare "{" starts plain JSON answers too:
  // Llama calls are forced in their JSON form, but not enforced under auto.
  llama3: { begin: (n) => `{"name": "${n}", "parameters": `, end: "}", separator: "; ", trigger: null },
  // Mistral calls run to the end of the answer (read once it is complete), so free text after an enforced call
  // would spoil them: forced in their own syntax, not enforced under auto.
  mistral: { begin: (n) => `[TOOL_CALLS][{"name": "${n}", "arguments": `, end: "}]", separator: "\n", trigger: null },
};
/** Mistral v11+ templates (Mistral Small 3.2, Devstral, Magistral) write `[TOOL_CALLS]name[ARGS]{…}`. */
const MISTRAL_ARGS: NativeSyntax = { begin: (n) => `[TOOL_CALLS]${n}[ARGS]`, end: "", separator: "\n", trigger: null };

/** The call syntax of a format, given the chat template it came from. */
export function nativeSyntax(format: ToolCallFormat | null, template: string | null): NativeSyntax | undefined {
  if (format === "mistral" && template?.includes("[ARGS]")) return MISTRAL_ARGS;
  return format ? NATIVE[format] : undefined;
}


export function checkToolRequest(req: GenerateRequest): void {
  const tools = req.tools ?? [];
  const names = new Set<string>();
  tools.forEach((t, i) => {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(t.name)) throw invalid(`tools[${i}].function.name must be 1-64 letters, digits, '_', '.' or '-'`, `tools[${i}].function.name`);
    if (names.has(t.name)) throw invalid(`tools[${i}].function.name '${t.name}' is given twice`, `tools[${i}].function.name`);
    names.add(t.name);
  });
  const choice = req.toolChoice;
  if (choice === "required" && tools.length === 0) throw invalid("tool_choice 'required' needs at least one tool in 'tools'", "tool_choice");
  if (typeof choice === "object" && !names.has(choice.name)) {
    throw invalid(`tool_choice names function '${choice.name}', which is not in 'tools'`, "tool_choice");
  }
  const forced = forcedToolChoice(req);
  if (req.constraint && tools.length > 0 && choice !== "none" && !forced) {
    // Enforcing JSON would also forbid the model's own tool-call syntax: both cannot be honoured at once.
    throw invalid("response_format cannot be enforced while the model may call tools (tool_choice 'auto'); use tool_choice 'none' or 'required'", "response_format");
  }
}

export function forcedToolChoice(req: GenerateRequest): ForcedChoice | null {
  const choice = req.toolChoice;
  const tools = req.tools ?? [];
  if (tools.length === 0 || choice === undefined || choice === "auto" || choice === "none") return null;
  if (choice === "required") return { kind: "required", parallel: req.parallelToolCalls !== false };
  const tool = tools.find((t) => t.name === choice.name);
  return tool ? { kind: "named", tool } : null;
}

/** A function's parameters as an object schema (an empty or missing one accepts any object). */
export function parametersSchema(t: ToolDefinition): Record<string, unknown> {
  const p = t.parameters;
  if (!p || Object.keys(p).length === 0) return { type: "object" };
  return p;
}

/**
 * The grammar of a request. A named call's output is its arguments object; `required` is a JSON array
 * of `{name, arguments}` (one item unless parallel calls are allowed), as vLLM enforces it.
 */
export function grammarFor(req: GenerateRequest, native?: NativeSyntax): GrammarSpec | null {
  const forced = forcedToolChoice(req);
  const tools = req.tools ?? [];
  if (native && tools.length > 0 && req.toolChoice !== "none" && !req.constraint) {
    const tags = (list: readonly ToolDefinition[]) => list.map((t) => ({ begin: native.begin(t.name), schema: parametersSchema(t), end: native.end }));
    const base = { kind: "tags" as const, separator: native.separator, trigger: native.trigger ?? "", stopAfterFirst: req.parallelToolCalls === false };
    if (forced?.kind === "named") return { ...base, mode: "one", tags: tags([forced.tool]), param: `tools[${tools.indexOf(forced.tool)}].function.parameters` };
    if (forced?.kind === "required") return { ...base, mode: "any", tags: tags(tools), param: "tools" };
    // auto: enforce the calls the model starts, when every function's parameters can be enforced (auto never promised it).
    if (!forced && native.trigger && tools.every((t) => enforceable(parametersSchema(t)))) return { ...base, mode: "triggered", tags: tags(tools), param: "tools" };
  }
  if (forced?.kind === "named") return { kind: "schema", schema: parametersSchema(forced.tool), param: `tools[${(req.tools ?? []).indexOf(forced.tool)}].function.parameters` };
  if (forced?.kind === "required") {
    const items = (req.tools ?? []).map((t) => ({
      type: "object",
      properties: { name: { const: t.name }, arguments: parametersSchema(t) },
      required: ["name", "arguments"],
      additionalProperties: false,
    }));
    return {
      kind: "schema",
      schema: { type: "array", items: items.length === 1 ? items[0] : { anyOf: items }, minItems: 1, ...(forced.parallel ? {} : { maxItems: 1 }) },
      param: "tools",
    };
  }
  const c = req.constraint;
  if (!c) return null;
  if (c.type === "json_object") return { kind: "json_object" };
  return { kind: "schema", schema: c.schema, param: "response_format.json_schema.schema" };
}

function enforceable(schema: Record<string, unknown>): boolean {
  try {
    checkSchema(schema, "schema");
    return true;
  } catch {
    return false;
  }
}

/** Arguments as templates expect them: an object (they `tojson` it); text that is not a JSON object stays text. */
function templateArguments(args: string): unknown {
  try {
    const v = JSON.parse(args) as unknown;
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : args;
  } catch {
    return args;
  }
}

/** An engine chat message in the shape HF chat templates read (`tool_calls[].function`, `tool_call_id`). */
export function templateMessage(m: ChatMessage): TemplateMessage {
  return {
    role: m.role,
    content: m.content,
    ...(m.toolCalls && m.toolCalls.length > 0
      ? { tool_calls: m.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: templateArguments(c.arguments) } })) }
      : {}),
    ...(m.toolCallId !== undefined ? { tool_call_id: m.toolCallId } : {}),
    ...(m.name !== undefined ? { name: m.name } : {}),
  };
}

/** A tool in the OpenAI/HF shape chat templates iterate over. */
export function templateTool(t: ToolDefinition): Record<string, unknown> {
  return {
    type: "function",
    function: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), parameters: parametersSchema(t) },
  };
}

/** The functions described in the system turn, for templates that do not render `tools` themselves. */
export function withToolsPrompt(messages: readonly ChatMessage[], tools: readonly ToolDefinition[]): ChatMessage[] {
  const list = tools.map((t) => JSON.stringify(templateTool(t))).join("\n");
  const note = `You can call these functions (JSON Schema of their arguments):\n${list}`;
  const first = messages[0];
  if (first && (first.role === "system" || first.role === "developer")) return [{ ...first, content: `${first.content}\n\n${note}` }, ...messages.slice(1)];
  return [{ role: "system", content: note }, ...messages];
}

/**
 * Chat templates: where a model keeps its template, and rendering it with `@huggingface/jinja`
 * the way transformers' `apply_chat_template` does (same variables, `raise_exception`, `strftime_now`).
 *
 * Template sources, first found wins (transformers' precedence): an explicit override,
 * `chat_template.jinja`, `chat_template.json` (`{"chat_template": ...}`), then tokenizer_config.json
 * `chat_template`, which is either a string or a list of `{name, template}` (named templates; "default"
 * unless a name is asked for, "tool_use" when tools are passed and such a template exists).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { MlxkError } from "../errors.ts";

export interface ChatMessage {
  role: string;
  /** A string, or content parts (`[{type:"text", text}, {type:"image"}]`) that the template handles. */
  content: string | Record<string, unknown>[] | null;
  /** Passed through to templates that render earlier reasoning or tool turns. */
  reasoning_content?: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
  name?: string;
}

/** Named templates as found; `default` is the one used unless a name is requested. */
export type ChatTemplates = Record<string, string>;

/** Normalize the `chat_template` field of tokenizer_config.json / chat_template.json into named templates. */
export function parseChatTemplateField(v: unknown): ChatTemplates | null {
  if (typeof v === "string") return { default: v };
  if (Array.isArray(v)) {
    const out: ChatTemplates = {};
    for (const e of v) {
      if (e && typeof e === "object" && typeof e.name === "string" && typeof e.template === "string") out[e.name] = e.template;
    }
    return Object.keys(out).length > 0 ? out : null;
  }
  return null;
}

/** Find a model directory's chat templates (null when it has none). */
export function loadChatTemplates(dir: string, tokenizerConfig: Record<string, unknown>): ChatTemplates | null {
  const jinjaPath = join(dir, "chat_template.jinja");
  if (existsSync(jinjaPath)) return { default: readFileSync(jinjaPath, "utf8") };
  const jsonPath = join(dir, "chat_template.json");
  if (existsSync(jsonPath)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(jsonPath, "utf8"));
    } catch (e) {
      throw new MlxkError("unsupported_model", `Invalid chat_template.json in ${dir}: ${(e as Error).message}`);
    }
    const t = parseChatTemplateField((parsed as { chat_template?: unknown })?.chat_template);
    if (t) return t;
  }
  return parseChatTemplateField(tokenizerConfig.chat_template);
}

/** Pick one template: an explicit name, else "tool_use" when tools are given and present, else "default" (or the only one). */
export function selectChatTemplate(templates: ChatTemplates, opts: { name?: string; hasTools?: boolean } = {}): string {
  if (opts.name !== undefined) {
    const t = templates[opts.name];
    if (t === undefined) {
      throw new MlxkError("InvalidArgumentError", `Chat template '${opts.name}' not found; available: ${Object.keys(templates).join(", ")}`);
    }
    return t;
  }
  if (opts.hasTools && templates.tool_use !== undefined) return templates.tool_use;
  const t = templates.default ?? Object.values(templates)[0];
  if (t === undefined) throw new MlxkError("unsupported_model", "Model has an empty chat template list");
  return t;
}

export interface RenderOptions {
  messages: ChatMessage[];
  /** Append the assistant turn header. @default true */
  addGenerationPrompt?: boolean;
  bosToken?: string | null;
  eosToken?: string | null;
  /** Extra special-token strings exposed like transformers does (unk_token, pad_token). */
  specialTokens?: Record<string, string | null>;
  /** OpenAI-style tool schemas; undefined/empty renders as `tools = none`. */
  tools?: unknown[];
  /** chat_template_kwargs passthrough, e.g. `{ enable_thinking: false }`. */
  kwargs?: Record<string, unknown>;
  /** Clock for `strftime_now` (Llama 3.x templates print today's date). @default () => new Date() */
  now?: () => Date;
}

const compiled = new Map<string, Template>();

function compile(source: string): Template {
  let t = compiled.get(source);
  if (!t) {
    try {
      t = new Template(source);
    } catch (e) {
      throw new MlxkError("unsupported_model", `Cannot parse chat template: ${(e as Error).message}`, { cause: e });
    }
    compiled.set(source, t);
  }
  return t;
}

/** Error raised by a template's own `raise_exception(...)`: the message is the template's, meant for the user. */
export class TemplateError extends MlxkError {
  constructor(message: string) {
    super("InvalidArgumentError", message);
  }
}

/** Render a chat template to the prompt string. Template errors become MlxkError. */
export function renderChatTemplate(source: string, opts: RenderOptions): string {
  const template = compile(source);
  const now = opts.now ?? (() => new Date());
  const context: Record<string, unknown> = {
    // Globals of the library's Template.render, rebuilt here because it refuses to let callers
    // redefine raise_exception/strftime_now (we need a typed error and an injectable clock).
    true: true,
    false: false,
    none: null,
    True: true,
    False: false,
    None: null,
    range: jinjaRange,
    ...opts.specialTokens,
    ...opts.kwargs,
    messages: opts.messages,
    add_generation_prompt: opts.addGenerationPrompt ?? true,
    bos_token: opts.bosToken ?? "",
    eos_token: opts.eosToken ?? "",
    tools: opts.tools && opts.tools.length > 0 ? opts.tools : null,
    documents: null,
    raise_exception: (msg: unknown) => {
      throw new TemplateError(String(msg));
    },
    strftime_now: (fmt: unknown) => strftime(String(fmt), now()),
  };
  try {
    const env = new Environment();
    for (const [k, v] of Object.entries(context)) env.set(k, v);
    const result = new LenientInterpreter(env).run(template.parsed);
    return String(result.value);
  } catch (e) {
    if (e instanceof MlxkError) throw e;
    throw new MlxkError("execution_error", `Chat template failed: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Python's jinja2 lets a string filter take an undefined value as "" (`param.description|trim` on a
 * parameter without a description, as the Hermes tool templates write it); @huggingface/jinja throws.
 * Retry such a filter on an empty string, as jinja2 renders it.
 */
class LenientInterpreter extends Interpreter {
  constructor(private readonly environment: Environment) {
    super(environment);
    const self = this as unknown as { applyFilter: (operand: { type?: string }, node: unknown, env: Environment) => unknown };
    const apply = self.applyFilter.bind(this);
    self.applyFilter = (operand, node, env) => {
      try {
        return apply(operand, node, env);
      } catch (e) {
        if (operand?.type !== "UndefinedValue") throw e;
        return apply(emptyString(this.environment), node, env);
      }
    };
  }
}

/** The library's runtime value for "" (its value classes are not exported; the environment makes one). */
function emptyString(env: Environment): { type?: string } {
  const probe = new Environment(env);
  probe.set("__mlxk_empty", "");
  return probe.lookupVariable("__mlxk_empty") as { type?: string };
}

/** Python's range(stop) / range(start, stop[, step]). */
function jinjaRange(a: number, b?: number, step = 1): number[] {
  const [start, stop] = b === undefined ? [0, a] : [a, b];
  if (step === 0) throw new TemplateError("range() arg 3 must not be zero");
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/** The strftime subset chat templates use (%d %m %Y %y %b %B %a %A %H %M %S %%), local time like Python's. */
export function strftime(fmt: string, d: Date): string {
  const p2 = (n: number) => String(n).padStart(2, "0");
  return fmt.replace(/%([dmYybBaAHMS%])/g, (_, c: string) => {
    switch (c) {
      case "d":
        return p2(d.getDate());
      case "m":
        return p2(d.getMonth() + 1);
      case "Y":
        return String(d.getFullYear());
      case "y":
        return p2(d.getFullYear() % 100);
      case "b":
        return (MONTHS[d.getMonth()] ?? "").slice(0, 3);
      case "B":
        return MONTHS[d.getMonth()] ?? "";
      case "a":
        return (DAYS[d.getDay()] ?? "").slice(0, 3);
      case "A":
        return DAYS[d.getDay()] ?? "";
      case "H":
        return p2(d.getHours());
      case "M":
        return p2(d.getMinutes());
      case "S":
        return p2(d.getSeconds());
      default:
        return "%";
    }
  });
}

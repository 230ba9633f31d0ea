/**
 * Ollama's native API ⇄ the engine contract. Pure: names as Ollama clients send them (`name:latest`,
 * `hf.co/org/name`), `options` → sampling (what cannot be honoured is a 400 naming the option, runtime hints
 * that do not change the answer are accepted), `keep_alive` durations, and the NDJSON line shapes.
 */
import * as v from "valibot";
import type { ChatMessage, GenerateChunk, GenerateDone, GenerateRequest, SamplingParams, ToolCall } from "../../engine/types.ts";
import { DEFAULT_SAMPLING } from "../../generate/sample.ts";
import { badRequest } from "../errors.ts";
import { parseTools } from "../openai/tools.ts";

/**
 * What /api/version reports: the Ollama API level these routes follow (bare semver; clients such as VS Code
 * Copilot refuse servers below a minimum version), not mlxk's own version.
 */
export const OLLAMA_API_VERSION = "0.12.0";

const nullish = <T extends v.GenericSchema>(s: T) => v.optional(v.nullable(s));

const KeepAlive = nullish(v.union([v.number(), v.string()], "must be a duration (\"5m\", \"1h\") or a number of seconds"));
const Format = nullish(v.union([v.string(), v.record(v.string(), v.unknown())], "must be \"json\" or a JSON schema object"));
const Think = nullish(v.union([v.boolean(), v.picklist(["high", "medium", "low"])], "must be a boolean or high/medium/low"));
const Options = nullish(v.record(v.string(), v.unknown(), "must be an object"));

export const OllamaMessageSchema = v.looseObject({
  role: v.picklist(["system", "user", "assistant", "tool"], "must be one of system, user, assistant, tool"),
  content: nullish(v.string("must be a string")),
  images: nullish(v.array(v.string())),
  thinking: nullish(v.string()),
  tool_calls: nullish(v.array(v.unknown())),
  tool_name: nullish(v.string()),
});

const common = {
  model: v.optional(v.string("must be a string")),
  /** Older clients send `name`. */
  name: v.optional(v.string("must be a string")),
  stream: nullish(v.boolean("must be a boolean")),
  format: Format,
  options: Options,
  keep_alive: KeepAlive,
  think: Think,
};

export const ChatRequestSchema = v.looseObject({
  ...common,
  messages: nullish(v.array(OllamaMessageSchema, "must be an array of messages")),
  tools: nullish(v.array(v.unknown())),
});
export type ChatRequest = v.InferOutput<typeof ChatRequestSchema>;

export const GenerateRequestSchema = v.looseObject({
  ...common,
  prompt: nullish(v.string("must be a string")),
  system: nullish(v.string("must be a string")),
  suffix: nullish(v.string()),
  template: nullish(v.string()),
  context: nullish(v.array(v.number())),
  raw: nullish(v.boolean("must be a boolean")),
  images: nullish(v.array(v.string())),
});
export type GenerateRequestBody = v.InferOutput<typeof GenerateRequestSchema>;

export const EmbedRequestSchema = v.looseObject({
  model: v.optional(v.string("must be a string")),
  name: v.optional(v.string("must be a string")),
  input: v.union([v.string(), v.array(v.string())], "must be a string or an array of strings"),
  /** Ollama cuts over-long inputs by default. */
  truncate: nullish(v.boolean("must be a boolean")),
  dimensions: nullish(v.pipe(v.number(), v.integer("must be an integer"), v.minValue(1, "must be >= 1"))),
  options: Options,
  keep_alive: KeepAlive,
});
/** The older single-prompt endpoint (/api/embeddings). */
export const LegacyEmbedRequestSchema = v.looseObject({
  model: v.optional(v.string("must be a string")),
  name: v.optional(v.string("must be a string")),
  prompt: v.string("must be a string"),
  options: Options,
  keep_alive: KeepAlive,
});

export const ModelNameSchema = v.looseObject({ model: v.optional(v.string()), name: v.optional(v.string()), verbose: nullish(v.boolean()) });
export const PullRequestSchema = v.looseObject({ model: v.optional(v.string()), name: v.optional(v.string()), insecure: nullish(v.boolean()), stream: nullish(v.boolean()) });

/** The model a request names (`model`, or `name` of older clients); undefined when none. */
export function requestedName(body: { model?: string; name?: string }): string | undefined {
  const n = body.model ?? body.name;
  return n === undefined || n.trim() === "" ? undefined : n.trim();
}

/**
 * An Ollama-style name → our resolver's spec: `hf.co/` (and `huggingface.co/`) prefixes go, `:latest` is the
 * default tag and goes too. Names the server was told to serve (`--served-model-name`) are kept verbatim.
 */
export function toSpec(name: string, served: readonly string[] = []): string {
  if (served.includes(name)) return name;
  let s = name.replace(/^(https?:\/\/)?(hf\.co|huggingface\.co)\//i, "");
  if (s.toLowerCase().endsWith(":latest")) s = s.slice(0, -":latest".length);
  return s;
}

/** How /api/tags names a model: with the `:latest` tag Ollama clients expect. */
export function toOllamaName(id: string): string {
  return /:[^/]+$/.test(id) ? id : `${id}:latest`;
}

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * keep_alive / --keep-alive → milliseconds: a number is seconds, a string is a Go duration ("5m", "1h30m",
 * "90s") or a bare number of seconds; negative = keep forever (null), 0 = unload after the request.
 */
export function parseKeepAlive(value: number | string, param = "keep_alive"): number | null {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw badRequest(`${param} must be a finite number of seconds`, param, "invalid_value");
    return value < 0 ? null : Math.round(value * 1000);
  }
  const s = value.trim();
  if (/^-?\d+(\.\d+)?$/.test(s)) return parseKeepAlive(Number(s), param);
  const m = /^(-)?((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$/.exec(s);
  if (!m) throw badRequest(`${param} '${value}' is not a duration (e.g. "5m", "1h", "30s", "-1" to keep loaded, "0" to unload)`, param, "invalid_value");
  if (m[1]) return null;
  let ms = 0;
  for (const part of m[2]!.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(part[1]) * UNITS[part[2]!]!;
  return Math.round(ms);
}

/** Options that only tune the runtime (threads, batching, memory mapping): the answer is the same without them. */
const RUNTIME_HINTS = new Set(["num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap", "use_mlock", "numa", "low_vram", "f16_kv", "vocab_only", "logits_all", "num_keep"]);
/** Sampling options we do not implement, with the value that means "off". */
const NEUTRAL: Record<string, number | boolean> = { typical_p: 1, tfs_z: 1, mirostat: 0, presence_penalty: 0, frequency_penalty: 0, penalize_newline: false };
const ALSO_NEUTRAL_WITH_MIROSTAT_OFF = new Set(["mirostat_tau", "mirostat_eta"]);

export type ToolFields = Pick<GenerateRequest, "tools" | "constraint">;

export interface OllamaPlan {
  /** tools (OpenAI's function format) and `format` as the constraint the decoder enforces. */
  tools: ToolFields;
  maxTokens: number | null;
  sampling: SamplingParams;
  stop: string[];
  contextLimit?: number;
  keepAliveMs?: number | null;
  stream: boolean;
}

function optNumber(opts: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = opts[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) throw badRequest(`options.${key} must be a number between ${min} and ${max}`, `options.${key}`, "invalid_value");
  return v;
}

function optInt(opts: Record<string, unknown>, key: string, min: number): number | undefined {
  const v = optNumber(opts, key, min, Number.MAX_SAFE_INTEGER);
  if (v !== undefined && !Number.isInteger(v)) throw badRequest(`options.${key} must be an integer`, `options.${key}`, "invalid_value");
  return v;
}

/** `options`, `keep_alive`, `format`, `stream` → the run settings. */
export function fromOptions(body: { options?: Record<string, unknown> | null; keep_alive?: number | string | null; format?: unknown; stream?: boolean | null }): OllamaPlan {
  const o = body.options ?? {};
  for (const [k, val] of Object.entries(o)) {
    if (RUNTIME_HINTS.has(k)) continue;
    if (k in NEUTRAL) {
      if (val !== null && val !== NEUTRAL[k]) throw badRequest(`options.${k} is not supported (leave it at ${String(NEUTRAL[k])}); use temperature, top_p, top_k, min_p or repeat_penalty`, `options.${k}`);
      continue;
    }
    if (ALSO_NEUTRAL_WITH_MIROSTAT_OFF.has(k)) continue;
    if (!["num_predict", "num_ctx", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n", "seed", "stop"].includes(k)) {
      throw badRequest(`options.${k} is not a known option`, `options.${k}`, "invalid_value");
    }
  }
  let constraint: GenerateRequest["constraint"];
  if (body.format === "json") constraint = { type: "json_object" };
  else if (typeof body.format === "object" && body.format !== null) constraint = { type: "json_schema", schema: body.format as Record<string, unknown> };
  else if (body.format != null && body.format !== "") throw badRequest(`format '${String(body.format)}' must be "json" or a JSON schema object`, "format", "invalid_value");
  const predict = optInt(o, "num_predict", -2);
  const numCtx = optInt(o, "num_ctx", 1);
  const lastN = optInt(o, "repeat_last_n", -1);
  const stopRaw = o.stop;
  let stop: string[] = [];
  if (stopRaw !== undefined && stopRaw !== null) {
    if (typeof stopRaw === "string") stop = [stopRaw];
    else if (Array.isArray(stopRaw) && stopRaw.every((x) => typeof x === "string")) stop = stopRaw as string[];
    else throw badRequest("options.stop must be a string or an array of strings", "options.stop", "invalid_value");
    stop = stop.filter((s) => s !== "");
  }
  const seed = optInt(o, "seed", Number.MIN_SAFE_INTEGER);
  const repeatPenalty = optNumber(o, "repeat_penalty", 0, 10);
  return {
    tools: constraint ? { constraint } : {},
    // -1 = until the context is full, -2 = fill the context: both are the engine's own bound
    maxTokens: predict === undefined || predict === 0 ? null : predict < 0 ? Number.MAX_SAFE_INTEGER : predict,
    sampling: {
      temperature: optNumber(o, "temperature", 0, 2) ?? DEFAULT_SAMPLING.temperature,
      topP: optNumber(o, "top_p", 0, 1) ?? DEFAULT_SAMPLING.topP,
      topK: optInt(o, "top_k", 0) ?? DEFAULT_SAMPLING.topK,
      minP: optNumber(o, "min_p", 0, 1) ?? DEFAULT_SAMPLING.minP,
      // repeat_last_n 0 disables the penalty, -1 looks back over the whole context
      repetitionPenalty: lastN === 0 ? 1 : (repeatPenalty ?? DEFAULT_SAMPLING.repetitionPenalty),
      repetitionContextSize: lastN === undefined || lastN === 0 ? DEFAULT_SAMPLING.repetitionContextSize : lastN < 0 ? Number.MAX_SAFE_INTEGER : lastN,
      ...(seed !== undefined && seed >= 0 ? { seed } : {}),
    },
    stop,
    ...(numCtx !== undefined ? { contextLimit: numCtx } : {}),
    ...(body.keep_alive != null ? { keepAliveMs: parseKeepAlive(body.keep_alive) } : {}),
    stream: body.stream !== false,
  };
}

/** `think: false` turns thinking off where the template has the switch; levels and true keep the model's default. */
function withThink(messages: ChatMessage[], think: boolean | string | null | undefined): GenerateRequest["input"] {
  return think === false ? { messages, templateKwargs: { enable_thinking: false } } : { messages };
}

/**
 * Ollama's assistant `tool_calls: [{function: {name, arguments: {…}}}]` (arguments an object, ids optional) and
 * tool turns that name the function (`tool_name`) instead of a call id: ids are made up and matched by name.
 */
function toolCallsOf(raw: unknown[], i: number, turn: number): ToolCall[] {
  return raw.map((c, j) => {
    const p = `messages[${i}].tool_calls[${j}]`;
    const f = (c as { function?: { name?: unknown; arguments?: unknown } }).function;
    if (!f || typeof f.name !== "string") throw badRequest(`${p}.function.name is required`, `${p}.function.name`, "missing_required_parameter");
    const args = typeof f.arguments === "string" ? f.arguments : JSON.stringify(f.arguments ?? {});
    const id = (c as { id?: unknown }).id;
    return { id: typeof id === "string" ? id : `call_${turn}_${j}`, name: f.name, arguments: args };
  });
}

export function fromChat(body: ChatRequest): { input: GenerateRequest["input"] | null; plan: OllamaPlan } {
  const plan = fromOptions(body);
  const tools = parseTools(body.tools);
  if (tools.length > 0) plan.tools = { ...plan.tools, tools };
  const msgs = body.messages ?? [];
  if (msgs.length === 0) return { input: null, plan };
  const pending: ToolCall[] = [];
  const messages = msgs.map((m, i): ChatMessage => {
    if (m.images != null && m.images.length > 0) throw badRequest(`messages[${i}].images: images are not supported (text models only)`, `messages[${i}].images`);
    if (m.tool_calls != null && m.tool_calls.length > 0) {
      if (m.role !== "assistant") throw badRequest(`messages[${i}].tool_calls is only allowed on assistant messages`, `messages[${i}].tool_calls`, "invalid_value");
      const calls = toolCallsOf(m.tool_calls, i, i);
      pending.push(...calls);
      return { role: "assistant", content: m.content ?? "", toolCalls: calls };
    }
    if (m.role === "tool") {
      // answer the oldest open call of that name (or the oldest open call when the client names none)
      const at = pending.findIndex((c) => m.tool_name == null || c.name === m.tool_name);
      const call = at >= 0 ? pending.splice(at, 1)[0] : undefined;
      return { role: "tool", content: m.content ?? "", ...(call ? { toolCallId: call.id } : {}), ...(m.tool_name ? { name: m.tool_name } : call ? { name: call.name } : {}) };
    }
    return { role: m.role, content: m.content ?? "" };
  });
  return { input: withThink(messages, body.think), plan };
}

export function fromGenerate(body: GenerateRequestBody): { input: GenerateRequest["input"] | null; plan: OllamaPlan } {
  if (body.template != null && body.template !== "") throw badRequest("Parameter 'template' is not supported: the model's own chat template is used (or send raw: true)", "template");
  if (body.suffix != null && body.suffix !== "") throw badRequest("Parameter 'suffix' is not supported (no fill-in-the-middle)", "suffix");
  if (body.context != null && body.context.length > 0) throw badRequest("Parameter 'context' is not supported: send the conversation to /api/chat instead", "context");
  if (body.images != null && body.images.length > 0) throw badRequest("Parameter 'images' is not supported (text models only)", "images");
  const plan = fromOptions(body);
  const prompt = body.prompt ?? "";
  if (prompt === "") return { input: null, plan };
  if (body.raw === true) {
    if (body.system) throw badRequest("Parameter 'system' cannot be combined with raw: true", "system");
    return { input: { prompt }, plan };
  }
  const messages: ChatMessage[] = [...(body.system ? [{ role: "system" as const, content: body.system }] : []), { role: "user", content: prompt }];
  return { input: withThink(messages, body.think), plan };
}

// ---- output -------------------------------------------------------------------------------------------

const NS_PER_MS = 1e6;

export function isoNow(now = Date.now()): string {
  return new Date(now).toISOString();
}

export function doneReason(d: GenerateDone): "stop" | "length" {
  return d.finishReason === "length" ? "length" : "stop";
}

/** The statistics of the final line, in nanoseconds as Ollama reports them. */
export function doneStats(d: GenerateDone, totalMs: number) {
  return {
    done_reason: doneReason(d),
    total_duration: Math.round(totalMs * NS_PER_MS),
    load_duration: 0,
    // The whole prompt, cached part included (Ollama's semantics); the part reused from the prompt cache apart.
    prompt_eval_count: d.usage.promptTokens,
    ...(d.usage.cachedTokens !== undefined ? { prompt_eval_cached_count: d.usage.cachedTokens } : {}),
    prompt_eval_duration: Math.round(d.timings.prefillMs * NS_PER_MS),
    eval_count: d.usage.completionTokens,
    eval_duration: Math.round(d.timings.decodeMs * NS_PER_MS),
  };
}

/** Ollama's call shape: arguments as an object, with the id and position newer clients read. */
export function toOllamaToolCalls(calls: readonly ToolCall[], first = 0) {
  return calls.map((c, k) => {
    let args: unknown = {};
    try {
      args = JSON.parse(c.arguments === "" ? "{}" : c.arguments);
    } catch {
      args = {};
    }
    return { id: c.id, function: { index: first + k, name: c.name, arguments: args } };
  });
}

export function chatLine(model: string, c: Pick<GenerateChunk, "text" | "reasoning">, calls: readonly ToolCall[] = [], first = 0) {
  return {
    model,
    created_at: isoNow(),
    message: {
      role: "assistant",
      content: c.text,
      ...(c.reasoning !== "" ? { thinking: c.reasoning } : {}),
      ...(calls.length > 0 ? { tool_calls: toOllamaToolCalls(calls, first) } : {}),
    },
    done: false,
  };
}

export function chatDone(model: string, d: GenerateDone, totalMs: number, full?: { text: string; reasoning: string; toolCalls?: ToolCall[] }) {
  return {
    model,
    created_at: isoNow(),
    message: {
      role: "assistant",
      content: full?.text ?? "",
      ...(full?.reasoning ? { thinking: full.reasoning } : {}),
      ...(full?.toolCalls && full.toolCalls.length > 0 ? { tool_calls: toOllamaToolCalls(full.toolCalls) } : {}),
    },
    done: true,
    ...doneStats(d, totalMs),
  };
}

export function generateLine(model: string, c: Pick<GenerateChunk, "text" | "reasoning">) {
  return { model, created_at: isoNow(), response: c.text, ...(c.reasoning !== "" ? { thinking: c.reasoning } : {}), done: false };
}

export function generateDone(model: string, d: GenerateDone, totalMs: number, full?: { text: string; reasoning: string }) {
  return { model, created_at: isoNow(), response: full?.text ?? "", ...(full?.reasoning ? { thinking: full.reasoning } : {}), done: true, ...doneStats(d, totalMs) };
}

/** The answer to a request without prompt/messages: Ollama's way to load (or, with keep_alive 0, unload) a model. */
export function loadLine(kind: "chat" | "generate", model: string, reason: "load" | "unload") {
  const base = { model, created_at: isoNow(), done: true, done_reason: reason };
  return kind === "chat" ? { ...base, message: { role: "assistant", content: "" } } : { ...base, response: "" };
}

export interface ModelDetails {
  parent_model: string;
  format: "gguf" | "safetensors";
  family: string;
  families: string[];
  parameter_size: string;
  quantization_level: string;
}

export function modelDetails(t: { path: string; modelType?: string | null; quantization?: string | null }): ModelDetails {
  const family = t.modelType ?? "";
  return {
    parent_model: "",
    format: t.path.toLowerCase().endsWith(".gguf") ? "gguf" : "safetensors",
    family,
    families: family ? [family] : [],
    parameter_size: "",
    quantization_level: t.quantization ?? "",
  };
}

/** Ollama's digest field: stable per model id (clients use it as a key), not a content hash. */
export function pseudoDigest(id: string): string {
  return new Bun.CryptoHasher("sha256").update(id).digest("hex");
}

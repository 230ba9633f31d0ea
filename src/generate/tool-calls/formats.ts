/** Body parsers of each family's call syntax (see index.ts). Each returns null when the text is not a well-formed call. */
import type { ToolDefinition } from "../../engine/types.ts";

export interface ParsedCall {
  name: string;
  arguments: Record<string, unknown>;
  id?: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function tryJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** `{"name": "f", "arguments": {...}}`; arguments may be a JSON string, or spelled `parameters`. */
function callFromObject(o: unknown): ParsedCall | null {
  if (!isObject(o) || typeof o.name !== "string" || o.name === "") return null;
  let args: unknown = o.arguments ?? o.parameters ?? {};
  if (typeof args === "string") args = tryJson(args);
  if (!isObject(args)) return null;
  return { name: o.name, arguments: args, ...(typeof o.id === "string" ? { id: o.id } : {}) };
}

export function parseHermesBody(body: string): ParsedCall[] | null {
  const c = callFromObject(tryJson(body.trim()));
  return c ? [c] : null;
}

function schemaType(tools: readonly ToolDefinition[], fn: string, param: string): string | undefined {
  const props = tools.find((t) => t.name === fn)?.parameters?.properties;
  const p = isObject(props) ? props[param] : undefined;
  const type = isObject(p) ? p.type : undefined;
  return typeof type === "string" ? type : Array.isArray(type) ? type.find((t) => t !== "null") : undefined;
}

/** A parameter's text as the schema types it: strings stay text, everything else is read as JSON when it is. */
function typedValue(raw: string, type: string | undefined): unknown {
  const v = raw.replace(/^\n/, "").replace(/\n$/, "");
  if (type === "string") return v;
  const t = v.trim();
  if (type === "integer" || type === "number") {
    const n = Number(t);
    return t !== "" && Number.isFinite(n) ? n : v;
  }
  if (type === "boolean") return t === "true" ? true : t === "false" ? false : v;
  if (t === "null") return null;
  const j = tryJson(t);
  return j === undefined ? v : j;
}

/** `<function=name>\n<parameter=p>\nvalue\n</parameter>\n</function>`, one or more functions. */
export function parseQwen3CoderBody(body: string, tools: readonly ToolDefinition[]): ParsedCall[] | null {
  const calls: ParsedCall[] = [];
  const fnRe = /<function=([^>\n]+)>([\s\S]*?)(?:<\/function>|$)/g;
  for (const m of body.matchAll(fnRe)) {
    const name = m[1]!.trim();
    const args: Record<string, unknown> = {};
    const inner = m[2]!;
    const paramRe = /<parameter=([^>\n]+)>([\s\S]*?)(?:<\/parameter>|(?=<parameter=)|$)/g;
    for (const p of inner.matchAll(paramRe)) {
      const key = p[1]!.trim();
      args[key] = typedValue(p[2]!, schemaType(tools, name, key));
    }
    if (name === "") return null;
    calls.push({ name, arguments: args });
  }
  return calls.length > 0 ? calls : null;
}

const ESC = '<|"|>';

/** Gemma 4's argument syntax: `{key:value,…}` with `<|"|>`-quoted strings, bare numbers/booleans, nested `{}`/`[]`. */
class Gemma4Reader {
  i = 0;
  constructor(readonly s: string) {}

  value(): unknown {
    const s = this.s;
    if (s.startsWith(ESC, this.i)) {
      const end = s.indexOf(ESC, this.i + ESC.length);
      if (end < 0) throw new Error("unterminated string");
      const v = s.slice(this.i + ESC.length, end);
      this.i = end + ESC.length;
      return v;
    }
    if (s[this.i] === "{") return this.object();
    if (s[this.i] === "[") {
      this.i++;
      const arr: unknown[] = [];
      while (s[this.i] !== "]") {
        if (this.i >= s.length) throw new Error("unterminated list");
        arr.push(this.value());
        if (s[this.i] === ",") this.i++;
      }
      this.i++;
      return arr;
    }
    let j = this.i;
    while (j < s.length && !",}]".includes(s[j]!)) j++;
    const raw = s.slice(this.i, j).trim();
    this.i = j;
    if (raw === "") throw new Error("empty value");
    const v = tryJson(raw);
    return v === undefined ? raw : v;
  }

  object(): Record<string, unknown> {
    const s = this.s;
    if (s[this.i] !== "{") throw new Error("expected {");
    this.i++;
    const o: Record<string, unknown> = {};
    while (s[this.i] !== "}") {
      if (this.i >= s.length) throw new Error("unterminated object");
      const colon = s.indexOf(":", this.i);
      if (colon < 0) throw new Error("expected key");
      const key = s.slice(this.i, colon).trim().replace(/^<\|"\|>|<\|"\|>$/g, "");
      this.i = colon + 1;
      o[key] = this.value();
      if (s[this.i] === ",") this.i++;
    }
    this.i++;
    return o;
  }
}

/** `call:name{…}` (the body between `<|tool_call>` and `<tool_call|>`). */
export function parseGemma4Call(body: string): ParsedCall[] | null {
  const m = /^\s*call:([\w.-]+)\s*/.exec(body);
  if (!m) return null;
  try {
    const r = new Gemma4Reader(body.slice(m[0].length).trimEnd());
    const args = r.object();
    if (r.i !== r.s.length) return null;
    return [{ name: m[1]!, arguments: args }];
  } catch {
    return null;
  }
}

/** Everything after the first `[TOOL_CALLS]`: a JSON list (v3/v7), or `name[ARGS]{…}` / `name[CALL_ID]id[ARGS]{…}` (v11+). */
export function parseMistral(tail: string): ParsedCall[] | null {
  const calls: ParsedCall[] = [];
  for (const seg of tail.split("[TOOL_CALLS]").map((x) => x.trim()).filter((x) => x !== "")) {
    if (seg.startsWith("[") || seg.startsWith("{")) {
      const v = tryJson(seg);
      const list = Array.isArray(v) ? v : [v];
      for (const o of list) {
        const c = callFromObject(o);
        if (!c) return null;
        calls.push(c);
      }
      continue;
    }
    const m = /^([\w.-]+)(?:\[CALL_ID\]([A-Za-z0-9]+))?\[ARGS\]([\s\S]*)$/.exec(seg);
    if (!m) return null;
    const args = tryJson(m[3]!.trim());
    if (!isObject(args)) return null;
    calls.push({ name: m[1]!, arguments: args, ...(m[2] ? { id: m[2] } : {}) });
  }
  return calls.length > 0 ? calls : null;
}

/**
 * A Llama 3.x answer that is a call: `{"name": …, "parameters": {…}}`, several separated by `;`, with or
 * without `<|python_tag|>`. Without a marker, only the names of offered tools count (else it is a JSON answer).
 */
export function parseLlama3(tail: string, tools: readonly ToolDefinition[]): ParsedCall[] | null {
  const tagged = tail.startsWith("<|python_tag|>");
  const body = (tagged ? tail.slice("<|python_tag|>".length) : tail).replace(/<\|eom_id\|>\s*$/, "").trim();
  const whole = tryJson(body);
  const parts = whole !== undefined ? (Array.isArray(whole) ? whole : [whole]) : body.split(/;\s*(?=\{)/).map((p) => tryJson(p.trim()));
  const names = new Set(tools.map((t) => t.name));
  const calls: ParsedCall[] = [];
  for (const p of parts) {
    const c = callFromObject(p);
    if (!c || (!tagged && !names.has(c.name))) return null;
    calls.push(c);
  }
  return calls.length > 0 ? calls : null;
}

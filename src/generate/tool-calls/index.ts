/**
 * Tool-call syntax per model family, found from the chat template / vocabulary (like the reasoning
 * split), and streaming parsers that turn a model's answer text into calls:
 *
 * - `hermes`: `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (Hermes, Qwen2.5, Qwen3)
 * - `qwen3_coder`: `<tool_call><function=name><parameter=p>value</parameter></function></tool_call>`
 * - `llama3`: a bare `{"name": …, "parameters": {…}}` answer, optionally after `<|python_tag|>`
 * - `mistral`: `[TOOL_CALLS][{"name": …, "arguments": {…}}]`, or `[TOOL_CALLS]name[ARGS]{…}` (v11+)
 * - `gemma4`: `<|tool_call>call:name{key:<|"|>text<|"|>,n:1}<tool_call|>`
 * - `harmony` (gpt-oss): `to=functions.name` on the commentary channel; parsed by the reasoning
 *   splitter, which owns harmony headers (src/generate/reasoning.ts).
 *
 * Text that looks like a call but does not parse stays answer text: a parse failure never fails a request.
 */
import type { ToolDefinition } from "../../engine/types.ts";
import type { CallPiece, ParsedText, ToolCallParser } from "./types.ts";
import { parseGemma4Call, parseHermesBody, parseLlama3, parseMistral, parseQwen3CoderBody, type ParsedCall } from "./formats.ts";

export type ToolCallFormat = "hermes" | "qwen3_coder" | "llama3" | "mistral" | "gemma4" | "harmony";

export type { CallPiece, ParsedText, ToolCallParser } from "./types.ts";

/** The family's call syntax, or null when the template shows no tool support. */
export function detectToolCallFormat(o: { chatTemplate?: string | null; hasToken: (t: string) => boolean }): ToolCallFormat | null {
  const t = o.chatTemplate ?? "";
  if (o.hasToken("<|channel|>") && o.hasToken("<|call|>")) return "harmony";
  if (t.includes("<|tool_call>") || o.hasToken("<|tool_call>")) return "gemma4";
  if (t.includes("<function=") && t.includes("<parameter=")) return "qwen3_coder";
  if (t.includes("<tool_call>")) return "hermes";
  if (t.includes("[TOOL_CALLS]")) return "mistral";
  if (t.includes("<|python_tag|>") || (t.includes("<|start_header_id|>") && /\btools\b/.test(t))) return "llama3";
  return null;
}

/** True when the chat template reads the `tools` variable at all. */
export function templateRendersTools(template: string | null): boolean {
  return template !== null && /\btools\b/.test(template);
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

export function newCallId(style: "openai" | "mistral" = "openai"): string {
  const bytes = crypto.getRandomValues(new Uint8Array(style === "mistral" ? 9 : 24));
  const s = Array.from(bytes, (b) => ALNUM[b % ALNUM.length]).join("");
  return style === "mistral" ? s : `call_${s}`;
}

function complete(calls: ParsedCall[]): CallPiece[] {
  return calls.flatMap((c) => [{ name: c.name, ...(c.id ? { id: c.id } : {}), arguments: "" }, { arguments: JSON.stringify(c.arguments) }]);
}

/** Length of the longest suffix of `s` that is a proper prefix of one of `marks`. */
function partialSuffix(s: string, marks: readonly string[]): number {
  let best = 0;
  for (const m of marks) {
    for (let k = Math.min(m.length - 1, s.length); k > best; k--) {
      if (s.endsWith(m.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
}

/** Calls between a start and an end marker (Hermes, Qwen3-Coder, Gemma 4); a body that does not parse stays text. */
class TaggedParser implements ToolCallParser {
  private buf = "";
  private open: [string, string] | null = null;
  private called = false;

  constructor(
    private readonly pairs: [string, string][],
    private readonly parse: (body: string, start: string) => ParsedCall[] | null,
  ) {}

  push(text: string): ParsedText {
    return this.run(text, false);
  }

  flush(): ParsedText {
    return this.run("", true);
  }

  private run(text: string, final: boolean): ParsedText {
    const out: ParsedText = { text: "", calls: [] };
    this.buf += text;
    for (;;) {
      if (this.open) {
        const [start, end] = this.open;
        const at = this.buf.indexOf(end, start.length);
        if (at < 0 && !final) break;
        const body = at < 0 ? this.buf.slice(start.length) : this.buf.slice(start.length, at);
        const raw = at < 0 ? this.buf : this.buf.slice(0, at + end.length);
        // The model may stop right after the body without the closing marker: accept it if it parses.
        const calls = this.parse(body, start);
        if (calls && calls.length > 0) {
          out.calls.push(...complete(calls));
          this.called = true;
        } else out.text += raw;
        this.buf = this.buf.slice(raw.length);
        this.open = null;
        if (at < 0) break;
        continue;
      }
      let at = -1;
      let pair: [string, string] | null = null;
      for (const p of this.pairs) {
        const i = this.buf.indexOf(p[0]);
        if (i >= 0 && (at < 0 || i < at)) {
          at = i;
          pair = p;
        }
      }
      if (pair) {
        this.text(out, this.buf.slice(0, at));
        this.buf = this.buf.slice(at);
        this.open = pair;
        continue;
      }
      const keep = final ? 0 : partialSuffix(this.buf, this.pairs.map((p) => p[0]));
      // After a call, whitespace is held back: it is noise between calls unless real text follows.
      const cut = this.called && !final ? this.buf.length - keep - (/\s*$/.exec(this.buf.slice(0, this.buf.length - keep))?.[0].length ?? 0) : this.buf.length - keep;
      this.text(out, this.buf.slice(0, cut));
      this.buf = this.buf.slice(cut);
      break;
    }
    return out;
  }

  /** Answer text; whitespace-only text after a call is dropped. */
  private text(out: ParsedText, s: string): void {
    if (this.called && s.trim() === "") return;
    out.text += s;
  }
}

/** From a marker to the end of the answer (Mistral `[TOOL_CALLS]`, Llama 3 JSON): parsed once the answer is complete. */
class TailParser implements ToolCallParser {
  private buf = "";
  private held = false;
  private seenText = false;

  constructor(
    private readonly starts: (text: string, atStart: boolean) => number,
    private readonly parse: (tail: string) => ParsedCall[] | null,
    private readonly marks: readonly string[],
    readonly idStyle: "openai" | "mistral" = "openai",
  ) {}

  push(text: string): ParsedText {
    if (this.held) {
      this.buf += text;
      return { text: "", calls: [] };
    }
    const all = this.buf + text;
    const at = this.starts(all, !this.seenText);
    if (at >= 0) {
      this.held = true;
      this.buf = all.slice(at);
      if (all.slice(0, at).trim() !== "") this.seenText = true;
      return { text: all.slice(0, at), calls: [] };
    }
    const keep = partialSuffix(all, this.marks);
    const out = all.slice(0, all.length - keep);
    if (out.trim() !== "") this.seenText = true;
    this.buf = all.slice(all.length - keep);
    return { text: out, calls: [] };
  }

  flush(): ParsedText {
    const tail = this.buf;
    this.buf = "";
    if (!this.held) return { text: tail, calls: [] };
    const calls = this.parse(tail);
    return calls && calls.length > 0 ? { text: "", calls: complete(calls) } : { text: tail, calls: [] };
  }
}

export function createToolCallParser(format: ToolCallFormat | null, tools: readonly ToolDefinition[]): ToolCallParser | null {
  switch (format) {
    case "hermes":
    case "qwen3_coder":
      // Qwen3-Coder bodies are XML, Hermes ones JSON; some checkpoints mix the two, so both are read.
      return new TaggedParser(
        format === "qwen3_coder" ? [["<tool_call>", "</tool_call>"], ["<function=", "</function>"]] : [["<tool_call>", "</tool_call>"]],
        (body, start) => {
          const b = start === "<function=" ? `<function=${body}</function>` : body;
          const one = b.trimStart().startsWith("<function=") ? parseQwen3CoderBody(b, tools) : parseHermesBody(b);
          return one;
        },
      );
    case "gemma4":
      return new TaggedParser([["<|tool_call>", "<tool_call|>"]], (body) => parseGemma4Call(body));
    case "mistral":
      return new TailParser((t) => t.indexOf("[TOOL_CALLS]"), (tail) => parseMistral(tail), ["[TOOL_CALLS]"], "mistral");
    case "llama3":
      return new TailParser(
        (t, atStart) => {
          const tag = t.indexOf("<|python_tag|>");
          if (tag >= 0) return tag;
          if (atStart && t.trimStart().startsWith("{")) return t.indexOf("{");
          return -1;
        },
        (tail) => parseLlama3(tail, tools),
        ["<|python_tag|>"],
      );
    default:
      return null;
  }
}

export { ForcedCallParser, type ForcedChoice } from "./forced.ts";

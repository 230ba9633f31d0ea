/**
 * Output of a forced call (tool_choice `required` or a named function). The decoder enforces the JSON
 * (src/engine/tools.ts grammarFor), so no family syntax is involved: a named call's output is its
 * arguments object, streamed as argument fragments; `required` is a list of `{name, arguments}`.
 */
import type { ToolDefinition } from "../../engine/types.ts";
import type { CallPiece, ParsedText, ToolCallParser } from "./types.ts";

/** The tool a request forces: one named function, or "any of them" (required). */
export type ForcedChoice = { kind: "named"; tool: ToolDefinition } | { kind: "required"; parallel: boolean };

export class ForcedCallParser implements ToolCallParser {
  private started = false;
  private buf = "";

  constructor(
    private readonly forced: ForcedChoice,
    private readonly tools: readonly ToolDefinition[],
  ) {}

  push(text: string): ParsedText {
    if (this.forced.kind === "required") {
      this.buf += text;
      return { text: "", calls: [] };
    }
    const calls: CallPiece[] = [];
    if (!this.started) {
      this.started = true;
      calls.push({ name: this.forced.tool.name, arguments: "" });
    }
    if (text !== "") calls.push({ arguments: text });
    return { text: "", calls };
  }

  flush(): ParsedText {
    if (this.forced.kind === "named") return this.started ? { text: "", calls: [] } : { text: "", calls: [{ name: this.forced.tool.name, arguments: "" }] };
    const raw = this.buf;
    this.buf = "";
    let list: unknown;
    try {
      list = JSON.parse(raw);
    } catch {
      return { text: raw, calls: [] }; // cut short (length): what there is stays visible as text
    }
    const names = new Set(this.tools.map((t) => t.name));
    const calls: CallPiece[] = [];
    for (const item of Array.isArray(list) ? list : []) {
      const o = item as { name?: unknown; arguments?: unknown };
      if (typeof o?.name !== "string" || !names.has(o.name)) return { text: raw, calls: [] };
      calls.push({ name: o.name, arguments: "" }, { arguments: JSON.stringify(o.arguments ?? {}) });
    }
    return calls.length > 0 ? { text: "", calls } : { text: raw, calls: [] };
  }
}

/**
 * The one output-parser chain of a generation: reasoning split → tool calls → answer text. Each step
 * gets the stop-filtered text of one token and returns what the client may see now; calls come out as
 * OpenAI-style deltas (a start with index, id and name, then argument fragments).
 */
import type { ReasoningParser } from "../generate/reasoning.ts";
import { newCallId, type CallPiece, type ToolCallParser } from "../generate/tool-calls/index.ts";
import type { ToolCallDelta } from "./types.ts";

export interface OutputStep {
  text: string;
  reasoning: string;
  toolCalls: ToolCallDelta[];
}

export function mergeSteps(a: OutputStep, b: OutputStep): OutputStep {
  return { text: a.text + b.text, reasoning: a.reasoning + b.reasoning, toolCalls: [...a.toolCalls, ...b.toolCalls] };
}

export class OutputChain {
  private index = -1;
  /** Calls beyond the first are dropped when parallel calls are off (the client asked for at most one). */
  private dropping = false;
  private readonly parallel: boolean;
  private readonly harmonyCalls: boolean;

  constructor(
    private readonly reasoning: ReasoningParser | null,
    private readonly tools: ToolCallParser | null,
    opts: { parallel?: boolean; harmonyCalls?: boolean } = {},
  ) {
    this.parallel = opts.parallel ?? true;
    this.harmonyCalls = opts.harmonyCalls ?? false;
  }

  /** True once at least one call went out. */
  get calledTools(): boolean {
    return this.index >= 0;
  }

  push(text: string): OutputStep {
    return this.run(text, false);
  }

  flush(): OutputStep {
    return this.run("", true);
  }

  private run(text: string, final: boolean): OutputStep {
    const out: OutputStep = { text: "", reasoning: "", toolCalls: [] };
    let answer = text;
    if (this.reasoning) {
      const d = final ? mergeReasoning(this.reasoning.push(text), this.reasoning.flush()) : this.reasoning.push(text);
      out.reasoning = d.reasoning;
      answer = d.answer;
      if (this.harmonyCalls) {
        for (const c of d.calls ?? []) {
          const args = jsonObjectText(c.arguments);
          // Arguments that are not a JSON object: not a usable call, so the client sees the text instead.
          if (args === null) answer = `${c.arguments}${answer}`;
          else {
            this.emit({ name: c.name, arguments: "" }, out);
            this.emit({ arguments: args }, out);
          }
        }
      }
    }
    if (!this.tools) {
      out.text = answer;
      return out;
    }
    const parsed = final ? mergeParsed(this.tools.push(answer), this.tools.flush()) : this.tools.push(answer);
    out.text = parsed.text;
    for (const piece of parsed.calls) this.emit(piece, out);
    return out;
  }

  private emit(piece: CallPiece, out: OutputStep): void {
    if (piece.name !== undefined) {
      if (this.index >= 0 && !this.parallel) {
        this.dropping = true;
        return;
      }
      this.index++;
      out.toolCalls.push({ index: this.index, id: piece.id ?? newCallId(this.tools?.idStyle), name: piece.name, arguments: "" });
    } else if (this.dropping || this.index < 0) return;
    if (piece.arguments !== "") out.toolCalls.push({ index: this.index, arguments: piece.arguments });
  }
}

function jsonObjectText(s: string): string | null {
  try {
    const v = JSON.parse(s === "" ? "{}" : s) as unknown;
    return v !== null && typeof v === "object" && !Array.isArray(v) ? JSON.stringify(v) : null;
  } catch {
    return null;
  }
}

function mergeReasoning<T extends { reasoning: string; answer: string; calls?: { name: string; arguments: string }[] }>(a: T, b: T) {
  return { reasoning: a.reasoning + b.reasoning, answer: a.answer + b.answer, calls: [...(a.calls ?? []), ...(b.calls ?? [])] };
}

function mergeParsed(a: { text: string; calls: CallPiece[] }, b: { text: string; calls: CallPiece[] }) {
  return { text: a.text + b.text, calls: [...a.calls, ...b.calls] };
}

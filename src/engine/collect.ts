/**
 * The one loop that consumes engine events, for run and every server surface: it accumulates the
 * answer (text, reasoning, tool calls, logprobs, the final done event) and hands each chunk on.
 */
import { MlxkError } from "../errors.ts";
import type { GenerateChunk, GenerateDone, GenerateEvent, TokenLogprob, ToolCall } from "./types.ts";

export type TokenLp = TokenLogprob & { top: TokenLogprob[] };

export class Answer {
  text = "";
  reasoning = "";
  /** Complete calls in order (ids, names, arguments text). */
  readonly toolCalls: ToolCall[] = [];
  readonly logprobs: TokenLp[] = [];
  private end: GenerateDone | null = null;

  add(c: GenerateChunk): void {
    this.text += c.text;
    this.reasoning += c.reasoning;
    if (c.logprob) this.logprobs.push({ token: c.logprob.token, logprob: c.logprob.logprob, top: c.logprob.top });
    for (const d of c.toolCalls ?? []) {
      const call = this.toolCalls[d.index];
      if (call) call.arguments += d.arguments;
      else this.toolCalls[d.index] = { id: d.id ?? "", name: d.name ?? "", arguments: d.arguments };
    }
  }

  finish(d: GenerateDone): void {
    this.end = d;
  }

  get done(): GenerateDone {
    if (!this.end) throw new MlxkError("execution_error", "Generation ended without a result");
    return this.end;
  }
}

/**
 * Yield every chunk of a generation (after adding it to `answer`); `between` runs after each chunk
 * (e.g. to let the server's event loop breathe). Ends when the done event arrives; a stream without
 * one is an execution_error.
 */
export async function* chunksOf(events: AsyncIterable<GenerateEvent>, answer: Answer, between?: () => Promise<void>): AsyncGenerator<GenerateChunk, void, undefined> {
  for await (const ev of events) {
    if (ev.type === "done") {
      answer.finish(ev);
      return;
    }
    answer.add(ev);
    yield ev;
    if (between) await between();
  }
  throw new MlxkError("execution_error", "Generation ended without a result");
}

/** Run a generation to the end; `onChunk` sees each chunk as it comes. */
export async function collect(
  events: AsyncIterable<GenerateEvent>,
  opts: { onChunk?: (c: GenerateChunk) => void; between?: () => Promise<void> } = {},
): Promise<Answer> {
  const answer = new Answer();
  for await (const c of chunksOf(events, answer, opts.between)) opts.onChunk?.(c);
  return answer;
}

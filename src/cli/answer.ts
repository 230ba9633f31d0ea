/** What one-shot `run` and the chat share: options, one generation with streamed output, and its rendering. */
import { collect } from "../engine/collect.ts";
import type { ChatMessage, Engine, GenerateRequest, SamplingParams, ToolCall } from "../engine/types.ts";
import type { CliContext } from "./context.ts";
import type { StructuredFields } from "./run-structured.ts";

/** Tests (and embedders) may supply stdin; otherwise the process's stdin is used. */
export type RunContext = CliContext & {
  readStdin?: () => Promise<string>;
  readLines?: () => AsyncIterable<string>;
  /** Ctrl-C hook: called with a handler while a generation runs; returns an unsubscribe function. */
  onInterrupt?: (handler: () => void) => () => void;
};

export interface Options {
  system?: string;
  chatTemplate: boolean;
  stream: boolean;
  reasoning: boolean;
  /** Reasoning is shown dimmed (a TTY without NO_COLOR, or FORCE_COLOR). */
  dim: boolean;
  maxTokens?: number;
  sampling: SamplingParams;
  verbose: boolean;
  /** Stop strings (interactive chat adds the mlx-knife chat stops). */
  stop?: readonly string[];
  /** --tools / --tool-choice / --json-schema. */
  structured: StructuredFields;
}

export function messagesFor(system: string | undefined, history: ChatMessage[]): ChatMessage[] {
  return system ? [{ role: "system", content: system }, ...history] : history;
}

export interface Answer {
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  finishReason: string;
  usage: { promptTokens: number; completionTokens: number; cachedTokens?: number };
  timings: { prefillMs: number; decodeMs: number; promptTps: number; generationTps: number; peakMemoryBytes: number };
}

/** Run one generation, streaming answer (and reasoning) text to stdout when `stream`. */
export async function answer(ctx: RunContext, engine: Engine, input: GenerateRequest["input"], opts: Options, stream: boolean): Promise<Answer> {
  const ac = new AbortController();
  const prepared = engine.prepare({
    input,
    ...(opts.maxTokens !== undefined ? { maxTokens: opts.maxTokens } : {}),
    sampling: opts.sampling,
    signal: ac.signal,
    stop: opts.stop ? [...opts.stop] : undefined,
    ...opts.structured,
  });
  // registered before the first await: a Ctrl-C from here on stops this answer
  const off = (ctx.onInterrupt ?? processInterrupt)(() => ac.abort());
  let phase: "none" | "reasoning" | "answer" = "none";
  let a: Awaited<ReturnType<typeof collect>>;
  try {
    a = await collect(engine.generate(prepared), {
      onChunk: (ev) => {
        if (!stream) return;
        if (ev.reasoning && opts.reasoning) {
          if (phase === "none") ctx.stdout("**[Reasoning]**\n\n");
          phase = "reasoning";
          const r = ctx.stdoutIsTTY ? forTerminal(ev.reasoning) : ev.reasoning;
          ctx.stdout(opts.dim ? `\x1b[2m${r}\x1b[22m` : r);
        }
        if (ev.text) {
          if (phase === "reasoning") ctx.stdout("\n\n---\n\n**[Answer]**\n\n");
          phase = "answer";
          ctx.stdout(ctx.stdoutIsTTY ? forTerminal(ev.text) : ev.text);
        }
      },
    });
  } finally {
    off();
  }
  const out: Answer = { text: a.text, reasoning: a.reasoning, toolCalls: a.toolCalls, finishReason: a.done.finishReason, usage: a.done.usage, timings: a.done.timings };
  if (stream && out.finishReason === "cancelled") ctx.stdout("\n[Generation interrupted by user]");
  return out;
}

/** Control characters a model emits (escape sequences, shift-out, bell) must not drive the user's terminal. */
export function forTerminal(s: string): string {
  return s.replace(/[\x00-\x08\x0b-\x1f\x7f\x9b]/g, "");
}

export function render(a: Answer, opts: Options): string {
  if (!opts.reasoning || a.reasoning.trim() === "") return a.text;
  return `**[Reasoning]**\n\n${a.reasoning.trim()}\n\n---\n\n**[Answer]**\n\n${a.text.trimStart()}`;
}

export function verbose(ctx: RunContext, a: Answer): void {
  const t = a.timings;
  ctx.stderr(
    `Prompt: ${a.usage.promptTokens} tokens${a.usage.cachedTokens ? ` (${a.usage.cachedTokens} reused from the last turn)` : ""}, ${t.promptTps.toFixed(2)} tokens/s\n` +
      `Generation: ${a.usage.completionTokens} tokens, ${t.generationTps.toFixed(2)} tokens/s\n` +
      `Peak memory: ${(t.peakMemoryBytes / 1e6).toFixed(1)} MB\n`,
  );
}

export function processInterrupt(handler: () => void): () => void {
  const h = () => handler();
  process.on("SIGINT", h);
  return () => void process.off("SIGINT", h);
}

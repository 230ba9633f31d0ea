/** What one-shot `run` and the chat share: options, one generation with streamed output, and its rendering. */
import type { ChatMessage, Engine, GenerateRequest, SamplingParams } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import type { CliContext } from "./context.ts";

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
  /** Streamed reasoning is shown dimmed (a TTY without NO_COLOR). */
  dim: boolean;
  maxTokens?: number;
  sampling: SamplingParams;
  verbose: boolean;
  /** Stop strings (interactive chat adds the mlx-knife chat stops). */
  stop?: readonly string[];
}

export function messagesFor(system: string | undefined, history: ChatMessage[]): ChatMessage[] {
  return system ? [{ role: "system", content: system }, ...history] : history;
}

export interface Answer {
  text: string;
  reasoning: string;
  finishReason: string;
  usage: { promptTokens: number; completionTokens: number };
  timings: { prefillMs: number; decodeMs: number; promptTps: number; generationTps: number; peakMemoryBytes: number };
}

/** Run one generation, streaming answer (and reasoning) text to stdout when `stream`. */
export async function answer(ctx: RunContext, engine: Engine, input: GenerateRequest["input"], opts: Options, stream: boolean): Promise<Answer> {
  const budget = engine.info.contextLength - engine.countPromptTokens(input);
  if (budget <= 0) throw new MlxkError("InvalidArgumentError", `The prompt fills the whole context (${engine.info.contextLength} tokens)`);
  const ac = new AbortController();
  const off = (ctx.onInterrupt ?? processInterrupt)(() => ac.abort());
  const out: Answer = { text: "", reasoning: "", finishReason: "stop", usage: { promptTokens: 0, completionTokens: 0 }, timings: { prefillMs: 0, decodeMs: 0, promptTps: 0, generationTps: 0, peakMemoryBytes: 0 } };
  let phase: "none" | "reasoning" | "answer" = "none";
  try {
    const req: GenerateRequest = { input, maxTokens: Math.min(opts.maxTokens ?? budget, budget), sampling: opts.sampling, signal: ac.signal, stop: opts.stop ? [...opts.stop] : undefined };
    for await (const ev of engine.generate(req)) {
      if (ev.type === "done") {
        out.finishReason = ev.finishReason;
        out.usage = ev.usage;
        out.timings = ev.timings;
        break;
      }
      out.text += ev.text;
      out.reasoning += ev.reasoning;
      if (!stream) continue;
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
    }
  } finally {
    off();
  }
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
    `Prompt: ${a.usage.promptTokens} tokens, ${t.promptTps.toFixed(2)} tokens/s\n` +
      `Generation: ${a.usage.completionTokens} tokens, ${t.generationTps.toFixed(2)} tokens/s\n` +
      `Peak memory: ${(t.peakMemoryBytes / 1e6).toFixed(1)} MB\n`,
  );
}

export function processInterrupt(handler: () => void): () => void {
  const h = () => handler();
  process.on("SIGINT", h);
  return () => void process.off("SIGINT", h);
}

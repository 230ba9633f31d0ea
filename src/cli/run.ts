/** `mlxk run <model> [prompt...]`: one answer (streamed or batched), or an interactive chat without a prompt. */
import { defineCommand } from "citty";
import type { ChatMessage, Engine, GenerateRequest, SamplingParams } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import { noColor } from "../env.ts";
import { CHAT_STOP_STRINGS } from "../generate/stop.ts";
import { jsonArgs, modelArg, parseFloatArg, parseIntArg } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";

/** Tests (and embedders) may supply stdin; otherwise the process's stdin is used. */
export type RunContext = CliContext & {
  readStdin?: () => Promise<string>;
  readLines?: () => AsyncIterable<string>;
  /** Ctrl-C hook: called with a handler while a generation runs; returns an unsubscribe function. */
  onInterrupt?: (handler: () => void) => () => void;
};

const args = {
  ...modelArg,
  prompt: { type: "string", description: "Prompt text (wins over positional words)" },
  system: { type: "string", description: "System prompt" },
  "chat-template": { type: "boolean", default: true, description: "Render the prompt with the model's chat template (--no-chat-template: raw)" },
  stream: { type: "boolean", default: true, description: "Stream tokens as they come (--no-stream: print at the end)" },
  reasoning: { type: "boolean", default: true, description: "Show reasoning of thinking models (--no-reasoning: answer only)" },
  "max-tokens": { type: "string", description: "Most tokens to generate (default: up to the context length)" },
  temperature: { type: "string", description: "Sampling temperature, 0 = greedy (default 0.7)" },
  "top-p": { type: "string", description: "Nucleus sampling (default 0.9)" },
  "top-k": { type: "string", description: "Keep only the k most likely tokens (0 = off)" },
  "min-p": { type: "string", description: "Minimum probability relative to the top token (0 = off)" },
  "repetition-penalty": { type: "string", description: "Penalty for repeated tokens (default 1.1, 1 = off)" },
  seed: { type: "string", description: "Random seed (same seed, same answer)" },
  verbose: { type: "boolean", description: "Print load time, tokens/s and peak memory to stderr" },
  ...jsonArgs,
} as const;

interface Options {
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

const NOTES = `Prompt:
  mlxk run <model> "Hello there"        one answer (streamed on a terminal, printed at the end otherwise)
  mlxk run <model> --prompt "Hello"     the same; --prompt wins over words
  echo "Hello" | mlxk run <model>       a piped stdin is the prompt
  mlxk run <model> - "Summarise this"   stdin first, then the words (e.g. < notes.txt)
  mlxk run <model>                      interactive chat (on a terminal)
  An empty prompt or empty stdin is a usage error (exit 2).

Chat commands: /help, /clear (forget the conversation), /system <text>, /exit (also Ctrl-D).
Keys: ←/→, Home/End, Ctrl-A/E/K/U/W edit the line; ↑/↓ browse the history (kept in
$XDG_STATE_HOME/mlxk/chat_history); pasted text of any length stays one message; Ctrl-C stops an answer.
Answers in chat stop at --max-tokens (default 1024 there) with a note; old turns that no longer fit the
context are dropped, with a note.

Exit codes: 0 ok, 1 error, 2 usage error, 130 interrupted (Ctrl-C).`;

export default Object.assign(defineCommand({
  meta: { name: "run", description: "Generate text with a model (interactive chat without a prompt)" },
  args,
  async run({ args: a, data }) {
    const ctx = data as RunContext;
    const words = (a._ ?? []).slice(1).map(String);
    const opts: Options = {
      system: a.system,
      chatTemplate: a["chat-template"] !== false,
      stream: a.stream !== false && !ctx.json && ctx.stdoutIsTTY,
      reasoning: a.reasoning !== false,
      dim: ctx.stdoutIsTTY && !noColor(ctx.env),
      maxTokens: parseIntArg("max-tokens", a["max-tokens"], 1),
      sampling: {
        temperature: parseFloatArg("temperature", a.temperature, 0, 10) ?? 0.7,
        topP: parseFloatArg("top-p", a["top-p"], 0, 1) ?? 0.9,
        topK: parseIntArg("top-k", a["top-k"], 0) ?? 0,
        minP: parseFloatArg("min-p", a["min-p"], 0, 1) ?? 0,
        repetitionPenalty: parseFloatArg("repetition-penalty", a["repetition-penalty"], 0.01, 10) ?? 1.1,
        repetitionContextSize: 20,
        seed: parseIntArg("seed", a.seed, 0),
      },
      verbose: Boolean(a.verbose),
    };
    const prompt = await promptFrom(ctx, a.prompt, words);
    if (prompt === null && ctx.json) throw new MlxkError("CommandError", "Interactive chat cannot print JSON; give a prompt with --json.");

    // Ctrl-C while the model loads: leave with 130 at once (answer() takes over once generation starts)
    const offLoad = (ctx.onInterrupt ?? processInterrupt)(() => {
      ctx.stderr("\nInterrupted.\n");
      process.exit(130);
    });
    const { openModel } = await import("../engine/open.ts");
    const engine = await openModel(a.model, {
      env: ctx.env,
      onProgress: process.stderr.isTTY && !ctx.json ? progressBar(ctx) : undefined,
    });
    try {
      if (opts.verbose && engine.loadMs !== undefined) ctx.stderr(`Loaded ${engine.info.id} in ${(engine.loadMs / 1000).toFixed(2)}s\n`);
      // answer() and chat() install their own handler synchronously, before the first await: no gap
      if (prompt === null) await chat(ctx, engine, opts, offLoad);
      else await single(ctx, engine, a.model, prompt, opts, offLoad);
    } finally {
      offLoad();
      engine[Symbol.dispose]();
    }
  },
}), { notes: NOTES });

/** Positional words or --prompt; `-` (or a piped stdin with no prompt) reads stdin first. null = interactive. */
async function promptFrom(ctx: RunContext, flag: string | undefined, words: string[]): Promise<string | null> {
  const dash = words.includes("-");
  const rest = flag ?? (words.filter((w) => w !== "-").join(" ") || undefined);
  if (dash || (rest === undefined && !ctx.stdinIsTTY)) {
    // `echo … |` ends the text with a newline the user never meant as part of the prompt.
    const stdin = (ctx.readStdin ? await ctx.readStdin() : await Bun.stdin.text()).replace(/\s+$/, "");
    const text = rest === undefined ? stdin : stdin === "" ? rest : `${stdin}\n\n${rest}`;
    // an empty answer to an empty question would look like success to a script
    if (text.trim() === "") throw new MlxkError("CommandError", "Empty prompt: stdin was empty. Give the prompt as words, --prompt, or on stdin.");
    return text;
  }
  if (rest !== undefined && rest.trim() === "") throw new MlxkError("CommandError", "Empty prompt. Give the prompt as words, --prompt, or on stdin.");
  return rest ?? null;
}

function progressBar(ctx: RunContext): (fraction: number) => void {
  let last = -1;
  return (f) => {
    const pct = Math.floor(f * 100);
    if (pct === last) return;
    last = pct;
    const n = Math.round(f * 30);
    ctx.stderr(`\rLoading model [${"#".repeat(n)}${" ".repeat(30 - n)}] ${pct}%${f >= 1 ? "\r\x1b[K" : ""}`);
  };
}

function messagesFor(system: string | undefined, history: ChatMessage[]): ChatMessage[] {
  return system ? [{ role: "system", content: system }, ...history] : history;
}

interface Answer {
  text: string;
  reasoning: string;
  finishReason: string;
  usage: { promptTokens: number; completionTokens: number };
  timings: { prefillMs: number; decodeMs: number; promptTps: number; generationTps: number; peakMemoryBytes: number };
}

/** Run one generation, streaming answer (and reasoning) text to stdout when `stream`. */
async function answer(ctx: RunContext, engine: Engine, input: GenerateRequest["input"], opts: Options, stream: boolean): Promise<Answer> {
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
        ctx.stdout(opts.dim ? `\x1b[2m${ev.reasoning}\x1b[22m` : ev.reasoning);
      }
      if (ev.text) {
        if (phase === "reasoning") ctx.stdout("\n\n---\n\n**[Answer]**\n\n");
        phase = "answer";
        ctx.stdout(ev.text);
      }
    }
  } finally {
    off();
  }
  if (stream && out.finishReason === "cancelled") ctx.stdout("\n[Generation interrupted by user]");
  return out;
}

function render(a: Answer, opts: Options): string {
  if (!opts.reasoning || a.reasoning.trim() === "") return a.text;
  return `**[Reasoning]**\n\n${a.reasoning.trim()}\n\n---\n\n**[Answer]**\n\n${a.text.trimStart()}`;
}

function verbose(ctx: RunContext, a: Answer): void {
  const t = a.timings;
  ctx.stderr(
    `Prompt: ${a.usage.promptTokens} tokens, ${t.promptTps.toFixed(2)} tokens/s\n` +
      `Generation: ${a.usage.completionTokens} tokens, ${t.generationTps.toFixed(2)} tokens/s\n` +
      `Peak memory: ${(t.peakMemoryBytes / 1e6).toFixed(1)} MB\n`,
  );
}

async function single(ctx: RunContext, engine: Engine, spec: string, prompt: string, opts: Options, offLoad: () => void): Promise<void> {
  const input: GenerateRequest["input"] = opts.chatTemplate
    ? { messages: messagesFor(opts.system, [{ role: "user", content: prompt }]) }
    : { prompt: opts.system ? `${opts.system}\n\n${prompt}` : prompt };
  const pending = answer(ctx, engine, input, opts, opts.stream);
  offLoad();
  const a = await pending;
  if (opts.stream && !ctx.json) ctx.stdout("\n");
  // Ctrl-C: the partial answer is printed, and the exit status tells a script it is partial
  if (a.finishReason === "cancelled") ctx.exitCode = 130;
  if (opts.verbose) verbose(ctx, a);
  printSuccess(
    ctx,
    "run",
    {
      model: spec,
      prompt,
      response: a.text,
      reasoning: a.reasoning === "" ? null : a.reasoning,
      finish_reason: a.finishReason,
      usage: { prompt_tokens: a.usage.promptTokens, completion_tokens: a.usage.completionTokens },
      timings: {
        prefill_ms: a.timings.prefillMs,
        decode_ms: a.timings.decodeMs,
        prompt_tps: a.timings.promptTps,
        generation_tps: a.timings.generationTps,
        peak_memory_bytes: a.timings.peakMemoryBytes,
      },
    },
    () => (opts.stream ? "" : render(a, opts)),
  );
}

const HELP = [
  "Commands:",
  "  /help            show this help",
  "  /clear           forget the conversation",
  "  /system <text>   set the system prompt (empty: remove it)",
  "  /exit            leave (also: exit, quit, q)",
  'Multi-line input: end a line with \\ to continue, or wrap the text in """.',
  "Ctrl-C stops the current answer.",
].join("\n");

async function chat(ctx: RunContext, engine: Engine, opts: Options, offLoad: () => void): Promise<void> {
  let system = opts.system;
  let history: ChatMessage[] = [];
  const stream = opts.stream;
  ctx.stdout(`Starting interactive chat with ${engine.info.id}. Type /help for commands, /exit to leave.\n`);
  const lines = (ctx.readLines ?? stdinLines)()[Symbol.asyncIterator]();
  // Ctrl-C while an answer streams stops that answer (handled in answer()); at the prompt it ends the chat.
  let generating = false;
  let quit: () => void = () => {};
  const interrupted = new Promise<null>((resolve) => {
    quit = () => resolve(null);
  });
  const off = (ctx.onInterrupt ?? processInterrupt)(() => {
    if (!generating) quit();
  });
  offLoad();
  try {
    for (;;) {
      ctx.stdout("\nYou: ");
      const text = await Promise.race([readMessage(lines, ctx), interrupted]);
      if (text === null) break;
      const t = text.trim();
      if (t === "") continue;
      if (["exit", "quit", "q", "/exit", "/quit"].includes(t)) break;
      if (t === "/help") {
        ctx.stdout(`${HELP}\n`);
        continue;
      }
      if (t === "/clear") {
        history = [];
        ctx.stdout("Conversation cleared.\n");
        continue;
      }
      if (t === "/system" || t.startsWith("/system ")) {
        system = t.slice(7).trim() || undefined;
        ctx.stdout(system ? "System prompt set.\n" : "System prompt removed.\n");
        continue;
      }
      if (t.startsWith("/")) {
        ctx.stdout(`Unknown command '${t.split(/\s/)[0]}'. Type /help.\n`);
        continue;
      }
      history.push({ role: "user", content: text });
      const input: GenerateRequest["input"] = opts.chatTemplate
        ? { messages: messagesFor(system, history) }
        : { prompt: fallbackTranscript(system, history) };
      ctx.stdout("\nAssistant: ");
      generating = true;
      try {
        const a = await answer(ctx, engine, input, { ...opts, stop: CHAT_STOP_STRINGS }, stream);
        if (!stream) ctx.stdout(render(a, opts));
        ctx.stdout("\n");
        if (opts.verbose) verbose(ctx, a);
        history.push({ role: "assistant", content: a.text });
      } catch (e) {
        history.pop();
        ctx.stdout(`\n[ERROR] ${e instanceof Error ? e.message : String(e)}\n`);
      } finally {
        generating = false;
      }
    }
  } finally {
    off();
  }
  ctx.stdout("\nGoodbye!\n");
}

/** Without a chat template: a plain transcript the model can continue. */
function fallbackTranscript(system: string | undefined, history: ChatMessage[]): string {
  const parts = system ? [`System: ${system}`] : [];
  for (const m of history) parts.push(`${m.role === "user" ? "Human" : "Assistant"}: ${m.content}`);
  return `${parts.join("\n\n")}\n\nAssistant: `;
}

/** One user message: a line, lines joined by trailing `\`, or a `"""` block. null at end of input. */
async function readMessage(lines: AsyncIterator<string>, ctx: RunContext): Promise<string | null> {
  const first = await lines.next();
  if (first.done) return null;
  let line = first.value;
  if (line.trim() === '"""') {
    const block: string[] = [];
    for (;;) {
      const n = await lines.next();
      if (n.done || n.value.trim() === '"""') break;
      block.push(n.value);
    }
    return block.join("\n");
  }
  const parts: string[] = [];
  while (line.endsWith("\\")) {
    parts.push(line.slice(0, -1));
    ctx.stdout("... ");
    const n = await lines.next();
    if (n.done) break;
    line = n.value;
  }
  if (!line.endsWith("\\")) parts.push(line);
  return parts.join("\n");
}

async function* stdinLines(): AsyncIterable<string> {
  for await (const line of console) yield line;
}

function processInterrupt(handler: () => void): () => void {
  const h = () => handler();
  process.on("SIGINT", h);
  return () => void process.off("SIGINT", h);
}

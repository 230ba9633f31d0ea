/** `mlxk run <model> [prompt...]`: one answer (streamed or batched), or an interactive chat without a prompt. */
import { freemem } from "node:os";
import { defineCommand } from "citty";
import { collect } from "../engine/collect.ts";
import type { ChatMessage, Engine, GenerateRequest, SamplingParams, ToolCall } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import { useColor } from "../env.ts";
import { CHAT_STOP_STRINGS } from "../generate/stop.ts";
import { jsonArgs, modelArg, parseFloatArg, parseIntArg } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";
import { type StructuredFields, structuredArgs, structuredFields } from "./run-structured.ts";

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
  ...structuredArgs,
  ...jsonArgs,
} as const;

interface Options {
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

export default defineCommand({
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
      dim: useColor(ctx.env, ctx.stdoutIsTTY),
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
      structured: structuredFields({ tools: a.tools, toolChoice: a["tool-choice"], jsonSchema: a["json-schema"], json: ctx.json, chatTemplate: a["chat-template"] !== false }),
    };
    const prompt = await promptFrom(ctx, a.prompt, words);
    if (prompt === null && ctx.json) throw new MlxkError("CommandError", "Interactive chat cannot print JSON; give a prompt with --json.");
    if (prompt === null && Object.keys(opts.structured).length > 0) throw new MlxkError("CommandError", "--tools and --json-schema need a prompt (not interactive chat).");

    const { ensureMlxRuntime } = await import("../mlx/setup.ts");
    await ensureMlxRuntime({ env: ctx.env, log: (m) => ctx.stderr(`mlxk: ${m}\n`), tty: process.stderr.isTTY && !ctx.json });
    const { defaultPromptCacheBytes, openModel } = await import("../engine/open.ts");
    const engine = await openModel(a.model, {
      env: ctx.env,
      // Interactive chat reuses its own KV between turns (each turn's prompt starts with the last one's).
      promptCacheBytes: prompt === null ? defaultPromptCacheBytes(freemem()) : 0,
      onProgress: process.stderr.isTTY && !ctx.json ? progressBar(ctx) : undefined,
    });
    try {
      if (opts.verbose && engine.loadMs !== undefined) ctx.stderr(`Loaded ${engine.info.id} in ${(engine.loadMs / 1000).toFixed(2)}s\n`);
      if (prompt === null) await chat(ctx, engine, opts);
      else await single(ctx, engine, a.model, prompt, opts);
    } finally {
      engine[Symbol.dispose]();
    }
  },
});

/** Positional words or --prompt; `-` (or a piped stdin with no prompt) reads stdin first. null = interactive. */
async function promptFrom(ctx: RunContext, flag: string | undefined, words: string[]): Promise<string | null> {
  const dash = words.includes("-");
  const rest = flag ?? (words.filter((w) => w !== "-").join(" ") || undefined);
  if (dash || (rest === undefined && !ctx.stdinIsTTY)) {
    // `echo … |` ends the text with a newline the user never meant as part of the prompt.
    const stdin = (ctx.readStdin ? await ctx.readStdin() : await Bun.stdin.text()).replace(/\s+$/, "");
    return rest === undefined ? stdin : stdin === "" ? rest : `${stdin}\n\n${rest}`;
  }
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
  toolCalls: ToolCall[];
  finishReason: string;
  usage: { promptTokens: number; completionTokens: number; cachedTokens?: number };
  timings: { prefillMs: number; decodeMs: number; promptTps: number; generationTps: number; peakMemoryBytes: number };
}

/** Run one generation, streaming answer (and reasoning) text to stdout when `stream`. */
async function answer(ctx: RunContext, engine: Engine, input: GenerateRequest["input"], opts: Options, stream: boolean): Promise<Answer> {
  const ac = new AbortController();
  const prepared = engine.prepare({
    input,
    ...(opts.maxTokens !== undefined ? { maxTokens: opts.maxTokens } : {}),
    sampling: opts.sampling,
    signal: ac.signal,
    stop: opts.stop ? [...opts.stop] : undefined,
    ...opts.structured,
  });
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
          ctx.stdout(opts.dim ? `\x1b[2m${ev.reasoning}\x1b[22m` : ev.reasoning);
        }
        if (ev.text) {
          if (phase === "reasoning") ctx.stdout("\n\n---\n\n**[Answer]**\n\n");
          phase = "answer";
          ctx.stdout(ev.text);
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

function render(a: Answer, opts: Options): string {
  if (!opts.reasoning || a.reasoning.trim() === "") return a.text;
  return `**[Reasoning]**\n\n${a.reasoning.trim()}\n\n---\n\n**[Answer]**\n\n${a.text.trimStart()}`;
}

function verbose(ctx: RunContext, a: Answer): void {
  const t = a.timings;
  ctx.stderr(
    `Prompt: ${a.usage.promptTokens} tokens${a.usage.cachedTokens ? ` (${a.usage.cachedTokens} reused from the last turn)` : ""}, ${t.promptTps.toFixed(2)} tokens/s\n` +
      `Generation: ${a.usage.completionTokens} tokens, ${t.generationTps.toFixed(2)} tokens/s\n` +
      `Peak memory: ${(t.peakMemoryBytes / 1e6).toFixed(1)} MB\n`,
  );
}

async function single(ctx: RunContext, engine: Engine, spec: string, prompt: string, opts: Options): Promise<void> {
  const input: GenerateRequest["input"] = opts.chatTemplate
    ? { messages: messagesFor(opts.system, [{ role: "user", content: prompt }]) }
    : { prompt: opts.system ? `${opts.system}\n\n${prompt}` : prompt };
  const a = await answer(ctx, engine, input, opts, opts.stream);
  if (opts.stream && !ctx.json) ctx.stdout("\n");
  if (opts.verbose) verbose(ctx, a);
  printSuccess(
    ctx,
    "run",
    {
      model: spec,
      prompt,
      response: a.text,
      reasoning: a.reasoning === "" ? null : a.reasoning,
      ...(opts.structured.tools ? { tool_calls: a.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })) } : {}),
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

async function chat(ctx: RunContext, engine: Engine, opts: Options): Promise<void> {
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

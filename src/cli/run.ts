/** `mlxk run <model> [prompt...]`: one answer (streamed or batched), or an interactive chat without a prompt. */
import { defineCommand } from "citty";
import type { Engine, GenerateRequest } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import { useColor } from "../env.ts";
import { type Options, type RunContext, answer, messagesFor, processInterrupt, render, verbose } from "./answer.ts";
import { jsonArgs, modelArg, parseFloatArg, parseIntArg } from "./args.ts";
import { chat } from "./chat.ts";
import { printSuccess } from "./context.ts";
import { structuredArgs, structuredFields } from "./run-structured.ts";

export type { RunContext } from "./answer.ts";

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
    // under `mlxk launch`, ranks > 0 serve rank 0's pipeline instead of running the command
    if (await (await import("../distributed/follower.ts")).followLaunched(a.model, ctx.env)) return;
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

    // Ctrl-C while the model loads: leave with 130 at once (answer() takes over once generation starts)
    const offLoad = (ctx.onInterrupt ?? processInterrupt)(() => {
      ctx.stderr("\nInterrupted.\n");
      process.exit(130);
    });
    const { ensureMlxRuntime } = await import("../mlx/setup.ts");
    await ensureMlxRuntime({ env: ctx.env, log: (m) => ctx.stderr(`mlxk: ${m}\n`), tty: process.stderr.isTTY && !ctx.json });
    const { defaultPromptCacheBytes, openModel } = await import("../engine/open.ts");
    const { activeBackend, describeBackend, deviceFreeMemory, deviceMemory } = await import("../mlx/backend.ts");
    const engine = await openModel(a.model, {
      env: ctx.env,
      // Interactive chat reuses its own KV between turns (each turn's prompt starts with the last one's).
      promptCacheBytes: prompt === null ? defaultPromptCacheBytes(deviceFreeMemory(ctx.env)) : 0,
      onProgress: process.stderr.isTTY && !ctx.json ? progressBar(ctx) : undefined,
    });
    try {
      if (opts.verbose && engine.loadMs !== undefined) ctx.stderr(`Loaded ${engine.info.id} in ${(engine.loadMs / 1000).toFixed(2)}s\n`);
      const backend = activeBackend();
      if (opts.verbose && backend) ctx.stderr(`${describeBackend(backend, deviceMemory(ctx.env))}\n`);
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


/** Interactive chat of `mlxk run <model>` without a prompt: the loop, its commands, and how input is read. */
import type { ChatMessage, Engine, GenerateRequest } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import { CHAT_STOP_STRINGS } from "../generate/stop.ts";
import { type Options, type RunContext, answer, forTerminal, messagesFor, processInterrupt, render, verbose } from "./answer.ts";

const HELP = [
  "Commands:",
  "  /help            show this help",
  "  /clear           forget the conversation",
  "  /system <text>   set the system prompt (empty: remove it)",
  "  /exit            leave (also: exit, quit, q)",
  'Multi-line input: end a line with \\ to continue, Alt-Enter or Ctrl-J for a new line, or wrap the text in """.',
  "Keys: arrows, Home/End, Ctrl-A/E/K/U/W edit; Up/Down browse the history; a paste stays one message.",
  "Ctrl-C stops the current answer (at the prompt: clears the line, on an empty line leaves); Ctrl-D leaves.",
].join("\n");

/** Chat answers stop here unless --max-tokens says otherwise (one-shot run goes up to the context). */
export const CHAT_MAX_TOKENS = 1024;

/** How chat reads one message: the raw-mode editor on a terminal, plain lines otherwise (tests, embedders). */
interface Input {
  read: (prompt: string) => Promise<string | null>;
  /** Ctrl-C during an answer (the editor sees it as a key: the terminal sends no SIGINT in raw mode). */
  onInterrupt: (h: () => void) => () => void;
  /** Note after an answer when keys were typed during it. */
  typeAheadNote: () => string | null;
  close: () => void;
}

function lineInput(ctx: RunContext): Input {
  const lines = (ctx.readLines ?? stdinLines)()[Symbol.asyncIterator]();
  return {
    read: (prompt) => {
      ctx.stdout(prompt);
      return readMessage(lines, ctx);
    },
    onInterrupt: ctx.onInterrupt ?? processInterrupt,
    typeAheadNote: () => null,
    close: () => {},
  };
}

async function editorInput(ctx: RunContext): Promise<Input> {
  const { LineEditor, processTerminal, unwrapBlock } = await import("./line-editor.ts");
  const { appendHistory, loadHistory } = await import("./chat-history.ts");
  const editor = new LineEditor(processTerminal(), loadHistory(ctx.env), (line) => appendHistory(ctx.env, line));
  return {
    read: async (prompt) => {
      const line = await editor.readLine(prompt);
      return line === null ? null : unwrapBlock(line);
    },
    onInterrupt: (h) => {
      const a = editor.onInterrupt(h);
      const b = processInterrupt(h);
      return () => {
        a();
        b();
      };
    },
    typeAheadNote: () => (editor.pendingTypeAhead > 0 ? "[What you typed during the answer is in the prompt below: edit it, or Enter to send]" : null),
    close: () => editor.close(),
  };
}

/**
 * Drop the oldest turns until the conversation plus room for an answer fits the context. Returns how many
 * messages were dropped; throws when even the newest message alone does not fit.
 */
function fitContext(engine: Engine, system: string | undefined, history: ChatMessage[], reserve: number, build: (h: ChatMessage[]) => GenerateRequest["input"]): number {
  const limit = engine.info.contextLength;
  if (limit <= 0) return 0;
  let dropped = 0;
  while (engine.countPromptTokens(build(history)) + reserve > limit && history.length > 1) {
    // a user turn and its answer go together
    const n = history.length > 2 && history[1]?.role === "assistant" ? 2 : 1;
    history.splice(0, n);
    dropped += n;
  }
  const used = engine.countPromptTokens(build(history));
  if (used >= limit) throw new MlxkError("InvalidArgumentError", `This message is ${used} tokens; the model's context holds ${limit}${system ? " (with the system prompt)" : ""}. Shorten it.`);
  return dropped;
}

export async function chat(ctx: RunContext, engine: Engine, opts: Options, offLoad: () => void): Promise<void> {
  let system = opts.system;
  let history: ChatMessage[] = [];
  const stream = opts.stream;
  const maxTokens = opts.maxTokens ?? CHAT_MAX_TOKENS;
  ctx.stdout(`Starting interactive chat with ${engine.info.id}. Type /help for commands, /exit to leave.\n`);
  const input = ctx.readLines || !ctx.stdinIsTTY || !process.stdin.isTTY ? lineInput(ctx) : await editorInput(ctx);
  const chatCtx: RunContext = { ...ctx, onInterrupt: input.onInterrupt };
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
      ctx.stdout("\n");
      const text = await Promise.race([input.read("You: "), interrupted]);
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
      const build = (h: ChatMessage[]): GenerateRequest["input"] =>
        opts.chatTemplate ? { messages: messagesFor(system, h) } : { prompt: fallbackTranscript(system, h) };
      generating = true;
      try {
        const reserve = Math.min(maxTokens, Math.floor(engine.info.contextLength / 4));
        const dropped = fitContext(engine, system, history, reserve, build);
        if (dropped > 0) {
          ctx.stdout(`[Dropped the ${dropped} oldest message(s): the conversation no longer fit the ${engine.info.contextLength}-token context. /clear starts over.]\n`);
        }
        ctx.stdout("\nAssistant: ");
        const a = await answer(chatCtx, engine, build(history), { ...opts, maxTokens, stop: CHAT_STOP_STRINGS }, stream);
        if (!stream) ctx.stdout(ctx.stdoutIsTTY ? forTerminal(render(a, opts)) : render(a, opts));
        ctx.stdout("\n");
        if (a.finishReason === "length") {
          ctx.stdout(`[Answer cut off at ${a.usage.completionTokens} tokens (${opts.maxTokens === undefined ? `chat default ${CHAT_MAX_TOKENS}` : "--max-tokens"}); raise it with --max-tokens N]\n`);
        }
        const note = input.typeAheadNote();
        if (note) ctx.stdout(`${note}\n`);
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
    input.close();
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

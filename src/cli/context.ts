/**
 * What a command needs from the outside world: output streams, TTY facts, env, and a prompt.
 * Tests pass their own; bin/mlxk passes the process's.
 */
import type { Env } from "../env.ts";
import { MlxkError } from "../errors.ts";

export interface CliContext {
  /** `--json` given anywhere on the command line. */
  json: boolean;
  env: Env;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  stdoutIsTTY: boolean;
  stdinIsTTY: boolean;
  /** Progress bars and their ANSI codes go to stderr only where it is a terminal; unset: as stdout. */
  stderrIsTTY?: boolean;
  /** Ask a yes/no question on the terminal; resolves `fallback` when the user just hits Enter. */
  ask: (question: string, fallback: boolean) => Promise<boolean>;
  /** Set by output helpers; becomes the process exit code. */
  exitCode: number;
}

export function processContext(json: boolean): CliContext {
  const ctx: CliContext = {
    json,
    env: process.env,
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    stdoutIsTTY: Boolean(process.stdout.isTTY),
    stdinIsTTY: Boolean(process.stdin.isTTY),
    stderrIsTTY: Boolean(process.stderr.isTTY),
    ask: askOnTerminal,
    exitCode: 0,
  };
  return ctx;
}

let guarded = false;

/**
 * A closed pipe (`mlxk list | head -1`) or a full disk under `> file` must end in one line and a non-zero exit,
 * not a stack trace: stream write errors arrive as 'error' events, so handle them on the process streams.
 */
export function guardProcessOutput(debugOn: boolean): void {
  if (guarded) return;
  guarded = true;
  const fail = (e: NodeJS.ErrnoException) => {
    const why =
      e.code === "EPIPE" ? "output closed before mlxk finished writing (EPIPE)" : e.code === "ENOSPC" ? "cannot write the output: no space left on device (ENOSPC)" : `cannot write the output: ${e.message}`;
    try {
      process.stderr.write(`mlxk: Error: ${why}\n`);
    } catch {
      // stderr is gone too
    }
    process.exit(1);
  };
  process.stdout.on("error", fail);
  process.stderr.on("error", () => process.exit(1));
  if (!debugOn) {
    const last = (e: unknown) => {
      const err = e as NodeJS.ErrnoException;
      if (err?.code === "EPIPE" || err?.code === "ENOSPC") return fail(err);
      try {
        process.stderr.write(`mlxk: Error: ${err instanceof Error ? err.message : String(e)} (set MLXK_DEBUG=1 for the stack trace)\n`);
      } catch {
        // nothing left to report to
      }
      process.exit(1);
    };
    process.on("uncaughtException", last);
    process.on("unhandledRejection", last);
  }
}

async function askOnTerminal(question: string, fallback: boolean): Promise<boolean> {
  process.stderr.write(question);
  for await (const line of console) {
    const a = line.trim().toLowerCase();
    if (a === "") return fallback;
    return a === "y" || a === "yes";
  }
  return fallback;
}

/** Print a success result: the JSON envelope with --json, else the human text (if any). */
export function printSuccess(ctx: CliContext, command: string, data: unknown, human: () => string): void {
  if (ctx.json) {
    ctx.stdout(`${JSON.stringify({ status: "success", command, data, error: null }, null, 2)}\n`);
    return;
  }
  const text = human();
  if (text) ctx.stdout(text.endsWith("\n") ? text : `${text}\n`);
}

/** Print an error: JSON envelope on stdout with --json, else `<command>: Error: <message>` on stderr. */
export function printError(ctx: CliContext, command: string | null, err: MlxkError): void {
  ctx.exitCode = err.exitCode;
  if (ctx.json) {
    ctx.stdout(`${JSON.stringify({ status: "error", command, data: err.data ?? null, error: err.toJSON() }, null, 2)}\n`);
    return;
  }
  ctx.stderr(`${command ?? "mlxk"}: Error: ${err.message}\n`);
}

/** Run the real CLI entry in-process with captured output and an explicit environment. */
import { runCli } from "../../src/cli/main.ts";
import type { CliContext } from "../../src/cli/context.ts";
import type { Env } from "../../src/env.ts";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: () => any;
}

export async function runCliCapture(
  argv: string[],
  opts: { env?: Env; answers?: boolean[]; tty?: boolean } = {},
): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const answers = [...(opts.answers ?? [])];
  const ctx: CliContext = {
    json: false,
    env: opts.env ?? { HOME: "/nonexistent-home" },
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    stdoutIsTTY: opts.tty ?? false,
    stdinIsTTY: opts.tty ?? false,
    ask: async (q, fallback) => {
      stderr += q;
      return answers.length ? answers.shift()! : fallback;
    },
    exitCode: 0,
  };
  const code = await runCli(argv, ctx);
  return { code, stdout, stderr, json: () => JSON.parse(stdout) };
}

/** Entry point: global flags, command dispatch, and the only place that turns errors into exit codes. */
import { type CommandDef, runCommand } from "citty";
import { totalmem } from "node:os";
import { debug } from "../env.ts";
import { MlxkError, toMlxkError } from "../errors.ts";
import { installedBackend } from "../mlx/paths.ts";
import { CLI_VERSION, JSON_API_SPEC_VERSION } from "../version.ts";
import { checkArgs } from "./args.ts";
import { type CliContext, guardProcessOutput, printError, printSuccess, processContext } from "./context.ts";
import { EXAMPLES, examplesBlock, TOP_EXAMPLES } from "./examples.ts";
import { renderHelp } from "./help.ts";
import { didYouMean } from "./suggest.ts";

interface CommandEntry {
  description: string;
  load: () => Promise<CommandDef<any>>;
  /** Accepts any number of trailing positionals (e.g. a prompt). */
  variadic?: boolean;
}

/** One row per command (one file each in src/cli/), loaded lazily so `mlxk list` never loads the MLX runtime. */
export const COMMANDS: Record<string, CommandEntry> = {
  pull: { description: "Download a model from the Hugging Face Hub into the cache", load: async () => (await import("./pull.ts")).default },
  list: { description: "List the models in the Hugging Face cache", load: async () => (await import("./list.ts")).default },
  health: { description: "Check model files (integrity and runtime compatibility)", load: async () => (await import("./health.ts")).default },
  show: { description: "Show details of one model", load: async () => (await import("./show.ts")).default },
  rm: { description: "Delete a model or one revision from the cache", load: async () => (await import("./rm.ts")).default },
  run: { description: "Generate text with a model (interactive chat without a prompt)", load: async () => (await import("./run.ts")).default, variadic: true },
  server: { description: "Serve models over the OpenAI, Anthropic and Ollama APIs (alias: serve)", load: async () => (await import("./server.ts")).default },
  launch: { description: "Run one model over several MLX processes or hosts (pipeline parallel)", load: async () => (await import("./launch.ts")).default, variadic: true },
  embed: { description: "Embed texts with an embedding model (JSONL, or --json)", load: async () => (await import("./embed.ts")).default, variadic: true },
  convert: { description: "Quantize, cast or repair a model into a new workspace", load: async () => (await import("./convert.ts")).default },
  push: { description: "Upload a workspace to a private Hugging Face repo", load: async () => (await import("./push.ts")).default },
  clone: { description: "Copy a model into a new workspace dir (from the cache, else the Hub)", load: async () => (await import("./clone.ts")).default },
  ps: { description: "List the running mlxk servers (pid, port, model, uptime, requests)", load: async () => (await import("./ps.ts")).default },
  stop: { description: "Stop a running mlxk server (by pid or port)", load: async () => (await import("./stop.ts")).default },
  doctor: { description: "Check the MLX runtime: backend, versions, paths, what is missing", load: async () => (await import("./doctor.ts")).default },
  completion: {
    description: "Print a shell completion script (bash, zsh, fish)",
    load: async () => {
      const m = await import("./completion.ts");
      m.useCommands(COMMANDS);
      return m.default;
    },
  },
};
const ALIASES: Record<string, string> = { serve: "server" };

function usage(): string {
  const rows = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.description}`);
  return [
    `mlxk ${CLI_VERSION} — manage, run and serve MLX models in the Hugging Face cache`,
    "",
    "Usage: mlxk [--version] [--json] <command> [options]",
    "",
    "Commands:",
    ...rows,
    "",
    "Run 'mlxk help <command>' (or 'mlxk <command> --help') for the options of a command.",
    "Quick start: mlxk pull mlx-community/Llama-3.2-1B-Instruct-4bit; mlxk run Llama-3.2-1B \"Hello\"; mlxk server --model Llama-3.2-1B",
    "",
    examplesBlock(TOP_EXAMPLES).trim(),
  ].join("\n");
}

function printVersion(ctx: CliContext): void {
  const mem = totalmem();
  // what the installer recorded: reading it loads no MLX, so --version stays instant
  const b = installedBackend(ctx.env);
  printSuccess(
    ctx,
    "version",
    {
      cli_version: CLI_VERSION,
      json_api_spec_version: JSON_API_SPEC_VERSION,
      system: mem > 0 ? { memory_total_bytes: mem } : null,
      backend: b ? { device: b.backend, reason: b.reason, wheel: b.wheel } : null,
    },
    () => `mlxk ${CLI_VERSION}`,
  );
}

/** Run the CLI with `argv` (without the program name); returns the exit code. */
export async function runCli(argv: string[], ctxIn?: CliContext): Promise<number> {
  const json = argv.includes("--json");
  if (!ctxIn) guardProcessOutput(debug(process.env));
  const ctx = ctxIn ?? processContext(json);
  ctx.json = json;
  const idx = argv.findIndex((a) => !a.startsWith("-"));
  const globals = idx < 0 ? argv : argv.slice(0, idx);
  let command: string | null = null;
  try {
    for (const g of globals) {
      if (!["--json", "--version", "-V", "--help", "-h"].includes(g)) {
        throw new MlxkError("CommandError", `Unknown option '${g}'. Run 'mlxk --help' for usage.`);
      }
    }
    if (globals.includes("--version") || globals.includes("-V")) {
      printVersion(ctx);
      return ctx.exitCode;
    }
    if (idx < 0) {
      if (json && !globals.includes("--help")) throw new MlxkError("CommandError", "No command given. Run 'mlxk --help' for usage.");
      ctx.stdout(`${usage()}\n`);
      return globals.includes("--help") || globals.includes("-h") ? 0 : 2;
    }
    let name = argv[idx]!;
    let rest = argv.slice(idx + 1);
    // `mlxk help` = `mlxk --help`; `mlxk help <cmd>` = `mlxk <cmd> --help`
    if (name === "help") {
      const topic = rest.find((a) => !a.startsWith("-"));
      if (topic === undefined) {
        ctx.stdout(`${usage()}\n`);
        return 0;
      }
      name = topic;
      rest = ["--help"];
    }
    command = ALIASES[name] ?? name;
    const entry = COMMANDS[command];
    if (!entry) {
      const c = command;
      command = null;
      const hint = didYouMean(c, [...Object.keys(COMMANDS), ...Object.keys(ALIASES)], (n) => `mlxk ${n}`);
      throw new MlxkError("CommandError", `Unknown command '${c}'.${hint} Commands: ${Object.keys(COMMANDS).join(", ")}.`);
    }
    const cmd = await entry.load();
    if (rest.includes("--help") || rest.includes("-h")) {
      ctx.stdout(`${await renderHelp(cmd, command, { variadic: entry.variadic })}${examplesBlock(EXAMPLES[command])}`);
      return 0;
    }
    const def = typeof cmd.args === "function" ? await cmd.args() : await cmd.args;
    checkArgs(def ?? {}, rest, { variadic: entry.variadic, command });
    await runCommand(cmd, { rawArgs: rest, data: ctx });
    return ctx.exitCode;
  } catch (e) {
    // citty's own parse errors (missing positional, bad enum) are usage errors
    const err = e instanceof Error && e.name === "CLIError" ? new MlxkError("CommandError", e.message) : toMlxkError(e);
    printError(ctx, command, err);
    if (err.type === "InternalError" && debug(ctx.env) && e instanceof Error) ctx.stderr(`${e.stack}\n`);
    return ctx.exitCode;
  }
}

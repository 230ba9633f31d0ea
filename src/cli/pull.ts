/** `mlxk pull org/name[@revision]`: download a model into the Hugging Face cache. */
import { defineCommand } from "citty";
import { hubEndpoint, progressDisabled } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { PullProgress, pull } from "../hub/pull.ts";
import { formatBytes, renderProgress } from "../hub/progress.ts";
import type { PullData } from "../schemas/pull.ts";
import { jsonArgs, modelArg, parseIntArg } from "./args.ts";
import { type CliContext, printError, printSuccess } from "./context.ts";

/** Values of a repeatable string flag (`--include a --include b`, `--include=a`). */
function repeated(rawArgs: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") break;
    if (a === `--${name}` && rawArgs[i + 1] !== undefined) out.push(rawArgs[++i]!);
    else if (a.startsWith(`--${name}=`)) out.push(a.slice(name.length + 3));
  }
  return out;
}

/** A word as a POSIX shell reads it back (the resume command is meant to be pasted). */
function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/** The command that continues this pull: same repo@revision and the same file selection. */
export function resumeCommand(spec: string, include: string[], exclude: string[]): string {
  const parts = ["mlxk", "pull", shellQuote(spec), ...include.flatMap((g) => ["--include", shellQuote(g)]), ...exclude.flatMap((g) => ["--exclude", shellQuote(g)]), "--force-resume"];
  return parts.join(" ");
}

/** Redraws the progress lines on stderr in place. */
function progressDisplay(ctx: CliContext, progress: PullProgress): () => void {
  let drawn = 0;
  const endpoint = hubEndpoint(ctx.env);
  const draw = (final: boolean) => {
    const lines = final ? [] : renderProgress(progress, Date.now(), { columns: process.stderr.columns, endpoint });
    let out = drawn > 0 ? `\x1b[${drawn}F` : "";
    for (let i = 0; i < Math.max(lines.length, drawn); i++) out += `\x1b[2K${lines[i] ?? ""}\n`;
    // move back over blank lines left from a taller previous frame
    const extra = Math.max(0, drawn - lines.length);
    if (extra > 0) out += `\x1b[${extra}F`;
    drawn = lines.length;
    ctx.stderr(out);
  };
  const timer = setInterval(() => draw(false), 200);
  return () => {
    clearInterval(timer);
    draw(true);
  };
}

function human(d: PullData): string {
  const extra = d.download_status === "success" ? ` (${d.files} files, ${formatBytes(d.bytes_downloaded)} downloaded, ${d.health}${d.health === "unhealthy" ? `: ${d.health_reason}` : ""})` : "";
  return `pull: ${d.model} — ${d.message}${extra}`;
}

export default defineCommand({
  meta: { name: "pull", description: "Download a model from the Hugging Face Hub into the cache (resumable)" },
  args: {
    model: { ...modelArg.model, description: "Repo id org/name[@revision][:QUANT] (a bare name is mlx-community/name when that is cached; :QUANT = one GGUF quant)" },
    "force-resume": { type: "boolean", description: "Resume into an existing but incomplete model without asking" },
    include: { type: "string", description: "Only files matching this glob (repeatable)" },
    exclude: { type: "string", description: "Skip files matching this glob (repeatable)" },
    workers: { type: "string", description: "Parallel file downloads (default 4)" },
    ...jsonArgs,
  },
  async run({ args, rawArgs, data }) {
    const ctx = data as CliContext;
    const spec = String(args.model);
    const workers = parseIntArg("workers", args.workers as string | undefined, 1, 64);
    const include = repeated(rawArgs, "include");
    const exclude = repeated(rawArgs, "exclude");
    const controller = new AbortController();
    // first Ctrl-C cancels every request and lets the partial files close cleanly; a second one leaves at once
    let pulling = false;
    const onSigint = () => {
      // at the resume question (nothing to cancel) or on a second Ctrl-C: leave at once
      if (controller.signal.aborted || !pulling) {
        ctx.stderr("\nInterrupted.\n");
        process.exit(130);
      }
      controller.abort();
    };
    process.on("SIGINT", onSigint);
    // the bar redraws with ANSI codes on stderr: only where stderr is a terminal too
    const showProgress = !ctx.json && ctx.stdoutIsTTY && (ctx.stderrIsTTY ?? true) && !progressDisabled(ctx.env);
    const run = async (forceResume: boolean): Promise<PullData> => {
      const progress = new PullProgress();
      const stop = showProgress ? progressDisplay(ctx, progress) : () => {};
      pulling = true;
      try {
        return await pull({
          spec,
          env: ctx.env,
          include,
          exclude,
          workers,
          forceResume,
          signal: controller.signal,
          progress,
        });
      } finally {
        pulling = false;
        stop();
      }
    };
    try {
      let result = await run(Boolean(args["force-resume"]));
      if (result.download_status === "requires_confirmation" && !ctx.json) {
        if (!ctx.stdinIsTTY) {
          throw new MlxkError("requires_confirmation", result.message, { data: result });
        }
        ctx.stderr(`pull: ${result.model} — ${result.health_reason}\n`);
        if (!(await ctx.ask("Resume download? [Y/n]: ", true))) {
          printSuccess(ctx, "pull", result, () => "Download cancelled. Partial download kept.");
          return;
        }
        result = await run(true);
      }
      printSuccess(ctx, "pull", result, () => human(result));
    } catch (e) {
      if (!controller.signal.aborted) throw e;
      const err = new MlxkError("download_failed", `Download interrupted. Partial files are kept; run '${resumeCommand(spec, include, exclude)}' to resume.`, {
        data: e instanceof MlxkError ? e.data : null,
      });
      printError(ctx, "pull", err);
      ctx.exitCode = 130;
    } finally {
      process.off("SIGINT", onSigint);
    }
  },
});

/** `mlxk clone <model> [target]`: a model from the cache (or the Hub) into a new workspace dir. */
import { defineCommand } from "citty";
import { formatBytes } from "../hub/progress.ts";
import type { CloneData } from "../schemas/workspace.ts";
import { clone } from "../workspace/clone.ts";
import { jsonArgs } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";
import { withSigint } from "./interrupt.ts";

function human(d: CloneData): string {
  const how = d.source === "cache" ? `from the cache (${d.copy_method})` : `from the Hub${d.resumed ? ", resumed" : ""}`;
  const lines = [`clone: ${d.model} — ${d.message}`, `  ${d.files} files, ${formatBytes(d.bytes)} ${how}`, `  content hash ${d.content_hash}`];
  if (d.health_check) lines.push(`  health: ${d.health} — ${d.health_reason}`);
  return lines.join("\n");
}

export default defineCommand({
  meta: { name: "clone", description: "Copy a model (from the cache, else the Hub) into a new workspace dir" },
  args: {
    model: { type: "positional", description: "Repo id org/name[@revision] (a bare name is mlx-community/name when that is cached)", required: true },
    target: { type: "positional", description: "Workspace dir (must not exist or be empty); a bare name goes into MLXK_WORKSPACE_HOME; default $MLXK_WORKSPACE_HOME/<name>", required: false },
    branch: { type: "string", description: "Revision to clone (same as model@revision)" },
    "health-check": { type: "boolean", default: true, description: "Health-check the files before publishing the workspace (--no-health-check skips it)" },
    quiet: { type: "boolean", description: "No progress lines on stderr" },
    "force-resume": { type: "boolean", description: "Accepted for mlx-knife compatibility: an interrupted clone always resumes" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    const chatty = !ctx.json && !args.quiet && ctx.stdoutIsTTY;
    const out = await withSigint((signal) =>
      clone({
        spec: String(args.model),
        target: args.target as string | undefined,
        branch: args.branch as string | undefined,
        env: ctx.env,
        healthCheck: args["health-check"] !== false,
        signal,
        onStatus: chatty ? (s, detail) => ctx.stderr(`clone: ${s}: ${detail}\n`) : undefined,
      }),
    );
    printSuccess(ctx, "clone", out, () => human(out));
  },
});

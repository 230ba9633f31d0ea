/** `mlxk push <local_dir> <org/name> --private`: a workspace to a private Hub repo (only what changed). */
import { defineCommand } from "citty";
import { formatBytes } from "../hub/progress.ts";
import type { PushData } from "../schemas/workspace.ts";
import { push } from "../workspace/push.ts";
import { jsonArgs } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";
import { withSigint } from "./interrupt.ts";

function human(d: PushData): string {
  const head = `push: ${d.repo_id}@${d.branch} — ${d.message}`;
  if (d.workspace_health) {
    const h = d.workspace_health as { files_count: number; total_bytes: number; healthy: boolean; anomalies: string[] };
    return [head, `  ${h.files_count} files, ${formatBytes(h.total_bytes)}, ${h.healthy ? "healthy" : `unhealthy: ${h.anomalies.join("; ")}`}`].join("\n");
  }
  const lines = [head];
  const s = d.change_summary;
  lines.push(`  added ${s.added}, modified ${s.modified}, unchanged ${d.local_files_count - s.added - s.modified}`);
  for (const f of d.files ?? []) if (f.change !== "unchanged") lines.push(`  ${f.change.padEnd(11)} ${f.path} (${formatBytes(f.size)})`);
  if (d.commit_url) lines.push(`  commit ${d.commit_url}`);
  return lines.join("\n");
}

export default defineCommand({
  meta: { name: "push", description: "Upload a workspace to a private Hugging Face repo (only changed files)" },
  args: {
    local_dir: { type: "positional", description: "Workspace dir (or a workspace name in MLXK_WORKSPACE_HOME)", required: true },
    repo_id: { type: "positional", description: "Target repo org/name", required: true },
    private: { type: "boolean", description: "Required: mlxk only writes private repos" },
    create: { type: "boolean", description: "Create the repo (private) when it does not exist" },
    branch: { type: "string", description: "Branch to commit to (default main; created from main when missing)" },
    commit: { type: "string", description: "Commit message" },
    "check-only": { type: "boolean", description: "Only check the workspace locally (no token, no network)" },
    "dry-run": { type: "boolean", description: "List what would be uploaded; change nothing" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    const out = await withSigint((signal) =>
      push({
        localDir: String(args.local_dir),
        repoId: String(args.repo_id),
        env: ctx.env,
        private: Boolean(args.private),
        create: Boolean(args.create),
        branch: args.branch as string | undefined,
        message: args.commit as string | undefined,
        checkOnly: Boolean(args["check-only"]),
        dryRun: Boolean(args["dry-run"]),
        signal,
      }),
    );
    printSuccess(ctx, "push", out, () => human(out));
  },
});

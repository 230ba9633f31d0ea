/**
 * `mlxk rm <model> [-f] [--dry-run]`: delete a model (or with `@hash` one revision) from the cache.
 * A fuzzy name match deletes nothing without -f: JSON/non-TTY runs get `requires_confirmation`, a terminal asks.
 */
import { defineCommand } from "citty";
import { existsSync } from "node:fs";
import { relative } from "node:path";
import { executeRemoval, planRemoval } from "../cache/remove.ts";
import { resolveModel } from "../cache/resolve.ts";
import { hubCacheDir } from "../env.ts";
import { MlxkError } from "../errors.ts";
import type { RmData } from "../schemas/cli-output.ts";
import { jsonArgs, modelArg } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";
import { formatSize } from "./render/format.ts";
import { renderRm } from "./render/cache.ts";

function base(model: string | null): RmData {
  return { model, action: "unknown", message: "", requires_confirmation: false, matches: [], lock_files_cleaned: 0 };
}

export default defineCommand({
  meta: { name: "rm", description: "Delete a model (or one revision with name@hash) from the cache" },
  args: {
    ...modelArg,
    force: { type: "boolean", alias: "f", description: "Delete without confirmation, also with lock files present" },
    "dry-run": { type: "boolean", description: "Only list what would be deleted" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    const hubDir = hubCacheDir(ctx.env);
    const spec = args.model;
    if (!existsSync(hubDir)) throw new MlxkError("cache_not_found", `Cache directory not found: ${hubDir}`, { data: base(spec) });
    let resolved;
    try {
      resolved = resolveModel(spec, { hubDir, env: ctx.env });
    } catch (e) {
      if (e instanceof MlxkError && e.type === "ambiguous_match") {
        const matches = (e.extra.matches as string[]) ?? [];
        throw new MlxkError(e.type, e.message, { extra: e.extra, data: { ...base(spec), action: "ambiguous", matches } });
      }
      if (e instanceof MlxkError) throw new MlxkError(e.type, e.message, { extra: e.extra, data: base(spec) });
      throw e;
    }
    if (resolved.kind === "path") {
      throw new MlxkError("workspace_model", `Cannot delete workspace model. Use: rm -rf ${resolved.dir}`, { data: base(spec) });
    }
    if (resolved.quant) {
      // rm deletes whole snapshots; deleting one quant's blobs would leave a repo the Hub no longer matches
      throw new MlxkError("ValidationError", `rm removes a whole model; ':${resolved.quant}' cannot remove one GGUF quant. Use: mlxk rm ${resolved.name}`, {
        data: base(spec),
      });
    }
    const plan = planRemoval({ hubDir, name: resolved.name, hash: resolved.hash });
    const label = plan.hash ? `${resolved.name}@${plan.hash}` : resolved.name;
    const what = plan.scope === "revision" ? `revision ${plan.hash}` : "the whole model";
    const d: RmData = { ...base(resolved.name), commit_hash: plan.hash, freed_bytes: plan.bytes };
    const lockRel = plan.lockFiles.map((l) => relative(hubDir, l));
    if (plan.lockFiles.length > 0) Object.assign(d, { locks_detected: true, lock_files: lockRel });

    if (args["dry-run"]) {
      const paths = plan.paths.map((p) => relative(hubDir, p));
      const msg = `Would delete ${what} of '${resolved.name}' (${formatSize(plan.bytes)}, ${paths.length} path(s))`;
      const out: RmData = { ...d, action: "dry_run", dry_run: true, paths, message: msg };
      printSuccess(ctx, "rm", out, () => renderRm(out));
      return;
    }
    if (plan.lockFiles.length > 0 && !args.force) {
      throw new MlxkError(
        "locks_present",
        `Lock files present for '${resolved.name}' (a download may be running). Use --force to delete anyway.`,
        { data: { ...d, locks_detected: true, lock_files: lockRel } },
      );
    }
    if (resolved.match !== "exact" && !args.force) {
      const question = `Delete ${what} of '${resolved.name}' (matched from '${spec}', ${formatSize(plan.bytes)})? [y/N] `;
      const askable = !ctx.json && ctx.stdinIsTTY;
      if (!askable || !(await ctx.ask(question, false))) {
        const out: RmData = askable
          ? { ...d, action: "cancelled", message: "Nothing deleted" }
          : {
              ...d,
              action: "requires_confirmation",
              requires_confirmation: true,
              message: `Would delete '${label}' (matched from '${spec}'). Use --force to delete.`,
            };
        printSuccess(ctx, "rm", out, () => renderRm(out));
        return;
      }
    }
    const { freedBytes, lockFilesCleaned } = executeRemoval(plan, { hubDir });
    const out: RmData = {
      ...d,
      action: "deleted",
      message: `Deleted ${label} (${formatSize(freedBytes)} freed)`,
      lock_files_cleaned: lockFilesCleaned,
      freed_bytes: freedBytes,
    };
    printSuccess(ctx, "rm", out, () => renderRm(out));
  },
});

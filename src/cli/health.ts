/** `mlxk health [model] [--verify]`: integrity and runtime compatibility of cached models and workspaces. */
import { defineCommand } from "citty";
import { basename } from "node:path";
import type { HealthReport } from "../cache/health.ts";
import { repoHealth } from "../cache/health.ts";
import { type CleanResult, checkClean } from "../cache/content-hash.ts";
import { listRepoNames, repoDirFor } from "../cache/layout.ts";
import { scanRepos } from "../cache/pool.ts";
import { resolveModel } from "../cache/resolve.ts";
import { verifySnapshot } from "../cache/verify.ts";
import { isManaged, listWorkspaces, readSentinel, workspaceHealth } from "../cache/workspace.ts";
import { hubCacheDir, scanWorkers, workspaceHome } from "../env.ts";
import type { HealthData, HealthEntry } from "../schemas/cli-output.ts";
import { jsonArgs } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";
import { renderHealth } from "./render/cache.ts";

interface Target {
  name: string;
  report: HealthReport;
  repoDir: string | null;
  /** Set for workspaces and explicit paths: the sentinel says managed. */
  managed?: boolean;
  /** Workspaces with a content hash: does it still match the files. */
  clean?: CleanResult;
}

function entry(t: Target): HealthEntry {
  const r = t.report;
  const e: HealthEntry = {
    name: t.name,
    status: r.healthy ? "healthy" : "unhealthy",
    reason: r.reason,
    runtime_compatible: r.runtime_compatible,
    runtime_reason: r.runtime_reason,
  };
  if (t.managed !== undefined) e.managed = t.managed;
  if (t.clean) {
    e.clean = t.clean.clean;
    e.clean_hint = t.clean.hint;
    if (t.clean.changed.length > 0) e.changed_files = t.clean.changed;
  }
  return e;
}

function dirTarget(dir: string): Target {
  const sentinel = readSentinel(dir);
  const clean = sentinel && typeof sentinel.content_hash === "string" ? checkClean(dir, sentinel) : undefined;
  return { name: dir, report: workspaceHealth(dir, sentinel), repoDir: null, managed: isManaged(sentinel), clean };
}

export default defineCommand({
  meta: { name: "health", description: "Check the files of cached models (all, or one)" },
  args: {
    model: { type: "positional", description: "Model name (org/name, short name, substring, name@hash or path)", required: false },
    verify: { type: "boolean", description: "Also re-hash every blob against its content hash (reads all weights)" },
    strict: { type: "boolean", description: "Exit 1 when any checked model is unhealthy or corrupt (for scripts and CI)" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    const hubDir = hubCacheDir(ctx.env);
    let targets: Target[];
    let entries: HealthEntry[] | undefined;
    if (args.model) {
      const r = resolveModel(args.model, { hubDir, env: ctx.env });
      targets =
        r.kind === "path"
          ? [dirTarget(r.dir)]
          : [{ name: r.name, report: repoHealth(r.repoDir, { name: r.name, hash: r.hash, healthOnly: true }), repoDir: r.repoDir }];
    } else {
      // workspaces first; a cached model whose short name is a workspace's name is that workspace's source (dedup)
      const workspaces = listWorkspaces(workspaceHome(ctx.env));
      const wsNames = new Set(workspaces.map((d) => basename(d)));
      const names = listRepoNames(hubDir).filter((n) => !wsNames.has(n.slice(n.lastIndexOf("/") + 1)));
      const wsTargets = workspaces.map(dirTarget);
      if (!args.verify) {
        // all models, no hashing: spread over the cores, only the summary comes back
        const sums = await scanRepos({ hubDir, names, kind: "health", workers: scanWorkers(ctx.env) });
        targets = wsTargets;
        entries = [
          ...wsTargets.map(entry),
          ...sums.map((s): HealthEntry => ({ name: s.name, status: s.healthy ? "healthy" : "unhealthy", reason: s.reason, runtime_compatible: s.runtime_compatible, runtime_reason: s.runtime_reason })),
        ];
      } else {
        targets = [
          ...wsTargets,
          ...names.map((name) => {
            const repoDir = repoDirFor(hubDir, name);
            return { name, report: repoHealth(repoDir, { name, healthOnly: true }), repoDir };
          }),
        ];
      }
    }
    entries ??= targets.map(entry);
    if (args.verify) {
      for (const [i, t] of targets.entries()) {
        if (!t.report.healthy || !t.report.view || !t.repoDir) continue;
        const { corrupt } = await verifySnapshot(t.report.view, { repoDir: t.repoDir });
        if (corrupt.length > 0) {
          const shown = corrupt.slice(0, 5).join(", ") + (corrupt.length > 5 ? ` (+${corrupt.length - 5} more)` : "");
          entries[i] = {
            name: t.name,
            status: "unhealthy",
            reason: `Corrupt files (content does not match its hash): ${shown}`,
            runtime_compatible: false,
            runtime_reason: null,
            corrupt_files: corrupt,
          };
        }
      }
    }
    const healthy = entries.filter((e) => e.status === "healthy");
    const unhealthy = entries.filter((e) => e.status === "unhealthy");
    const out: HealthData = {
      healthy,
      unhealthy,
      summary: { total: entries.length, healthy_count: healthy.length, unhealthy_count: unhealthy.length },
    };
    if (args.verify) out.verified = true;
    printSuccess(ctx, "health", out, () => renderHealth(out));
    // mlx-knife exits 0 whatever it finds; --strict makes the finding the exit status (the report is unchanged)
    if (args.strict && unhealthy.length > 0) {
      ctx.exitCode = 1;
      if (!ctx.json) ctx.stderr(`health: ${unhealthy.length} of ${entries.length} model(s) unhealthy\n`);
    }
  },
});

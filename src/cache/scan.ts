/**
 * Model objects (JSON API `modelObject`) for cached repos and local model dirs, and the `list` scan.
 * Read-only: never writes to the cache.
 *
 * Exports: toIsoUtc(ms), modelObjectFrom(report, { name, cached, display_name? }),
 *          cacheModel(hubDir, name, { hash? }) → { model, report }, dirModel(dir, { display_name? }),
 *          listModels({ hubDir, pattern?, cwd?, workspaceHome? }) → { models }, cacheNamesMatching(hubDir, pattern),
 *          workspaceModelsMatching(home, pattern), mergeByName(a, b)
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import type { ModelObject } from "../schemas/cli-output.ts";
import { contextLength, detectModel } from "./detect.ts";
import { defaultVariant, inspectGguf, isGgufModelFile, variantContextLength } from "./gguf.ts";
import { type HealthReport, dirHealth, repoHealth } from "./health.ts";
import { listRepoNames, repoDirFor } from "./layout.ts";
import { isExplicitPath } from "./resolve.ts";
import { SnapshotView } from "./snapshot.ts";
import { listWorkspaces, workspaceModel } from "./workspace.ts";

/** `YYYY-MM-DDTHH:MM:SSZ` in real UTC (mlx-knife printed local time with a Z). */
export function toIsoUtc(ms: number): string {
  return `${new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19)}Z`;
}

export function modelObjectFrom(report: HealthReport, opts: { name: string; cached: boolean; display_name?: string | null; fallbackMtimeMs?: number }): ModelObject {
  const view = report.view ?? new SnapshotView("", []);
  const d = report.detection ?? detectModel(view, opts.name);
  let size = 0;
  for (const f of view.files) if (f.size > 0) size += f.size;
  const reason = !report.healthy ? report.reason : report.runtime_reason;
  return {
    name: opts.name,
    hash: report.hash,
    size_bytes: size,
    last_modified: toIsoUtc(report.mtimeMs ?? opts.fallbackMtimeMs ?? 0),
    framework: d.framework,
    model_type: d.kind,
    capabilities: d.capabilities,
    context_length: d.framework === "GGUF" ? variantContextLength(defaultVariant(inspectGguf(view))) : contextLength(view.readObject("config.json")),
    health: report.healthy ? "healthy" : "unhealthy",
    runtime_compatible: report.runtime_compatible,
    reason,
    cached: opts.cached,
    origin: null,
    content_hash: null,
    hash_modified: null,
    clean: null,
    display_name: opts.display_name ?? null,
  };
}

function mtimeOr0(p: string): number {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

export function cacheModel(hubDir: string, name: string, opts: { hash?: string | null } = {}): { model: ModelObject; report: HealthReport } {
  const repoDir = repoDirFor(hubDir, name);
  const report = repoHealth(repoDir, { name, hash: opts.hash });
  const fallbackMtimeMs = report.mtimeMs === null ? mtimeOr0(repoDir) : undefined;
  return { model: modelObjectFrom(report, { name, cached: true, fallbackMtimeMs }), report };
}

export function dirModel(dir: string, opts: { display_name?: string | null } = {}): { model: ModelObject; report: HealthReport } {
  const report = dirHealth(dir, { name: dir });
  return { model: modelObjectFrom(report, { name: dir, cached: false, display_name: opts.display_name }), report };
}

/** Explicit path pattern: that model dir, else its children holding config.json or .gguf files, else basename-prefix siblings. */
function listPath(pattern: string, cwd: string): ModelObject[] {
  const abs = isAbsolute(pattern) ? resolve(pattern) : resolve(cwd, pattern);
  const show = (dir: string): string => (isAbsolute(pattern) ? dir : relative(cwd, dir) || ".");
  const isModel = (d: string): boolean => {
    if (existsSync(join(d, "config.json"))) return true;
    try {
      return statSync(d).isDirectory() && readdirSync(d).some(isGgufModelFile);
    } catch {
      return false;
    }
  };
  let dirs: string[];
  if (isModel(abs)) dirs = [abs];
  else {
    let parent = abs;
    let prefix = "";
    if (!existsSync(abs) || !statSync(abs).isDirectory()) {
      parent = dirname(abs);
      prefix = basename(abs);
    }
    let names: string[] = [];
    try {
      names = readdirSync(parent);
    } catch {
      names = [];
    }
    dirs = names
      .filter((n) => n.startsWith(prefix))
      .map((n) => join(parent, n))
      .filter(isModel)
      .sort();
  }
  return dirs.map((d) => workspaceModel(d, { display_name: show(d) }).model);
}

/**
 * `list [pattern]`: every cached model whose `org/name` contains `pattern` (case-insensitive), sorted by name.
 * A pattern that is an explicit path (`./x`, `/x`, `..`) lists local model dirs instead and never the cache.
 */
export function listModels(opts: { hubDir: string; pattern?: string | null; cwd?: string; workspaceHome?: string | null }): { models: ModelObject[] } {
  const pattern = opts.pattern?.trim() ?? "";
  if (pattern !== "" && isExplicitPath(pattern)) return { models: listPath(pattern, opts.cwd ?? process.cwd()) };
  const cached = cacheNamesMatching(opts.hubDir, pattern).map((n) => cacheModel(opts.hubDir, n).model);
  return { models: mergeByName(workspaceModelsMatching(opts.workspaceHome, pattern), cached) };
}

/** Workspaces whose dir name contains `pattern` (case-insensitive): name = absolute path, display_name = dir name. */
export function workspaceModelsMatching(home: string | null | undefined, pattern: string): ModelObject[] {
  const lower = pattern.toLowerCase();
  return listWorkspaces(home)
    .filter((d) => basename(d).toLowerCase().includes(lower))
    .map((d) => workspaceModel(d, { display_name: basename(d) }).model);
}

/** Workspace and cache models in one list sorted by `name`, as mlx-knife prints them. */
export function mergeByName(a: ModelObject[], b: ModelObject[]): ModelObject[] {
  return [...a, ...b].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

/** Cached model names containing `pattern` (case-insensitive), sorted; "" matches all. */
export function cacheNamesMatching(hubDir: string, pattern: string): string[] {
  const lower = pattern.toLowerCase();
  const names = listRepoNames(hubDir);
  return lower === "" ? names : names.filter((n) => n.toLowerCase().includes(lower));
}

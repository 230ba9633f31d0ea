/**
 * mlx-knife workspaces: model dirs under `MLXK_WORKSPACE_HOME`, optionally carrying a `.mlxk_workspace.json`
 * sentinel written by mlx-knife's clone/convert. Read-only: mlxk never writes sentinels.
 *
 * A workspace is a direct, non-hidden child dir of the home holding config.json or the sentinel.
 *
 * Exports: SENTINEL, readSentinel(dir), workspaceFields(dir, sentinel), listWorkspaces(home),
 *          resolveWorkspace(home, spec) → dir | null (throws ambiguous_match), workspaceHealth(dir, sentinel?),
 *          workspaceModel(dir, { display_name? }) → { model, report, sentinel }
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { MlxkError } from "../errors.ts";
import type { ModelObject } from "../schemas/cli-output.ts";
import { type HealthReport, dirHealth } from "./health.ts";
import { modelObjectFrom } from "./scan.ts";

export const SENTINEL = ".mlxk_workspace.json";
const V2_HASH = /^sha256:[0-9a-f]{64}$/;
const V1_HASH = /^[0-9a-f]{64}$/;

export type Sentinel = Record<string, unknown>;

/** The sentinel as an object; missing, unreadable, invalid JSON or not an object → null. */
export function readSentinel(dir: string): Sentinel | null {
  try {
    const v: unknown = JSON.parse(readFileSync(join(dir, SENTINEL), "utf8"));
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Sentinel) : null;
  } catch {
    return null;
  }
}

function str(v: unknown): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}

/** Newest mtime of the files below `dir` (sentinel excluded), following no symlinked dirs. */
function newestFileMtime(dir: string): number {
  let newest = 0;
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (relative(dir, p) !== SENTINEL) {
        try {
          newest = Math.max(newest, statSync(p).mtimeMs);
        } catch {
          // a dangling link has no mtime; health reports it
        }
      }
    }
  };
  walk(dir);
  return newest;
}

/**
 * modelObject workspace fields. `clean`: a v2 content hash is trusted while no file is newer than its
 * `hash_modified` (re-hashing every weight on each `list` would be too slow); v1 or no hash → null (`ws?`).
 */
export function workspaceFields(
  dir: string,
  sentinel: Sentinel | null,
): { origin: string | null; content_hash: string | null; hash_modified: string | null; clean: boolean | null } {
  const origin = str(sentinel?.source_repo);
  const raw = str(sentinel?.content_hash);
  const content_hash = raw !== null && (V2_HASH.test(raw) || V1_HASH.test(raw)) ? raw : null;
  const hash_modified = str(sentinel?.hash_modified);
  let clean: boolean | null = null;
  const at = hash_modified !== null ? Date.parse(hash_modified) : Number.NaN;
  if (content_hash !== null && V2_HASH.test(content_hash) && Number.isFinite(at)) {
    // 1 s slack: the sentinel's time has second resolution, file mtimes do not
    clean = newestFileMtime(dir) <= at + 1000;
  }
  return { origin, content_hash, hash_modified, clean };
}

function isWorkspaceDir(dir: string): boolean {
  try {
    return statSync(dir).isDirectory() && (existsSync(join(dir, "config.json")) || existsSync(join(dir, SENTINEL)));
  } catch {
    return false;
  }
}

/** Absolute paths of the workspaces in `home`, sorted by dir name; a missing home has none. */
export function listWorkspaces(home: string | null | undefined): string[] {
  if (!home) return [];
  let names: string[];
  try {
    names = readdirSync(home);
  } catch {
    return [];
  }
  return names
    .filter((n) => !n.startsWith("."))
    .sort()
    .map((n) => join(home, n))
    .filter(isWorkspaceDir);
}

/**
 * A bare name against the workspace home: the workspace named exactly `spec`, else the only one whose name
 * contains it (case-insensitive); several → ambiguous_match (mlx-knife took the first in readdir order).
 */
export function resolveWorkspace(home: string | null | undefined, spec: string): string | null {
  if (!home || spec === "" || spec.includes("/")) return null;
  const all = listWorkspaces(home);
  const exact = all.find((d) => basename(d) === spec && existsSync(join(d, "config.json")));
  if (exact) return exact;
  const lower = spec.toLowerCase();
  const hits = all.filter((d) => basename(d).toLowerCase().includes(lower));
  if (hits.length === 1) return hits[0]!;
  if (hits.length > 1) {
    const matches = hits.map((d) => basename(d));
    throw new MlxkError("ambiguous_match", `Multiple workspaces match '${spec}': ${matches.join(", ")}. Use the full workspace name.`, {
      extra: { matches },
    });
  }
  return null;
}

/** dirHealth with the workspace rule first: no config.json (and no GGUF files) → "No config.json found in workspace". */
export function workspaceHealth(dir: string, sentinel: Sentinel | null = readSentinel(dir)): HealthReport {
  // the sentinel's source repo feeds the name-based detection rules (e.g. mlx-community → MLX)
  const report = dirHealth(dir, { name: str(sentinel?.source_repo) ?? dir });
  // a dir of GGUF files carries its config in the files (gguf.ts rules)
  if (!existsSync(join(dir, "config.json")) && report.detection?.framework !== "GGUF") {
    return { ...report, healthy: false, reason: "No config.json found in workspace", runtime_compatible: false, runtime_reason: null };
  }
  return report;
}

/** `managed` of a health entry: a valid sentinel that says `managed: true`. */
export function isManaged(sentinel: Sentinel | null): boolean {
  return sentinel?.managed === true;
}

export function workspaceModel(dir: string, opts: { display_name?: string | null } = {}): { model: ModelObject; report: HealthReport; sentinel: Sentinel | null } {
  const sentinel = readSentinel(dir);
  const report = workspaceHealth(dir, sentinel);
  const model = modelObjectFrom(report, { name: dir, cached: false, display_name: opts.display_name });
  return { model: { ...model, ...workspaceFields(dir, sentinel) }, report, sentinel };
}

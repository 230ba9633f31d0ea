/**
 * The one model-name resolver of mlxk (list/health/show/rm/pull/run/server all use it).
 *
 * Grammar: `spec := path | name ["@" rev] [":" quant]`, split on the LAST `@`; `quant` picks the file of a
 * GGUF repo (`org/name-GGUF:Q4_1`, see gguf.ts; HF names never hold a `:`).
 *   workspace  (bare name, no `@`) a child of MLXK_WORKSPACE_HOME: exact name, else the only substring hit
 *         (several → ambiguous_match); see workspace.ts.
 *   path  starts with `/`, `./`, `../`, `~/` or is `.`/`..`: a local dir that must hold config.json or .gguf files
 *         (`./dir:Q4_1` picks a quant of the latter).
 *   name  `org/name` exact → `name` as `mlx-community/name` when that is cached → case-insensitive exact →
 *         case-insensitive substring of `org/name`. Several hits → `ambiguous_match` (error.matches);
 *         none → `model_not_found`.
 *   rev   a snapshot hash prefix (or a branch in refs/, e.g. `main`); resolved to the full snapshot dir name.
 * Names are refused (ValidationError) if they could leave the cache dir: `..`, `--`, `\`, control chars, leading `/`.
 *
 * Exports: parseSpec(spec), splitQuant(spec), validateName(name), isExplicitPath(spec), findCandidates(names, base),
 *          resolveModel(spec, { hubDir, cwd?, env? }) → Resolved, ResolvedCache, ResolvedPath, MatchKind
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { MlxkError } from "../errors.ts";
import { workspaceHome } from "../env.ts";
import { isSafeModelName, listRepoNames, listSnapshots, readRefs, repoDirFor } from "./layout.ts";
import { isGgufModelFile } from "./gguf.ts";
import { resolveWorkspace } from "./workspace.ts";

export interface ParsedSpec {
  base: string;
  /** Text after the last `@`; null when there is no `@` or nothing after it. */
  rev: string | null;
}

export function parseSpec(spec: string): ParsedSpec {
  const s = spec.trim();
  const at = s.lastIndexOf("@");
  if (at < 0) return { base: s, rev: null };
  const rev = s.slice(at + 1);
  return { base: s.slice(0, at), rev: rev === "" ? null : rev };
}

/** `org/name:Q4_1` → { rest: "org/name", quant: "Q4_1" }; no `:` (or nothing usable after it) → quant null. */
export function splitQuant(spec: string): { rest: string; quant: string | null } {
  const at = spec.lastIndexOf(":");
  if (at <= 0) return { rest: spec, quant: null };
  const quant = spec.slice(at + 1);
  // a quant label may be a path inside the repo (the same quant in two folders); never `..`
  if (!/^[A-Za-z0-9_.\/-]{1,128}$/.test(quant) || quant.split("/").includes("..")) return { rest: spec, quant: null };
  return { rest: spec.slice(0, at), quant };
}

export function isExplicitPath(spec: string): boolean {
  return spec === "." || spec === ".." || /^(\/|\.\/|\.\.\/|~\/)/.test(spec);
}

/** Refuse names that are not HF repo ids or that could escape the cache when turned into a path. */
export function validateName(name: string): void {
  if (!isSafeModelName(name) || name.includes("..") || name.endsWith("/")) {
    throw new MlxkError("ValidationError", `Invalid model name '${name}': use org/name (no '..', '--', '\\' or leading '/')`);
  }
}

export type MatchKind = "exact" | "short_name" | "case_insensitive" | "substring";

export interface ResolvedCache {
  kind: "cache";
  /** `org/name` as in the cache dir. */
  name: string;
  repoDir: string;
  /** Full snapshot dir name when a `@rev` was given, else null (commands then pick refs/main or the newest). */
  hash: string | null;
  /** How the name was found; anything but "exact" counts as a fuzzy match for rm's confirmation rule. */
  match: MatchKind;
  /** `:QUANT` of the spec (GGUF repos), null when none. */
  quant?: string | null;
}

export interface ResolvedPath {
  kind: "path";
  /** Absolute path (the `name` of workspace/path models in the JSON API). */
  name: string;
  dir: string;
  hash: null;
  match: "exact";
  /** True when found by name in MLXK_WORKSPACE_HOME. */
  workspace?: boolean;
  /** `:QUANT` of a local GGUF dir, null when none. */
  quant?: string | null;
}

export type Resolved = ResolvedCache | ResolvedPath;

/** Candidate cache names for a base name, best rule first (see module doc). */
export function findCandidates(names: readonly string[], base: string): { names: string[]; match: MatchKind } {
  if (names.includes(base)) return { names: [base], match: "exact" };
  if (!base.includes("/") && names.includes(`mlx-community/${base}`)) return { names: [`mlx-community/${base}`], match: "short_name" };
  const lower = base.toLowerCase();
  const ci = names.filter((n) => n.toLowerCase() === lower);
  if (ci.length === 1) return { names: ci, match: "case_insensitive" };
  return { names: names.filter((n) => n.toLowerCase().includes(lower)), match: "substring" };
}

/** Snapshot dir names of a repo that `rev` selects: hash prefix (case-insensitive) or a ref name. */
function snapshotsForRev(repoDir: string, rev: string): string[] {
  const snaps = listSnapshots(repoDir).map((s) => s.hash);
  if (snaps.includes(rev)) return [rev];
  const viaRef = readRefs(repoDir)[rev];
  if (viaRef && snaps.includes(viaRef)) return [viaRef];
  const lower = rev.toLowerCase();
  return snaps.filter((h) => h.toLowerCase().startsWith(lower)).sort();
}

function resolveHome(spec: string, opts: { cwd?: string; env?: Record<string, string | undefined> }): string {
  const home = opts.env?.HOME || homedir();
  const raw = spec.startsWith("~/") ? join(home, spec.slice(2)) : spec;
  return isAbsolute(raw) ? resolve(raw) : resolve(opts.cwd ?? process.cwd(), raw);
}

function resolvePath(spec: string, opts: { cwd?: string; env?: Record<string, string | undefined> }): ResolvedPath {
  const dir = resolveHome(spec, opts);
  let ok = false;
  try {
    // a model dir: config.json, or GGUF model files (as LM Studio and llama.cpp users keep them)
    ok = statSync(dir).isDirectory() && (existsSync(join(dir, "config.json")) || readdirSync(dir).some(isGgufModelFile));
  } catch {
    ok = false;
  }
  if (!ok) throw new MlxkError("model_not_found", `No model found at '${spec}' (a model directory needs a config.json or .gguf files)`);
  return { kind: "path", name: dir, dir, hash: null, match: "exact" };
}

/**
 * Resolve a user's model spec against the cache at `hubDir` (a missing cache is an empty one).
 * Throws MlxkError: ValidationError, model_not_found, ambiguous_match (extra.matches), hash_not_found (extra.available_hashes).
 */
export function resolveModel(
  spec: string,
  opts: { hubDir: string; cwd?: string; env?: Record<string, string | undefined>; names?: readonly string[] },
): Resolved {
  const trimmed = spec.trim();
  if (trimmed === "") throw new MlxkError("model_not_found", "No model found matching '' (empty name)");
  const { rest, quant } = splitQuant(trimmed);
  if (isExplicitPath(trimmed)) {
    // `./dir:Q4_1`: a quant of a local GGUF dir, unless the whole spec is itself a path that exists
    if (quant === null || existsSync(resolveHome(trimmed, opts))) return resolvePath(trimmed, opts);
    return { ...resolvePath(rest, opts), quant };
  }
  const r = resolveName(rest, opts);
  return quant === null ? r : { ...r, quant };
}

function resolveName(
  trimmed: string,
  opts: { hubDir: string; cwd?: string; env?: Record<string, string | undefined>; names?: readonly string[] },
): Resolved {
  const { base, rev } = parseSpec(trimmed);
  if (rev === null) {
    // workspaces win over the cache for bare names (mlx-knife's order); checked before validateName, which only guards cache paths
    const ws = resolveWorkspace(workspaceHome(opts.env ?? process.env), base);
    if (ws) return { kind: "path", name: ws, dir: ws, hash: null, match: "exact", workspace: true };
  }
  if (base === "") throw new MlxkError("model_not_found", `No model found matching '${trimmed}' (empty name)`);
  validateName(base);
  if (rev !== null && !/^[A-Za-z0-9._\-/]{1,128}$/.test(rev)) {
    throw new MlxkError("ValidationError", `Invalid revision '${rev}': use a commit hash prefix or a branch name`);
  }
  const all = opts.names ?? listRepoNames(opts.hubDir);
  const cand = findCandidates(all, base);
  if (cand.names.length === 0) throw new MlxkError("model_not_found", `No model found matching '${trimmed}'`);

  if (rev === null) {
    if (cand.names.length > 1) throw ambiguous(trimmed, cand.names);
    const name = cand.names[0]!;
    return { kind: "cache", name, repoDir: repoDirFor(opts.hubDir, name), hash: null, match: cand.match };
  }

  const hits: { name: string; hash: string }[] = [];
  for (const name of cand.names) {
    for (const hash of snapshotsForRev(repoDirFor(opts.hubDir, name), rev)) hits.push({ name, hash });
  }
  if (hits.length === 0) {
    const available = cand.names.flatMap((n) => listSnapshots(repoDirFor(opts.hubDir, n)).map((s) => s.hash.slice(0, 8)));
    const where = cand.names.length === 1 ? `'${cand.names[0]}'` : `models matching '${base}'`;
    throw new MlxkError("hash_not_found", `No snapshot '${rev}' in ${where}`, { extra: { available_hashes: available } });
  }
  if (hits.length > 1) throw ambiguous(trimmed, hits.map((h) => `${h.name}@${h.hash.slice(0, 12)}`));
  const hit = hits[0]!;
  return { kind: "cache", name: hit.name, repoDir: repoDirFor(opts.hubDir, hit.name), hash: hit.hash, match: cand.match };
}

function ambiguous(spec: string, matches: string[]): MlxkError {
  return new MlxkError("ambiguous_match", `Multiple models match '${spec}': ${matches.join(", ")}. Use a more specific name or name@hash.`, {
    extra: { matches },
  });
}

/**
 * Workspace content hash v2 (mlx-knife ADR-025), byte-compatible with mlx-knife 2.0.6+: every file not
 * excluded is hashed — safetensors by their JSON header only, other files in full (over 1 GiB: name + size) —
 * and the aggregate is sha256 over sorted `path \0 sha`. The sentinel keeps the recipe (`file_index` with
 * size/mtime, `exclude_patterns`), so the clean check is a stat walk that re-hashes only files whose mtime
 * moved (a copy to another disk) and writes the healed mtimes back.
 *
 * Exports: DEFAULT_EXCLUDE_PATTERNS, computeContentHash(dir, excludes?) → { content_hash, file_index },
 *          checkClean(dir, sentinel, { persist? }) → { clean, hint }, writeSentinel(dir, obj),
 *          recalcHash(dir) → sentinel, FileIndexEntry
 */
import { closeSync, lstatSync, openSync, readSync, readdirSync, realpathSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import { MlxkError } from "../errors.ts";
import { fnmatchToRegExp } from "../hub/glob.ts";
import { readExact } from "./safetensors.ts";
import { CLI_VERSION } from "../version.ts";

export const SENTINEL_FILE = ".mlxk_workspace.json";
export const HASH_ALGORITHM = "v2";
const CATCHALL_FULL_READ_CAP = 1024 * 1024 * 1024;
const SAFETENSORS_HEADER_MAX = 100 * 1024 * 1024;

/** ADR-025 §2 defaults; a sentinel freezes its own copy, which is what readers use. */
export const DEFAULT_EXCLUDE_PATTERNS: readonly string[] = [
  ".hf_cache/", ".mlxk_workspace.json",
  ".git/", ".github/", "__pycache__/",
  ".vscode/", ".idea/", ".ipynb_checkpoints/", ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".tox/",
  "node_modules/", ".venv/", "venv/",
  "*.lock", "*.tmp", "*.log", "*.bak",
  ".DS_Store", "._*", ".Spotlight-V100/", ".Trashes/", ".fseventsd/", ".TemporaryItems/", ".apdisk", "Icon\r",
  "Thumbs.db", "desktop.ini", "$RECYCLE.BIN/", "System Volume Information/",
  "*~", ".*.swp", ".*.swo",
];

export interface FileIndexEntry {
  path: string;
  size: number;
  mtime_ns: number;
  sha: string;
}

interface Excludes {
  dirs: RegExp[];
  files: RegExp[];
}

function compileExcludes(patterns: readonly string[]): Excludes {
  const dirs: RegExp[] = [];
  const files: RegExp[] = [];
  for (const p of patterns) {
    if (p.endsWith("/")) dirs.push(fnmatchToRegExp(p.slice(0, -1)));
    else files.push(fnmatchToRegExp(p));
  }
  return { dirs, files };
}

const sha256 = (parts: (string | Uint8Array)[]): string => {
  const h = new Bun.CryptoHasher("sha256");
  for (const p of parts) h.update(p);
  return `sha256:${h.digest("hex")}`;
};

/** Per-file sha by class; null = a safetensors file whose header is corrupt (the hash would mean nothing). */
export function hashFile(path: string, name: string, size: number): string | null {
  const fd = openSync(path, "r");
  try {
    if (name.endsWith(".safetensors")) {
      const prefix = readExact(fd, 8, 0);
      if (prefix.length < 8) return null;
      const len = prefix.readBigUInt64LE(0);
      if (len === 0n || len > BigInt(SAFETENSORS_HEADER_MAX)) return null;
      const header = readExact(fd, Number(len), 8);
      return header.length < Number(len) ? null : sha256([header]);
    }
    if (size > CATCHALL_FULL_READ_CAP) return sha256([name, "\0", String(size)]);
    const h = new Bun.CryptoHasher("sha256");
    const chunk = Buffer.alloc(1 << 20);
    for (let pos = 0; ; ) {
      const n = readSync(fd, chunk, 0, chunk.length, pos);
      if (n === 0) break;
      h.update(chunk.subarray(0, n));
      pos += n;
    }
    return `sha256:${h.digest("hex")}`;
  } finally {
    closeSync(fd);
  }
}

type WalkEntry =
  | { rel: string; kind: "file"; path: string; name: string; size: number; mtime_ns: number }
  | { rel: string; kind: "symlink"; sha: string | null; target: string };

/** Byte-sorted walk (NFC names), symlinks never followed: inside-the-root links are fingerprinted, others refused. */
function walk(root: string, ex: Excludes): WalkEntry[] {
  const out: WalkEntry[] = [];
  const realRoot = realpathSync(root);
  const visit = (dir: string): void => {
    const names = readdirSync(dir).map((raw) => ({ raw, name: raw.normalize("NFC") }));
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const { raw, name } of names) {
      const path = join(dir, raw);
      const rel = relative(root, path).split(sep).map((p) => p.normalize("NFC")).join("/");
      const st = lstatSync(path, { bigint: true });
      if (st.isSymbolicLink()) {
        let target: string;
        try {
          target = realpathSync(path);
        } catch {
          out.push({ rel, kind: "symlink", sha: null, target: "(broken)" });
          continue;
        }
        const inside = target === realRoot || target.startsWith(realRoot + sep);
        const trel = relative(realRoot, target).split(sep).join("/");
        out.push({ rel, kind: "symlink", sha: inside ? sha256(["SYMLINK\0", trel]) : null, target });
      } else if (st.isDirectory()) {
        if (!ex.dirs.some((r) => r.test(name))) visit(path);
      } else if (st.isFile()) {
        if (!ex.files.some((r) => r.test(name))) out.push({ rel, kind: "file", path, name, size: Number(st.size), mtime_ns: Number(st.mtimeNs) });
      }
    }
  };
  visit(root);
  return out;
}

function aggregate(index: FileIndexEntry[]): string {
  const sorted = [...index].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return sha256(sorted.flatMap((e) => [e.path, "\0", e.sha]));
}

/** First compute (clone, convert, --recalc-hash). Throws when the hash cannot be honest (corrupt header, escaping link). */
export function computeContentHash(dir: string, excludes: readonly string[] = DEFAULT_EXCLUDE_PATTERNS): { content_hash: string; file_index: FileIndexEntry[] } {
  const index: FileIndexEntry[] = [];
  for (const e of walk(dir, compileExcludes(excludes))) {
    if (e.kind === "symlink") {
      if (e.sha === null) throw new MlxkError("show_operation_failed", `Workspace contains a symlink pointing outside it: ${e.rel} → ${e.target}; refusing to hash it`);
      index.push({ path: e.rel, size: 0, mtime_ns: 0, sha: e.sha });
      continue;
    }
    const sha = hashFile(e.path, e.name, e.size);
    if (sha === null) throw new MlxkError("show_operation_failed", `safetensors file ${e.rel} has a corrupt header; verify the download before hashing`);
    index.push({ path: e.rel, size: e.size, mtime_ns: e.mtime_ns, sha });
  }
  index.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { content_hash: aggregate(index), file_index: index };
}

/** ADR-025 §3: a sentinel path is relative, POSIX, without `..`, drive or NUL — checked before any fs call. */
function safeIndexPath(p: unknown): p is string {
  return typeof p === "string" && p !== "" && !p.includes("\0") && !p.includes("\\") && !p.startsWith("/") && !/^[A-Za-z]:/.test(p) && !p.split("/").includes("..");
}

export interface CleanResult {
  /** true: unchanged since the hash was pinned; false: changed; null: unknown (no v2 hash, corrupt sentinel). */
  clean: boolean | null;
  /** What to do about a null/false result. */
  hint: string | null;
  /** Files added, removed or changed (only when clean is false). */
  changed: string[];
}

const RECALC_HINT = "run 'mlxk show <workspace> --recalc-hash' to pin the current files";

/**
 * Stat-walk clean check (ADR-025 §6). Files whose mtime moved but whose content is unchanged heal: the new
 * mtimes go back into the sentinel (best effort, `persist`), so the next check is stat-only again.
 */
export function checkClean(dir: string, sentinel: Record<string, unknown> | null, opts: { persist?: boolean } = {}): CleanResult {
  if (!sentinel || typeof sentinel.content_hash !== "string") return { clean: null, hint: null, changed: [] };
  if (sentinel.hash_algorithm !== HASH_ALGORITHM) return { clean: null, hint: `content hash is not v2; ${RECALC_HINT}`, changed: [] };
  const index = sentinel.file_index;
  if (!Array.isArray(index) || !index.every((e) => e !== null && typeof e === "object" && safeIndexPath((e as FileIndexEntry).path) && typeof (e as FileIndexEntry).sha === "string")) {
    return { clean: null, hint: `workspace sentinel has an invalid file_index; ${RECALC_HINT}`, changed: [] };
  }
  const excludes = Array.isArray(sentinel.exclude_patterns) ? sentinel.exclude_patterns.filter((p): p is string => typeof p === "string") : [...DEFAULT_EXCLUDE_PATTERNS];
  const byPath = new Map((index as FileIndexEntry[]).map((e) => [e.path, { ...e }]));
  const changed: string[] = [];
  const seen = new Set<string>();
  let healed = false;
  let entries: WalkEntry[];
  try {
    entries = walk(dir, compileExcludes(excludes));
  } catch (e) {
    return { clean: null, hint: `cannot read the workspace: ${(e as Error).message}`, changed: [] };
  }
  for (const w of entries) {
    seen.add(w.rel);
    const ref = byPath.get(w.rel);
    if (!ref) {
      changed.push(w.rel);
      continue;
    }
    if (w.kind === "symlink") {
      if (w.sha === null || w.sha !== ref.sha) changed.push(w.rel);
      continue;
    }
    if (w.size !== ref.size) {
      changed.push(w.rel);
      continue;
    }
    if (w.mtime_ns === Number(ref.mtime_ns)) continue;
    const sha = hashFile(w.path, w.name, w.size);
    if (sha !== null && sha === ref.sha) {
      ref.mtime_ns = w.mtime_ns;
      healed = true;
    } else changed.push(w.rel);
  }
  for (const p of byPath.keys()) if (!seen.has(p)) changed.push(p);
  if (changed.length > 0) return { clean: false, hint: `${changed.length} file(s) changed since the content hash was pinned; ${RECALC_HINT}`, changed: changed.sort() };
  if (healed && opts.persist !== false) {
    try {
      writeSentinel(dir, { ...sentinel, file_index: [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : 1)) });
    } catch {
      // read-only workspace: the in-memory result still stands
    }
  }
  return { clean: true, hint: null, changed: [] };
}

/** Atomic sentinel write (tmp + rename in the same dir). */
export function writeSentinel(dir: string, sentinel: Record<string, unknown>): void {
  const tmp = join(dir, `${SENTINEL_FILE}.tmp`);
  try {
    writeFileSync(tmp, `${JSON.stringify(sentinel, null, 2)}\n`);
    renameSync(tmp, join(dir, SENTINEL_FILE));
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing was written
    }
    throw e;
  }
}

export function nowIso(): string {
  return `${new Date().toISOString().slice(0, 19)}Z`;
}

/**
 * Re-pin the content hash of a workspace. The sentinel's frozen exclude list is kept; a dir without a sentinel
 * gets one (managed: false — mlxk did not create it, so `managed` stays honest). Returns the new sentinel.
 */
export function recalcHash(dir: string, existing: Record<string, unknown> | null): Record<string, unknown> {
  const abs = resolve(dir);
  if (!statSync(abs).isDirectory()) throw new MlxkError("ValidationError", `Not a directory: ${abs}`);
  const excludes = Array.isArray(existing?.exclude_patterns) ? (existing.exclude_patterns as unknown[]).filter((p): p is string => typeof p === "string") : [...DEFAULT_EXCLUDE_PATTERNS];
  const { content_hash, file_index } = computeContentHash(abs, excludes);
  const base: Record<string, unknown> = existing ?? { mlxk_version: CLI_VERSION, created_at: nowIso(), source_repo: null, source_revision: null, managed: false, operation: "recalc-hash" };
  const next = { ...base, hash_algorithm: HASH_ALGORITHM, content_hash, hash_modified: nowIso(), exclude_patterns: excludes, file_index };
  writeSentinel(abs, next);
  return next;
}

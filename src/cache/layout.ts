/**
 * The Hugging Face hub cache layout, read-only.
 *
 *   <hub>/models--<org>--<name>/refs/<branch>          text file holding a 40-hex commit
 *   <hub>/models--<org>--<name>/snapshots/<commit>/…    relative symlinks into ../../blobs/
 *   <hub>/models--<org>--<name>/blobs/<sha>[.incomplete] LFS files: sha256 (64 hex), git files: sha1 (40 hex)
 *   <hub>/.locks/models--<org>--<name>/*.lock
 *
 * Exports:
 *   REPO_PREFIX, repoDirName(name), nameFromRepoDir(dirName), isSafeModelName(name)
 *   listRepoNames(hubDir) → sorted model names of every `models--*` dir
 *   repoDirFor(hubDir, name), locksDirFor(hubDir, name)
 *   readRefs(repoDir) → { branch: commit }
 *   listSnapshots(repoDir) → [{ hash, dir, mtimeMs }]
 *   selectSnapshot(repoDir, { hash? }) → the snapshot `health`/`show`/`list` use (refs/main, else newest)
 *   walkFiles(dir) → every file below dir with size (symlinks followed) and blob target
 *   isCommitHash(s)
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync, type Dirent } from "node:fs";
import { join, normalize, resolve, sep } from "node:path";

export const REPO_PREFIX = "models--";
/** Names hidden from every listing: mlx-knife's test canary, kept so its test caches look the same. */
const HIDDEN_MARKER = "TEST-CACHE-SENTINEL";

/** `org/name` → `models--org--name` (every `/` becomes `--`, as huggingface_hub does). */
export function repoDirName(name: string): string {
  return REPO_PREFIX + name.split("/").join("--");
}

/** `models--org--name` → `org/name`; null for dirs that are not model repos. */
export function nameFromRepoDir(dirName: string): string | null {
  if (!dirName.startsWith(REPO_PREFIX) || dirName.length === REPO_PREFIX.length) return null;
  return dirName.slice(REPO_PREFIX.length).split("--").join("/");
}

/**
 * A name we are willing to turn into a path below the cache: no `..`/`.` segments, no empty segments,
 * no backslashes, no control characters and nothing absolute, so `join(hub, repoDirName(n))` stays inside hub.
 */
export function isSafeModelName(name: string): boolean {
  if (name.length === 0 || name.length > 256) return false;
  if (/[\\\u0000-\u001f\u007f]/.test(name)) return false;
  if (name.startsWith("/") || name.startsWith("~")) return false;
  return name.split("/").every((seg) => seg !== "" && seg !== "." && seg !== ".." && !seg.includes("--"));
}

export function repoDirFor(hubDir: string, name: string): string {
  return join(hubDir, repoDirName(name));
}

export function locksDirFor(hubDir: string, name: string): string {
  return join(hubDir, ".locks", repoDirName(name));
}

export function isCommitHash(s: string): boolean {
  return /^[A-Za-z0-9]{40}$/.test(s);
}

function readdirSafe(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** Model names in the cache (one readdir), sorted; missing cache → []. */
export function listRepoNames(hubDir: string): string[] {
  const names: string[] = [];
  for (const e of readdirSafe(hubDir)) {
    if (!e.isDirectory() && !e.isSymbolicLink()) continue;
    const n = nameFromRepoDir(e.name);
    if (n !== null && !n.includes(HIDDEN_MARKER)) names.push(n);
  }
  return names.sort();
}

/** `refs/<branch>` → commit, including nested branch names such as `refs/pr/1`. */
export function readRefs(repoDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, prefix: string): void => {
    for (const e of readdirSafe(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p, `${prefix}${e.name}/`);
      else if (e.isFile()) {
        try {
          out[prefix + e.name] = readFileSync(p, "utf8").trim();
        } catch {
          // unreadable ref: ignored, the snapshot is still found by mtime
        }
      }
    }
  };
  walk(join(repoDir, "refs"), "");
  return out;
}

export interface SnapshotInfo {
  /** Directory name under snapshots/ (a commit hash in real caches). */
  hash: string;
  dir: string;
  mtimeMs: number;
}

/** Snapshot dirs, newest first. */
export function listSnapshots(repoDir: string): SnapshotInfo[] {
  const base = join(repoDir, "snapshots");
  const out: SnapshotInfo[] = [];
  for (const e of readdirSafe(base)) {
    if (!e.isDirectory()) continue;
    const dir = join(base, e.name);
    let mtimeMs = 0;
    try {
      mtimeMs = statSync(dir).mtimeMs;
    } catch {
      continue;
    }
    out.push({ hash: e.name, dir, mtimeMs });
  }
  return out.sort((a, b) => b.mtimeMs - a.mtimeMs || a.hash.localeCompare(b.hash));
}

export type SnapshotSelection = { ok: true; snapshot: SnapshotInfo } | { ok: false; reason: string };

function readRef(repoDir: string, branch: string): string | null {
  try {
    const v = readFileSync(join(repoDir, "refs", branch), "utf8").trim();
    return /^[A-Za-z0-9]{1,64}$/.test(v) ? v : null;
  } catch {
    return null;
  }
}

function snapshotAt(repoDir: string, hash: string): SnapshotInfo | null {
  const dir = join(repoDir, "snapshots", hash);
  const st = statSync(dir, { throwIfNoEntry: false });
  return st?.isDirectory() ? { hash, dir, mtimeMs: st.mtimeMs } : null;
}

/**
 * The snapshot a command looks at: an explicit full `hash` (dir name); else the one `refs/main` points to;
 * else the newest by mtime (huggingface_hub keeps refs, mlx-knife ignored them — we follow the refs).
 * The refs/main path costs two syscalls, which is what makes `list` on hundreds of models fast.
 */
export function selectSnapshot(repoDir: string, opts: { hash?: string | null } = {}): SnapshotSelection {
  if (opts.hash) {
    const s = /^[A-Za-z0-9._-]+$/.test(opts.hash) && !opts.hash.startsWith(".") ? snapshotAt(repoDir, opts.hash) : null;
    if (s) return { ok: true, snapshot: s };
  } else {
    const main = readRef(repoDir, "main");
    const s = main ? snapshotAt(repoDir, main) : null;
    if (s) return { ok: true, snapshot: s };
  }
  const st = statSync(join(repoDir, "snapshots"), { throwIfNoEntry: false });
  if (!st?.isDirectory()) return { ok: false, reason: "No snapshots directory found" };
  if (opts.hash) return { ok: false, reason: `Specific hash ${opts.hash} not found` };
  const all = listSnapshots(repoDir);
  if (all.length === 0) return { ok: false, reason: "No snapshots found" };
  return { ok: true, snapshot: all[0]! };
}

export interface FileEntry {
  /** Path relative to the walked dir, `/`-separated. */
  rel: string;
  path: string;
  /** Size of the file the path resolves to; -1 when it resolves to nothing (dangling symlink). */
  size: number;
  /** Resolved absolute target when the entry is a symlink (normally `<repo>/blobs/<sha>`); only with `withTargets`. */
  target: string | null;
}

/**
 * Every non-directory below `dir`, recursively, with the size of what it points to. One readdir per dir and
 * one stat per file (the stat follows symlinks and tells dirs apart, so plain readdir names suffice — Bun's
 * withFileTypes readdir costs more); `withTargets` adds a readlink per symlink (rm and verify need the blob
 * behind each file).
 */
export function walkFiles(dir: string, opts: { withTargets?: boolean } = {}): FileEntry[] {
  const out: FileEntry[] = [];
  const withTargets = opts.withTargets === true;
  const walk = (d: string, prefix: string): void => {
    let names: string[];
    let links: boolean[] | null = null;
    try {
      if (withTargets) {
        const ents = readdirSync(d, { withFileTypes: true });
        names = ents.map((e) => e.name);
        links = ents.map((e) => e.isSymbolicLink());
      } else names = readdirSync(d);
    } catch {
      return;
    }
    // plain concatenation: `d` is normalized and names hold no separators (join() is a native call per file)
    const base = d.endsWith(sep) ? d : d + sep;
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const p = base + name;
      const rel = prefix + name;
      let size = -1;
      try {
        const st = statSync(p);
        if (st.isDirectory()) {
          walk(p, `${rel}/`);
          continue;
        }
        size = st.size;
      } catch {
        size = -1;
      }
      let target: string | null = null;
      if (links?.[i]) {
        try {
          target = resolve(d, readlinkSync(p));
        } catch {
          target = null;
        }
      }
      out.push({ rel, path: p, size, target });
    }
  };
  walk(normalize(dir), "");
  return out;
}

/** True when `child` is `parent` or lies below it (both absolute, already normalized). */
export function isInside(parent: string, child: string): boolean {
  const p = parent.endsWith(sep) ? parent : parent + sep;
  return child === parent || child.startsWith(p);
}

/** lstat that returns null instead of throwing. */
export function lstatOrNull(p: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

/**
 * Deleting models from the cache, planned first (for --dry-run and for the freed-bytes report), then done.
 * Safety: only paths inside the resolved repo dir (and its `.locks/` entry) are ever removed; the repo dir
 * must be a real directory inside the real cache dir; symlinks are unlinked, never followed.
 *
 * Exports: findLockFiles(hubDir, name), planRemoval({ hubDir, name, hash? }) → RemovalPlan,
 *          executeRemoval(plan) → { freedBytes, lockFilesCleaned }
 */
import { type Dirent, lstatSync, readdirSync, readlinkSync, realpathSync, rmSync, unlinkSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { MlxkError } from "../errors.ts";
import { isInside, listSnapshots, locksDirFor, readRefs, repoDirFor, repoDirName } from "./layout.ts";

/** `*.lock` files under `<hub>/.locks/models--org--name/` (exact dir, not a prefix of other names). */
export function findLockFiles(hubDir: string, name: string): string[] {
  const out: string[] = [];
  walkTree(locksDirFor(hubDir, name), (p, e) => {
    if (e.name.endsWith(".lock")) out.push(p);
  });
  return out.sort();
}

/** Visit every non-directory entry below `dir` (lstat semantics: symlinks are entries, never followed); unreadable dirs are skipped. */
function walkTree(dir: string, visit: (path: string, entry: Dirent) => void): void {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walkTree(p, visit);
    else visit(p, e);
  }
}

export interface RemovalPlan {
  name: string;
  repoDir: string;
  /** "repo": the whole `models--…` dir; "revision": one snapshot and what only it uses. */
  scope: "repo" | "revision";
  hash: string | null;
  /** Absolute paths that will be removed (dirs recursively, without following symlinks). */
  paths: string[];
  /** Bytes of regular files that go away (blobs only counted once). */
  bytes: number;
  lockFiles: string[];
}

/** Bytes held by regular files below `p` (lstat: symlinks count as themselves, never their target). */
function bytesBelow(p: string): number {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  if (st.isSymbolicLink()) return 0;
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const n of readdirSync(p)) total += bytesBelow(join(p, n));
  return total;
}

/** Blob paths (inside `<repo>/blobs/`) that the symlinks below `dir` point to. */
function blobsUsedBy(dir: string, blobsDir: string): Set<string> {
  const used = new Set<string>();
  walkTree(dir, (p, e) => {
    if (!e.isSymbolicLink()) return;
    try {
      const t = resolve(dirname(p), readlinkSync(p));
      if (isInside(blobsDir, t) && t !== blobsDir) used.add(t);
    } catch {
      // unreadable link: nothing to attribute
    }
  });
  return used;
}

function checkRepoDir(hubDir: string, name: string): string {
  const repoDir = repoDirFor(hubDir, name);
  const st = lstatSync(repoDir, { throwIfNoEntry: false });
  if (!st) throw new MlxkError("model_not_found", `No model found matching '${name}'`);
  if (st.isSymbolicLink() || !st.isDirectory()) {
    throw new MlxkError("unsafe_path", `Refusing to delete ${repoDirName(name)}: it is a symlink or not a directory`);
  }
  const realHub = realpathSync(hubDir);
  if (!isInside(realHub, realpathSync(repoDir)) || relative(hubDir, repoDir).includes("..")) {
    throw new MlxkError("unsafe_path", `Refusing to delete ${repoDir}: outside the cache ${hubDir}`);
  }
  return repoDir;
}

/**
 * What `rm` would delete. With `hash` (a full snapshot dir name) only that revision goes: its snapshot dir,
 * the blobs no other snapshot uses, and refs pointing at it — or the whole repo if it is the last revision.
 */
export function planRemoval(opts: { hubDir: string; name: string; hash?: string | null }): RemovalPlan {
  const repoDir = checkRepoDir(opts.hubDir, opts.name);
  const lockFiles = findLockFiles(opts.hubDir, opts.name);
  const whole = (hash: string | null): RemovalPlan => ({
    name: opts.name,
    repoDir,
    scope: "repo",
    hash,
    paths: [repoDir],
    bytes: bytesBelow(repoDir),
    lockFiles,
  });
  if (!opts.hash) return whole(null);
  const snaps = listSnapshots(repoDir);
  const target = snaps.find((s) => s.hash === opts.hash);
  if (!target) {
    throw new MlxkError("hash_not_found", `No snapshot '${opts.hash}' in '${opts.name}'`, {
      extra: { available_hashes: snaps.map((s) => s.hash.slice(0, 8)) },
    });
  }
  if (snaps.length === 1) return whole(opts.hash);
  const blobsDir = join(repoDir, "blobs");
  const mine = blobsUsedBy(target.dir, blobsDir);
  for (const s of snaps) if (s !== target) for (const b of blobsUsedBy(s.dir, blobsDir)) mine.delete(b);
  const refs = Object.entries(readRefs(repoDir))
    .filter(([, commit]) => commit === opts.hash)
    .map(([branch]) => join(repoDir, "refs", branch));
  const blobs = [...mine].sort();
  const bytes = bytesBelow(target.dir) + blobs.reduce((a, b) => a + bytesBelow(b), 0);
  return { name: opts.name, repoDir, scope: "revision", hash: opts.hash, paths: [target.dir, ...blobs, ...refs], bytes, lockFiles };
}

/** Remove what the plan lists (re-checking each path is inside the repo dir) and the repo's lock files. */
export function executeRemoval(plan: RemovalPlan, opts: { hubDir: string }): { freedBytes: number; lockFilesCleaned: number } {
  for (const p of plan.paths) {
    if (!isInside(plan.repoDir, p)) throw new MlxkError("unsafe_path", `Refusing to delete ${p}: outside ${plan.repoDir}`);
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    try {
      if (st.isDirectory()) rmSync(p, { recursive: true, force: true });
      else unlinkSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") throw new MlxkError("permission_denied", `Permission denied: Cannot delete ${p}`, { cause: e });
      throw new MlxkError("deletion_failed", `Could not delete ${p}: ${(e as Error).message}`, { cause: e });
    }
  }
  let lockFilesCleaned = 0;
  const locksDir = locksDirFor(opts.hubDir, plan.name);
  if (plan.scope === "repo") {
    lockFilesCleaned = plan.lockFiles.length;
    rmSync(locksDir, { recursive: true, force: true });
  } else {
    // only the locks of blobs that went away (huggingface_hub names them <blob>.lock)
    const gone = new Set(plan.paths.map((p) => p.slice(p.lastIndexOf("/") + 1)));
    for (const l of plan.lockFiles) {
      if (gone.has(l.slice(l.lastIndexOf("/") + 1).replace(/\.lock$/, ""))) {
        unlinkSync(l);
        lockFilesCleaned++;
      }
    }
  }
  return { freedBytes: plan.bytes, lockFilesCleaned };
}

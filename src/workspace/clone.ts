/**
 * `clone`: a model into a new workspace dir — copied (reflinked where possible) from the user's cache when a
 * healthy copy of that revision is there, else pulled into a private temp cache next to the target and hard-linked in.
 * The user's cache is only ever read. Everything is assembled in `<parent>/.mlxk-clone-<key>/` (deterministic per
 * model and target, so a rerun after an interruption resumes the download and the copy) and published by one
 * rename, with the sentinel and content hash already inside; a failure leaves the target untouched.
 *
 * Exports: clone(opts) → CloneData, resolveCloneTarget(target, { env, cwd, repoId })
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, rmdirSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { recalcHash, nowIso } from "../cache/content-hash.ts";
import { repoHealth } from "../cache/health.ts";
import { isInside, repoDirFor, walkFiles } from "../cache/layout.ts";
import { workspaceHealth } from "../cache/workspace.ts";
import { type Env, hubCacheDir, workspaceHome } from "../env.ts";
import { MlxkError, toMlxkError } from "../errors.ts";
import { PullProgress, localSnapshotHash, pull } from "../hub/pull.ts";
import { parseRepoSpec } from "../hub/repo-id.ts";
import type { CloneData } from "../schemas/workspace.ts";
import { CLI_VERSION } from "../version.ts";
import { copyInto, copyMethod, linkInto, newStats } from "./copy.ts";

export interface CloneOptions {
  spec: string;
  target?: string;
  branch?: string;
  env: Env;
  cwd?: string;
  healthCheck?: boolean;
  signal?: AbortSignal;
  progress?: PullProgress;
  fetch?: typeof fetch;
  /** Called as the clone moves through its stages (human progress). */
  onStatus?: (status: CloneData["clone_status"], detail: string) => void;
}

function isBareName(t: string): boolean {
  return !t.includes("/") && t !== "." && t !== ".." && !t.startsWith("~");
}

/** The workspace dir a clone writes: given target (bare names go into MLXK_WORKSPACE_HOME), else `<home>/<name>`. */
export function resolveCloneTarget(target: string | undefined, o: { env: Env; cwd: string; repoId: string }): string {
  const home = workspaceHome(o.env);
  if (target === undefined || target === "") {
    if (!home) throw new MlxkError("InvalidTargetError", "Target directory required: give one, or set MLXK_WORKSPACE_HOME to clone into it by name.");
    return join(resolve(o.cwd, home), o.repoId.slice(o.repoId.lastIndexOf("/") + 1));
  }
  const t = target.startsWith("~/") ? join(o.env.HOME ?? "", target.slice(2)) : target;
  if (home && isBareName(t)) return join(resolve(o.cwd, home), t);
  return isAbsolute(t) ? resolve(t) : resolve(o.cwd, t);
}

function checkTarget(dir: string, hubDir: string): void {
  const parent = dirname(dir);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new MlxkError("InvalidTargetError", `Target '${dir}' exists and is not a directory.`);
    if (readdirSync(dir).length > 0) throw new MlxkError("InvalidTargetError", `Target directory '${dir}' exists and is not empty; nothing was written.`);
  }
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw new MlxkError("InvalidTargetError", `Parent directory '${parent}' does not exist.`);
  try {
    accessSync(parent, constants.W_OK);
  } catch {
    throw new MlxkError("InvalidTargetError", `Parent directory '${parent}' is not writable.`);
  }
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
  if (isInside(real(hubDir), join(real(parent), basename(dir)))) {
    throw new MlxkError("InvalidTargetError", `Target '${dir}' is inside the Hugging Face cache (${hubDir}); workspaces live outside it.`);
  }
}

/** The deterministic temp area for this model + target: rerunning the same clone finds and resumes it. */
function tempArea(repoId: string, revision: string | null, target: string): string {
  const key = new Bun.CryptoHasher("sha256").update(`${repoId}@${revision ?? ""}\0${target}`).digest("hex").slice(0, 16);
  return join(dirname(target), `.mlxk-clone-${key}`);
}

export async function clone(opts: CloneOptions): Promise<CloneData> {
  const parsed = parseRepoSpec(opts.spec);
  if (opts.branch !== undefined && parsed.revision !== null) {
    throw new MlxkError("InvalidArgumentError", `Give the revision once: '${opts.spec}' already names '@${parsed.revision}', and --branch says '${opts.branch}'.`);
  }
  const revision = opts.branch ?? parsed.revision;
  if (opts.branch !== undefined) parseRepoSpec(`${parsed.repoId}@${opts.branch}`); // validates the branch name
  const hubDir = hubCacheDir(opts.env);
  const repoId = !parsed.repoId.includes("/") && existsSync(repoDirFor(hubDir, `mlx-community/${parsed.repoId}`)) ? `mlx-community/${parsed.repoId}` : parsed.repoId;
  const target = resolveCloneTarget(opts.target, { env: opts.env, cwd: opts.cwd ?? process.cwd(), repoId });
  checkTarget(target, hubDir);
  const healthCheck = opts.healthCheck !== false;
  const data: CloneData = {
    model: revision ? `${repoId}@${revision}` : repoId,
    clone_status: "preparing",
    message: "",
    target_dir: target,
    health_check: healthCheck,
    health: null,
    health_reason: null,
    source: null,
    commit_hash: null,
    files: 0,
    bytes: 0,
    copy_method: null,
    content_hash: null,
    resumed: false,
  };
  const tmp = tempArea(repoId, revision, target);
  const staging = join(tmp, "workspace");
  data.resumed = existsSync(tmp);
  const status = (s: CloneData["clone_status"], detail: string) => {
    data.clone_status = s;
    opts.onStatus?.(s, detail);
  };
  const fail = (type: ConstructorParameters<typeof MlxkError>[0], s: CloneData["clone_status"], message: string, cause?: unknown): never => {
    throw new MlxkError(type, message, { cause, data: { ...data, clone_status: s, message } });
  };
  mkdirSync(staging, { recursive: true });
  const stats = newStats();

  // 1. the user's cache, read-only, when it holds a healthy copy of the revision
  const userRepo = repoDirFor(hubDir, repoId);
  const cachedHash = existsSync(userRepo) ? localSnapshotHash(userRepo, revision) : null;
  const cached = cachedHash !== null ? repoHealth(userRepo, { name: repoId, hash: cachedHash, healthOnly: true }) : null;
  try {
    if (cached?.healthy && cached.snapshotDir) {
      data.source = "cache";
      data.commit_hash = cached.hash;
      status(data.resumed ? "resuming" : "cloning", `copying ${repoId} from the cache`);
      for (const f of walkFiles(cached.snapshotDir)) {
        copyInto(f.path, join(staging, f.rel), stats);
        data.files++;
      }
    } else {
      // 2. the Hub, into our own temp cache on the target's volume (the user's cache never sees a byte)
      data.source = "hub";
      status(data.resumed ? "resuming" : "pulling", `downloading ${data.model}`);
      let pulled;
      try {
        pulled = await pull({ spec: data.model, env: opts.env, hubDir: join(tmp, "hub"), forceResume: true, signal: opts.signal, progress: opts.progress, fetch: opts.fetch });
      } catch (e) {
        const err = toMlxkError(e);
        const again = opts.signal?.aborted ? "Clone interrupted" : `Pull failed: ${err.message}`;
        throw new MlxkError(err.type, `${again}. Run the same clone again to resume.`, { cause: e, extra: err.extra, data: { ...data, clone_status: opts.signal?.aborted ? "cancelled" : "pull_failed", message: err.message } });
      }
      data.commit_hash = pulled.commit_hash;
      status("cloning", `moving files into ${target}`);
      const linked = new Set<string>();
      for (const f of walkFiles(pulled.local_dir!, { withTargets: true })) {
        const blob = f.target ?? f.path;
        // two paths with the same content share one blob: the second gets its own copy, not a shared inode
        if (linked.has(blob)) copyInto(blob, join(staging, f.rel), stats);
        else linkInto(blob, join(staging, f.rel), stats);
        linked.add(blob);
        data.files++;
      }
    }
  } catch (e) {
    if (e instanceof MlxkError && e.data) throw e;
    const err = toMlxkError(e);
    fail(err.type === "InternalError" ? "CloneFailedError" : err.type, "filesystem_error", `Copy into the workspace failed: ${err.message}. Run the same clone again to resume.`, e);
  }
  rmSync(join(tmp, "hub"), { recursive: true, force: true });
  data.bytes = stats.bytes;
  data.copy_method = copyMethod(stats);

  const sentinel = { mlxk_version: CLI_VERSION, created_at: nowIso(), source_repo: repoId, source_revision: data.commit_hash, managed: true, operation: "clone" };
  const pinned = recalcHash(staging, sentinel);
  data.content_hash = pinned.content_hash as string;

  if (healthCheck) {
    status("health_checking", "checking the files");
    const h = workspaceHealth(staging, pinned);
    data.health = h.healthy ? "healthy" : "unhealthy";
    data.health_reason = h.reason;
    if (!h.healthy) {
      rmSync(tmp, { recursive: true, force: true });
      fail("HealthCheckFailed", "error", `Cloned files are unhealthy (${h.reason}); nothing was written to ${target}. Use --no-health-check to clone anyway.`);
    }
  }
  if (existsSync(target)) rmdirSync(target); // checked empty above
  renameSync(staging, target);
  rmSync(tmp, { recursive: true, force: true });
  data.clone_status = "success";
  data.message = `Cloned ${data.model} to ${target}`;
  return data;
}

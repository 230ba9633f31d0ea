/**
 * `pull` core: validate, check the local cache, preflight the Hub, download, health-check.
 * Returns the JSON `data` of the contract; never prints.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { repoHealth } from "../cache/health.ts";
import { chooseVariant, inspectGguf, isGgufModelFile, quantOfFile, variantIntegrity } from "../cache/gguf.ts";
import { readRefs, repoDirFor, walkFiles } from "../cache/layout.ts";
import { splitQuant } from "../cache/resolve.ts";
import type { SnapshotView } from "../cache/snapshot.ts";
import { type Env, hubCacheDir, hubDownloadTimeoutMs, hubEndpoint, hubEtagTimeoutMs, hubOffline } from "../env.ts";
import { MlxkError, toMlxkError } from "../errors.ts";
import type { PullData } from "../schemas/pull.ts";
import { HubClient } from "./client.ts";
import { PullProgress, downloadSnapshot } from "./download.ts";
import { filterPaths } from "./glob.ts";
import { isCommitSha, parseRepoSpec } from "./repo-id.ts";
import { redact, resolveToken } from "./token.ts";

export { PullProgress };

export interface PullOptions {
  spec: string;
  env: Env;
  /** Hub cache dir; default from the environment (HF_HUB_CACHE / HF_HOME). */
  hubDir?: string;
  include?: string[];
  exclude?: string[];
  /** Parallel file downloads (default 4). */
  workers?: number;
  /** Continue into an existing but unhealthy model instead of asking. */
  forceResume?: boolean;
  signal?: AbortSignal;
  progress?: PullProgress;
  fetch?: typeof fetch;
}

export const DEFAULT_WORKERS = 4;

function skeleton(model: string | null, expanded: string | null): PullData {
  return {
    model,
    download_status: "unknown",
    message: "",
    expanded_name: expanded,
    commit_hash: null,
    commit: null,
    local_dir: null,
    files: 0,
    bytes_downloaded: 0,
    health: null,
    health_reason: null,
  };
}

function countFiles(dir: string): number {
  try {
    return walkFiles(dir).length;
  } catch {
    return 0;
  }
}

/** The snapshot dir name the requested revision maps to locally; null when that revision is not cached. */
export function localSnapshotHash(repoDir: string, revision: string | null): string | null | undefined {
  if (revision === null) return undefined; // default choice: refs/main, else newest
  if (isCommitSha(revision)) return existsSync(join(repoDir, "snapshots", revision)) ? revision : null;
  const ref = readRefs(repoDir)[revision];
  return ref && existsSync(join(repoDir, "snapshots", ref)) ? ref : null;
}

/** HF_ENDPOINT must be an http(s) URL; say which variable is wrong instead of failing inside fetch. */
export function checkedEndpoint(env: Env): string {
  const endpoint = hubEndpoint(env);
  let url: URL | null = null;
  try {
    url = new URL(endpoint);
  } catch {
    url = null;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.host === "") {
    throw new MlxkError("InvalidArgumentError", `HF_ENDPOINT is not an http(s) URL: '${endpoint}'. Unset it to use https://huggingface.co, or set it like HF_ENDPOINT=https://hf-mirror.example.`);
  }
  return endpoint;
}

/**
 * `org/name-GGUF:Q4_K_M`: the repo's files minus the `.gguf` model files of other quants (README, configs and
 * that quant's file or split parts stay). No file of that quant is an error listing the quants the repo has.
 */
function filterQuant(files: { path: string }[], quant: string, repoId: string): Set<string> {
  const q = quant.toUpperCase();
  const label = (p: string) => (quantOfFile(p) ?? "").toUpperCase();
  const stem = (p: string) => p.replace(/(-\d{5}-of-\d{5})?\.gguf$/i, "").toUpperCase();
  const models = files.filter((f) => isGgufModelFile(f.path));
  const hits = models.filter((f) => label(f.path) === q || label(f.path).replace(/^UD-/, "") === q || stem(f.path) === q);
  if (hits.length === 0) {
    const available = [...new Set(models.map((f) => quantOfFile(f.path) ?? stem(f.path)))];
    throw new MlxkError(
      "model_not_found",
      models.length === 0 ? `'${repoId}' has no GGUF files: ':${quant}' selects a GGUF quant` : `'${repoId}' has no GGUF quant '${quant}' (available: ${available.join(", ")})`,
      { extra: { available_quants: available } },
    );
  }
  const keep = new Set(hits.map((f) => f.path));
  return new Set(files.filter((f) => !f.path.toLowerCase().endsWith(".gguf") || keep.has(f.path)).map((f) => f.path));
}

function quantComplete(view: SnapshotView, quant: string, repoId: string): boolean {
  try {
    return variantIntegrity(chooseVariant(inspectGguf(view), quant, repoId)) === null;
  } catch {
    return false;
  }
}

export async function pull(opts: PullOptions): Promise<PullData> {
  const { rest, quant } = splitQuant(opts.spec.trim());
  const { repoId: requested, revision } = parseRepoSpec(rest);
  if (hubOffline(opts.env)) {
    throw new MlxkError("offline", "HF_HUB_OFFLINE is set: pull needs the Hub. Unset HF_HUB_OFFLINE to download.", {
      data: { ...skeleton(requested, null), download_status: "error", message: "offline" },
    });
  }
  const hubDir = opts.hubDir ?? hubCacheDir(opts.env);
  // a bare name means mlx-community/<name> only when that is what the cache already holds
  const expandedName = !requested.includes("/") && existsSync(repoDirFor(hubDir, `mlx-community/${requested}`)) ? `mlx-community/${requested}` : null;
  const repoId = expandedName ?? requested;
  const data = skeleton(repoId, expandedName);
  const repoDir = repoDirFor(hubDir, repoId);

  if (existsSync(repoDir)) {
    const hash = localSnapshotHash(repoDir, revision);
    if (hash !== null) {
      const report = repoHealth(repoDir, { name: repoId, hash });
      const base = {
        ...data,
        commit_hash: report.hash,
        commit: report.hash,
        local_dir: report.snapshotDir,
        files: report.snapshotDir ? countFiles(report.snapshotDir) : 0,
        health: report.healthy ? ("healthy" as const) : ("unhealthy" as const),
        health_reason: report.reason,
      };
      // `:QUANT`: done when that quant's files are complete (another quant's state does not matter), else added below
      const quantDone = quant !== null && report.view !== null && quantComplete(report.view, quant, repoId);
      if (quantDone || (quant === null && report.healthy)) {
        return { ...base, download_status: "already_exists", message: `Already in cache: ${report.snapshotDir}` };
      }
      if (quant === null && !opts.forceResume) {
        return {
          ...base,
          download_status: "requires_confirmation",
          message: `${report.reason}. Use --force-resume to attempt resume or 'mlxk rm' to delete.`,
        };
      }
    }
  }

  const endpoint = checkedEndpoint(opts.env);
  const token = resolveToken(opts.env);
  const progress = opts.progress ?? new PullProgress();
  const client = new HubClient({
    endpoint,
    token,
    fetch: opts.fetch,
    signal: opts.signal,
    metaTimeoutMs: hubEtagTimeoutMs(opts.env),
    downloadTimeoutMs: hubDownloadTimeoutMs(opts.env),
    onRetry: (m) => {
      progress.note = m;
    },
  });
  const fail = (e: unknown, status: PullData["download_status"]): never => {
    const err = toMlxkError(e);
    const message = redact(err.message, token);
    throw new MlxkError(err.type, message, {
      extra: err.extra,
      retryable: err.retryable,
      cause: e,
      data: { ...data, download_status: status, message },
    });
  };

  let remote: Awaited<ReturnType<HubClient["preflight"]>>;
  try {
    remote = await client.preflight(repoId, revision);
  } catch (e) {
    const t = e instanceof MlxkError ? e.type : "";
    return fail(e, t === "access_denied" || t === "gated" ? "access_denied" : t === "model_not_found" ? "failed" : "error");
  }
  const wanted = new Set(filterPaths(remote.files.map((f) => f.path), opts.include, opts.exclude));
  if (quant !== null) {
    let ofQuant: Set<string>;
    try {
      ofQuant = filterQuant(remote.files, quant, repoId);
    } catch (e) {
      return fail(e, "failed");
    }
    for (const p of [...wanted]) if (!ofQuant.has(p)) wanted.delete(p);
  }
  const files = remote.files.filter((f) => wanted.has(f.path));
  if (files.length === 0) {
    const why = remote.files.length === 0 ? `'${repoId}' has no files` : "no file matches --include/--exclude";
    return fail(new MlxkError("InvalidArgumentError", `Nothing to download: ${why}.`), "failed");
  }

  let result: Awaited<ReturnType<typeof downloadSnapshot>>;
  try {
    result = await downloadSnapshot({
      client,
      hubDir,
      repoId,
      commit: remote.commit,
      ref: revision ?? "main",
      files,
      allFiles: remote.files,
      workers: opts.workers ?? DEFAULT_WORKERS,
      signal: opts.signal,
      progress,
      readTimeoutMs: hubDownloadTimeoutMs(opts.env),
    });
  } catch (e) {
    return fail(e, "failed");
  }
  const report = repoHealth(repoDir, { name: repoId, hash: remote.commit });
  return {
    ...data,
    download_status: "success",
    message: `Downloaded to ${result.snapshotDir}`,
    commit_hash: remote.commit,
    commit: remote.commit,
    local_dir: result.snapshotDir,
    files: files.length,
    bytes_downloaded: result.bytesDownloaded,
    health: report.healthy ? "healthy" : "unhealthy",
    health_reason: report.reason,
  };
}

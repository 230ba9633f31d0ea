/**
 * The download engine: parallel, resumable blob downloads into the Hugging Face cache layout
 * (`blobs/<etag>.incomplete` → verified → `blobs/<etag>`), then the snapshot symlinks, refs and the
 * tree listing, published only once every blob is complete so an interrupted pull never looks whole.
 */
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readSync, renameSync, rmdirSync, statSync, symlinkSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { MlxkError, toMlxkError } from "../errors.ts";
import { type HubClient, type RemoteFile, interrupted } from "./client.ts";
import { withFileLock } from "./lock.ts";
import { isCommitSha } from "./repo-id.ts";

/** Live counters a caller may render while the download runs (the engine never prints). */
export class PullProgress {
  /** "contacting" until the file list is known (the display must not show 0/0 files as 100%). */
  phase: "contacting" | "downloading" = "contacting";
  /** Latest retry note from the client (shown under the bar), or null. */
  note: string | null = null;
  totalBytes = 0;
  /** Bytes present, whether downloaded now or found complete/partial on disk. */
  doneBytes = 0;
  /** Bytes that came over the network in this run. */
  downloadedBytes = 0;
  totalFiles = 0;
  finishedFiles = 0;
  readonly active = new Map<string, { size: number; done: number }>();
  readonly startedAt = Date.now();
}

export interface SnapshotDownload {
  client: HubClient;
  hubDir: string;
  repoId: string;
  commit: string;
  /** Branch/tag to record in `refs/`; null when the user asked for a commit hash. */
  ref: string | null;
  /** Files to fetch (after include/exclude). */
  files: RemoteFile[];
  /** The whole listing of the commit, written to `trees/<commit>.json` as huggingface_hub does. */
  allFiles: RemoteFile[];
  workers: number;
  signal?: AbortSignal;
  progress?: PullProgress;
  /** Longest silence between two pieces of a file before the connection counts as dropped (HF_HUB_DOWNLOAD_TIMEOUT). @default 10000 */
  readTimeoutMs?: number;
}

export interface SnapshotResult {
  snapshotDir: string;
  bytesDownloaded: number;
}

const MAX_STALLED_RETRIES = 5;

export function repoFolderName(repoId: string): string {
  return `models--${repoId.split("/").join("--")}`;
}

function newHasher(f: RemoteFile): Bun.CryptoHasher {
  if (f.sha256) return new Bun.CryptoHasher("sha256");
  // git's blob id: sha1 over a "blob <size>\0" header and the content
  const h = new Bun.CryptoHasher("sha1");
  h.update(`blob ${f.size}\0`);
  return h;
}

/** Feed the bytes already in a partial file to the hasher, so a resumed download is verified whole. */
function hashExisting(fd: number, size: number, h: Bun.CryptoHasher): void {
  const buf = Buffer.allocUnsafe(Math.min(size, 8 << 20) || 1);
  let pos = 0;
  while (pos < size) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
    if (n <= 0) break;
    h.update(buf.subarray(0, n));
    pos += n;
  }
}

function writeAll(fd: number, chunk: Uint8Array): void {
  let off = 0;
  while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
}

/** Download one blob (resuming its `.incomplete`), verify it, and rename it into place. */
async function fetchBlob(opts: SnapshotDownload, f: RemoteFile, blobsDir: string, signal: AbortSignal): Promise<void> {
  const progress = opts.progress;
  const blobPath = join(blobsDir, f.blobId);
  const partPath = `${blobPath}.incomplete`;
  if (existsSync(blobPath) && statSync(blobPath).size === f.size) {
    if (progress) progress.doneBytes += f.size;
    return;
  }
  const fd = openSync(partPath, "a+");
  const live = { size: f.size, done: 0 };
  try {
    let have = statSync(partPath).size;
    if (have > f.size) {
      ftruncateSync(fd, 0);
      have = 0;
    }
    let hasher = newHasher(f);
    hashExisting(fd, have, hasher);
    live.done = have;
    progress?.active.set(f.path, live);
    if (progress) progress.doneBytes += have;
    let stalled = 0;
    while (have < f.size) {
      if (signal.aborted) throw interrupted();
      // a stalled body (the Hub stops sending) aborts only this attempt; the loop below resumes from `have`
      const attempt = new AbortController();
      const res = await opts.client.request("GET", opts.repoId, opts.commit, f.path, have, AbortSignal.any([signal, attempt.signal]));
      const range = res.headers.get("Content-Range");
      const continues = res.status === 206 && range !== null && range.startsWith(`bytes ${have}-`);
      if (have > 0 && !continues) {
        // the server would not continue where we stopped: start the file over
        ftruncateSync(fd, 0);
        if (progress) progress.doneBytes -= have;
        have = 0;
        live.done = 0;
        hasher = newHasher(f);
        if (res.status !== 200) {
          await res.body?.cancel();
          continue;
        }
      }
      const before = have;
      const readTimeout = opts.readTimeoutMs ?? 10_000;
      let watchdog = setTimeout(() => attempt.abort(), readTimeout);
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          clearTimeout(watchdog);
          watchdog = setTimeout(() => attempt.abort(), readTimeout);
          if (have + chunk.length > f.size) throw new MlxkError("download_failed", `The Hub sent more than ${f.size} bytes for '${f.path}'.`);
          writeAll(fd, chunk);
          hasher.update(chunk);
          have += chunk.length;
          live.done = have;
          if (progress) {
            progress.note = null;
            progress.doneBytes += chunk.length;
            progress.downloadedBytes += chunk.length;
          }
        }
      } catch (e) {
        if (signal.aborted) throw interrupted(e);
        if (e instanceof MlxkError || !(e instanceof Error) || ((e as NodeJS.ErrnoException).syscall === "write")) throw e;
        // a dropped or stalled connection: retry from where we are, as long as the retries make progress
      } finally {
        clearTimeout(watchdog);
      }
      if (have < f.size) {
        stalled = have > before ? 0 : stalled + 1;
        if (stalled > MAX_STALLED_RETRIES) {
          throw new MlxkError("download_failed", `Connection lost while downloading '${f.path}' (${have} of ${f.size} bytes). Run pull again to resume.`, { retryable: true });
        }
        if (signal.aborted) throw interrupted();
        await Bun.sleep(Math.min(200 * 2 ** stalled, 3000));
      }
    }
    verifyAndPublish(f, hasher, partPath, blobPath);
  } finally {
    closeSync(fd);
    progress?.active.delete(f.path);
  }
}

function verifyAndPublish(f: RemoteFile, hasher: Bun.CryptoHasher, partPath: string, blobPath: string): void {
  const digest = hasher.digest("hex");
  if (digest !== f.blobId) {
    // a corrupt partial can never become valid by resuming it
    unlinkSync(partPath);
    const algo = f.sha256 ? "sha256" : "git sha1";
    throw new MlxkError("download_failed", `Checksum mismatch for '${f.path}': expected ${algo} ${f.blobId}, got ${digest}. The file was discarded; run pull again.`);
  }
  renameSync(partPath, blobPath);
}

/** Relative symlink `snapshots/<commit>/<path>` → `../../blobs/<id>`, swapped in atomically (pulls may race). */
function linkSnapshotFile(snapshotDir: string, blobsDir: string, f: RemoteFile): void {
  const dst = join(snapshotDir, f.path);
  mkdirSync(dirname(dst), { recursive: true });
  const tmp = `${dst}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;
  symlinkSync(relative(dirname(dst), join(blobsDir, f.blobId)), tmp);
  renameSync(tmp, dst);
}

function writeAtomically(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

function treeListing(files: RemoteFile[]): string {
  const out: Record<string, Record<string, unknown>> = {};
  for (const f of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    // blob_id of an LFS file is the git oid of its pointer, which we only know from the listing's sha256 side
    out[f.path] = f.sha256 ? { size: f.size, blob_id: f.blobId, lfs_sha256: f.sha256, lfs_size: f.size } : { size: f.size, blob_id: f.blobId };
  }
  return JSON.stringify({ format_version: 1, files: out }, null, 1);
}

function ensureCachedirTag(hubDir: string): void {
  const tag = join(hubDir, "CACHEDIR.TAG");
  if (existsSync(tag)) return;
  try {
    writeFileSync(tag, "Signature: 8a477f597d28d172789f06886806bc55\n# Hugging Face hub cache (tagged so backup tools can skip it).\n");
  } catch {
    // a missing tag only affects backup tools
  }
}

/** Download `files` of one commit into the cache and publish the snapshot. */
export async function downloadSnapshot(opts: SnapshotDownload): Promise<SnapshotResult> {
  const repoDir = join(opts.hubDir, repoFolderName(opts.repoId));
  const blobsDir = join(repoDir, "blobs");
  const locksDir = join(opts.hubDir, ".locks", repoFolderName(opts.repoId));
  const snapshotDir = join(repoDir, "snapshots", opts.commit);
  mkdirSync(blobsDir, { recursive: true });
  ensureCachedirTag(opts.hubDir);

  const inner = new AbortController();
  const onAbort = () => inner.abort();
  opts.signal?.addEventListener("abort", onAbort);
  if (opts.signal?.aborted) inner.abort();
  const progress = opts.progress ?? new PullProgress();
  opts = { ...opts, progress };
  // identical content under two paths is one blob: download it once
  const blobs = [...new Map(opts.files.map((f) => [f.blobId, f])).values()];
  progress.totalBytes = blobs.reduce((s, f) => s + f.size, 0);
  progress.totalFiles = blobs.length;
  progress.phase = "downloading";
  let next = 0;
  let firstError: unknown = null;
  const worker = async () => {
    while (firstError === null && next < blobs.length) {
      const f = blobs[next++]!;
      try {
        await withFileLock(join(locksDir, `${f.blobId}.lock`), inner.signal, () => fetchBlob(opts, f, blobsDir, inner.signal));
        progress.finishedFiles++;
      } catch (e) {
        if (firstError === null) firstError = e;
        // stop the other workers promptly; their partial files stay for the next pull
        inner.abort();
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.workers, blobs.length)) }, worker));
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    try {
      rmdirSync(locksDir);
      rmdirSync(dirname(locksDir));
    } catch {
      // other downloads still hold locks there
    }
  }
  if (firstError !== null) {
    if (opts.signal?.aborted) throw interrupted(firstError);
    const err = toMlxkError(firstError);
    if (err.type === "InternalError" || err.type === "permission_denied") {
      throw new MlxkError("download_failed", `Writing the download failed: ${err.message}`, { cause: firstError });
    }
    throw err;
  }

  for (const f of opts.files) linkSnapshotFile(snapshotDir, blobsDir, f);
  writeAtomically(join(repoDir, "trees", `${opts.commit}.json`), treeListing(opts.allFiles));
  if (opts.ref !== null && !isCommitSha(opts.ref)) writeAtomically(join(repoDir, "refs", opts.ref), opts.commit);
  return { snapshotDir, bytesDownloaded: progress.downloadedBytes };
}

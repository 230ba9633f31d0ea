/**
 * Per-blob lock files in `<cache>/.locks/models--…/<etag>.lock`, held with flock(2) like Python's
 * filelock, so concurrent mlxk and huggingface_hub downloads of one blob never interleave.
 */
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, fstatSync, mkdirSync, openSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { MlxkError } from "../errors.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

type FlockFn = (fd: number, op: number) => number;

let flockFn: FlockFn | null | undefined;

function loadFlock(): FlockFn | null {
  if (flockFn !== undefined) return flockFn;
  const names = process.platform === "darwin" ? ["libc.dylib", "/usr/lib/libSystem.B.dylib"] : ["libc.so.6", "libc.so"];
  flockFn = null;
  for (const name of names) {
    try {
      const lib = dlopen(name, { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
      flockFn = (fd, op) => lib.symbols.flock(fd, op) as number;
      break;
    } catch {
      // try the next name; without flock only the in-process lock below protects us
    }
  }
  return flockFn;
}

/** In-process holders, so two workers of one pull never share a blob even without flock. */
const held = new Map<string, Promise<void>>();

function abortError(): MlxkError {
  return new MlxkError("download_failed", "Download interrupted");
}

/**
 * Run `fn` while holding an exclusive lock on `path`. The lock file is removed before release;
 * waiters re-check the inode so a removed file never yields a second holder.
 */
export async function withFileLock<T>(path: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  while (held.has(path)) {
    if (signal?.aborted) throw abortError();
    await Promise.race([held.get(path), Bun.sleep(100)]);
  }
  let release!: () => void;
  held.set(path, new Promise<void>((r) => (release = r)));
  try {
    const flock = loadFlock();
    let fd = -1;
    for (;;) {
      if (signal?.aborted) throw abortError();
      try {
        fd = openSync(path, "w");
      } catch (e) {
        // another pull may just have removed the (empty) locks folder: make it again and retry
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
        mkdirSync(dirname(path), { recursive: true });
        continue;
      }
      if (!flock || flock(fd, LOCK_EX | LOCK_NB) === 0) {
        const same = (() => {
          try {
            return statSync(path).ino === fstatSync(fd).ino;
          } catch {
            return false;
          }
        })();
        if (same) break;
      }
      closeSync(fd);
      await Bun.sleep(100);
    }
    try {
      return await fn();
    } finally {
      try {
        unlinkSync(path);
      } catch {
        // already gone: nothing to clean
      }
      if (flock) flock(fd, LOCK_UN);
      closeSync(fd);
    }
  } finally {
    held.delete(path);
    release();
  }
}

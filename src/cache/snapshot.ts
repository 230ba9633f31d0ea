/**
 * One look at a snapshot (or workspace) dir: its file list read once, and memoized reads of the small
 * files that health checks and detection share, so `list` never reads a file twice.
 *
 * Exports: SnapshotView, openSnapshot(dir), LFS_POINTER_MARKER, isLfsPointer(view, entry)
 */
import { closeSync, openSync, readSync, readFileSync } from "node:fs";
import { type FileEntry, walkFiles } from "./layout.ts";

export const LFS_POINTER_MARKER = "version https://git-lfs.github.com/spec/v1";

export type JsonRead = { ok: true; value: unknown } | { ok: false; error: "missing" | "invalid" | "unreadable" };

/** Files up to this size are read whole (one readFileSync) even when only their head is wanted. */
const SMALL_FILE = 64 * 1024;

export class SnapshotView {
  readonly byRel = new Map<string, FileEntry>();
  private readonly bytes = new Map<string, Buffer | null>();
  private readonly texts = new Map<string, string | null>();
  private readonly jsons = new Map<string, JsonRead>();

  constructor(
    readonly dir: string,
    readonly files: FileEntry[],
  ) {
    for (const f of files) this.byRel.set(f.rel, f);
  }

  /** The file exists and resolves to something (a dangling symlink counts as missing). */
  has(rel: string): boolean {
    const f = this.byRel.get(rel);
    return f !== undefined && f.size >= 0;
  }

  /** Whole file as bytes (memoized), or null when missing/unreadable. */
  readBytes(rel: string): Buffer | null {
    const cached = this.bytes.get(rel);
    if (cached !== undefined) return cached;
    const f = this.byRel.get(rel);
    let buf: Buffer | null = null;
    if (f && f.size >= 0) {
      try {
        buf = readFileSync(f.path);
      } catch {
        buf = null;
      }
    }
    this.bytes.set(rel, buf);
    return buf;
  }

  /** Whole file as UTF-8, or null when missing/unreadable. */
  readText(rel: string): string | null {
    const cached = this.texts.get(rel);
    if (cached !== undefined) return cached;
    const text = this.readBytes(rel)?.toString("utf8") ?? null;
    this.texts.set(rel, text);
    return text;
  }

  readJson(rel: string): JsonRead {
    const cached = this.jsons.get(rel);
    if (cached) return cached;
    let r: JsonRead;
    if (!this.has(rel)) r = { ok: false, error: "missing" };
    else {
      const text = this.readText(rel);
      if (text === null) r = { ok: false, error: "unreadable" };
      else {
        try {
          r = { ok: true, value: JSON.parse(text) };
        } catch {
          r = { ok: false, error: "invalid" };
        }
      }
    }
    this.jsons.set(rel, r);
    return r;
  }

  /** A parsed JSON object (not array/null), or null. */
  readObject(rel: string): Record<string, unknown> | null {
    const r = this.readJson(rel);
    return r.ok && isObject(r.value) ? r.value : null;
  }

  /** The first `n` bytes of a file (LFS pointer sniffing, safetensors headers). Small files are read whole, once. */
  readHead(rel: string, n: number): Buffer | null {
    const f = this.byRel.get(rel);
    if (!f || f.size < 0) return null;
    if (f.size <= SMALL_FILE || this.bytes.has(rel)) return this.readBytes(rel)?.subarray(0, n) ?? null;
    let fd: number | undefined;
    try {
      fd = openSync(f.path, "r");
      const buf = Buffer.alloc(Math.min(n, f.size));
      const got = readSync(fd, buf, 0, buf.length, 0);
      return buf.subarray(0, got);
    } catch {
      return null;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
}

export function openSnapshot(dir: string): SnapshotView {
  return new SnapshotView(dir, walkFiles(dir));
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Git-LFS pointer left where the real file should be: tiny, and starts with the LFS spec line. */
export function isLfsPointer(view: SnapshotView, f: FileEntry): boolean {
  // shorter than the marker: cannot hold it, so no need to open the file
  if (f.size < LFS_POINTER_MARKER.length || f.size >= 200) return false;
  const head = view.readHead(f.rel, 100);
  return head !== null && head.toString("latin1").includes(LFS_POINTER_MARKER);
}

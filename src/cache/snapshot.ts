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

export class SnapshotView {
  readonly byRel = new Map<string, FileEntry>();
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

  /** Whole file as UTF-8, or null when missing/unreadable. */
  readText(rel: string): string | null {
    if (this.texts.has(rel)) return this.texts.get(rel)!;
    const f = this.byRel.get(rel);
    let text: string | null = null;
    if (f && f.size >= 0) {
      try {
        text = readFileSync(f.path, "utf8");
      } catch {
        text = null;
      }
    }
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

  /** The first `n` bytes of a file (LFS pointer sniffing, safetensors headers). */
  readHead(rel: string, n: number): Buffer | null {
    const f = this.byRel.get(rel);
    if (!f || f.size < 0) return null;
    const full = this.texts.get(rel);
    if (full) return Buffer.from(full, "utf8").subarray(0, n);
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
  if (f.size < 0 || f.size >= 200) return false;
  const head = view.readHead(f.rel, 100);
  return head !== null && head.toString("latin1").includes(LFS_POINTER_MARKER);
}

/**
 * Copying model files into a workspace: reflink (FICLONE: btrfs, XFS, bcachefs, APFS via clonefile) where the
 * filesystem offers it, else a plain copy; a file lands under its final name only once complete (tmp + rename),
 * so an interrupted copy resumes by skipping what is already there.
 *
 * Exports: copyInto(src, dst, stats), linkInto(src, dst, stats), CopyStats, newStats(), copyMethod(stats)
 */
import { constants, copyFileSync, linkSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname } from "node:path";

export interface CopyStats {
  reflinked: number;
  copied: number;
  moved: number;
  skipped: number;
  bytes: number;
}

export const newStats = (): CopyStats => ({ reflinked: 0, copied: 0, moved: 0, skipped: 0, bytes: 0 });

/** What happened overall, for `data.copy_method`. */
export function copyMethod(s: CopyStats): "reflink" | "copy" | "hardlink" | "mixed" | "none" {
  const kinds = (["reflink", "copy", "hardlink"] as const).filter((k, i) => [s.reflinked, s.copied, s.moved][i]! > 0);
  return kinds.length === 0 ? "none" : kinds.length === 1 ? kinds[0]! : "mixed";
}

function sameSize(a: string, b: string): boolean {
  try {
    return statSync(a).size === statSync(b).size;
  } catch {
    return false;
  }
}

/** Copy `src` (symlinks followed) to `dst`; an existing `dst` of the same size is a finished earlier copy. */
export function copyInto(src: string, dst: string, stats: CopyStats): void {
  if (sameSize(src, dst)) {
    stats.skipped++;
    return;
  }
  mkdirSync(dirname(dst), { recursive: true });
  const tmp = `${dst}.mlxk-part`;
  try {
    copyFileSync(src, tmp, constants.COPYFILE_FICLONE_FORCE);
    stats.reflinked++;
  } catch {
    copyFileSync(src, tmp);
    stats.copied++;
  }
  renameSync(tmp, dst);
  stats.bytes += statSync(dst).size;
}

/**
 * Hard-link a file of our own temp cache into place (no bytes copied; the temp cache stays whole until the clone is
 * published, so an interrupted clone resumes without downloading again); across devices it copies.
 */
export function linkInto(src: string, dst: string, stats: CopyStats): void {
  if (sameSize(src, dst)) {
    stats.skipped++;
    return;
  }
  mkdirSync(dirname(dst), { recursive: true });
  try {
    rmSync(dst, { force: true });
    linkSync(src, dst);
    stats.moved++;
    stats.bytes += statSync(dst).size;
  } catch {
    copyInto(src, dst, stats);
  }
}

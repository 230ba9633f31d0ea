/**
 * `health --verify`: re-hash blobs offline. huggingface_hub names LFS blobs by the sha256 of their content
 * and small git files by their git blob sha1 (`sha1("blob <len>\0" + content)`), so no network is needed.
 *
 * Exports: verifySnapshot(view, { repoDir, concurrency? }) → Promise<{ corrupt: string[], checked: number }>
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { readlinkSync } from "node:fs";
import { isInside } from "./layout.ts";
import type { SnapshotView } from "./snapshot.ts";

async function hashFile(path: string, algo: "sha256" | "sha1", size: number): Promise<string> {
  const h = createHash(algo);
  if (algo === "sha1") h.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Files of a snapshot whose blob content does not match the blob's name (relative paths, sorted). */
export async function verifySnapshot(
  view: SnapshotView,
  opts: { repoDir: string; concurrency?: number },
): Promise<{ corrupt: string[]; checked: number }> {
  const blobsDir = join(opts.repoDir, "blobs");
  const jobs: { rel: string; blob: string; algo: "sha256" | "sha1"; expect: string; size: number }[] = [];
  for (const f of view.files) {
    if (f.size < 0) continue;
    let target: string;
    try {
      target = resolve(dirname(f.path), readlinkSync(f.path));
    } catch {
      continue; // a regular file in the snapshot has no name to check against
    }
    if (!isInside(blobsDir, target)) continue;
    const name = target.slice(target.lastIndexOf("/") + 1).toLowerCase();
    if (/^[0-9a-f]{64}$/.test(name)) jobs.push({ rel: f.rel, blob: target, algo: "sha256", expect: name, size: f.size });
    else if (/^[0-9a-f]{40}$/.test(name)) jobs.push({ rel: f.rel, blob: target, algo: "sha1", expect: name, size: f.size });
  }
  const corrupt: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const j = jobs[next++]!;
      try {
        if ((await hashFile(j.blob, j.algo, j.size)) !== j.expect) corrupt.push(j.rel);
      } catch {
        corrupt.push(j.rel);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 2) }, worker));
  return { corrupt: corrupt.sort(), checked: jobs.length };
}

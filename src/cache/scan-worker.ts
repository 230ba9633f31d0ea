/** Worker side of pool.ts: take chunks of repo names from the shared counter, scan them, send the results back. */
import { CHUNK, type ScanKind, claimChunk, scanOne, workerClaims } from "./pool.ts";

declare const self: Worker;

self.onmessage = (e: MessageEvent) => {
  const { hubDir, names, kind, shared, w } = e.data as { hubDir: string; names: string[]; kind: ScanKind; shared: SharedArrayBuffer; w: number };
  const state = new Int32Array(shared);
  const indices: number[] = [];
  const results: unknown[] = [];
  if (workerClaims(state, w)) {
    for (let start = claimChunk(state, names.length); start >= 0; start = claimChunk(state, names.length)) {
      const end = Math.min(start + CHUNK, names.length);
      for (let i = start; i < end; i++) {
        indices.push(i);
        results.push(scanOne(hubDir, names[i]!, kind));
      }
    }
  }
  postMessage({ indices, results });
};

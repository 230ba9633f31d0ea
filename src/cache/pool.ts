/**
 * `list` and `health` over the whole cache on every core: the main thread and Worker threads pull chunks of
 * repo names from one shared counter, so a worker that starts late (or never) just takes fewer chunks.
 * Results come back in name order, identical to the one-thread scan.
 *
 * Exports:
 *   ScanKind, HealthSummary, scanOne(hubDir, name, kind)
 *   scanRepos({ hubDir, names, kind, workers? }) → results in the order of `names`
 *   listModelsParallel({ hubDir, pattern?, cwd?, workers?, workspaceHome? }) → { models }   (same result as scan.ts listModels)
 *   claimChunk / workerClaims: the shared-counter protocol (used by scan-worker.ts)
 */
import type { ModelObject } from "../schemas/cli-output.ts";
import { repoHealth } from "./health.ts";
import { repoDirFor } from "./layout.ts";
import { isExplicitPath } from "./resolve.ts";
import { cacheModel, cacheNamesMatching, listModels, mergeByName, workspaceModelsMatching } from "./scan.ts";

export type ScanKind = "list" | "health";

/** What `health` (all models, no --verify) needs of one repo. */
export interface HealthSummary {
  name: string;
  healthy: boolean;
  reason: string;
  runtime_compatible: boolean;
  runtime_reason: string | null;
}

export type ScanResult<K extends ScanKind> = K extends "list" ? ModelObject : HealthSummary;

export function scanOne<K extends ScanKind>(hubDir: string, name: string, kind: K): ScanResult<K> {
  if (kind === "list") return cacheModel(hubDir, name).model as ScanResult<K>;
  const r = repoHealth(repoDirFor(hubDir, name), { name, healthOnly: true });
  const s: HealthSummary = { name, healthy: r.healthy, reason: r.reason, runtime_compatible: r.runtime_compatible, runtime_reason: r.runtime_reason };
  return s as ScanResult<K>;
}

/** Repos per claim: small enough to balance two threads, large enough that claiming costs nothing. */
export const CHUNK = 8;
/** Below this many repos a worker's start-up costs more than it saves. */
const MIN_PARALLEL = 48;

/** Shared state: [0] next name index; [1 + w] worker w's state (0 starting, 1 running, 2 dismissed). */
export function claimChunk(shared: Int32Array, total: number): number {
  const start = Atomics.add(shared, 0, CHUNK);
  return start < total ? start : -1;
}

/** A worker may only start taking chunks if the main thread has not dismissed it yet. */
export function workerClaims(shared: Int32Array, w: number): boolean {
  return Atomics.compareExchange(shared, 1 + w, 0, 1) === 0;
}


export interface WorkerReply {
  indices: number[];
  results: unknown[];
}

/**
 * The worker entry: next to this file when run from source; in the standalone executable (scripts/build-exe.ts
 * lists it as a second entrypoint) it sits at its project path below the executable's virtual root.
 */
function workerUrl(): string {
  const compiled = import.meta.url.includes("/$bunfs/") || import.meta.url.includes("/~BUN/");
  return new URL(compiled ? "./src/cache/scan-worker.ts" : "./scan-worker.ts", import.meta.url).href;
}

function startWorker(msg: { hubDir: string; names: string[]; kind: ScanKind; shared: SharedArrayBuffer; w: number }): {
  worker: Worker | null;
  reply: Promise<WorkerReply | null>;
} {
  let worker: Worker;
  try {
    worker = new Worker(workerUrl());
  } catch {
    return { worker: null, reply: Promise.resolve(null) };
  }
  const reply = new Promise<WorkerReply | null>((resolve) => {
    worker.onmessage = (e: MessageEvent) => resolve(e.data as WorkerReply);
    // a worker that cannot load or throws: its unfinished names are redone on the main thread
    worker.onerror = () => resolve(null);
    worker.addEventListener("close", () => resolve(null));
  });
  worker.postMessage(msg);
  return { worker, reply };
}

/**
 * Scan `names` (list: model objects; health: summaries), in parallel when it pays. Pure read of the cache;
 * the output is the same as `names.map((n) => scanOne(hubDir, n, kind))`.
 */
export async function scanRepos<K extends ScanKind>(opts: {
  hubDir: string;
  names: string[];
  kind: K;
  workers?: number;
  /** false: leave every chunk to the workers (tests use it to exercise them deterministically). */
  mainThread?: boolean;
  /** Filled in on return: how many repos the workers scanned. */
  stats?: { byWorkers: number };
}): Promise<ScanResult<K>[]> {
  const { hubDir, names, kind } = opts;
  // Opt-in (MLXK_SCAN_WORKERS): on an idle 2-core machine a worker did not speed up `list` and saved ~10% of
  // `health` wall time for ~30% more CPU (BENCHMARKS.md), so one thread is the default.
  const nWorkers = names.length < MIN_PARALLEL ? 0 : (opts.workers ?? 0);
  if (nWorkers <= 0) return names.map((n) => scanOne(hubDir, n, kind));
  const shared = new SharedArrayBuffer(4 * (1 + nWorkers));
  const state = new Int32Array(shared);
  const started = Array.from({ length: nWorkers }, (_, w) => startWorker({ hubDir, names, kind, shared, w }));
  const out: (ScanResult<K> | undefined)[] = new Array(names.length);
  let byWorkers = 0;
  try {
    if (opts.mainThread !== false) {
      for (let start = claimChunk(state, names.length); start >= 0; start = claimChunk(state, names.length)) {
        const end = Math.min(start + CHUNK, names.length);
        for (let i = start; i < end; i++) out[i] = scanOne(hubDir, names[i]!, kind);
      }
    }
    // workers still starting up are dismissed instead of waited for; running ones finish their last chunk
    for (let w = 0; w < nWorkers; w++) {
      const { worker, reply } = started[w]!;
      if (!worker) continue;
      if (opts.mainThread !== false && Atomics.compareExchange(state, 1 + w, 0, 2) === 0) continue;
      const r = await reply;
      if (!r) continue;
      for (let j = 0; j < r.indices.length; j++) out[r.indices[j]!] = r.results[j] as ScanResult<K>;
      byWorkers += r.indices.length;
    }
  } finally {
    // also when a scan throws: a live worker would keep the process from exiting
    for (const { worker } of started) worker?.terminate();
  }
  if (opts.stats) opts.stats.byWorkers = byWorkers;
  for (let i = 0; i < names.length; i++) if (out[i] === undefined) out[i] = scanOne(hubDir, names[i]!, kind);
  return out as ScanResult<K>[];
}

/** `list [pattern]` like scan.ts listModels, with the cache scan spread over the cores. */
export async function listModelsParallel(opts: {
  hubDir: string;
  pattern?: string | null;
  cwd?: string;
  workers?: number;
  workspaceHome?: string | null;
}): Promise<{ models: ModelObject[] }> {
  const pattern = opts.pattern?.trim() ?? "";
  if (pattern !== "" && isExplicitPath(pattern)) return listModels(opts);
  const names = cacheNamesMatching(opts.hubDir, pattern);
  const cached = await scanRepos({ hubDir: opts.hubDir, names, kind: "list", workers: opts.workers });
  return { models: mergeByName(workspaceModelsMatching(opts.workspaceHome, pattern), cached) };
}

/**
 * From a user's model spec (or an already resolved ModelRef, src/cache/ref.ts) to a loaded Engine. A model
 * that fails its health check is refused with the health reason before anything is loaded; so is a
 * machine where MLX cannot be loaded.
 */
import { type ModelRef, resolveRef } from "../cache/ref.ts";
import type { Env } from "../env.ts";
import { MlxkError } from "../errors.ts";
import type { Engine } from "./types.ts";

export interface OpenOptions {
  env?: Env;
  cwd?: string;
  /** Load progress in [0, 1] (weights read so far). */
  onProgress?: (fraction: number) => void;
  /** Bytes for the prompt cache (src/engine/prompt-cache.ts); 0 or absent = off. */
  promptCacheBytes?: number;
  /** Requests decoded at once (continuous batching, src/engine/scheduler.ts); 1 or absent = one at a time. */
  parallel?: number;
  /** Bytes the running requests' KV may reserve together; absent = unbounded (free memory still checked). */
  kvBudgetBytes?: number;
  /** Free memory now (os.freemem) for the admission check. */
  freeMemory?: () => number;
}

/** What the loader needs of a reference. */
export type ModelSource = Pick<ModelRef, "kind" | "path" | "id">;

/** Resolve `spec` once and check the model's health; throws MlxkError with the reason when it cannot run. */
export function locateModel(spec: string, opts: { env?: Env; cwd?: string; purpose?: "generate" | "embed" } = {}): ModelRef {
  return resolveRef(spec, opts);
}

/** Load a model by spec or by its reference (never resolved again). The caller owns the Engine (dispose it). */
export async function openModel(spec: string | ModelRef, opts: OpenOptions = {}): Promise<Engine & { loadMs?: number }> {
  const ref = typeof spec === "string" ? locateModel(spec, opts) : spec;
  const { mlxAvailability } = await import("../mlx/ffi.ts");
  const avail = mlxAvailability(opts.env ?? process.env);
  if (!avail.available) throw new MlxkError("mlx_unavailable", `MLX is not available on this machine: ${avail.reason}`);
  const { loadEngine } = await import("./engine.ts");
  const { kvBudgetBytes, freeMemory } = opts;
  // a pipeline group mirrors one cache per sequence on every rank: no prompt-cache trimming/cloning and no
  // batching there
  const { joinWorld } = await import("../distributed/world.ts");
  const inWorld = await joinWorld(opts.env ?? process.env);
  const promptCacheBytes = inWorld ? 0 : opts.promptCacheBytes;
  const parallel = inWorld ? 1 : opts.parallel;
  return loadEngine(ref, { env: opts.env, onProgress: opts.onProgress, promptCacheBytes, parallel, kvBudgetBytes, freeMemory });
}

/** Default batch size: 8, fewer when free memory is short (each running request's KV needs room). */
export function defaultParallel(freeBytes: number): number {
  return Math.max(1, Math.min(8, Math.floor(freeBytes / (512 * 1024 ** 2))));
}

/** Default KV budget of the running requests: half the memory free now, less what the prompt cache may take. */
export function defaultKvBudgetBytes(freeBytes: number, promptCacheBytes: number): number {
  return Math.max(256 * 1024 ** 2, Math.floor(freeBytes / 2) - promptCacheBytes);
}

/** Default prompt-cache budget: a quarter of the memory free now, at most 8 GiB. */
export function defaultPromptCacheBytes(freeBytes: number): number {
  return Math.max(0, Math.min(Math.floor(freeBytes / 4), 8 * 1024 ** 3));
}

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
  // a pipeline group mirrors one cache per sequence on every rank: no prompt-cache trimming/cloning there
  const { joinWorld } = await import("../distributed/world.ts");
  const promptCacheBytes = (await joinWorld(opts.env ?? process.env)) ? 0 : opts.promptCacheBytes;
  return loadEngine(ref, { env: opts.env, onProgress: opts.onProgress, promptCacheBytes });
}

/** Default prompt-cache budget: a quarter of the memory free now, at most 8 GiB. */
export function defaultPromptCacheBytes(freeBytes: number): number {
  return Math.max(0, Math.min(Math.floor(freeBytes / 4), 8 * 1024 ** 3));
}

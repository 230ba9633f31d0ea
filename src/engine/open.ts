/**
 * From a user's model spec to a loaded Engine: a `.gguf` file path, a local model dir, or a cache name
 * (via the cache resolver). A model that fails its health check is refused with the health reason,
 * before anything is loaded; so is a machine where MLX cannot be loaded.
 */
import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { dirHealth, type HealthReport, repoHealth } from "../cache/health.ts";
import { resolveModel } from "../cache/resolve.ts";
import { type Env, hubCacheDir } from "../env.ts";
import { MlxkError } from "../errors.ts";
import type { Engine } from "./types.ts";

export interface OpenOptions {
  env?: Env;
  cwd?: string;
  /** Load progress in [0, 1] (weights read so far). */
  onProgress?: (fraction: number) => void;
}

export type ModelSource = { kind: "dir"; dir: string; id: string } | { kind: "gguf"; path: string; id: string };

/** A `.gguf` file path (absolute, relative or ~/) names a GGUF model. */
export function ggufPath(spec: string, opts: { cwd?: string; env?: Env } = {}): string | null {
  if (!spec.toLowerCase().endsWith(".gguf")) return null;
  const home = opts.env?.HOME || homedir();
  const raw = spec.startsWith("~/") ? resolve(home, spec.slice(2)) : spec;
  const p = isAbsolute(raw) ? raw : resolve(opts.cwd ?? process.cwd(), raw);
  return existsSync(p) && statSync(p).isFile() ? p : null;
}

/** Resolve `spec` and check the model's health; throws MlxkError with the reason when it cannot run. */
export function locateModel(spec: string, opts: { env?: Env; cwd?: string } = {}): ModelSource {
  const env = opts.env ?? process.env;
  const gguf = ggufPath(spec, opts);
  if (gguf) return { kind: "gguf", path: gguf, id: gguf };
  if (spec.toLowerCase().endsWith(".gguf") && (spec.includes("/") || spec.startsWith("~"))) {
    throw new MlxkError("model_not_found", `No GGUF file at '${spec}'`);
  }
  const r = resolveModel(spec, { hubDir: hubCacheDir(env), cwd: opts.cwd, env });
  const report: HealthReport = r.kind === "cache" ? repoHealth(r.repoDir, { name: r.name, hash: r.hash }) : dirHealth(r.dir, { name: r.name });
  // `code` lets the server answer these as the client's problem (4xx): another model name fixes them
  if (!report.healthy) throw new MlxkError("execution_error", `Model '${r.name}' is not healthy: ${report.reason}`, { extra: { code: "model_unhealthy" } });
  if (!report.runtime_compatible) {
    throw new MlxkError("unsupported_model", `Model '${r.name}' is not compatible: ${report.runtime_reason ?? "unknown reason"}`, {
      extra: { code: "model_not_supported" },
    });
  }
  return { kind: "dir", dir: report.snapshotDir!, id: r.name };
}

/** Locate, check MLX, and load. The caller owns the Engine (dispose it). */
export async function openModel(spec: string, opts: OpenOptions = {}): Promise<Engine & { loadMs?: number }> {
  const source = locateModel(spec, opts);
  const { mlxAvailability } = await import("../mlx/ffi.ts");
  const avail = mlxAvailability(opts.env ?? process.env);
  if (!avail.available) throw new MlxkError("mlx_unavailable", `MLX is not available on this machine: ${avail.reason}`);
  const { loadEngine } = await import("./engine.ts");
  return loadEngine(source, { env: opts.env, onProgress: opts.onProgress });
}

/**
 * From a user's model spec to a loaded Engine: a `.gguf` file path, a local model dir, or a cache name
 * (via the cache resolver). A model that fails its health check is refused with the health reason,
 * before anything is loaded; so is a machine where MLX cannot be loaded.
 */
import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { chooseVariant, inspectGguf, variantIntegrity, variantRuntime } from "../cache/gguf.ts";
import { dirHealth, type HealthReport, incompleteBlobs, repoHealth } from "../cache/health.ts";
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
  if (r.kind === "cache" && report.view && report.detection?.framework === "GGUF") {
    // a GGUF repo runs one file: only that variant's files (and no unfinished download) must be sound
    if (incompleteBlobs(r.repoDir).length > 0) throw new MlxkError("execution_error", `Model '${r.name}' is not healthy: ${report.reason}`);
    const v = chooseVariant(inspectGguf(report.view), r.quant ?? null, r.name);
    const id = r.quant ? `${r.name}:${v.label}` : r.name;
    const broken = variantIntegrity(v);
    if (broken) throw new MlxkError("execution_error", `Model '${id}' is not healthy: ${broken}`);
    const why = variantRuntime(v);
    if (why) throw new MlxkError("unsupported_model", `Model '${id}' is not compatible: ${why}`);
    return { kind: "gguf", path: v.parts[0]!.file.path, id };
  }
  if (r.quant) throw new MlxkError("ValidationError", `':${r.quant}' selects a GGUF quant, but '${r.name}' is not a GGUF repo`);
  if (!report.healthy) throw new MlxkError("execution_error", `Model '${r.name}' is not healthy: ${report.reason}`);
  if (!report.runtime_compatible) {
    throw new MlxkError("unsupported_model", `Model '${r.name}' is not compatible: ${report.runtime_reason ?? "unknown reason"}`);
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

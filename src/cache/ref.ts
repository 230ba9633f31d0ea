/**
 * One model reference: a user's model name resolved ONCE (resolver + health gates) into everything the
 * CLI (`run`) and the server need to open it and to describe it. Whatever the server lists, it opens by
 * its ModelRef; nothing re-resolves a name (or a snapshot path) per request.
 *
 * Exports: ModelRef, ggufPath(spec, opts), resolveRef(spec, opts), weightBytes(dir), refFromHealth(...)
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { type Env, hubCacheDir } from "../env.ts";
import { readGguf } from "../gguf/reader.ts";
import { MlxkError } from "../errors.ts";
import { contextLength, type Detection } from "./detect.ts";
import { chooseVariant, inspectGguf, splitSiblings, variantContextLength, variantLoadedBytes, variantIntegrity, variantRuntime } from "./gguf.ts";
import { dirHealth, type HealthReport, incompleteBlobs, repoHealth } from "./health.ts";
import { type Resolved, resolveModel } from "./resolve.ts";

export interface ModelRef {
  /** Name clients and the CLI show: `org/name` for cached models, the absolute path for dirs and GGUF files. */
  id: string;
  /** "dir": a model directory (snapshot, workspace, path) with config.json + safetensors; "gguf": one file. */
  kind: "dir" | "gguf";
  /** Snapshot dir, model dir or GGUF file the loader opens. */
  path: string;
  /** Snapshot commit hash of a cached model, else null. */
  hash: string | null;
  /** What the files say (framework, kind, capabilities, config model_type); null for a bare GGUF file. */
  detection: Detection | null;
  /** Bytes of the weight files: the base of the server's memory estimate. */
  weightBytes: number;
  /** From config.json when known; the loaded engine's info is authoritative. */
  contextLength: number | null;
}

/** Loaded size of one GGUF file from its header (variantLoadedBytes' rates); throws on an unreadable header. */
function loadedBytes(path: string): number {
  const header = readGguf(path, { skipArrays: true });
  const part = { file: { rel: path, path, size: fileSize(path), target: null }, header, error: null };
  return variantLoadedBytes({ label: "", rel: path, parts: [part], total: 1, bytes: part.file.size });
}

function fileSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}

/** Sum of the safetensors files of a model dir (symlinks into blobs followed). */
export function weightBytes(dir: string): number {
  let total = 0;
  try {
    for (const f of readdirSync(dir)) if (f.endsWith(".safetensors")) total += fileSize(join(dir, f));
  } catch {
    return 0;
  }
  return total;
}

/** A `.gguf` file path (absolute, relative or ~/) names a GGUF model. */
export function ggufPath(spec: string, opts: { cwd?: string; env?: Env } = {}): string | null {
  if (!spec.toLowerCase().endsWith(".gguf")) return null;
  const home = opts.env?.HOME || homedir();
  const raw = spec.startsWith("~/") ? resolve(home, spec.slice(2)) : spec;
  const p = isAbsolute(raw) ? raw : resolve(opts.cwd ?? process.cwd(), raw);
  return existsSync(p) && statSync(p).isFile() ? p : null;
}

/** The reference for a model whose health was checked (throws when it cannot run). */
export function refFromHealth(id: string, report: HealthReport, purpose: "generate" | "embed" = "generate"): ModelRef {
  // `code` lets the server answer these as the client's problem (4xx): another model name fixes them
  if (!report.healthy) throw new MlxkError("execution_error", `Model '${id}' is not healthy: ${report.reason}`, { extra: { code: "model_unhealthy" } });
  // the wrong kind of model is the caller's mistake (400), named before any runtime reason
  const embedder = report.detection?.kind === "embedding";
  if (purpose === "generate" && embedder) {
    throw new MlxkError("capability_mismatch", `'${id}' is an embedding model: it makes vectors, not text. Use 'mlxk embed' or POST /v1/embeddings.`, { extra: { param: "model" } });
  }
  if (purpose === "embed" && !embedder) {
    throw new MlxkError("capability_mismatch", `'${id}' is a ${report.detection?.kind ?? "text"} model, not an embedding model: use 'mlxk run' or the chat/completions APIs.`, { extra: { param: "model" } });
  }
  if (!report.runtime_compatible) {
    throw new MlxkError("unsupported_model", `Model '${id}' is not compatible: ${report.runtime_reason ?? "unknown reason"}`, {
      extra: { code: "model_not_supported" },
    });
  }
  const dir = report.snapshotDir!;
  return {
    id,
    kind: "dir",
    path: dir,
    hash: report.hash,
    detection: report.detection,
    weightBytes: weightBytes(dir),
    contextLength: contextLength(report.view?.readObject("config.json") ?? null),
  };
}

/**
 * Resolve `spec` (GGUF file, path, workspace or cache name) and check the model's health.
 * Throws MlxkError model_not_found / ambiguous_match / execution_error (unhealthy) / unsupported_model.
 */
export function resolveRef(spec: string, opts: { env?: Env; cwd?: string; purpose?: "generate" | "embed" } = {}): ModelRef {
  const env = opts.env ?? process.env;
  const gguf = ggufPath(spec, opts);
  if (gguf) {
    // a split set's first part loads every part: the memory estimate counts them all, at their loaded size
    let bytes = fileSize(gguf);
    try {
      bytes = splitSiblings(gguf).reduce((n, p) => n + loadedBytes(p), 0);
    } catch {
      // a missing part or an unreadable header: the loader names it
    }
    return { id: gguf, kind: "gguf", path: gguf, hash: null, detection: null, weightBytes: bytes, contextLength: null };
  }
  if (spec.toLowerCase().endsWith(".gguf") && (spec.includes("/") || spec.startsWith("~"))) {
    throw new MlxkError("model_not_found", `No GGUF file at '${spec}'`);
  }
  const r = resolveModel(spec, { hubDir: hubCacheDir(env), cwd: opts.cwd, env });
  const report = r.kind === "cache" ? repoHealth(r.repoDir, { name: r.name, hash: r.hash }) : dirHealth(r.dir, { name: r.name });
  if (report.view && report.detection?.framework === "GGUF") return ggufRef(r, report);
  if (r.quant) throw new MlxkError("ValidationError", `':${r.quant}' selects a GGUF quant, but '${r.name}' is not a GGUF model`);
  return refFromHealth(r.name, report, opts.purpose);
}

/**
 * A GGUF repo runs one file (or split set): `name:QUANT` names it, else the default (src/cache/gguf.ts). Only
 * that variant's files and no unfinished download must be sound, so a broken Q8_0 never blocks a good Q4_1.
 */
function ggufRef(r: Resolved, report: HealthReport): ModelRef {
  if (r.kind === "cache" && incompleteBlobs(r.repoDir).length > 0) throw new MlxkError("execution_error", `Model '${r.name}' is not healthy: ${report.reason}`);
  const v = chooseVariant(inspectGguf(report.view!), r.quant ?? null, r.name);
  const id = r.quant ? `${r.name}:${v.label}` : r.name;
  const broken = variantIntegrity(v);
  if (broken) throw new MlxkError("execution_error", `Model '${id}' is not healthy: ${broken}`);
  const why = variantRuntime(v);
  if (why) throw new MlxkError("unsupported_model", `Model '${id}' is not compatible: ${why}`);
  return {
    id,
    kind: "gguf",
    path: v.parts[0]!.file.path,
    hash: report.hash,
    detection: report.detection,
    weightBytes: variantLoadedBytes(v),
    contextLength: variantContextLength(v),
  };
}

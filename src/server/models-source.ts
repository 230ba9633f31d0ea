/**
 * The real model source of the server: cache-backed resolution (the CLI's resolver, GGUF paths included)
 * and the runnable-model listing of GET /v1/models. Kept apart from app.ts so tests can inject their own.
 */
import { readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { contextLength } from "../cache/detect.ts";
import { listRepoNames } from "../cache/layout.ts";
import { cacheModel } from "../cache/scan.ts";
import { locateModel } from "../engine/open.ts";
import type { Engine } from "../engine/types.ts";
import { type Env, hubCacheDir } from "../env.ts";
import type { ModelObject } from "../schemas/openai.ts";
import type { ModelTarget } from "./model-manager.ts";

function fileSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}

/** Sum of the weight files (safetensors) in a model dir: what loading will occupy, roughly. */
function weightBytes(dir: string): number {
  let total = 0;
  for (const f of new Bun.Glob("*.safetensors").scanSync({ cwd: dir, followSymlinks: true })) total += fileSize(join(dir, f));
  return total;
}

function configContext(dir: string): number | null {
  try {
    return contextLength(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>);
  } catch {
    return null;
  }
}

/** Resolve a request's `model` like the CLI does; throws model_not_found / ambiguous_match / unsupported_model. */
export function resolveTarget(spec: string, opts: { env?: Env; cwd?: string } = {}): ModelTarget {
  const src = locateModel(spec, opts);
  if (src.kind === "gguf") return { id: src.id, path: src.path, weightBytes: fileSize(src.path), contextLength: null };
  return { id: src.id, path: src.dir, weightBytes: weightBytes(src.dir), contextLength: configContext(src.dir) };
}

/** Load a resolved target through the engine's public entry (MLX availability checked there). */
export async function loadTarget(target: ModelTarget, opts: { env?: Env } = {}): Promise<Engine> {
  const { openModel } = await import("../engine/open.ts");
  return openModel(target.path, { env: opts.env });
}

/** Cached models a client can run: healthy, runtime compatible, and a text generator (not an embedder/audio). */
export function listRunnable(opts: { env?: Env } = {}): ModelObject[] {
  const hubDir = hubCacheDir(opts.env ?? process.env);
  const out: ModelObject[] = [];
  for (const name of listRepoNames(hubDir)) {
    let entry: ReturnType<typeof cacheModel>;
    try {
      entry = cacheModel(hubDir, name);
    } catch {
      continue; // one unreadable repo must not break the listing
    }
    const { model, report } = entry;
    if (model.health !== "healthy" || !model.runtime_compatible) continue;
    if (model.model_type !== "chat" && model.model_type !== "base") continue;
    const config = report.view?.readObject("config.json") ?? null;
    out.push({
      id: name,
      object: "model",
      created: Math.floor(Date.parse(model.last_modified) / 1000),
      owned_by: name.includes("/") ? name.split("/")[0]! : basename(name),
      context_length: contextLength(config),
    });
  }
  return out;
}

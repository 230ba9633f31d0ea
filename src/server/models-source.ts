/**
 * The real model source of the server: cache-backed resolution (the CLI's resolver, GGUF paths included)
 * and the runnable-model listing of GET /v1/models. Kept apart from app.ts so tests can inject their own.
 */
import { basename } from "node:path";
import { contextLength } from "../cache/detect.ts";
import { inspectGguf, variantContextLength, variantIntegrity, variantRuntime } from "../cache/gguf.ts";
import { listRepoNames } from "../cache/layout.ts";
import type { HealthReport } from "../cache/health.ts";
import { cacheModel } from "../cache/scan.ts";
import { listWorkspaces, workspaceModel } from "../cache/workspace.ts";
import { resolveRef } from "../cache/ref.ts";
import type { Engine } from "../engine/types.ts";
import { type Env, hubCacheDir, workspaceHome } from "../env.ts";
import type { ModelObject as CliModel } from "../schemas/cli-output.ts";
import type { ModelObject } from "../schemas/openai.ts";
import type { ModelTarget } from "./model-manager.ts";

/** Resolve a request's `model` like the CLI does; throws model_not_found / ambiguous_match / unsupported_model. */
export function resolveTarget(spec: string, opts: { env?: Env; cwd?: string } = {}): ModelTarget {
  return resolveRef(spec, opts);
}

/** Load a resolved target by its reference (never by re-resolving its path: a snapshot path loses the repo name). */
export async function loadTarget(target: ModelTarget, opts: { env?: Env } = {}): Promise<Engine> {
  const { openModel } = await import("../engine/open.ts");
  return openModel(target, { env: opts.env });
}

/** Models a client can run: healthy, runtime compatible, text generators (not embedders/audio); cache, then workspaces. */
export function listRunnable(opts: { env?: Env } = {}): ModelObject[] {
  const env = opts.env ?? process.env;
  const hubDir = hubCacheDir(env);
  const out: ModelObject[] = [];
  const add = (id: string, ownedBy: string, entry: { model: CliModel; report: HealthReport }): void => {
    const { model, report } = entry;
    if (model.health !== "healthy" || !model.runtime_compatible) return;
    if (model.model_type !== "chat" && model.model_type !== "base") return;
    out.push({
      id,
      object: "model",
      created: Math.floor(Date.parse(model.last_modified) / 1000),
      owned_by: ownedBy,
      context_length: model.context_length ?? contextLength(report.view?.readObject("config.json") ?? null),
    });
    // a GGUF repo with several quants: each runnable one is also listed as `name:QUANT` (the bare name opens the default)
    if (model.framework === "GGUF" && model.cached && report.view) {
      const variants = inspectGguf(report.view).variants;
      if (variants.length > 1) {
        const first = out[out.length - 1]!;
        for (const g of variants) {
          if (variantIntegrity(g) !== null || variantRuntime(g) !== null) continue;
          out.push({ ...first, id: `${id}:${g.label}`, context_length: variantContextLength(g) });
        }
      }
    }
  };
  for (const name of listRepoNames(hubDir)) {
    try {
      add(name, name.includes("/") ? name.split("/")[0]! : basename(name), cacheModel(hubDir, name));
    } catch {
      // one unreadable repo must not break the listing
    }
  }
  // workspaces as mlx-knife lists them: id = folder name (resolvable by the shared resolver), owned_by "workspace"
  for (const dir of listWorkspaces(workspaceHome(env))) {
    try {
      add(basename(dir), "workspace", workspaceModel(dir));
    } catch {
      // likewise
    }
  }
  return out;
}

/**
 * The real model source of the server: cache-backed resolution (the CLI's resolver, GGUF paths included)
 * and the runnable-model listing of GET /v1/models. Kept apart from app.ts so tests can inject their own.
 */
import { readFileSync } from "node:fs";
import { basename, isAbsolute, join } from "node:path";
import { contextLength } from "../cache/detect.ts";
import { inspectGguf, variantContextLength, variantIntegrity, variantRuntime } from "../cache/gguf.ts";
import { listRepoNames } from "../cache/layout.ts";
import type { HealthReport } from "../cache/health.ts";
import { cacheModel } from "../cache/scan.ts";
import { executeRemoval, planRemoval } from "../cache/remove.ts";
import { isExplicitPath, resolveModel } from "../cache/resolve.ts";
import { listWorkspaces, workspaceModel } from "../cache/workspace.ts";
import { resolveRef } from "../cache/ref.ts";
import type { Engine } from "../engine/types.ts";
import { type Env, hubCacheDir, workspaceHome } from "../env.ts";
import { MlxkError } from "../errors.ts";
// the library itself is opened on the first availability check, not at import
import { deviceMemory } from "../mlx/backend.ts";
import { mlxAvailability } from "../mlx/ffi.ts";
import type { ModelObject as CliModel } from "../schemas/cli-output.ts";
import type { ModelObject } from "../schemas/openai.ts";
import type { ModelManagement, RuntimeStatus } from "./context.ts";
import type { ModelTarget } from "./model-manager.ts";

function readConfig(dir: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** The chat template text of a model dir (tokenizer_config.json's, or chat_template.jinja), else null. */
function chatTemplateText(dir: string): string | null {
  try {
    return readFileSync(join(dir, "chat_template.jinja"), "utf8");
  } catch {
    // fall through to tokenizer_config.json
  }
  try {
    const t = (JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")) as { chat_template?: unknown }).chat_template;
    if (typeof t === "string") return t;
    if (Array.isArray(t)) return t.map((x: { template?: unknown }) => (typeof x.template === "string" ? x.template : "")).join("\n");
  } catch {
    // no template to read
  }
  return null;
}

/** `quantization.bits` of an MLX config as "4bit" (what Ollama clients show as quantization_level). */
function quantLabel(cfg: Record<string, unknown> | null): string | null {
  const q = (cfg?.quantization ?? cfg?.quantization_config) as { bits?: unknown } | undefined;
  return typeof q?.bits === "number" ? `${q.bits}bit` : null;
}

/** A spec that names a place on disk rather than a cache/workspace model (checked without touching the disk). */
export function looksLikePath(spec: string): boolean {
  const s = spec.trim();
  return isExplicitPath(s) || isAbsolute(s) || s.includes("\\") || s.toLowerCase().endsWith(".gguf");
}

/** Throw the 403 of a client-sent path (checked on the text alone: the disk is never asked). */
export function refusePath(spec: string): void {
  if (!looksLikePath(spec)) return;
  throw new MlxkError("permission_denied", `Model '${spec}' is a path: this server serves cache and workspace models by name (start it with --allow-paths to accept paths)`, {
    extra: { param: "model", code: "model_path_not_allowed" },
  });
}

/**
 * Resolve a request's `model` like the CLI does; throws model_not_found / ambiguous_match / unsupported_model.
 * Without `allowPaths` a path is refused before the filesystem is asked, so a client cannot learn whether
 * a file exists (`"model": "/etc/passwd"`) or make the server open one.
 */
export function resolveTarget(spec: string, opts: { env?: Env; cwd?: string; allowPaths?: boolean } = {}): ModelTarget {
  if (opts.allowPaths === false) refusePath(spec);
  const ref = resolveRef(spec, opts);
  if (ref.kind !== "dir") return ref;
  return { ...ref, quantization: quantLabel(readConfig(ref.path)), template: templateTraits(chatTemplateText(ref.path)) };
}

/** Whether a template renders tools and has a thinking switch/markers (Ollama's `capabilities`). */
export function templateTraits(t: string | null): { tools: boolean; thinking: boolean } | null {
  if (t === null) return null;
  return { tools: /\btools\b/.test(t), thinking: /<think>|enable_thinking|reasoning_content/.test(t) };
}

/** Load a resolved target by its reference (never by re-resolving its path: a snapshot path loses the repo name). */
export async function loadTarget(target: ModelTarget, opts: { env?: Env; promptCacheBytes?: number } = {}): Promise<Engine> {
  const { openModel } = await import("../engine/open.ts");
  return openModel(target, { env: opts.env, promptCacheBytes: opts.promptCacheBytes });
}

/** Models a client can use: healthy, runtime compatible, text generators and embedders (not audio); cache, then workspaces. */
export function listRunnable(opts: { env?: Env } = {}): ModelObject[] {
  const env = opts.env ?? process.env;
  const hubDir = hubCacheDir(env);
  const out: ModelObject[] = [];
  const add = (id: string, ownedBy: string, entry: { model: CliModel; report: HealthReport }): void => {
    const { model, report } = entry;
    if (model.health !== "healthy" || !model.runtime_compatible) return;
    if (model.model_type !== "chat" && model.model_type !== "base" && model.model_type !== "embedding") return;
    out.push({
      id,
      object: "model",
      created: Math.floor(Date.parse(model.last_modified) / 1000),
      owned_by: ownedBy,
      context_length: model.context_length ?? contextLength(report.view?.readObject("config.json") ?? null),
      capabilities: model.capabilities,
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

/** Whether MLX can be loaded here (GET /health is 503 when not). */
export function runtimeStatus(env: Env): RuntimeStatus {
  const a = mlxAvailability(env);
  if (!a.available) return { available: false, reason: a.reason };
  const m = deviceMemory(env);
  return { available: true, device: { backend: m.device, name: m.name, memory_total_bytes: m.totalBytes, memory_free_bytes: m.freeBytes } };
}

/** Pull and delete for Ollama's /api/pull and /api/delete (`--allow-manage`): the CLI's cores, exact names only for delete. */
export function cacheManagement(env: Env): ModelManagement {
  return {
    pull: async (spec, o) => {
      const { pull } = await import("../hub/pull.ts");
      return pull({ spec, env, include: o.include, signal: o.signal, progress: o.progress });
    },
    remove: (spec) => {
      const hubDir = hubCacheDir(env);
      const r = resolveModel(spec, { hubDir, env });
      if (r.kind === "path") throw new MlxkError("workspace_model", `'${spec}' is a workspace model: delete it with rm -rf ${r.dir}`);
      if (r.match !== "exact") {
        throw new MlxkError("requires_confirmation", `'${spec}' matched '${r.name}' only loosely: send the exact name to delete it`, { extra: { matches: [r.name] } });
      }
      const plan = planRemoval({ hubDir, name: r.name, hash: r.hash });
      if (plan.lockFiles.length > 0) throw new MlxkError("locks_present", `Lock files present for '${r.name}' (a download may be running)`);
      return { name: r.name, freedBytes: executeRemoval(plan, { hubDir }).freedBytes };
    },
  };
}

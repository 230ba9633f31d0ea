/**
 * GET /v1/models and GET /v1/models/{id}: the models a client may name, ids as `org/name` (so `{id}` contains '/').
 * A pinned server without --allow-switch lists only its served names; otherwise resident models come first.
 */
import { Elysia } from "elysia";
import { MlxkError } from "../../errors.ts";
import type { ModelObject } from "../../schemas/openai.ts";
import type { RouteContext } from "../context.ts";
import { targetFacts } from "../model-facts.ts";
import type { ModelTarget } from "../model-manager.ts";

/** Served names first (aliases, then the pinned id), then resident models, then the rest alphabetically, each id once. */
export function servableModels(ctx: RouteContext): ModelObject[] {
  const m = ctx.manager;
  const all = ctx.listModels();
  const byId = new Map(all.map((o) => [o.id, o]));
  const out: ModelObject[] = [];
  const seen = new Set<string>();
  const push = (id: string, base: ModelTarget | null) => {
    if (seen.has(id)) return;
    seen.add(id);
    const known = base ? byId.get(base.id) : byId.get(id);
    if (known) return void out.push({ ...known, id });
    // not a cache entry (a GGUF file or a dir given by path): file time and the GGUF header's context length
    const facts = base ? targetFacts(base) : { created: 0, contextLength: null };
    out.push({ id, object: "model", created: facts.created, owned_by: "local", context_length: facts.contextLength });
  };
  const pinned = m.pinned;
  if (pinned) for (const n of m.servedNames) push(n, pinned);
  if (!m.switchAllowed) return out;
  for (const t of m.resident) push(t.id, t);
  for (const o of [...all].sort((a, b) => a.id.localeCompare(b.id))) push(o.id, null);
  return out;
}

export function modelRoutes(ctx: RouteContext) {
  return new Elysia({ name: "models" })
    .get("/v1/models", () => {
      const device = ctx.runtime().device;
      return Response.json({ object: "list", data: servableModels(ctx), ...(device ? { device } : {}) });
    })
    .get("/v1/models/*", ({ params }) => {
      let id: string;
      try {
        id = decodeURIComponent(params["*"]);
      } catch {
        id = params["*"];
      }
      const hit = servableModels(ctx).find((m) => m.id === id);
      if (!hit) throw new MlxkError("model_not_found", `The model '${id}' does not exist or is not runnable`, { extra: { param: "model", code: "model_not_found" } });
      return Response.json(hit);
    });
}

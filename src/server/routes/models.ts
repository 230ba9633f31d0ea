/** GET /v1/models and GET /v1/models/{id}: the runnable models, ids as `org/name` (so `{id}` contains '/'). */
import { Elysia } from "elysia";
import { MlxkError } from "../../errors.ts";
import type { ModelObject } from "../../schemas/openai.ts";
import type { RouteContext } from "../context.ts";
import { targetFacts } from "../model-facts.ts";

/** The loaded model first (it answers fastest), then the rest alphabetically, each id once. */
function ordered(ctx: RouteContext): ModelObject[] {
  const all = ctx.listModels();
  const loaded = ctx.manager.loaded;
  const first = loaded ? all.filter((m) => m.id === loaded.id) : [];
  const rest = all.filter((m) => m.id !== loaded?.id).sort((a, b) => a.id.localeCompare(b.id));
  if (loaded && first.length === 0) {
    const facts = targetFacts(loaded);
    first.push({ id: loaded.id, object: "model", created: facts.created, owned_by: "local", context_length: facts.contextLength });
  }
  return [...first, ...rest];
}

export function modelRoutes(ctx: RouteContext) {
  return new Elysia({ name: "models" })
    .get("/v1/models", () => Response.json({ object: "list", data: ordered(ctx) }))
    .get("/v1/models/*", ({ params }) => {
      let id: string;
      try {
        id = decodeURIComponent(params["*"]);
      } catch {
        id = params["*"];
      }
      const hit = ordered(ctx).find((m) => m.id === id);
      if (!hit) throw new MlxkError("model_not_found", `The model '${id}' does not exist or is not runnable`, { extra: { param: "model", code: "model_not_found" } });
      return Response.json(hit);
    });
}

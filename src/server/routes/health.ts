/** GET /health: 200 when ready, 503 while a model loads (load balancers and scripts wait on it). */
import { Elysia } from "elysia";
import type { RouteContext } from "../context.ts";

export function healthRoutes(ctx: RouteContext) {
  return new Elysia({ name: "health" }).get("/health", () => {
    const loading = ctx.manager.loading;
    if (loading !== null) {
      return Response.json(
        { status: "loading", model: loading, error: { message: `Loading model '${loading}'`, type: "overloaded_error", param: null, code: "model_loading" } },
        { status: 503, headers: { "retry-after": "1" } },
      );
    }
    return Response.json({ status: "ok", model: ctx.manager.loaded?.id ?? null, queue: { active: ctx.manager.queue.active, waiting: ctx.manager.queue.pending } });
  });
}

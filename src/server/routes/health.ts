/**
 * GET /health: 200 only when a request could be served now. 503 while the served model loads, after it
 * failed to load, when the backend is poisoned, when MLX cannot run here, or when there is no model to
 * serve at all (load balancers and scripts wait on it).
 */
import { Elysia } from "elysia";
import type { RouteContext } from "../context.ts";

/** The cache scan behind "is there any model to serve" is not free: reuse it for a few seconds. */
const LIST_TTL_MS = 5000;

export function healthRoutes(ctx: RouteContext) {
  let listed: { at: number; count: number } | null = null;
  const runnableCount = () => {
    const now = Date.now();
    if (!listed || now - listed.at > LIST_TTL_MS) listed = { at: now, count: ctx.listModels().length };
    return listed.count;
  };
  const unhealthy = (status: string, code: string, message: string, extra: Record<string, unknown> = {}) =>
    Response.json({ status, ...extra, error: { message, type: "overloaded_error", param: null, code } }, { status: 503, headers: { "retry-after": "1" } });

  return new Elysia({ name: "health" }).get("/health", () => {
    const m = ctx.manager;
    const st = m.status();
    const models = st.resident.map((r) => ({ id: r.id, state: "ready" }));
    if (st.loading) models.push({ id: st.loading, state: "loading" });
    const body = { model: st.pinned?.id ?? m.loaded?.id ?? null, models, queue: { active: m.queue.active, waiting: m.queue.pending } };
    const rt = ctx.runtime();
    if (!rt.available) return unhealthy("unavailable", "mlx_unavailable", `MLX is not available on this machine: ${rt.reason ?? "unknown reason"}`, body);
    if (st.poisoned) return unhealthy("failed", "backend_failed", `The inference backend is failing: ${st.poisoned}`, body);
    if (st.pinned) {
      if (st.pinned.state === "failed") return unhealthy("failed", "model_load_failed", `Model '${st.pinned.id}' failed to load: ${st.pinned.error}`, body);
      if (st.pinned.state !== "ready") return unhealthy("loading", "model_loading", `Loading model '${st.pinned.id}'`, body);
      return Response.json({ status: "ok", ...body });
    }
    if (st.resident.length > 0) return Response.json({ status: "ok", ...body });
    if (st.loading) return unhealthy("loading", "model_loading", `Loading model '${st.loading}'`, body);
    if (runnableCount() === 0) return unhealthy("no_models", "no_models", "No runnable model in the cache or workspaces: pull one (mlxk pull <org/name>) or start with --model", body);
    return Response.json({ status: "ok", ...body });
  });
}

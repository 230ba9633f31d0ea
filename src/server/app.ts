/**
 * The HTTP layer: `createApp(deps)` wires the route families to a model manager and settings, so tests run it
 * through `app.handle(new Request(...))` with a temp cache and a real engine, without a port.
 * Cross-cutting rules live here: API key, CORS, request ids, and the one error mapping to the OpenAI envelope.
 */
import { timingSafeEqual } from "node:crypto";
import { Elysia } from "elysia";
import { MlxkError } from "../errors.ts";
import { CLI_VERSION } from "../version.ts";
import { type AppDeps, DEFAULT_MAX_BODY_BYTES, type RouteContext } from "./context.ts";
import { errorResponse } from "./errors.ts";
import { chatRoutes } from "./routes/chat.ts";
import { completionRoutes } from "./routes/completions.ts";
import { healthRoutes } from "./routes/health.ts";
import { modelRoutes } from "./routes/models.ts";

function keyMatches(header: string | null, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m) return false;
  const a = Buffer.from(m[1]!.trim());
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

function corsHeaders(origin: string | null, allowed: readonly string[]): Record<string, string> {
  if (!origin || allowed.length === 0) return {};
  if (allowed.includes("*")) return { "access-control-allow-origin": "*" };
  return allowed.includes(origin) ? { "access-control-allow-origin": origin, vary: "Origin" } : {};
}

export function createApp(deps: AppDeps) {
  const ctx: RouteContext = {
    manager: deps.manager,
    listModels: deps.listModels,
    maxBodyBytes: deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    maxTokens: deps.maxTokens,
    maxTokensCap: deps.maxTokensCap,
    requestTimeoutMs: deps.requestTimeoutMs,
    shutdown: deps.shutdown,
    log: deps.log ?? (() => {}),
    fingerprint: `fp_mlxk_${CLI_VERSION.replace(/\W/g, "")}`,
  };
  const cors = deps.cors ?? [];
  return new Elysia()
    .onRequest(({ request, set }) => {
      const requestId = crypto.randomUUID();
      const allow = corsHeaders(request.headers.get("origin"), cors);
      Object.assign(set.headers, { "x-request-id": requestId }, allow);
      const path = new URL(request.url).pathname;
      if (request.method === "OPTIONS") {
        if (!allow["access-control-allow-origin"]) return new Response(null, { status: 204 });
        return new Response(null, {
          status: 204,
          headers: {
            ...allow,
            "access-control-allow-methods": "GET, POST, OPTIONS",
            "access-control-allow-headers": request.headers.get("access-control-request-headers") ?? "authorization, content-type",
            "access-control-max-age": "600",
          },
        });
      }
      if (deps.apiKey && path !== "/health" && !keyMatches(request.headers.get("authorization"), deps.apiKey)) {
        const missing = !request.headers.get("authorization");
        const err = new MlxkError("unauthorized", missing ? "Missing API key: send 'Authorization: Bearer <key>'" : "Invalid API key", {
          extra: { code: "invalid_api_key" },
        });
        return errorResponse(err, { ...allow, "x-request-id": requestId });
      }
    })
    .onError(({ code, error, request }) => {
      if (code === "NOT_FOUND") {
        const path = new URL(request.url).pathname;
        return errorResponse(new MlxkError("model_not_found", `Unknown endpoint: ${request.method} ${path}`, { extra: { code: "unknown_url" } }));
      }
      if (code === "PARSE" || code === "VALIDATION") {
        return errorResponse(new MlxkError("validation_error", `Invalid request: ${(error as Error).message}`, { extra: { code: "invalid_request" } }));
      }
      const res = errorResponse(error);
      if (res.status >= 500) ctx.log("error", "request failed", { status: res.status, message: (error as Error)?.message });
      return res;
    })
    .use(healthRoutes(ctx))
    .use(modelRoutes(ctx))
    .use(chatRoutes(ctx))
    .use(completionRoutes(ctx));
}

export type App = ReturnType<typeof createApp>;

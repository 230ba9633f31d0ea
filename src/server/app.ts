/**
 * The HTTP layer: `createApp(deps)` wires the route families to a model manager and settings, so tests run it
 * through `app.handle(new Request(...))` with a temp cache and a real engine, without a port.
 * Cross-cutting rules live here: API key, CORS, request ids, and the error mapping to each surface's envelope
 * (OpenAI for /v1/*, Anthropic for /v1/messages, Ollama for /api/*).
 */
import { timingSafeEqual } from "node:crypto";
import { Elysia } from "elysia";
import { MlxkError } from "../errors.ts";
import { CLI_VERSION } from "../version.ts";
import { type AppDeps, DEFAULT_MAX_BODY_BYTES, type RouteContext } from "./context.ts";
import { errorResponse } from "./errors.ts";
import { chatRoutes } from "./routes/chat.ts";
import { completionRoutes } from "./routes/completions.ts";
import { ResidentEmbedder, embeddingRoutes } from "./routes/embeddings.ts";
import { healthRoutes } from "./routes/health.ts";
import { modelRoutes } from "./routes/models.ts";
import { anthropicErrorResponse } from "./anthropic/errors.ts";
import { anthropicRoutes } from "./anthropic/routes.ts";
import { ollamaErrorResponse } from "./ollama/errors.ts";
import { ollamaRoutes } from "./ollama/routes.ts";
import { responsesRoutes } from "./responses/routes.ts";

function sameKey(given: string, key: string): boolean {
  const a = Buffer.from(given.trim());
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** `Authorization: Bearer <key>` (OpenAI, Ollama clients) or `x-api-key: <key>` (Anthropic SDKs, Claude Code). */
function keyMatches(headers: Headers, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(headers.get("authorization") ?? "");
  if (m && sameKey(m[1]!, key)) return true;
  const x = headers.get("x-api-key");
  return x !== null && sameKey(x, key);
}

/** Each API surface answers errors in its own shape (src/server/<surface>/errors). */
function errorFor(path: string): (e: unknown, headers?: Record<string, string>) => Response {
  if (path.startsWith("/v1/messages")) return anthropicErrorResponse;
  if (path.startsWith("/api/")) return ollamaErrorResponse;
  return errorResponse;
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
    runtime: deps.runtime ?? (() => ({ available: true })),
    manage: deps.manage,
    fingerprint: `fp_mlxk_${CLI_VERSION.replace(/\W/g, "")}`,
  };
  const cors = deps.cors ?? [];
  const embedder = new ResidentEmbedder(deps.openEmbedder ?? (async (spec) => (await import("../embed/open.ts")).openEmbedder(spec)));
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
            "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
            "access-control-allow-headers": request.headers.get("access-control-request-headers") ?? "authorization, content-type, x-api-key, anthropic-version",
            "access-control-max-age": "600",
          },
        });
      }
      if (deps.apiKey && path !== "/health" && !keyMatches(request.headers, deps.apiKey)) {
        const missing = !request.headers.get("authorization") && !request.headers.get("x-api-key");
        const err = new MlxkError("unauthorized", missing ? "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'" : "Invalid API key", {
          extra: { code: "invalid_api_key" },
        });
        return errorFor(path)(err, { ...allow, "x-request-id": requestId });
      }
    })
    .onError(({ code, error, request }) => {
      const path = new URL(request.url).pathname;
      const respond = errorFor(path);
      if (code === "NOT_FOUND") {
        return respond(new MlxkError("model_not_found", `Unknown endpoint: ${request.method} ${path}`, { extra: { code: "unknown_url" } }));
      }
      if (code === "PARSE" || code === "VALIDATION") {
        return respond(new MlxkError("validation_error", `Invalid request: ${(error as Error).message}`, { extra: { code: "invalid_request" } }));
      }
      const res = respond(error);
      if (res.status >= 500) ctx.log("error", "request failed", { status: res.status, message: (error as Error)?.message });
      return res;
    })
    .use(healthRoutes(ctx))
    .use(modelRoutes(ctx))
    .use(chatRoutes(ctx))
    .use(completionRoutes(ctx))
    .use(responsesRoutes(ctx))
    .use(anthropicRoutes(ctx))
    .use(ollamaRoutes(ctx, embedder))
    .use(embeddingRoutes(ctx, embedder));
}

export type App = ReturnType<typeof createApp>;

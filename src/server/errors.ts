/**
 * Every failure leaves the server as the OpenAI error object `{"error":{message,type,param,code}}`
 * (openai-node reads exactly these keys). Deterministic failures carry `x-should-retry: false` so SDKs
 * do not re-send a request that can only fail again; a full queue says when to come back.
 */
import * as v from "valibot";
import { MlxkError, toMlxkError } from "../errors.ts";
import type { ErrorBody } from "../schemas/openai.ts";

/** Seconds a client should wait before retrying when the queue is full. */
export const QUEUE_RETRY_AFTER_S = 1;

function openAIType(status: number): string {
  if (status === 400 || status === 413 || status === 422) return "invalid_request_error";
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 503) return "overloaded_error";
  if (status === 504) return "timeout_error";
  return "server_error";
}

/** Retrying helps only when the cause is temporary: a busy or shutting-down server. */
function retryable(err: MlxkError): boolean {
  return err.retryable || err.type === "queue_full" || err.type === "server_shutdown";
}

export interface HttpError {
  status: number;
  body: ErrorBody;
  headers: Record<string, string>;
}

/**
 * A model the client named that cannot run here (unhealthy files, an architecture or GGUF we do not support)
 * is the request's problem, fixed by naming another model: 400 with `param: "model"`, not a 5xx that SDKs retry.
 */
function isModelProblem(err: MlxkError): boolean {
  return err.type === "unsupported_model" || err.extra.code === "model_unhealthy";
}

export function toHttpError(e: unknown): HttpError {
  const err = toMlxkError(e);
  const modelProblem = isModelProblem(err);
  const status = modelProblem ? 400 : err.httpStatus;
  const param = typeof err.extra.param === "string" ? err.extra.param : modelProblem ? "model" : null;
  const code = typeof err.extra.code === "string" ? err.extra.code : err.type === "unsupported_model" ? "model_not_supported" : err.type;
  const headers: Record<string, string> = { "x-should-retry": retryable(err) ? "true" : "false" };
  if (err.type === "queue_full") headers["retry-after"] = String(QUEUE_RETRY_AFTER_S);
  // Internal errors keep their message (it is ours, not a stack) so users can report it.
  return { status, body: { error: { message: err.message, type: openAIType(status), param, code } }, headers };
}

export function errorResponse(e: unknown, extraHeaders: Record<string, string> = {}): Response {
  const h = toHttpError(e);
  return Response.json(h.body, { status: h.status, headers: { ...h.headers, ...extraHeaders } });
}

/** `messages[0].content[1].type` from a valibot issue path. */
export function issuePath(issue: v.BaseIssue<unknown>): string {
  let out = "";
  for (const item of issue.path ?? []) {
    const key = (item as { key?: unknown }).key;
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** Validate a request body; the first issue becomes a 400 whose message and `param` name the field. */
export function parseBody<T extends v.GenericSchema>(schema: T, body: unknown): v.InferOutput<T> {
  const r = v.safeParse(schema, body);
  if (r.success) return r.output;
  const issue = r.issues[0];
  const path = issuePath(issue);
  const missing = issue.input === undefined && path !== "";
  const message = missing ? `Missing required parameter '${path}'` : `Invalid parameter '${path || "body"}': ${issue.message}`;
  throw new MlxkError("validation_error", message, { extra: { param: path || null, code: missing ? "missing_required_parameter" : "invalid_value" } });
}

export function badRequest(message: string, param: string | null, code = "unsupported_parameter"): MlxkError {
  return new MlxkError("validation_error", message, { extra: { param, code } });
}

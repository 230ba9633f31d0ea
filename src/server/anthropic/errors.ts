/** Anthropic's error shape `{"type":"error","error":{"type","message"}}`, with Anthropic's error type names. */
import { toMlxkError } from "../../errors.ts";
import { toHttpError } from "../errors.ts";

function anthropicType(status: number): string {
  if (status === 400 || status === 422) return "invalid_request_error";
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 413) return "request_too_large";
  if (status === 429) return "rate_limit_error";
  if (status === 503) return "overloaded_error";
  return "api_error";
}

export function toAnthropicError(e: unknown): { status: number; body: { type: "error"; error: { type: string; message: string } }; headers: Record<string, string> } {
  const h = toHttpError(e);
  const err = toMlxkError(e);
  return { status: h.status, body: { type: "error", error: { type: anthropicType(h.status), message: err.message } }, headers: h.headers };
}

export function anthropicErrorResponse(e: unknown, extraHeaders: Record<string, string> = {}): Response {
  const a = toAnthropicError(e);
  return Response.json(a.body, { status: a.status, headers: { ...a.headers, ...extraHeaders } });
}

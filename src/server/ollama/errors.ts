/** Ollama's error shape: `{"error": "<message>"}` with the HTTP status (also as an NDJSON line mid-stream). */
import { toMlxkError } from "../../errors.ts";
import { toHttpError } from "../errors.ts";

export function ollamaErrorBody(e: unknown): { error: string } {
  return { error: toMlxkError(e).message };
}

export function ollamaErrorResponse(e: unknown, extraHeaders: Record<string, string> = {}): Response {
  const h = toHttpError(e);
  return Response.json(ollamaErrorBody(e), { status: h.status, headers: { ...h.headers, ...extraHeaders } });
}

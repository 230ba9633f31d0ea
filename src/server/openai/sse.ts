/**
 * Server-sent events as OpenAI streams them: `data: <json>\n\n` frames, `data: [DONE]\n\n` at the end.
 * A client that goes away cancels the stream: generation stops at the next token and the queue slot frees.
 */
import { toHttpError } from "../errors.ts";
import { readNamedSse, streamResponse } from "../stream.ts";

const enc = new TextEncoder();

export function sseFrame(data: unknown): Uint8Array {
  return enc.encode(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
}

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  connection: "keep-alive",
  "x-accel-buffering": "no",
} as const;

/**
 * Stream `gen` as OpenAI SSE (see src/server/stream.ts): a failure after the first byte goes out as a
 * `data: {"error": …}` frame (openai-node raises it as APIError) and the stream closes without [DONE].
 */
export function sseResponse(
  gen: AsyncGenerator<unknown, void, undefined>,
  opts: { headers?: Record<string, string>; onCancel?: () => void; onClose?: (error?: unknown) => void } = {},
): Response {
  return streamResponse(gen, { contentType: SSE_HEADERS["content-type"], frame: sseFrame, end: sseFrame("[DONE]"), error: (e) => sseFrame(toHttpError(e).body) }, opts);
}

/** Parse an SSE body into its `data:` payloads (for tests and the benchmark). */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  for await (const e of readNamedSse(body)) yield e.data;
}

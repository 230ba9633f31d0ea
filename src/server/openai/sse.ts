/**
 * Server-sent events as OpenAI streams them: `data: <json>\n\n` frames, `data: [DONE]\n\n` at the end.
 * The body pulls from an async generator; a client that goes away cancels the stream, which returns
 * the generator (running its `finally`), so generation stops at the next token and the queue slot frees.
 */
import { toHttpError } from "../errors.ts";

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
 * Stream `gen` as SSE. A failure after the first byte cannot change the status any more, so it goes out
 * as a `data: {"error": …}` frame (openai-node raises it as APIError) and the stream closes without [DONE].
 */
export function sseResponse(
  gen: AsyncGenerator<unknown, void, undefined>,
  opts: { headers?: Record<string, string>; onCancel?: () => void; onClose?: () => void } = {},
): Response {
  let finished = false;
  let cancelled = false;
  // A generator cancelled before its first pull never runs its `finally`, so cleanup lives here;
  // onClose runs only once the generator has really stopped (the engine is free again).
  const finish = () => {
    if (finished) return;
    finished = true;
    opts.onClose?.();
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (finished) return;
      try {
        const r = await gen.next();
        if (cancelled) return;
        if (r.done) {
          finish();
          controller.enqueue(sseFrame("[DONE]"));
          controller.close();
          return;
        }
        controller.enqueue(sseFrame(r.value));
      } catch (e) {
        finish();
        if (cancelled) return;
        controller.enqueue(sseFrame(toHttpError(e).body));
        controller.close();
      }
    },
    async cancel() {
      if (finished) return;
      cancelled = true;
      opts.onCancel?.();
      try {
        await gen.return(undefined);
      } finally {
        finish();
      }
    },
  });
  return new Response(body, { status: 200, headers: { ...SSE_HEADERS, ...opts.headers } });
}

/** Parse an SSE body into its `data:` payloads (for tests and the benchmark). */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of body) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = frame
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (data !== "") yield data;
    }
  }
}

/**
 * Server-sent events as OpenAI streams them: `data: <json>\n\n` frames, `data: [DONE]\n\n` at the end.
 * A client that goes away cancels the stream: generation stops at the next token and the queue slot frees.
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
 * Stream `gen` as SSE. Generation is pushed, not pulled: it runs at engine speed into the stream's buffer,
 * so a slow reader never holds the model (and the queue) longer than the generation itself takes.
 * A failure after the first byte cannot change the status any more, so it goes out as a
 * `data: {"error": …}` frame (openai-node raises it as APIError) and the stream closes without [DONE].
 * `onCancel` runs when the client goes away; `onClose` once the generator has really stopped.
 */
export function sseResponse(
  gen: AsyncGenerator<unknown, void, undefined>,
  opts: { headers?: Record<string, string>; onCancel?: () => void; onClose?: () => void } = {},
): Response {
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      void (async () => {
        try {
          for (;;) {
            const r = await gen.next();
            if (cancelled) break;
            if (r.done) {
              controller.enqueue(sseFrame("[DONE]"));
              controller.close();
              break;
            }
            controller.enqueue(sseFrame(r.value));
          }
        } catch (e) {
          if (!cancelled) {
            try {
              controller.enqueue(sseFrame(toHttpError(e).body));
              controller.close();
            } catch {
              // the stream is already gone; nothing left to tell the client
            }
          }
        } finally {
          // runs the generator's own cleanup (engine stop) before the model is handed on
          await gen.return(undefined).catch(() => undefined);
          opts.onClose?.();
        }
      })();
    },
    cancel() {
      cancelled = true;
      opts.onCancel?.();
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

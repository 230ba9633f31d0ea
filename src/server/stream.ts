/**
 * One streaming body for every surface (OpenAI SSE, named-event SSE of Responses/Anthropic, Ollama NDJSON).
 * Generation is pushed, not pulled: it runs at engine speed into the stream's buffer, so a slow reader never
 * holds the model (and the queue) longer than the generation itself takes. A failure after the first byte
 * cannot change the status any more, so it goes out as the surface's error frame and the stream closes.
 * `onCancel` runs when the client goes away; `onClose` once the generator has really stopped.
 */
export interface StreamFormat {
  contentType: string;
  frame: (value: unknown) => Uint8Array;
  /** Written after the last value (OpenAI's `[DONE]`); none when the surface ends with its own event. */
  end?: Uint8Array;
  error: (e: unknown) => Uint8Array;
}

export function streamResponse(
  gen: AsyncGenerator<unknown, void, undefined>,
  format: StreamFormat,
  opts: { headers?: Record<string, string>; onCancel?: () => void; onClose?: (error?: unknown) => void } = {},
): Response {
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      void (async () => {
        let failure: unknown;
        try {
          for (;;) {
            const r = await gen.next();
            if (cancelled) break;
            if (r.done) {
              if (format.end) controller.enqueue(format.end);
              controller.close();
              break;
            }
            controller.enqueue(format.frame(r.value));
          }
        } catch (e) {
          failure = e;
          if (!cancelled) {
            try {
              controller.enqueue(format.error(e));
              controller.close();
            } catch {
              // the stream is already gone; nothing left to tell the client
            }
          }
        } finally {
          // runs the generator's own cleanup (engine stop) before the model is handed on
          await gen.return(undefined).catch(() => undefined);
          opts.onClose?.(failure);
        }
      })();
    },
    cancel() {
      cancelled = true;
      opts.onCancel?.();
    },
  });
  return new Response(body, {
    status: 200,
    headers: { "content-type": format.contentType, "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no", ...opts.headers },
  });
}

const enc = new TextEncoder();

/** `event: <type>\ndata: <json>\n\n`: the SSE dialect of Responses and Anthropic (each payload carries its `type`). */
export function namedEventFrame(value: unknown): Uint8Array {
  const type = (value as { type?: unknown }).type;
  return enc.encode(`event: ${String(type)}\ndata: ${JSON.stringify(value)}\n\n`);
}

export function ndjsonFrame(value: unknown): Uint8Array {
  return enc.encode(`${JSON.stringify(value)}\n`);
}

/** Parse a named-event SSE body into `{event, data}` (tests and the benchmark). */
export async function* readNamedSse(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string | null; data: string }> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of body) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event: string | null = null;
      const data: string[] = [];
      for (const l of frame.split("\n")) {
        if (l.startsWith("event:")) event = l.slice(6).trim();
        else if (l.startsWith("data:")) data.push(l.slice(5).trimStart());
      }
      if (data.length > 0) yield { event, data: data.join("\n") };
    }
  }
}

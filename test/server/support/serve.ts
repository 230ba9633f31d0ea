/** Serve an app on a real loopback port (for the official SDKs), recording each request's method, path and body. */
import type { createApp } from "../../../src/server/app.ts";

export interface Served {
  url: string;
  requests: { method: string; path: string; body: unknown; headers: Record<string, string> }[];
  stop: () => void;
}

export function serve(app: ReturnType<typeof createApp>): Served {
  const requests: Served["requests"] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch: async (r) => {
      const text = r.method === "POST" ? await r.clone().text() : "";
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        // keep the raw text
      }
      requests.push({ method: r.method, path: new URL(r.url).pathname, body, headers: Object.fromEntries(r.headers) });
      return app.handle(r);
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, requests, stop: () => server.stop(true) };
}

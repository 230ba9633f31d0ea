/** Build an app around injected engines, and small request helpers over app.handle (no port). */
import * as v from "valibot";
import type { Engine } from "../../../src/engine/types.ts";
import { MlxkError } from "../../../src/errors.ts";
import { createApp } from "../../../src/server/app.ts";
import type { AppDeps } from "../../../src/server/context.ts";
import { ModelManager, type ModelTarget } from "../../../src/server/model-manager.ts";
import { readSse } from "../../../src/server/openai/sse.ts";

export interface TestApp {
  app: ReturnType<typeof createApp>;
  manager: ModelManager;
  loads: string[];
}

/** `engines` maps a model id to a factory; any other model name is a 404 like an uncached one. */
export function makeApp(
  engines: Record<string, () => Engine | Promise<Engine>>,
  opts: Partial<Omit<AppDeps, "manager" | "listModels">> & { maxQueue?: number; freeMemory?: number; weightBytes?: number } = {},
): TestApp {
  const loads: string[] = [];
  const resolve = (spec: string): ModelTarget => {
    if (!(spec in engines)) throw new MlxkError("model_not_found", `No model found matching '${spec}'`);
    return { id: spec, kind: "dir", path: `/models/${spec}`, hash: null, detection: null, weightBytes: opts.weightBytes ?? 1000, contextLength: 4096 };
  };
  const manager = new ModelManager({
    resolve,
    load: async (t) => {
      loads.push(t.id);
      return await engines[t.id]!();
    },
    freeMemory: () => opts.freeMemory ?? 1e12,
    maxQueue: opts.maxQueue,
  });
  const listModels = () =>
    Object.keys(engines).map((id) => ({ id, object: "model" as const, created: 1700000000, owned_by: id.split("/")[0] ?? "local", context_length: 4096 }));
  const app = createApp({ manager, listModels, ...opts });
  return { app, manager, loads };
}

export function post(app: TestApp["app"], path: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return app.handle(
    new Request(`http://localhost${path}`, {
      method: "POST",
      body: typeof body === "string" ? body : JSON.stringify(body),
      headers: { "content-type": "application/json", ...headers },
      signal,
    }),
  );
}

export function get(app: TestApp["app"], path: string, headers: Record<string, string> = {}): Promise<Response> {
  return app.handle(new Request(`http://localhost${path}`, { headers }));
}

/** All `data:` payloads of an SSE response, JSON-parsed except the final `[DONE]`. */
export async function sseEvents(res: Response): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const d of readSse(res.body!)) out.push(d === "[DONE]" ? d : JSON.parse(d));
  return out;
}

export function check<T extends v.GenericSchema>(schema: T, value: unknown): v.InferOutput<T> {
  const r = v.safeParse(schema, value);
  if (!r.success) throw new Error(`schema mismatch: ${JSON.stringify(r.issues.map((i) => ({ path: i.path?.map((p) => p.key), msg: i.message })))} in ${JSON.stringify(value)}`);
  return r.output;
}

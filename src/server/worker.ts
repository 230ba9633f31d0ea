/**
 * The server worker: binds the port, serves the app, preloads the model, and drains on SIGTERM/SIGINT.
 * It runs only under the supervisor (src/server/supervisor.ts) and exits when the supervisor goes away
 * (IPC disconnect, or its parent pid changing), so a killed supervisor never leaves an orphan holding the port.
 */
import * as v from "valibot";
import { type Env, serverWorkerConfig } from "../env.ts";
import { defaultPromptCacheBytes } from "../engine/open.ts";
import { MlxkError } from "../errors.ts";
import { deviceFreeMemory } from "../mlx/backend.ts";
import { createApp } from "./app.ts";
import { makeLogger } from "./log.ts";
import { ModelManager, type ModelTarget } from "./model-manager.ts";
import { cacheManagement, listRunnable, loadTarget, refusePath, resolveTarget, runtimeStatus } from "./models-source.ts";
import { removeEntry, writeEntry } from "./registry.ts";

export const WorkerConfigSchema = v.strictObject({
  host: v.string(),
  port: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535)),
  model: v.nullable(v.string()),
  maxTokens: v.nullable(v.number()),
  apiKey: v.nullable(v.string()),
  cors: v.array(v.string()),
  logJson: v.boolean(),
  maxQueue: v.optional(v.number()),
  /** Bytes for the prompt cache; 0 or absent = off. */
  promptCacheBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  /** Names clients may use for `model` (--served-model-name); the first is reported. */
  servedNames: v.optional(v.array(v.string()), []),
  allowSwitch: v.optional(v.boolean(), false),
  allowPaths: v.optional(v.boolean(), false),
  allowManage: v.optional(v.boolean(), false),
  maxModels: v.optional(v.nullable(v.number()), null),
  /** Idle TTL of models other than the pinned one; null = never. */
  keepAliveMs: v.optional(v.nullable(v.number()), null),
  maxTokensCap: v.optional(v.nullable(v.number())),
  requestTimeoutS: v.optional(v.nullable(v.number())),
  /** When the supervisor started (ISO): the uptime `mlxk ps` shows survives worker restarts. */
  startedAt: v.optional(v.string()),
});
export type WorkerConfig = v.InferOutput<typeof WorkerConfigSchema>;

/** Exit code for failures a restart cannot fix (port taken, model will not load): the supervisor gives up. */
export const EXIT_STARTUP_FAILED = 78;
/** Exit code when the backend fails every request (a poisoned device): the supervisor restarts the worker. */
export const EXIT_BACKEND_POISONED = 70;
/** Time the worker gives running requests when asked to stop; the supervisor kills at 5 s. */
const DRAIN_MS = 4000;

export type WorkerMessage =
  | { type: "ready"; host: string; port: number; model: string | null; pid: number }
  | { type: "loaded"; model: string }
  | { type: "fatal"; message: string };

function send(msg: WorkerMessage): void {
  process.send?.(msg);
}

export async function runWorker(config: WorkerConfig, env: Env = process.env): Promise<void> {
  const log = makeLogger({ json: config.logJson });
  // the operator's own --model may be any path; only client-sent names are restricted
  let pinned: ModelTarget | undefined;
  try {
    pinned = config.model ? resolveTarget(config.model, { env, allowPaths: true }) : undefined;
  } catch (e) {
    const message = `Model '${config.model}' cannot be served: ${e instanceof Error ? e.message : String(e)}`;
    log("error", message);
    send({ type: "fatal", message });
    process.exit(EXIT_STARTUP_FAILED);
  }
  const manager = new ModelManager({
    resolve: (spec) => resolveTarget(spec, { env, allowPaths: config.allowPaths }),
    load: (t) => loadTarget(t, { env, promptCacheBytes: config.promptCacheBytes ?? defaultPromptCacheBytes(deviceFreeMemory(env)) }),
    // the device's free memory (GPU memory on CUDA), not only the host's
    freeMemory: () => deviceFreeMemory(env),
    maxQueue: config.maxQueue,
    pinned,
    aliases: config.servedNames,
    allowSwitch: config.allowSwitch,
    maxModels: config.maxModels ?? undefined,
    keepAliveMs: config.keepAliveMs,
    onPoisoned: (why) => {
      log("error", `exiting so the supervisor restarts the worker: ${why}`);
      // let the failing response go out first
      setTimeout(() => process.exit(EXIT_BACKEND_POISONED), 200).unref();
    },
  });
  const shutdown = new AbortController();
  const app = createApp({
    manager,
    maxTokensCap: config.maxTokensCap ?? undefined,
    requestTimeoutMs: config.requestTimeoutS ? config.requestTimeoutS * 1000 : undefined,
    shutdown: shutdown.signal,
    listModels: () => listRunnable({ env }),
    runtime: () => runtimeStatus(env),
    manage: config.allowManage ? cacheManagement(env) : undefined,
    openEmbedder: async (spec) => {
      // embedders follow the same rule as generators: names only, paths with --allow-paths
      if (!config.allowPaths) refusePath(spec);
      return (await import("../embed/open.ts")).openEmbedder(spec, { env });
    },
    apiKey: config.apiKey ?? undefined,
    cors: config.cors,
    maxTokens: config.maxTokens ?? undefined,
    log,
  });

  // the registry entry (`mlxk ps`) is keyed by the supervisor, the process users signal
  const supervisorPid = process.ppid;
  let requests = 0;
  let registryTimer: ReturnType<typeof setTimeout> | null = null;
  let publish = (): void => {};
  const countRequest = () => {
    requests++;
    registryTimer ??= setTimeout(() => {
      registryTimer = null;
      publish();
    }, 250);
  };

  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: config.host,
      port: config.port,
      // generation can be silent for minutes (non-streamed answers): never drop an idle connection
      idleTimeout: 0,
      fetch: async (req) => {
        const t0 = performance.now();
        const res = await app.handle(req);
        const url = new URL(req.url);
        if (url.pathname !== "/health") countRequest();
        log("info", `${req.method} ${url.pathname} ${res.status}`, { ms: Math.round(performance.now() - t0) });
        return res;
      },
    });
  } catch (e) {
    const message = `Cannot listen on ${config.host}:${config.port}: ${e instanceof Error ? e.message : String(e)}`;
    log("error", message);
    send({ type: "fatal", message });
    process.exit(EXIT_STARTUP_FAILED);
  }
  const port = server.port ?? config.port;
  const startedAt = config.startedAt ?? new Date().toISOString();
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  publish = () => {
    try {
      writeEntry(env, { pid: supervisorPid, worker_pid: process.pid, host: config.host, port, url, model: manager.loaded?.id ?? config.model, started_at: startedAt, requests });
    } catch {
      // an unwritable state dir only hides this server from `mlxk ps`
    }
  };
  publish();
  send({ type: "ready", host: config.host, port, model: config.model, pid: process.pid });

  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) process.exit(130); // second signal: no more waiting
    stopping = true;
    log("info", `stopping (${why})`);
    void server.stop(false); // no new connections; running ones may finish
    manager.close();
    const deadline = Date.now() + DRAIN_MS;
    while (manager.queue.active && Date.now() < deadline) await Bun.sleep(20);
    // what still runs is cut off with an error frame / 503, not a silently closed socket
    shutdown.abort();
    const flushBy = Date.now() + 500;
    while (manager.queue.active && Date.now() < flushBy) await Bun.sleep(10);
    void server.stop(true);
    manager.dispose();
    if (registryTimer) clearTimeout(registryTimer);
    removeEntry(env, supervisorPid);
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("disconnect", () => void stop("supervisor gone"));
  const ppid = process.ppid;
  setInterval(() => {
    if (process.ppid !== ppid) void stop("supervisor gone");
  }, 500).unref();

  if (config.model) {
    try {
      const t = await manager.preload(pinned!);
      log("info", "model loaded", { model: t.id });
      publish();
      send({ type: "loaded", model: t.id });
    } catch (e) {
      const message = `Model '${config.model}' failed to load: ${e instanceof Error ? e.message : String(e)}`;
      log("error", message);
      send({ type: "fatal", message });
      process.exit(EXIT_STARTUP_FAILED);
    }
  }
}

/** Entry when started by the supervisor: settings come from MLXK_SERVER_WORKER. */
export async function workerMain(env: Env = process.env): Promise<void> {
  const raw = serverWorkerConfig(env);
  if (!raw) throw new MlxkError("InternalError", "The server worker must be started by 'mlxk server'");
  await runWorker(v.parse(WorkerConfigSchema, JSON.parse(raw)), env);
}

if (import.meta.main) await workerMain();

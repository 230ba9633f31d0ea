/**
 * The supervisor: runs the server worker as a child process, restarts it when it dies (bounded backoff),
 * and owns shutdown: the first SIGINT/SIGTERM asks the worker to drain and kills it after 5 s, a second
 * kills it at once. The worker runs in its own process group (a terminal Ctrl-C reaches only us, so it
 * is counted once) and watches our IPC channel, so it dies with us even when we are SIGKILLed (mlx-knife #60).
 */
import { join } from "node:path";
import type { Env } from "../env.ts";
import { removeEntry } from "./registry.ts";
import { EXIT_STARTUP_FAILED, type WorkerConfig, type WorkerMessage } from "./worker.ts";

export interface SupervisorEvents {
  /** The first time the worker listens (startup line). */
  onReady: (info: Extract<WorkerMessage, { type: "ready" }>) => void;
  onLoaded?: (model: string) => void;
  /** The worker could not start (port taken, model failed to load); the supervisor then exits 1. */
  onFatal?: (message: string) => void;
  /** Supervisor's own notes (restarts, shutdown) for the log. */
  onNote?: (msg: string) => void;
}

export interface SupervisorOptions extends SupervisorEvents {
  config: WorkerConfig;
  env?: Env;
  /** Restarts allowed within `restartWindowMs` before giving up. @default 5 */
  maxRestarts?: number;
  /** @default 60000 */
  restartWindowMs?: number;
  /** Grace period after the first stop signal. @default 5000 */
  killAfterMs?: number;
}

/** True inside a `bun build --compile` executable, whose sources live in the virtual /$bunfs/. */
export function isCompiled(): boolean {
  return Bun.main.includes("$bunfs") || import.meta.path.includes("$bunfs");
}

/** How to start a worker: the compiled executable re-invokes itself (`server` + the worker env), else worker.ts. */
export function workerCommand(): string[] {
  return isCompiled() ? [process.execPath, "server"] : [process.execPath, join(import.meta.dir, "worker.ts")];
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

/** Run until shutdown; resolves with the process exit code. */
export function supervise(opts: SupervisorOptions): Promise<number> {
  const maxRestarts = opts.maxRestarts ?? 5;
  const windowMs = opts.restartWindowMs ?? 60_000;
  const killAfterMs = opts.killAfterMs ?? 5000;
  const note = opts.onNote ?? (() => {});
  let config = { ...opts.config, startedAt: opts.config.startedAt ?? new Date().toISOString() };
  const workerEnv = () => ({ ...(opts.env ?? process.env), MLXK_SERVER_WORKER: JSON.stringify(config) });

  return new Promise<number>((resolveExit) => {
    let child: ReturnType<typeof Bun.spawn> | null = null;
    let stopping = false;
    let readyOnce = false;
    let restarts: number[] = [];
    let killTimer: ReturnType<typeof setTimeout> | null = null;
    let restartTimer: ReturnType<typeof setTimeout> | null = null;

    const finish = (code: number) => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.off("SIGHUP", onSignal);
      clearInterval(parentWatch);
      removeEntry(opts.env ?? process.env, process.pid);
      if (killTimer) clearTimeout(killTimer);
      if (restartTimer) clearTimeout(restartTimer);
      resolveExit(code);
    };

    const start = () => {
      const proc = Bun.spawn(workerCommand(), {
        env: workerEnv(),
        stdio: ["ignore", "inherit", "inherit"],
        detached: true,
        serialization: "json",
        ipc(message: WorkerMessage) {
          if (message.type === "ready" && !readyOnce) {
            readyOnce = true;
            // a restarted worker must come back on the same port, even when port 0 picked it
            config = { ...config, port: message.port };
            opts.onReady(message);
          } else if (message.type === "ready") {
            note(`worker restarted (pid ${message.pid})`);
          } else if (message.type === "loaded") {
            opts.onLoaded?.(message.model);
          } else if (message.type === "fatal") {
            opts.onFatal?.(message.message);
          }
        },
      });
      child = proc;
      void proc.exited.then((code) => onExit(proc, code, proc.signalCode == null ? null : String(proc.signalCode)));
    };

    const onExit = (proc: ReturnType<typeof Bun.spawn>, code: number | null, signal: string | null) => {
      if (child !== proc) return;
      child = null;
      if (stopping) return finish(code === 0 || signal === "SIGKILL" || signal === "SIGTERM" ? 0 : (code ?? 1));
      if (code === EXIT_STARTUP_FAILED) return finish(1);
      const now = Date.now();
      restarts = restarts.filter((t) => now - t < windowMs);
      if (restarts.length >= maxRestarts) {
        note(`worker died ${restarts.length + 1} times within ${Math.round(windowMs / 1000)} s; giving up`);
        return finish(1);
      }
      const delay = BACKOFF_MS[Math.min(restarts.length, BACKOFF_MS.length - 1)]!;
      restarts.push(now);
      note(`worker exited (${signal ?? `code ${code}`}); restarting in ${delay} ms`);
      restartTimer = setTimeout(() => {
        restartTimer = null;
        if (!stopping) start();
      }, delay);
    };

    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) {
        note(`${sig} again: killing the worker now`);
        child?.kill("SIGKILL");
        if (!child) finish(0);
        return;
      }
      stopping = true;
      if (restartTimer) {
        clearTimeout(restartTimer);
        restartTimer = null;
      }
      if (!child) return finish(0);
      note(`${sig}: stopping (send again to kill at once)`);
      child.kill("SIGTERM");
      killTimer = setTimeout(() => child?.kill("SIGKILL"), killAfterMs);
    };

    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    // a closed terminal (SIGHUP) or a parent that died without passing its signal on (npx, a shell wrapper,
    // a process manager) must not leave the server running: we are reparented, and stop as if signalled
    process.on("SIGHUP", onSignal);
    const ppid = process.ppid;
    const parentWatch = setInterval(() => {
      if (process.ppid !== ppid && !stopping) {
        note("parent process exited: stopping");
        onSignal("SIGTERM");
      }
    }, 500);
    start();
  });
}

/**
 * The per-user registry of running servers behind `mlxk ps` / `mlxk stop`: one JSON file per server in
 * `$XDG_STATE_HOME/mlxk/servers/<supervisor pid>.json`, written by the worker (it knows the requests),
 * removed by the supervisor when it exits. Entries whose process is gone are pruned when read.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { type Env, stateDir } from "../env.ts";

export const ServerEntrySchema = v.object({
  /** The supervisor: the process to signal, the pid `server --json` reports. */
  pid: v.number(),
  worker_pid: v.number(),
  host: v.string(),
  port: v.number(),
  url: v.string(),
  model: v.nullable(v.string()),
  started_at: v.string(),
  /** HTTP requests served, /health probes not counted. */
  requests: v.number(),
});
export type ServerEntry = v.InferOutput<typeof ServerEntrySchema>;

export function registryDir(env: Env): string {
  return join(stateDir(env), "servers");
}

export function writeEntry(env: Env, e: ServerEntry): void {
  const dir = registryDir(env);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${e.pid}.json`);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(e)}\n`);
  renameSync(tmp, path);
}

export function removeEntry(env: Env, pid: number): void {
  rmSync(join(registryDir(env), `${pid}.json`), { force: true });
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Live servers, oldest first; files of dead processes (a SIGKILLed supervisor) are removed. */
export function listEntries(env: Env): ServerEntry[] {
  const dir = registryDir(env);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^\d+\.json$/.test(n));
  } catch {
    return [];
  }
  const out: ServerEntry[] = [];
  for (const n of names) {
    const path = join(dir, n);
    let entry: ServerEntry | null = null;
    try {
      const r = v.safeParse(ServerEntrySchema, JSON.parse(readFileSync(path, "utf8")));
      entry = r.success ? r.output : null;
    } catch {
      entry = null;
    }
    if (entry && processAlive(entry.pid)) out.push(entry);
    else rmSync(path, { force: true });
  }
  return out.sort((a, b) => a.started_at.localeCompare(b.started_at) || a.pid - b.pid);
}

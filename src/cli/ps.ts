/** `mlxk ps`: the mlxk servers this user runs on this machine (pid, port, model, uptime, requests). */
import { defineCommand } from "citty";
import { listEntries, type ServerEntry } from "../server/registry.ts";
import { jsonArgs } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";
import { renderTable } from "./render/format.ts";

export function uptime(startedAt: string, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(startedAt)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
}

function withUptime(e: ServerEntry, now: number) {
  return { ...e, uptime_s: Math.max(0, Math.floor((now - Date.parse(e.started_at)) / 1000)) };
}

export default defineCommand({
  meta: { name: "ps", description: "List the running mlxk servers (pid, port, model, uptime, requests)" },
  args: { ...jsonArgs },
  run({ data }) {
    const ctx = data as CliContext;
    const now = Date.now();
    const servers = listEntries(ctx.env).map((e) => withUptime(e, now));
    printSuccess(ctx, "ps", { servers, count: servers.length }, () => {
      if (servers.length === 0) return "No mlxk server is running. Start one with 'mlxk server --model <name>'.";
      return renderTable(
        ["PID", "PORT", "MODEL", "UPTIME", "REQUESTS", "URL"],
        servers.map((s) => [String(s.pid), String(s.port), s.model ?? "(loads on first request)", uptime(s.started_at, now), String(s.requests), s.url]),
      );
    });
  },
});

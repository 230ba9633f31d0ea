/** `mlxk stop [pid|port]`: stop a running mlxk server (SIGTERM to its supervisor, which drains and exits). */
import { defineCommand } from "citty";
import { MlxkError } from "../errors.ts";
import { listEntries, processAlive, type ServerEntry } from "../server/registry.ts";
import { jsonArgs } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";

/** The supervisor drains for up to 5 s, then kills its worker. */
const WAIT_MS = 8000;

function pick(servers: ServerEntry[], which: string | undefined, all: boolean): ServerEntry[] {
  if (all) return servers;
  if (which === undefined) {
    if (servers.length <= 1) return servers;
    const list = servers.map((s) => `pid ${s.pid} on port ${s.port}`).join(", ");
    throw new MlxkError("ambiguous_match", `${servers.length} servers are running (${list}): name one by pid or port, or use --all.`, {
      extra: { matches: servers.map((s) => s.pid) },
    });
  }
  if (!/^\d+$/.test(which)) throw new MlxkError("InvalidArgumentError", `'${which}' is neither a pid nor a port. Run 'mlxk ps' to see the servers.`);
  const n = Number(which);
  const hit = servers.filter((s) => s.pid === n || s.port === n);
  if (hit.length === 0) throw new MlxkError("model_not_found", `No mlxk server with pid or port ${n}. Run 'mlxk ps' to see the servers.`);
  return hit;
}

export default defineCommand({
  meta: { name: "stop", description: "Stop a running mlxk server (by pid or port; the only one when none is given)" },
  args: {
    server: { type: "positional", description: "Pid or port of the server (see 'mlxk ps')", required: false },
    all: { type: "boolean", description: "Stop every running mlxk server" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    const targets = pick(listEntries(ctx.env), args.server as string | undefined, Boolean(args.all));
    if (targets.length === 0) {
      printSuccess(ctx, "stop", { stopped: [], count: 0 }, () => "No mlxk server is running.");
      return;
    }
    for (const t of targets) {
      try {
        process.kill(t.pid, "SIGTERM");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
      }
    }
    const end = Date.now() + WAIT_MS;
    while (targets.some((t) => processAlive(t.pid)) && Date.now() < end) await Bun.sleep(50);
    const left = targets.filter((t) => processAlive(t.pid));
    if (left.length > 0) {
      throw new MlxkError("execution_error", `Server ${left.map((t) => t.pid).join(", ")} did not stop within ${WAIT_MS / 1000} s; run 'mlxk stop' again to kill it.`);
    }
    const stopped = targets.map((t) => ({ pid: t.pid, port: t.port, model: t.model }));
    printSuccess(ctx, "stop", { stopped, count: stopped.length }, () => stopped.map((s) => `Stopped server ${s.pid} (port ${s.port}).`).join("\n"));
  },
});

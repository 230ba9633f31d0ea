/**
 * `mlxk launch`: start one mlxk per rank (hosts.ts builds the command lines), wired for MLX's ring backend,
 * and supervise them. Rank 0 owns the terminal (stdin/stdout/stderr inherited); the other ranks' output is
 * prefixed "[rank N]" on stderr. When any rank fails, every other rank is torn down (SIGTERM to its process
 * group, SIGKILL after a grace period; remote ranks by their pid file) and the launch exits non-zero naming
 * the rank. When rank 0 finishes, the followers get its shutdown message and are given a moment to exit.
 * Ranks die with the launcher (prctl PDEATHSIG, src/mlx/process.ts), so a killed launcher leaves no orphans.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MlxkError } from "../errors.ts";
import { type Host, isLocal, type RankCommand, rankCommands, remoteKillScript, ringHostfile, sequentialPorts, shq } from "./hosts.ts";
import { LAUNCH_ENV } from "./world.ts";

export interface LaunchOptions {
  hosts: Host[];
  /** Arguments after `--`: the mlxk command every rank runs. */
  args: string[];
  env: Record<string, string>;
  split: string;
  mode: "pipeline" | "tensor";
  /** The mlxk on remote hosts (default "mlxk" on their PATH). */
  remoteMlxk: string;
  startingPort?: number;
  cwd?: string;
  verbose: boolean;
  sync: boolean;
  /** Writes (tests inject; default process streams). */
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
  /** Grace before SIGKILL, ms. */
  killGraceMs?: number;
}

/** How this mlxk is invoked again (a compiled executable, or bun + the entry script). */
export function selfCommand(): string[] {
  const main = Bun.main;
  return main.startsWith("/$bunfs") || main === process.execPath ? [process.execPath] : [process.execPath, main];
}

/** `n` ports free on 127.0.0.1 now (held open together so they are distinct). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** The model a `run <model>` / `server --model <model>` command line names (null when it names none). */
export function modelOf(args: readonly string[]): string | null {
  const [cmd, ...rest] = args;
  if (cmd === "server" || cmd === "serve") {
    const i = rest.findIndex((a) => a === "--model" || a.startsWith("--model="));
    if (i < 0) return null;
    return rest[i]!.includes("=") ? rest[i]!.slice("--model=".length) : (rest[i + 1] ?? null);
  }
  return rest.find((a) => !a.startsWith("-")) ?? null;
}

interface RankState {
  cmd: RankCommand;
  child: ChildProcess;
  exit: { code: number | null; signal: string | null } | null;
  pidfile: string | null;
  killedByUs: boolean;
}

function describeExit(r: RankState): string {
  const e = r.exit!;
  const where = isLocal(r.cmd.host) ? "" : ` on ${r.cmd.host.ssh}`;
  return e.signal ? `rank ${r.cmd.rank}${where} was killed by ${e.signal}` : `rank ${r.cmd.rank}${where} exited with code ${e.code}`;
}

/** Lines of `chunk` prefixed, keeping a partial last line for the next chunk. */
function prefixer(prefix: string, write: (s: string) => void): { push(s: string): void; end(): void } {
  let buf = "";
  return {
    push(s) {
      buf += s;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const l of lines) write(`${prefix}${l}\n`);
    },
    end() {
      if (buf) write(`${prefix}${buf}\n`);
      buf = "";
    },
  };
}

/** Check (and with sync, fetch) the model on every host before any rank loads it. */
async function placement(o: LaunchOptions, model: string, self: string[], err: (s: string) => void): Promise<void> {
  const byHost = new Map<string, Host>();
  for (const h of o.hosts) if (!byHost.has(h.ssh)) byHost.set(h.ssh, h);
  const run = (h: Host, args: string[]) => {
    const argv = isLocal(h) ? [...self, ...args] : ["ssh", "-o", "LogLevel=QUIET", h.ssh, [o.remoteMlxk, ...args].map(shq).join(" ")];
    const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...o.env } });
    return { ok: p.exitCode === 0, out: p.stdout.toString(), err: p.stderr.toString() };
  };
  for (const h of byHost.values()) {
    const healthy = async () => {
      if (isLocal(h)) {
        // this machine's cache: the resolution (and health refusal) `run`/`server` themselves apply
        try {
          const { locateModel } = await import("../engine/open.ts");
          locateModel(model, { env: { ...process.env, ...o.env }, cwd: o.cwd });
          return null;
        } catch (e) {
          return e instanceof Error ? e.message : String(e);
        }
      }
      const r = run(h, ["health", model, "--json"]);
      try {
        const j = JSON.parse(r.out) as { status?: string; data?: { summary?: { healthy_count?: number; unhealthy_count?: number } }; error?: { message?: string } };
        if (j.status === "success" && (j.data?.summary?.healthy_count ?? 0) > 0 && (j.data?.summary?.unhealthy_count ?? 0) === 0) return null;
        return j.error?.message ?? "the model is not healthy there";
      } catch {
        return r.err.trim() || `mlxk health did not answer on ${h.ssh}`;
      }
    };
    let why = await healthy();
    // --sync fetches on every host lacking the model, this machine too (`-n 2` on loopback reads this cache)
    if (why && o.sync) {
      err(`mlxk launch: pulling ${model} on ${h.ssh}…\n`);
      // --json: the pull's progress stays off the launch's output, and a failure comes back as one message
      const r = run(h, ["pull", model, "--json"]);
      if (!r.ok) {
        let msg = "";
        try {
          msg = (JSON.parse(r.out) as { error?: { message?: string } }).error?.message ?? "";
        } catch {
          msg = r.err.trim().split(/[\r\n]+/).at(-1) ?? "";
        }
        throw new MlxkError("execution_error", `--sync: pulling ${model} on ${h.ssh} failed: ${msg || "no message"}`);
      }
      why = await healthy();
    }
    if (why) {
      const ranks = o.hosts.filter((x) => x.ssh === h.ssh).map((x) => x.rank);
      // a Hub id can be pulled; a path cannot
      const hint = o.sync || /^[./~]/.test(model) ? "" : isLocal(h) ? " (--sync pulls it here)" : " (--sync pulls it there)";
      throw new MlxkError("model_not_found", `rank ${ranks.join(", ")} (${h.ssh}) cannot load ${model}: ${why}${hint}`);
    }
  }
}

/** Run the group to the end; resolves with the launch's exit code. */
export async function launch(o: LaunchOptions): Promise<number> {
  const out = o.stdout ?? ((s: string) => process.stdout.write(s));
  const err = o.stderr ?? ((s: string) => process.stderr.write(s));
  const [cmd] = o.args;
  if (cmd !== "run" && cmd !== "server" && cmd !== "serve") throw new MlxkError("CommandError", `mlxk launch runs 'run' or 'server' on every rank (got '${cmd ?? ""}'): mlxk launch -n 2 -- run <model> "prompt"`);
  const model = modelOf(o.args);
  if (!model) throw new MlxkError("CommandError", cmd === "run" ? "mlxk launch -- run needs a model" : "mlxk launch -- server needs --model (every rank loads it at start)");
  if (o.hosts.length < 2) throw new MlxkError("InvalidArgumentError", "mlxk launch needs at least 2 ranks (-n 2, or two hosts)");
  const self = selfCommand();
  await placement(o, model, self, err);

  const allLocal = o.hosts.every(isLocal);
  const ports = allLocal ? await freePorts(o.hosts.length) : sequentialPorts(o.hosts.length, o.startingPort);
  const hosts = allLocal ? o.hosts.map((h) => ({ ...h, ips: ["127.0.0.1"] })) : o.hosts;
  const ring = ringHostfile(hosts, ports);
  const dir = mkdtempSync(join(tmpdir(), "mlxk-launch-"));
  const hostfilePath = join(dir, "ring.json");
  writeFileSync(hostfilePath, ring);
  const env: Record<string, string> = {
    ...o.env,
    [LAUNCH_ENV.launched]: "1",
    [LAUNCH_ENV.split]: o.split,
    [LAUNCH_ENV.mode]: o.mode,
    ...(o.verbose ? { MLX_RING_VERBOSE: "1" } : {}),
  };
  const cmds = rankCommands(hosts, { self, remoteMlxk: o.remoteMlxk, args: o.args, env, ringHostfile: ring, hostfilePath, cwd: o.cwd });
  if (o.verbose) for (const c of cmds) err(`mlxk launch: rank ${c.rank}: ${c.argv.map(shq).join(" ")}\n`);

  const grace = o.killGraceMs ?? 3000;
  let finish!: (code: number) => void;
  const done = new Promise<number>((r) => (finish = r));
  let ending = false;
  let exitCode = 0;
  const ranks: RankState[] = [];

  const kill = (r: RankState, sig: NodeJS.Signals) => {
    if (r.exit) return;
    r.killedByUs = true;
    try {
      // followers lead their own process group (their children go too); rank 0 shares the terminal's
      if (r.cmd.rank > 0 && r.child.pid) process.kill(-r.child.pid, sig);
      else r.child.kill(sig);
    } catch {
      // already gone
    }
    if (r.cmd.remote && r.pidfile && sig === "SIGTERM") {
      Bun.spawn(["ssh", "-o", "LogLevel=QUIET", r.cmd.host.ssh, remoteKillScript(r.pidfile)], { stdout: "ignore", stderr: "ignore" });
    }
  };
  const checkDone = () => {
    if (ranks.every((r) => r.exit)) {
      rmSync(dir, { recursive: true, force: true });
      finish(exitCode);
    }
  };
  const teardown = (code: number, waitMs = 0) => {
    if (ending) return;
    ending = true;
    exitCode = code;
    const term = () => {
      for (const r of ranks) kill(r, "SIGTERM");
      setTimeout(() => ranks.forEach((r) => kill(r, "SIGKILL")), grace).unref();
    };
    if (waitMs > 0) setTimeout(term, waitMs).unref();
    else term();
    checkDone();
  };

  for (const c of cmds) {
    const rank0 = c.rank === 0;
    const child = spawn(c.argv[0]!, c.argv.slice(1), {
      env: { ...process.env, ...c.env, [LAUNCH_ENV.parent]: String(process.pid) },
      stdio: rank0 && !c.remote ? "inherit" : [rank0 ? "inherit" : "ignore", "pipe", "pipe"],
      detached: !rank0,
      cwd: o.cwd,
    });
    const r: RankState = { cmd: c, child, exit: null, pidfile: null, killedByUs: false };
    ranks.push(r);
    const tag = prefixer(`[rank ${c.rank}] `, err);
    let first = c.remote;
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (s: string) => {
      if (first) {
        // a remote launch script prints its pid file first
        const nl = s.indexOf("\n");
        r.pidfile = s.slice(0, nl < 0 ? undefined : nl).trim();
        s = nl < 0 ? "" : s.slice(nl + 1);
        first = false;
      }
      if (rank0) out(s);
      else tag.push(s);
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (s: string) => (rank0 ? err(s) : tag.push(s)));
    child.on("error", (e) => {
      r.exit = { code: 127, signal: null };
      err(`mlxk launch: rank ${c.rank} could not start: ${e.message}\n`);
      teardown(1);
    });
    child.on("exit", (code, signal) => {
      tag.end();
      if (r.exit) return;
      r.exit = { code, signal };
      if (!ending) {
        // a follower exits 0 only on rank 0's shutdown message: rank 0 is finishing too
        if (code === 0 && !rank0) {
          // nothing to do
        } else if (rank0 && code === 0) teardown(0, grace);
        else {
          err(`mlxk launch: ${describeExit(r)}; stopping the other ranks\n`);
          teardown(rank0 ? (code ?? 1) || 1 : 1);
        }
      } else if (!r.killedByUs && code !== 0 && exitCode === 0 && !rank0) {
        err(`mlxk launch: ${describeExit(r)}\n`);
        exitCode = 1;
      }
      checkDone();
    });
  }

  let interrupts = 0;
  const onInt = () => {
    interrupts++;
    // On a terminal the foreground group (rank 0 too) got Ctrl-C itself; otherwise pass it on. Twice: stop all.
    if (interrupts > 1) teardown(130);
    else if (!process.stdin.isTTY) ranks[0] && kill(ranks[0], "SIGINT");
  };
  const onTerm = () => teardown(143);
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  process.on("SIGHUP", onTerm);
  try {
    return await done;
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    process.off("SIGHUP", onTerm);
  }
}

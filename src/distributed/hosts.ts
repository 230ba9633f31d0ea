/**
 * Who the ranks are and how each is started, as `mlx.launch` does it for the ring backend: hosts from
 * `--hosts h1,h2` (each repeated `-n` times) or an MLX hostfile (`[{"ssh": …, "ips": […]}]` or
 * `{"backend", "envs", "hosts": […]}`); the ring hostfile MLX reads (one ["ip:port", …] list per rank); and the
 * command line of every rank — local ranks run directly, remote ones through `ssh -tt` with a script that
 * records its pid (so teardown can kill it), exports the environment and writes the ring hostfile there.
 * Pure functions: no process is started here (launch.ts does that).
 */
import { isIP } from "node:net";
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { MlxkError } from "../errors.ts";

export interface Host {
  rank: number;
  /** What ssh connects to; "127.0.0.1"/"localhost" run locally. */
  ssh: string;
  /** Addresses the other ranks reach this one at (ring backend). */
  ips: string[];
}

export interface Hostfile {
  hosts: Host[];
  backend: string;
  envs: string[];
}

const HostEntry = v.object({ ssh: v.string(), ips: v.optional(v.array(v.string()), []), rdma: v.optional(v.unknown()) });
const HostList = v.array(HostEntry);
const HostObject = v.object({ backend: v.optional(v.string(), ""), envs: v.optional(v.array(v.string()), []), hosts: HostList });

export const LOCAL_HOSTS: ReadonlySet<string> = new Set(["127.0.0.1", "localhost", "::1"]);
export const isLocal = (h: Host): boolean => LOCAL_HOSTS.has(h.ssh);

/** `--hosts a,b` with every host repeated `repeat` times (mlx.launch's -n); an IP is its own ring address. */
export function hostsFromList(list: string, repeat = 1): Hostfile {
  const hosts: Host[] = [];
  for (const h of list.split(",").map((s) => s.trim())) {
    if (h === "") throw new MlxkError("InvalidArgumentError", "--hosts: a host name is empty");
    for (let i = 0; i < repeat; i++) hosts.push({ rank: hosts.length, ssh: h, ips: isIP(h) ? [h] : h === "localhost" ? ["127.0.0.1"] : [] });
  }
  return { hosts, backend: "", envs: [] };
}

/** An MLX hostfile (JSON); the error names the file and the failing entry. */
export function parseHostfile(text: string, name = "hostfile"): Hostfile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MlxkError("InvalidArgumentError", `${name} is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  // the two spellings are told apart first, so an error names the failing entry
  const r = Array.isArray(raw) ? v.safeParse(HostList, raw) : v.safeParse(HostObject, raw);
  if (!r.success) {
    const path = v.getDotPath(r.issues[0]!);
    throw new MlxkError("InvalidArgumentError", `${name}: ${path ?? "(root)"}: ${r.issues[0]!.message} (expected MLX's hostfile: [{"ssh": "host", "ips": ["10.0.0.1"]}, …])`);
  }
  const o = Array.isArray(r.output) ? { backend: "", envs: [], hosts: r.output } : r.output;
  if (o.hosts.length === 0) throw new MlxkError("InvalidArgumentError", `${name} lists no hosts`);
  return { backend: o.backend, envs: o.envs, hosts: o.hosts.map((h, rank) => ({ rank, ssh: h.ssh, ips: h.ips })) };
}

export function readHostfile(path: string): Hostfile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new MlxkError("InvalidArgumentError", `hostfile ${path} cannot be read`);
  }
  return parseHostfile(text, `hostfile ${path}`);
}

/** The ring hostfile MLX_HOSTFILE points at: rank r listens on ports[r] at each of its IPs. */
export function ringHostfile(hosts: readonly Host[], ports: readonly number[]): string {
  const missing = hosts.find((h) => h.ips.length === 0);
  if (missing) throw new MlxkError("InvalidArgumentError", `the ring backend needs an IP for every host, and '${missing.ssh}' (rank ${missing.rank}) has none: give IPs in --hosts or "ips" in the hostfile`);
  return JSON.stringify(hosts.map((h, r) => h.ips.map((ip) => `${ip.includes(":") ? `[${ip}]` : ip}:${ports[r]}`)));
}

/** Ports for a remote launch: mlx.launch's scheme, one per rank from `start`. */
export function sequentialPorts(n: number, start = 32323): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}

/** POSIX shell quoting (shlex.quote). */
export function shq(s: string): string {
  return s !== "" && /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\"'\"'")}'`;
}

export interface RankCommand {
  rank: number;
  host: Host;
  argv: string[];
  /** Extra environment of a local rank (a remote one gets it inside its script). */
  env: Record<string, string>;
  /** Remote ranks: the line whose output names the pid file (the script's first line of stdout). */
  remote: boolean;
}

export interface CommandOptions {
  /** The mlxk command on this machine (argv prefix) and on remote hosts. */
  self: string[];
  remoteMlxk: string;
  /** The arguments after `--` (e.g. ["run", "model", "hi"]). */
  args: string[];
  env: Record<string, string>;
  ringHostfile: string;
  /** Local ranks: where the ring hostfile was written. */
  hostfilePath: string;
  cwd?: string;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The script a remote rank runs under ssh (mlx.launch's make_launch_script, for mlxk). */
export function remoteScript(rank: number, o: CommandOptions): string {
  let s = "stty -echo 2>/dev/null; pidfile=$(mktemp); echo $$ > $pidfile; printf '%s\\n' $pidfile; ";
  if (o.cwd) s += `cd ${shq(o.cwd)} || { echo 'Failed to change directory to' ${shq(o.cwd)} >&2; exit 1; }; `;
  for (const [k, val] of Object.entries(o.env)) {
    if (!ENV_NAME.test(k)) throw new MlxkError("InvalidArgumentError", `'${k}' is not a valid environment variable name`);
    s += `export ${k}=${shq(val)}; `;
  }
  s += `fname=$(mktemp); printf '%s' ${shq(o.ringHostfile)} > $fname; export MLX_HOSTFILE=$fname; `;
  s += `export MLX_RANK=${rank}; `;
  s += `exec ${[o.remoteMlxk, ...o.args].map(shq).join(" ")}`;
  return s;
}

/** The script that kills a remote rank by the pid file its launch script printed. */
export function remoteKillScript(pidfile: string): string {
  return `pid=$(cat ${shq(pidfile)} 2>/dev/null); if [ -n "$pid" ] && kill -0 $pid 2>/dev/null; then kill $pid; echo 1; else echo 0; fi; rm -f ${shq(pidfile)}`;
}

/** How to start each rank. */
export function rankCommands(hosts: readonly Host[], o: CommandOptions): RankCommand[] {
  return hosts.map((host, rank) => {
    if (isLocal(host)) return { rank, host, argv: [...o.self, ...o.args], env: { ...o.env, MLX_RANK: String(rank), MLX_HOSTFILE: o.hostfilePath }, remote: false };
    return { rank, host, argv: ["ssh", "-tt", "-o", "LogLevel=QUIET", host.ssh, remoteScript(rank, o)], env: {}, remote: true };
  });
}

/** `--env K=V` entries (and a hostfile's "envs") as a map; an invalid one is an error naming it. */
export function parseEnvs(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of list) {
    const i = e.indexOf("=");
    const k = i < 0 ? e : e.slice(0, i);
    if (!ENV_NAME.test(k)) throw new MlxkError("InvalidArgumentError", `--env '${e}': '${k}' is not a valid environment variable name`);
    out[k] = i < 0 ? "" : e.slice(i + 1);
  }
  return out;
}

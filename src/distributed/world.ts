/**
 * The process group this process belongs to when `mlxk launch` started it: MLX_RANK + MLX_HOSTFILE (what
 * MLX's ring backend reads) and MLXK_LAUNCH_* (our plan: split, mode). Joined once per process, on first use,
 * on the thread that runs MLX. Outside launch there is no world (null) and nothing changes.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import type { Env } from "../env.ts";
import { MlxkError } from "../errors.ts";
import type { Group } from "../mlx/distributed.ts";

/** Environment `mlxk launch` sets for every rank (besides MLX_RANK / MLX_HOSTFILE). */
export const LAUNCH_ENV = {
  /** "1": started by mlxk launch. */
  launched: "MLXK_LAUNCH",
  /** How layers are split: "layers" (even), "memory" (by each rank's free memory) or weights "2,1,1". */
  split: "MLXK_LAUNCH_SPLIT",
  /** "pipeline" (default) or "tensor". */
  mode: "MLXK_LAUNCH_MODE",
  /** A file each rank writes its slice and resident weight bytes to, as JSON lines (tests, benchmarks). */
  report: "MLXK_LAUNCH_REPORT",
  /** The launcher's pid: a rank dies with it (no orphans). */
  parent: "MLXK_LAUNCH_PARENT",
} as const;

export interface LaunchInfo {
  rank: number;
  split: string;
  mode: "pipeline" | "tensor";
  report: string | null;
}

/** What launch told this process, or null when it was not started by `mlxk launch`. */
export function launchInfo(env: Env = process.env): LaunchInfo | null {
  if (env[LAUNCH_ENV.launched] !== "1" || env.MLX_RANK === undefined || !env.MLX_HOSTFILE) return null;
  const rank = Number(env.MLX_RANK);
  if (!Number.isInteger(rank) || rank < 0) throw new MlxkError("InvalidArgumentError", `MLX_RANK must be a rank number (got '${env.MLX_RANK}')`);
  const mode = env[LAUNCH_ENV.mode] === "tensor" ? "tensor" : "pipeline";
  return { rank, split: env[LAUNCH_ENV.split] || "layers", mode, report: env[LAUNCH_ENV.report] || null };
}

let world: Group | null | undefined;

/** The ring group of a launched process (joined on first call; blocks until the neighbours connect), else null. */
export async function joinWorld(env: Env = process.env): Promise<Group | null> {
  if (world !== undefined) return world;
  const info = launchInfo(env);
  if (!info) return (world = null);
  if (env[LAUNCH_ENV.parent]) (await import("../mlx/process.ts")).dieWithParent();
  const { init } = await import("../mlx/distributed.ts");
  try {
    world = init("ring", true);
  } catch (e) {
    throw new MlxkError("execution_error", `rank ${info.rank} could not join the ring: ${e instanceof Error ? e.message : String(e)}`);
  }
  return world.size > 1 ? world : null;
}

/** The group already joined (null outside launch or before joinWorld). */
export function currentWorld(): Group | null {
  return world && world.size > 1 ? world : null;
}

/**
 * The fd of this rank's ring socket from its left neighbour (the connection accepted on this rank's own port):
 * everything a rank receives while it waits comes on it. Linux only (/proc); null when it cannot be found.
 */
export function leftSocketFd(env: Env = process.env): number | null {
  try {
    const info = launchInfo(env);
    if (!info || !env.MLX_HOSTFILE) return null;
    const nodes = JSON.parse(readFileSync(env.MLX_HOSTFILE, "utf8")) as string[][];
    const port = Number(nodes[info.rank]![0]!.split(":").at(-1));
    const inodes = new Set<string>();
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      let text = "";
      try {
        text = readFileSync(table, "utf8");
      } catch {
        continue;
      }
      for (const line of text.split("\n").slice(1)) {
        const f = line.trim().split(/\s+/);
        // local_address ip:PORT (hex), state 01 = ESTABLISHED, inode column 9
        if (f.length > 9 && parseInt(f[1]!.split(":")[1]!, 16) === port && f[3] === "01") inodes.add(f[9]!);
      }
    }
    for (const fd of readdirSync("/proc/self/fd")) {
      let target = "";
      try {
        target = readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1]!)) return Number(fd);
    }
  } catch {
    // no /proc: ranks wait in MLX's recv
  }
  return null;
}

/**
 * The entry of `run` / `server` under `mlxk launch`: every rank joins the ring first; rank 0 then carries on as
 * the command normally does (its model load takes its pipeline slice), while ranks > 0 load only their slice and
 * serve rank 0 (pipeline.ts `follow`) instead of running the command. Outside launch this does nothing.
 */
import { appendFileSync } from "node:fs";
import type { Env } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { joinWorld, launchInfo } from "./world.ts";

/** true when this process was a follower rank and has finished serving (the command must not run). */
export async function followLaunched(spec: string, env: Env = process.env): Promise<boolean> {
  const info = launchInfo(env);
  if (!info) return false;
  const { ensureMlxRuntime } = await import("../mlx/setup.ts");
  await ensureMlxRuntime({ env, log: (m) => process.stderr.write(`mlxk: ${m}\n`), tty: false });
  const { mlxAvailability } = await import("../mlx/ffi.ts");
  const avail = mlxAvailability(env);
  if (!avail.available) throw new MlxkError("mlx_unavailable", `MLX is not available on rank ${info.rank}: ${avail.reason}`);
  const group = await joinWorld(env);
  if (!group || group.rank === 0) return false;
  const { locateModel } = await import("../engine/open.ts");
  const ref = locateModel(spec, { env });
  const { loadGgufModel, loadModelDir } = await import("../engine/load.ts");
  const loaded = ref.kind === "gguf" ? await loadGgufModel(ref.path, { env }) : await loadModelDir(ref.path, { env });
  try {
    if (!loaded.follower) throw new MlxkError("execution_error", `rank ${group.rank}: the model did not load as a distributed stage`);
    const { follow } = await import("./pipeline.ts");
    follow(loaded.model, loaded.follower.step, loaded.follower.group);
    if (info.report) {
      const { memory } = await import("../mlx/index.ts");
      appendFileSync(info.report, `${JSON.stringify({ rank: group.rank, pid: process.pid, peakBytes: memory.peak() })}\n`);
    }
  } finally {
    loaded[Symbol.dispose]();
  }
  return true;
}

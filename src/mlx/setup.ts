/**
 * First use of `run`/`server` without a runtime (bunx and `bun add` skip our postinstall): set the per-user
 * runtime up in $XDG_DATA_HOME/mlxk/<mlx-version>/ under a lock, so two first runs never race, then let the
 * FFI loader find it. Says in one line what it fetches; errors are MlxkError(mlx_unavailable) naming what to
 * install.
 */
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Env, mlxDir, mlxkDataDir, mlxShimPath } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { withFileLock } from "../hub/lock.ts";
import { InstallError, installRuntime, userLayout } from "./install.ts";
import { findShim, IS_COMPILED, MLX_VERSION, PLATFORM_PACKAGE, userShimPath } from "./paths.ts";

export interface SetupOptions {
  env?: Env;
  /** Progress lines go here (stderr of the CLI). */
  log?: (msg: string) => void;
  tty?: boolean;
}

/**
 * Make sure a shim is loadable. Returns the path of the shim that was set up, or null when one was there
 * already (or MLXK_SHIM names one explicitly: then the loader reports it as it is).
 */
export async function ensureMlxRuntime(opts: SetupOptions = {}): Promise<string | null> {
  const env = opts.env ?? process.env;
  if (mlxShimPath(env) || findShim(env)) return null;
  const target = userShimPath(env);
  if (!target) return null; // no sources (an executable whose lib/ went missing): the loader explains
  const log = opts.log ?? (() => {});
  const lockFile = join(mlxkDataDir(env), `.setup-${MLX_VERSION}.lock`);
  mkdirSync(dirname(lockFile), { recursive: true });
  return withFileLock(lockFile, undefined, async () => {
    // another first run may have finished while we waited for the lock
    if (findShim(env)) return null;
    const why = IS_COMPILED ? "no lib/ beside the executable" : `no ${PLATFORM_PACKAGE} package`;
    const custom = mlxDir(env);
    const what = custom ? `a shim build against MLX_DIR=${custom}` : "the pinned wheel from PyPI (~35 MB unpacked) and a shim build";
    log(`MLX runtime missing (${why}): setting up MLX ${MLX_VERSION} in ${dirname(target)} — ${what} (a minute or two, once).`);
    try {
      const r = await installRuntime(userLayout(env), { env, log, tty: opts.tty ?? false });
      log(`MLX ${r.mlxVersion} ready: ${r.shim}`);
      return r.shim;
    } catch (e) {
      if (!(e instanceof InstallError)) throw e;
      throw new MlxkError("mlx_unavailable", `could not set the MLX runtime up: ${e.message}`, {
        detail: "Run `mlxk doctor` to see what is missing.",
      });
    }
  });
}

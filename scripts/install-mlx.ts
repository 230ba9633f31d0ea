/**
 * postinstall, the fast path: set the MLX runtime up at install time so the first `mlxk run` starts at once.
 * In a checkout (a .git beside package.json) it builds into the repo (.mlx/wheel + mlx-c/build/libmlxk.*);
 * in an installed package it does nothing when the prebuilt platform package (mlxk-<os>-<arch>) is present,
 * else it builds the per-user runtime ($XDG_DATA_HOME/mlxk/<mlx-version>/) that `run`/`server` would set up
 * on first use anyway (src/mlx/setup.ts). Work that is current is skipped.
 *
 * It never fails the install: on any problem it prints ONE message saying what to install, records the reason
 * in .mlx/status.json (read by the runtime and `mlxk doctor`) and exits 0, so commands without inference work.
 *
 * The wheel follows the machine (src/mlx/wheel-select.ts): mlx-metal on macOS arm64, mlx-cuda-12/13 with the CUDA
 * runtime wheels on Linux with an NVIDIA driver, else mlx-cpu; MLXK_BACKEND=cpu|cuda|metal overrides, and a CUDA
 * setup that fails falls back to mlx-cpu with one message. The choice and its reason land in .mlx/status.json.
 *
 * Usage: bun scripts/install-mlx.ts [--force]     (MLX_DIR=<dir with lib/ and include/> to use an existing MLX)
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { InstallError, installRuntime, repoLayout, userLayout } from "../src/mlx/install.ts";
import { type InstallStatus, mlxStateDir, platformPackageDir, REPO_ROOT, statusFile } from "../src/mlx/paths.ts";

function writeStatus(s: InstallStatus): void {
  try {
    mkdirSync(mlxStateDir(), { recursive: true });
    writeFileSync(statusFile(), `${JSON.stringify({ ...s, updatedAt: new Date().toISOString() }, null, 2)}\n`);
  } catch {
    // a read-only global install: the message below is all we can leave
  }
}

function log(msg: string): void {
  process.stderr.write(`mlxk: ${msg}\n`);
}

async function main(): Promise<void> {
  const force = process.argv.includes("--force");
  const checkout = existsSync(join(REPO_ROOT, ".git"));
  if (!checkout && platformPackageDir()) return;
  const t0 = performance.now();
  try {
    const layout = checkout ? repoLayout() : userLayout();
    const r = await installRuntime(layout, { force, log });
    writeStatus({ ok: true, mlxVersion: r.mlxVersion, mlxRoot: r.mlxRoot, shim: r.shim, wheel: r.wheel, backend: r.backend ?? undefined, backendReason: r.backendReason });
    if (r.did) log(`MLX ${r.mlxVersion} (${r.backend ?? "MLX_DIR"}: ${r.backendReason}) ready (${((performance.now() - t0) / 1000).toFixed(1)} s): ${checkout ? relative(REPO_ROOT, r.shim) : r.shim}`);
  } catch (e) {
    const reason = e instanceof InstallError ? e.message : `unexpected error: ${e instanceof Error ? e.stack : String(e)}`;
    writeStatus({ ok: false, reason });
    log(`MLX runtime NOT installed — ${reason}\nmlxk: list/health/show/pull/rm still work; run/server need MLX (they retry on first use).`);
  }
}

await main();

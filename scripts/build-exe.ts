/**
 * Builds the standalone executable dist/mlxk with `bun build --compile` (Bun runtime + bundled sources), and
 * lays the MLX runtime (our shim, libmlx and its BLAS) out in lib/ beside it, where the executable looks for it.
 * Without a built shim (MLX unavailable) the executable is still built: list/health/show/pull/rm need no MLX.
 * Usage: bun scripts/build-exe.ts [--outfile path]
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { copyRuntimeSidecar, findShim } from "../src/mlx/paths.ts";

const root = join(import.meta.dir, "..");

export async function buildExe(outfile = join(root, "dist", "mlxk")): Promise<string> {
  mkdirSync(dirname(outfile), { recursive: true });
  // bun build treats the extensionless bin/mlxk as an asset, so compile a .ts twin of it; the cache-scan
  // worker is a second entrypoint (src/cache/pool.ts finds it below the executable's virtual root); --splitting
  // keeps lazily imported commands (server, run, pull) out of the chunk every start has to load (~3 ms)
  const entry = join(root, "dist", ".mlxk-entry.ts");
  mkdirSync(dirname(entry), { recursive: true });
  writeFileSync(entry, 'import { runCli } from "../src/cli/main.ts";\nprocess.exitCode = await runCli(process.argv.slice(2));\n');
  const proc = Bun.spawn([process.execPath, "build", "--compile", "--splitting", "--minify", "--bytecode", "--format", "esm", entry, join(root, "src", "cache", "scan-worker.ts"), "--outfile", outfile], {
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  rmSync(entry, { force: true });
  if (code !== 0) throw new Error(`bun build --compile failed (${code}):\n${out}${err}`);
  if (findShim()) copyRuntimeSidecar(join(dirname(outfile), "lib"));
  return outfile;
}

if (import.meta.main) {
  const i = process.argv.indexOf("--outfile");
  const out = await buildExe(i > 0 ? process.argv[i + 1] : undefined);
  console.log(`built ${out}`);
}

/**
 * Release packing, the esbuild / node-llama-cpp pattern: a prebuilt MLX runtime per platform as its own npm
 * package (`mlxk-<os>-<arch>`: lib/libmlxk.* + lib/mlx/lib + the wheel's BLAS, in the sidecar layout whose
 * RPATH needs no env var), and the main package with those as optionalDependencies, so `npm i mlxk`/`bunx
 * mlxk` need neither pip nor a compiler. Only this machine's platform package can be built here (the shim is
 * compiled natively); the others come from CI runners of that platform.
 *
 * Usage: bun scripts/pack.ts [--out dist/npm] [--no-optional]   → prints the tarball paths
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyRuntimeSidecar, findShim, PLATFORM_PACKAGE } from "../src/mlx/paths.ts";

const root = join(import.meta.dir, "..");

/** The platforms MLX ships wheels for, as npm os/cpu pairs. */
export const PLATFORMS = [
  { os: "linux", cpu: "x64" },
  { os: "linux", cpu: "arm64" },
  { os: "darwin", cpu: "arm64" },
] as const;

interface Pkg {
  name: string;
  version: string;
  optionalDependencies?: Record<string, string>;
  [k: string]: unknown;
}

const mainPkg = (): Pkg => JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Pkg;

function npmPack(dir: string, out: string): string {
  const p = Bun.spawnSync(["npm", "pack", "--silent", "--pack-destination", out], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`npm pack in ${dir} failed:\n${p.stderr.toString()}`);
  return join(out, p.stdout.toString().trim().split("\n").pop()!);
}

/** Pack this machine's `mlxk-<os>-<arch>` from the built runtime; returns the tarball. */
export function packPlatform(out: string): string {
  if (!findShim()) throw new Error("MLX shim not built; run `npm install` (bun scripts/install-mlx.ts) first");
  const { version } = mainPkg();
  const stage = mkdtempSync(join(tmpdir(), "mlxk-platform-"));
  try {
    copyRuntimeSidecar(join(stage, "lib"));
    writeFileSync(
      join(stage, "package.json"),
      `${JSON.stringify(
        {
          name: PLATFORM_PACKAGE,
          version,
          description: `Prebuilt MLX runtime (libmlxk shim + MLX libraries) for mlxk on ${process.platform}-${process.arch}`,
          license: "Apache-2.0 AND MIT",
          os: [process.platform],
          cpu: [process.arch],
          files: ["lib/"],
          preferUnplugged: true,
        },
        null,
        2,
      )}\n`,
    );
    writeFileSync(join(stage, "README.md"), `The MLX runtime of [mlxk](https://www.npmjs.com/package/mlxk) for ${process.platform}-${process.arch}; installed by mlxk as an optional dependency.\n`);
    return npmPack(stage, out);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Pack the main package, with the platform packages as optionalDependencies unless `optional` is false. */
export function packMain(out: string, optional = true): string {
  const stage = mkdtempSync(join(tmpdir(), "mlxk-main-"));
  try {
    const pkg = mainPkg();
    for (const f of ["package.json", "README.md", ...((pkg.files as string[] | undefined) ?? [])]) {
      try {
        cpSync(join(root, f), join(stage, f), { recursive: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    }
    if (optional) {
      pkg.optionalDependencies = Object.fromEntries(PLATFORMS.map((p) => [`mlxk-${p.os}-${p.cpu}`, pkg.version]));
      writeFileSync(join(stage, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);
    }
    return npmPack(stage, out);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const i = process.argv.indexOf("--out");
  const out = i > 0 ? process.argv[i + 1]! : join(root, "dist", "npm");
  mkdirSync(out, { recursive: true });
  console.log(packMain(out, !process.argv.includes("--no-optional")));
  console.log(packPlatform(out));
}

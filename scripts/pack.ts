/**
 * Release packing, the esbuild / node-llama-cpp pattern: a prebuilt MLX runtime per platform as its own npm
 * package (`mlxk-<os>-<arch>`: lib/libmlxk.* + lib/mlx/lib + the wheel's BLAS, in the sidecar layout whose
 * RPATH needs no env var), and the main package with those as optionalDependencies, so `npm i mlxk`/`bunx
 * mlxk` need neither pip nor a compiler. This machine's platform package comes from the installed runtime,
 * linux-arm64 from the one `npm run build` cross-compiles; darwin-arm64 needs a Mac (Apple's SDK links the shim).
 *
 * Usage: bun scripts/pack.ts [--out dist/npm] [--no-optional]   → prints the tarball paths
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyRuntimeSidecar, copySidecar, findShim, SHIM_NAME } from "../src/mlx/paths.ts";

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

/**
 * Pack `mlxk-<os>-<arch>`: this machine's from the installed runtime, another platform's from the runtime
 * `npm run build` cross-built into dist/runtime/<os>-<arch>/ (linux-arm64). Returns the tarball.
 */
export function packPlatform(out: string, os: string = process.platform, cpu: string = process.arch): string {
  const { version } = mainPkg();
  const host = os === process.platform && cpu === process.arch;
  const cross = join(root, "dist", "runtime", `${os}-${cpu}`);
  if (host && !findShim()) throw new Error("MLX shim not built; run `npm install` (bun scripts/install-mlx.ts) first");
  if (!host && !existsSync(join(cross, SHIM_NAME))) throw new Error(`no ${os}-${cpu} runtime in ${cross}; run \`npm run build\` first`);
  const stage = mkdtempSync(join(tmpdir(), "mlxk-platform-"));
  try {
    if (host) copyRuntimeSidecar(join(stage, "lib"));
    else copySidecar(join(cross, SHIM_NAME), join(cross, "wheel", "mlx"), join(stage, "lib"));
    writeFileSync(
      join(stage, "package.json"),
      `${JSON.stringify(
        {
          name: `mlxk-${os}-${cpu}`,
          version,
          description: `Prebuilt MLX runtime (libmlxk shim + MLX libraries) for mlxk on ${os}-${cpu}`,
          license: "Apache-2.0 AND MIT",
          os: [os],
          cpu: [cpu],
          files: ["lib/"],
          preferUnplugged: true,
        },
        null,
        2,
      )}\n`,
    );
    writeFileSync(join(stage, "README.md"), `The MLX runtime of [mlxk](https://www.npmjs.com/package/mlxk) for ${os}-${cpu}; installed by mlxk as an optional dependency.\n`);
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
  // other platforms whose runtime `npm run build` could cross-build here
  for (const p of PLATFORMS) {
    if (p.os === process.platform && p.cpu === process.arch) continue;
    if (existsSync(join(root, "dist", "runtime", `${p.os}-${p.cpu}`, SHIM_NAME))) console.log(packPlatform(out, p.os, p.cpu));
    else console.error(`no mlxk-${p.os}-${p.cpu}: its runtime is not built here (see scripts/build-exe.ts)`);
  }
}

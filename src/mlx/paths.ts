/**
 * Where the MLX runtime lives on disk: the pinned wheel, the unpacked MLX root, our shim, and the
 * status file the installer leaves behind. Shared by scripts/install-mlx.ts, the FFI loader and the
 * benchmarks; touches no native code.
 */
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { type Env, mlxDir, mlxkDataDir, mlxShimPath } from "../env.ts";

export const MLX_VERSION = "0.32.4";

/** Repository root (two levels above src/mlx/). Inside a `bun build --compile` binary this is /$bunfs/… and unused. */
export const REPO_ROOT = resolve(import.meta.dir, "../..");

export interface WheelPin {
  package: "mlx-cpu" | "mlx-metal" | "mlx-cuda-12" | "mlx-cuda-13";
  platform: string;
  file: string;
  sha256: string;
}

/** sha256 of every wheel we accept, as published on PyPI for 0.32.4. */
export const WHEEL_PINS: readonly WheelPin[] = [
  {
    package: "mlx-cpu",
    platform: "manylinux_2_35_x86_64",
    file: "mlx_cpu-0.32.4-py3-none-manylinux_2_35_x86_64.whl",
    sha256: "0e0a24fa2ce8b6b94d2e6a90604e8813aa8e29fcb918bb2aa01cfb6d133d8cee",
  },
  {
    package: "mlx-cpu",
    platform: "manylinux_2_35_aarch64",
    file: "mlx_cpu-0.32.4-py3-none-manylinux_2_35_aarch64.whl",
    sha256: "1289e85e64af1fd16380bf331438bfe4afe875d27afc3e0bcf35f427c488fadd",
  },
  {
    package: "mlx-metal",
    platform: "macosx_14_0_arm64",
    file: "mlx_metal-0.32.4-py3-none-macosx_14_0_arm64.whl",
    sha256: "8019b2db622599267d66cc168b2f0dbf5af929790a6c3b3913e00eabc42a7947",
  },
  {
    package: "mlx-metal",
    platform: "macosx_15_0_arm64",
    file: "mlx_metal-0.32.4-py3-none-macosx_15_0_arm64.whl",
    sha256: "9f0a3cc26d89724434d9684932fc6f3e4e83669d2a895d858ed2c8a55eb84e8b",
  },
  {
    package: "mlx-metal",
    platform: "macosx_26_0_arm64",
    file: "mlx_metal-0.32.4-py3-none-macosx_26_0_arm64.whl",
    sha256: "514df92d41a286895d2564b4b18f4da45096bd7a4a0c47e1042f345ad5a7f936",
  },
  {
    package: "mlx-cuda-12",
    platform: "manylinux_2_35_x86_64",
    file: "mlx_cuda_12-0.32.4-py3-none-manylinux_2_35_x86_64.whl",
    sha256: "f385c7af7c1f63a9d6ce3e442e1c9ba881c881bcb45c6534ff8155b359da47e5",
  },
  {
    package: "mlx-cuda-12",
    platform: "manylinux_2_35_aarch64",
    file: "mlx_cuda_12-0.32.4-py3-none-manylinux_2_35_aarch64.whl",
    sha256: "cea869b007c809013c369819d485e3b534f3ecc261199b4c655ef92a21f73f28",
  },
  {
    package: "mlx-cuda-13",
    platform: "manylinux_2_35_x86_64",
    file: "mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl",
    sha256: "94cb48fba73e5ee39467e51c35c51c691123359ca17bafd1a24cf92ad6732bee",
  },
  {
    package: "mlx-cuda-13",
    platform: "manylinux_2_35_aarch64",
    file: "mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_aarch64.whl",
    sha256: "cf8a67b49cebff85cd98b1d118c09f6c8ee966b899a914c50cc74d614b25616e",
  },
];

export const LIB_SUFFIX = process.platform === "darwin" ? "dylib" : "so";
export const SHIM_NAME = `libmlxk.${LIB_SUFFIX}`;

export const mlxStateDir = (root = REPO_ROOT): string => join(root, ".mlx");
export const statusFile = (root = REPO_ROOT): string => join(mlxStateDir(root), "status.json");
/** The unpacked wheel keeps its layout: <wheelDir>/mlx/{lib,include} and <wheelDir>/mlx_cpu.libs. */
export const wheelDir = (root = REPO_ROOT): string => join(mlxStateDir(root), "wheel");
export const shimBuildDir = (root = REPO_ROOT): string => join(root, "mlx-c", "build");

/** Directory with lib/libmlx.* and include/: MLX_DIR if set, else the unpacked wheel's mlx/. */
export function mlxRoot(env: Env = process.env, root = REPO_ROOT): string {
  const dir = mlxDir(env);
  return dir ? resolve(dir) : join(wheelDir(root), "mlx");
}

/** What the installer recorded: ok, or why MLX is unavailable. */
export interface InstallStatus {
  ok: boolean;
  reason?: string;
  mlxVersion?: string;
  mlxRoot?: string;
  shim?: string;
  wheel?: string;
  /** The device the installed MLX serves (cpu, cuda, metal) and why that wheel was chosen. */
  backend?: "cpu" | "cuda" | "metal";
  backendReason?: string;
  updatedAt?: string;
}

export function readInstallStatus(root = REPO_ROOT): InstallStatus | null {
  try {
    const v = JSON.parse(readFileSync(statusFile(root), "utf8")) as unknown;
    if (typeof v === "object" && v !== null && typeof (v as InstallStatus).ok === "boolean") return v as InstallStatus;
    return null;
  } catch {
    return null;
  }
}

/** What an install left beside the unpacked wheel: the backend it serves and why (read by `--version`, doctor). */
export interface BackendMarker {
  backend: "cpu" | "cuda" | "metal";
  reason: string;
  wheel: string | null;
}

export const backendMarkerFile = (dir: string): string => join(dir, "backend.json");

/** The installed backend: the repo's status.json, else the marker in the repo wheel or the per-user runtime. */
export function installedBackend(env: Env = process.env, root = REPO_ROOT): BackendMarker | null {
  const st = readInstallStatus(root);
  if (st?.ok && st.backend) return { backend: st.backend, reason: st.backendReason ?? "", wheel: st.wheel ?? null };
  for (const dir of [wheelDir(root), userRuntimeDir(env)]) {
    try {
      const m = JSON.parse(readFileSync(backendMarkerFile(dir), "utf8")) as BackendMarker;
      if (m && (m.backend === "cpu" || m.backend === "cuda" || m.backend === "metal")) return m;
    } catch {}
  }
  return null;
}

/** Inside a `bun build --compile` executable (modules live in Bun's virtual /$bunfs). */
export const IS_COMPILED = import.meta.dir.startsWith("/$bunfs") || import.meta.dir.startsWith("B:\\~BUN");

/** Where a shim was found; `mlxk doctor` reports it. */
export type ShimSource = "MLXK_SHIM" | "repo" | "platform-package" | "executable" | "user";

export interface ShimCandidate {
  path: string;
  source: ShimSource;
}

/** The optional-dependency package with a prebuilt runtime for this machine (esbuild's pattern). */
export const PLATFORM_PACKAGE = `mlxk-${process.platform}-${process.arch}`;

/** Folder of the installed platform package, or null (not installed, or inside a compiled executable). */
export function platformPackageDir(root = REPO_ROOT): string | null {
  try {
    return dirname(Bun.resolveSync(`${PLATFORM_PACKAGE}/package.json`, root));
  } catch {
    return null;
  }
}

/** Per-user runtime set up on first use: $XDG_DATA_HOME/mlxk/<mlx-version>/ in the sidecar layout. */
export const userRuntimeDir = (env: Env = process.env): string => join(mlxkDataDir(env), MLX_VERSION);

/**
 * Where the mlx-c/ sources are: the package (or checkout), else share/ beside a compiled executable whose
 * release archive has no prebuilt runtime (darwin-arm64 built off a Mac); null when there are none.
 */
export function sourceRoot(): string | null {
  if (existsSync(join(REPO_ROOT, "mlx-c", "VERSION"))) return REPO_ROOT;
  if (IS_COMPILED) {
    const share = join(dirname(realExecPath()), "share");
    if (existsSync(join(share, "mlx-c", "VERSION"))) return share;
  }
  return null;
}

/** Every file under mlx-c/src and mlx-c/include (recursive), plus VERSION: the shim's inputs. */
export function shimSources(root = sourceRoot() ?? REPO_ROOT): string[] {
  const dir = join(root, "mlx-c");
  const files = (sub: string): string[] =>
    readdirSync(join(dir, sub), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name))
      .sort();
  return [...files("src"), ...files("include"), join(dir, "VERSION")];
}

/**
 * The user runtime's shim is named after a hash of its sources, so two mlxk versions sharing one MLX
 * version never load each other's shim. Null without sources (a compiled executable with lib/ instead).
 */
export function userShimPath(env: Env = process.env, root: string | null = sourceRoot()): string | null {
  if (!root || !existsSync(join(root, "mlx-c", "VERSION"))) return null;
  const h = createHash("sha256");
  for (const f of shimSources(root)) h.update(f.slice(root.length)).update(readFileSync(f));
  return join(userRuntimeDir(env), `libmlxk-${h.digest("hex").slice(0, 12)}.${LIB_SUFFIX}`);
}

/** Candidate shims in search order: MLXK_SHIM, the repo's mlx-c/build/, the platform package, lib/ beside a compiled executable, the user runtime. */
export function shimCandidateList(env: Env = process.env, root = REPO_ROOT): ShimCandidate[] {
  const explicit = mlxShimPath(env);
  if (explicit) return [{ path: resolve(explicit), source: "MLXK_SHIM" }];
  const out: ShimCandidate[] = [{ path: join(shimBuildDir(root), SHIM_NAME), source: "repo" }];
  const pkg = platformPackageDir(root);
  if (pkg) out.push({ path: join(pkg, "lib", SHIM_NAME), source: "platform-package" });
  // realpath: the executable may be reached through a symlink (install.sh, Homebrew link it into a bin/)
  if (IS_COMPILED) out.push({ path: join(dirname(realExecPath()), "lib", SHIM_NAME), source: "executable" });
  const user = userShimPath(env, root === REPO_ROOT ? sourceRoot() : root);
  if (user) out.push({ path: user, source: "user" });
  return out;
}

function realExecPath(): string {
  try {
    return realpathSync(process.execPath);
  } catch {
    return process.execPath;
  }
}

export function shimCandidates(env: Env = process.env, root = REPO_ROOT): string[] {
  return shimCandidateList(env, root).map((c) => c.path);
}

export function findShimCandidate(env: Env = process.env, root = REPO_ROOT): ShimCandidate | null {
  return shimCandidateList(env, root).find((c) => existsSync(c.path)) ?? null;
}

export function findShim(env: Env = process.env, root = REPO_ROOT): string | null {
  return findShimCandidate(env, root)?.path ?? null;
}

/**
 * Copy the runtime next to a `bun build --compile` executable: <libDir>/libmlxk.*, <libDir>/mlx/lib/ (libmlx,
 * and mlx.metallib on macOS) and <libDir>/mlx_cpu.libs/ (the wheel's BLAS, found by libmlx via
 * $ORIGIN/../../mlx_cpu.libs). The shim's RPATH includes $ORIGIN/mlx/lib, so no env var is needed when
 * libDir is `lib/` beside the executable. Returns the shim's new path.
 */
export function copyRuntimeSidecar(libDir: string, env: Env = process.env, root = REPO_ROOT): string {
  const shim = findShim(env, root);
  if (!shim) throw new Error("MLX shim not built; run `npm install` first");
  return copySidecar(shim, mlxRoot(env, root), libDir);
}

/** The same layout from an explicit shim and MLX root (also another platform's, for release archives). */
export function copySidecar(shim: string, mlxRootDir: string, libDir: string): string {
  mkdirSync(join(libDir, "mlx"), { recursive: true });
  const dest = join(libDir, basename(shim).replace(/^libmlxk-[0-9a-f]+\./, "libmlxk."));
  cpSync(shim, dest);
  cpSync(join(mlxRootDir, "lib"), join(libDir, "mlx", "lib"), { recursive: true });
  const blas = join(mlxRootDir, "..", "mlx_cpu.libs");
  if (existsSync(blas)) cpSync(blas, join(libDir, "mlx_cpu.libs"), { recursive: true });
  return dest;
}

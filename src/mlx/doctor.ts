/** The facts `mlxk doctor` reports: which runtime would load, from where, with which backend, and what is missing. */
import { existsSync } from "node:fs";
import { type Env, hubCacheDir } from "../env.ts";
import type { DoctorData } from "../schemas/doctor.ts";
import { CLI_VERSION } from "../version.ts";
import { mlxAvailability } from "./ffi.ts";
import { findCompiler, findPython } from "./install.ts";
import { findShimCandidate, installedBackend, IS_COMPILED, MLX_VERSION, PLATFORM_PACKAGE, platformPackageDir, readInstallStatus, shimCandidateList, sourceRoot, statusFile, userRuntimeDir } from "./paths.ts";
import { shimVersion } from "./runtime.ts";
import { deviceMemory } from "./backend.ts";

/** The MLX 0.32.4 Linux wheels are manylinux_2_35: older glibc cannot load libmlx. */
const MIN_GLIBC = [2, 35];

function glibcVersion(): string | null {
  if (process.platform !== "linux") return null;
  const h = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return h?.glibcVersionRuntime ?? null;
}

export function glibcTooOld(v: string | null): boolean {
  if (!v) return false;
  const [maj = 0, min = 0] = v.split(".").map(Number);
  return maj < MIN_GLIBC[0]! || (maj === MIN_GLIBC[0] && min < MIN_GLIBC[1]!);
}

export function diagnose(env: Env = process.env): DoctorData {
  const found = findShimCandidate(env);
  const avail = mlxAvailability(env);
  const status = readInstallStatus();
  const exe = IS_COMPILED;
  // a first-use setup is possible wherever mlx-c/ sources are (package, checkout, or share/ beside an executable)
  const canSetUp = sourceRoot() !== null;
  const pip = canSetUp ? findPython(env) : null;
  const cxx = canSetUp ? findCompiler(env) : null;
  const missing: string[] = [];
  let backend: "cpu" | "cuda" | "metal" | null = null;
  let device: DoctorData["runtime"]["device"] = null;
  const glibc = glibcVersion();
  if (glibcTooOld(glibc)) missing.push(`glibc >= ${MIN_GLIBC.join(".")} (this system has ${glibc}; the MLX ${MLX_VERSION} wheels are manylinux_2_35)`);
  if (avail.available) {
    const m = deviceMemory(env);
    backend = m.device;
    device = { name: m.name, memory_total_bytes: m.totalBytes, memory_free_bytes: m.freeBytes };
  } else {
    if (!found) {
      missing.push(
        !canSetUp
          ? "the MLX runtime beside the executable (lib/libmlxk.*): unpack the whole release archive, not only the binary"
          : `the MLX runtime: ${exe ? "no lib/ beside the executable" : `no ${PLATFORM_PACKAGE} package`} and nothing set up in ${userRuntimeDir(env)}; \`mlxk run\` sets it up on first use`,
      );
      if (canSetUp && !pip) missing.push("python3 with pip (to fetch the MLX wheel on first use)");
      if (canSetUp && !cxx) missing.push("a C++20 compiler (g++ or clang++, to build the shim on first use)");
    } else {
      missing.push(`a loadable shim: ${avail.reason}`);
    }
  }
  return {
    mlxk_version: CLI_VERSION,
    bun_version: Bun.version,
    platform: `${process.platform}-${process.arch}`,
    executable: exe,
    glibc,
    runtime: {
      available: avail.available,
      source: found?.source ?? null,
      shim: avail.shim ?? found?.path ?? null,
      mlx_version: avail.mlxVersion ?? null,
      shim_version: avail.available ? shimVersion() : null,
      backend,
      backend_reason: installedBackend(env)?.reason ?? null,
      device,
      reason: avail.available ? null : (avail.reason ?? "unknown"),
    },
    paths: {
      hf_cache: hubCacheDir(env),
      user_runtime: userRuntimeDir(env),
      platform_package: exe ? null : platformPackageDir(),
      install_status: status ? statusFile() : null,
    },
    candidates: shimCandidateList(env).map((c) => ({ path: c.path, source: c.source, exists: existsSync(c.path) })),
    setup_tools: { pip, compiler: cxx },
    missing,
  };
}

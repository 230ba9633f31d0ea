/** The facts `mlxk doctor` reports: which runtime would load, from where, with which backend, and what is missing. */
import { existsSync } from "node:fs";
import { type Env, hubCacheDir } from "../env.ts";
import type { DoctorData } from "../schemas/doctor.ts";
import { CLI_VERSION } from "../version.ts";
import { mlxAvailability } from "./ffi.ts";
import { findCompiler, findPython } from "./install.ts";
import { findShimCandidate, IS_COMPILED, PLATFORM_PACKAGE, platformPackageDir, readInstallStatus, shimCandidateList, sourceRoot, statusFile, userRuntimeDir } from "./paths.ts";
import { shimVersion } from "./runtime.ts";
import { deviceAvailable } from "./stream.ts";

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
  let backend: "cpu" | "metal" | null = null;
  if (avail.available) {
    backend = deviceAvailable("gpu") ? "metal" : "cpu";
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
    runtime: {
      available: avail.available,
      source: found?.source ?? null,
      shim: avail.shim ?? found?.path ?? null,
      mlx_version: avail.mlxVersion ?? null,
      shim_version: avail.available ? shimVersion() : null,
      backend,
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

/** `data` of `mlxk doctor --json`: where the MLX runtime comes from and what is missing (an mlxk addition). */
import * as v from "valibot";

const path = v.string();

export const DoctorDataSchema = v.strictObject({
  mlxk_version: v.string(),
  bun_version: v.string(),
  platform: v.pipe(v.string(), v.description("<os>-<arch>, e.g. linux-x64")),
  executable: v.pipe(v.boolean(), v.description("running as the standalone `bun build --compile` executable")),
  glibc: v.pipe(v.nullable(v.string()), v.description("glibc version on Linux (the MLX wheels need >= 2.35); null elsewhere")),
  runtime: v.strictObject({
    available: v.boolean(),
    source: v.nullable(v.picklist(["MLXK_SHIM", "repo", "platform-package", "executable", "user"])),
    shim: v.nullable(path),
    mlx_version: v.nullable(v.string()),
    shim_version: v.nullable(v.string()),
    backend: v.nullable(v.picklist(["cpu", "cuda", "metal"])),
    backend_reason: v.pipe(v.nullable(v.string()), v.description("why the installer chose this MLX build (from .mlx/status.json or the runtime's backend.json)")),
    device: v.pipe(
      v.nullable(v.strictObject({ name: v.nullable(v.string()), memory_total_bytes: v.number(), memory_free_bytes: v.number() })),
      v.description("the device models run on and its memory; null when MLX cannot load"),
    ),
    reason: v.nullable(v.pipe(v.string(), v.description("why MLX cannot be used; null when available"))),
  }),
  paths: v.strictObject({
    hf_cache: path,
    user_runtime: path,
    platform_package: v.nullable(path),
    install_status: v.nullable(path),
  }),
  candidates: v.array(v.strictObject({ path, source: v.string(), exists: v.boolean() })),
  setup_tools: v.pipe(
    v.strictObject({ pip: v.nullable(v.string()), compiler: v.nullable(v.string()) }),
    v.description("what a first-use setup needs (python -m pip, a C++20 compiler); null = not found"),
  ),
  missing: v.array(v.string()),
});
export type DoctorData = v.InferOutput<typeof DoctorDataSchema>;

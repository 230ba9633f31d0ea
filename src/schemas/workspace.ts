/**
 * `data` of the workspace commands (`clone`, and later `convert`, `push`): mlx-knife 0.2.3 field names plus
 * documented mlxk additions.
 *
 * Exports: CloneDataSchema, CLONE_STATUSES, CloneData, ConvertDataSchema, ConvertData
 */
import * as v from "valibot";

const int0 = v.pipe(v.number(), v.integer(), v.minValue(0));

export const CLONE_STATUSES = ["success", "error", "cancelled", "pulling", "resuming", "preparing", "cloning", "health_checking", "pull_failed", "filesystem_error", "unknown"] as const;

export const CloneDataSchema = v.strictObject({
  model: v.string(),
  clone_status: v.picklist(CLONE_STATUSES),
  message: v.string(),
  target_dir: v.pipe(v.string(), v.description("absolute path of the workspace")),
  health_check: v.boolean(),
  health: v.nullable(v.picklist(["healthy", "unhealthy"])),
  health_reason: v.nullable(v.string()),
  /** mlxk additions */
  source: v.nullable(v.picklist(["cache", "hub"])),
  commit_hash: v.nullable(v.string()),
  files: int0,
  bytes: int0,
  copy_method: v.nullable(v.picklist(["reflink", "copy", "hardlink", "mixed", "none"])),
  content_hash: v.nullable(v.string()),
  resumed: v.boolean(),
});
export type CloneData = v.InferOutput<typeof CloneDataSchema>;

export const ConvertDataSchema = v.strictObject({
  source: v.string(),
  target: v.string(),
  mode: v.picklist(["quantize", "dtype", "repair-index"]),
  health_check: v.boolean(),
  health_status: v.nullable(v.picklist(["healthy", "unhealthy"])),
  health_reason: v.nullable(v.string()),
  message: v.string(),
  warning: v.nullable(v.string()),
  bits: v.nullable(v.number()),
  group_size: v.nullable(v.number()),
  content_hash: v.nullable(v.string()),
  /** mlxk additions */
  q_mode: v.nullable(v.picklist(["affine", "mxfp4"])),
  dtype: v.nullable(v.string()),
  quantized_tensors: int0,
  shards: int0,
  bytes: int0,
  overrides: v.record(v.string(), v.unknown()),
});
export type ConvertData = v.InferOutput<typeof ConvertDataSchema>;

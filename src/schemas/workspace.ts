/**
 * `data` of the workspace commands (`clone`, and later `convert`, `push`): mlx-knife 0.2.3 field names plus
 * documented mlxk additions.
 *
 * Exports: CloneDataSchema, CLONE_STATUSES, CloneData, ConvertDataSchema, ConvertData, PushDataSchema, PushData
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

const Summary = v.strictObject({ added: int0, modified: int0, deleted: int0 });

export const PushDataSchema = v.strictObject({
  repo_id: v.string(),
  branch: v.string(),
  repo_url: v.string(),
  commit_sha: v.nullable(v.string()),
  commit_url: v.nullable(v.string()),
  uploaded_files_count: int0,
  local_files_count: int0,
  no_changes: v.boolean(),
  created_repo: v.boolean(),
  created_branch: v.boolean(),
  change_summary: Summary,
  message: v.string(),
  /** mlx-knife called push experimental; mlxk's is not, and says so. */
  experimental: v.boolean(),
  disclaimer: v.nullable(v.string()),
  dry_run: v.optional(v.boolean()),
  dry_run_summary: v.optional(Summary),
  would_create_repo: v.optional(v.boolean()),
  would_create_branch: v.optional(v.boolean()),
  /** Files the dry run would upload / the push uploaded, and remote files the workspace no longer has (kept). */
  files: v.optional(v.array(v.strictObject({ path: v.string(), change: v.picklist(["added", "modified", "unchanged", "remote_only"]), size: int0 }))),
  workspace_health: v.optional(v.record(v.string(), v.unknown())),
});
export type PushData = v.InferOutput<typeof PushDataSchema>;

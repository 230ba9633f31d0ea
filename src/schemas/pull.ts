/**
 * `data` of `pull --json` (mlx-knife 0.2.3 fields `model`, `download_status`, `message`, `expanded_name`,
 * `commit_hash`, plus mlxk additions). On error the envelope keeps this skeleton as `data`.
 *
 * Exports: PullDataSchema, PULL_STATUSES, PullData.
 */
import * as v from "valibot";

const int0 = v.pipe(v.number(), v.integer(), v.minValue(0));
const commit = v.nullable(v.pipe(v.string(), v.regex(/^[A-Za-z0-9]{40}$/)));

export const PULL_STATUSES = ["unknown", "success", "already_exists", "requires_confirmation", "failed", "access_denied", "error"] as const;

export const PullDataSchema = v.strictObject({
  model: v.pipe(v.nullable(v.string()), v.description("Repo id that was pulled (after short-name expansion)")),
  download_status: v.picklist(PULL_STATUSES),
  message: v.string(),
  expanded_name: v.pipe(v.nullable(v.string()), v.description("Resolved name when it differs from the input, e.g. mlx-community/<name>")),
  commit_hash: commit,
  /** mlxk addition: same as commit_hash. */
  commit,
  /** mlxk addition: the snapshot folder. */
  local_dir: v.nullable(v.string()),
  /** mlxk addition: number of files in this pull (or in the cached snapshot for already_exists). */
  files: int0,
  /** mlxk addition: bytes that came over the network in this run. */
  bytes_downloaded: int0,
  health: v.nullable(v.picklist(["healthy", "unhealthy"])),
  health_reason: v.nullable(v.string()),
  preflight_warning: v.optional(v.string()),
});
export type PullData = v.InferOutput<typeof PullDataSchema>;

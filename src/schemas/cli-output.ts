/**
 * `data` of the cache commands' JSON envelopes (mlx-knife JSON API 0.2.3 field names, plus documented
 * additions). Exported as JSON Schema into docs/json-api-schema.json by scripts/gen-json-schema.ts.
 *
 * Exports: ModelObjectSchema, ListDataSchema, HealthEntrySchema, HealthDataSchema, ShowDataSchema,
 *          ShowMetadataSchema, ShowFileSchema, RmDataSchema, RM_ACTIONS, and the inferred types.
 */
import * as v from "valibot";

const int0 = v.pipe(v.number(), v.integer(), v.minValue(0));
const isoUtc = v.pipe(v.string(), v.regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/));

export const ModelObjectSchema = v.strictObject({
  name: v.pipe(v.string(), v.description("HF `org/name`; local models: absolute path")),
  hash: v.nullable(v.pipe(v.string(), v.regex(/^[A-Za-z0-9]{40}$/))),
  size_bytes: int0,
  last_modified: v.pipe(isoUtc, v.description("UTC mtime of the selected snapshot")),
  framework: v.picklist(["MLX", "GGUF", "PyTorch", "Unknown"]),
  model_type: v.pipe(v.string(), v.description("chat | base | embedding | audio")),
  capabilities: v.array(v.string()),
  /** As mlx-knife 2.0.8 adds: context window from config.json, null when it names none. */
  context_length: v.optional(v.nullable(int0)),
  health: v.picklist(["healthy", "unhealthy"]),
  runtime_compatible: v.boolean(),
  reason: v.nullable(v.string()),
  cached: v.boolean(),
  origin: v.nullable(v.string()),
  content_hash: v.nullable(v.pipe(v.string(), v.regex(/^(sha256:[0-9a-f]{64}|[0-9a-f]{64})$/))),
  hash_modified: v.nullable(v.string()),
  clean: v.nullable(v.boolean()),
  display_name: v.nullable(v.string()),
  quantization: v.optional(v.nullable(v.record(v.string(), v.unknown()))),
});
export type ModelObject = v.InferOutput<typeof ModelObjectSchema>;

export const ListDataSchema = v.strictObject({
  models: v.array(ModelObjectSchema),
  count: int0,
  /** As mlx-knife 2.0.8 (spec 0.2.4) adds: what this machine has, so "does it fit" takes one call. */
  system: v.optional(v.nullable(v.strictObject({ memory_total_bytes: int0 }))),
});
export type ListData = v.InferOutput<typeof ListDataSchema>;

export const HealthEntrySchema = v.strictObject({
  name: v.string(),
  status: v.picklist(["healthy", "unhealthy"]),
  reason: v.string(),
  /** mlxk addition: can mlxk run it (null when the files are broken). */
  runtime_compatible: v.optional(v.boolean()),
  runtime_reason: v.optional(v.nullable(v.string())),
  /** Workspace entries (mlx-knife 2.0.x): the sentinel says `managed: true`. */
  managed: v.optional(v.boolean()),
  /** mlxk addition (`--verify`): files whose content does not match their blob hash. */
  corrupt_files: v.optional(v.array(v.string())),
});
export type HealthEntry = v.InferOutput<typeof HealthEntrySchema>;

export const HealthDataSchema = v.strictObject({
  healthy: v.array(HealthEntrySchema),
  unhealthy: v.array(HealthEntrySchema),
  summary: v.strictObject({ total: int0, healthy_count: int0, unhealthy_count: int0 }),
  /** mlxk addition: true when `--verify` re-hashed the blobs. */
  verified: v.optional(v.boolean()),
});
export type HealthData = v.InferOutput<typeof HealthDataSchema>;

export const ShowMetadataSchema = v.strictObject({
  model_type: v.nullable(v.string()),
  architecture: v.nullable(v.string()),
  quantization: v.pipe(v.nullable(v.string()), v.description('"<bits>bit", as mlx-knife')),
  quantization_bits: v.nullable(v.number()),
  quantization_group_size: v.nullable(v.number()),
  quantization_mode: v.nullable(v.string()),
  context_length: v.nullable(v.number()),
  vocab_size: v.nullable(v.number()),
  hidden_size: v.nullable(v.number()),
  num_attention_heads: v.nullable(v.number()),
  num_hidden_layers: v.nullable(v.number()),
  parameters: v.pipe(v.nullable(int0), v.description("from safetensors headers; quantized weights unpacked to logical size")),
  dtypes: v.array(v.string()),
});
export type ShowMetadata = v.InferOutput<typeof ShowMetadataSchema>;

export const ShowFileSchema = v.strictObject({
  name: v.string(),
  size: v.pipe(v.string(), v.description("decimal, e.g. 1.2KB / 2.3GB / 588B")),
  size_bytes: int0,
  type: v.picklist(["config", "weights", "tokenizer", "readme", "other"]),
});
export type ShowFile = v.InferOutput<typeof ShowFileSchema>;

/** mlxk addition (`show` of a GGUF repo): one quant (file or split set) of the repo. */
export const GgufQuantSchema = v.strictObject({
  quant: v.pipe(v.string(), v.description("what `name:QUANT` selects: the quant in the file name, else the file stem")),
  files: v.array(v.string()),
  parts: v.pipe(int0, v.description("declared parts of a split set (-00001-of-0000N); 1 for a single file")),
  size_bytes: int0,
  healthy: v.boolean(),
  reason: v.nullable(v.string()),
  runtime_compatible: v.boolean(),
  runtime_reason: v.nullable(v.string()),
  default: v.pipe(v.boolean(), v.description("the quant the bare name opens")),
  selected: v.pipe(v.boolean(), v.description("the quant this output describes")),
});

/** mlxk addition: the GGUF header facts of the selected quant and every quant of the repo. */
export const GgufShowSchema = v.strictObject({
  file: v.string(),
  quant: v.string(),
  version: v.nullable(int0),
  name: v.nullable(v.string()),
  architecture: v.nullable(v.string()),
  tokenizer: v.pipe(v.nullable(v.string()), v.description("tokenizer.ggml.model (gpt2, llama…)")),
  chat_template: v.boolean(),
  tensor_count: v.nullable(int0),
  tensor_types: v.record(v.string(), int0),
  quants: v.array(GgufQuantSchema),
});
export type GgufShow = v.InferOutput<typeof GgufShowSchema>;

export const ShowDataSchema = v.strictObject({
  model: ModelObjectSchema,
  /** The workspace's `.mlxk_workspace.json` as found; null for cache models and dirs without a valid one. */
  workspace_metadata: v.nullable(v.record(v.string(), v.unknown())),
  metadata: v.optional(v.nullable(ShowMetadataSchema)),
  files: v.optional(v.array(ShowFileSchema)),
  config: v.optional(v.nullable(v.record(v.string(), v.unknown()))),
  /** mlxk addition, GGUF repos only. `--config` of a GGUF repo prints the config mlxk derives from its header. */
  gguf: v.optional(GgufShowSchema),
});
export type ShowData = v.InferOutput<typeof ShowDataSchema>;

export const RM_ACTIONS = ["deleted", "requires_confirmation", "ambiguous", "cancelled", "dry_run", "unknown"] as const;

export const RmDataSchema = v.strictObject({
  model: v.nullable(v.string()),
  action: v.picklist(RM_ACTIONS),
  message: v.string(),
  requires_confirmation: v.boolean(),
  matches: v.array(v.string()),
  lock_files_cleaned: int0,
  commit_hash: v.optional(v.nullable(v.string())),
  locks_detected: v.optional(v.boolean()),
  lock_files: v.optional(v.array(v.string())),
  /** mlxk additions: bytes freed (or that would be freed) and the paths below the cache that go. */
  freed_bytes: v.optional(int0),
  dry_run: v.optional(v.boolean()),
  paths: v.optional(v.array(v.string())),
});
export type RmData = v.InferOutput<typeof RmDataSchema>;

import * as v from "valibot";

/** The CLI JSON envelope: every `--json` run prints exactly one of these on stdout. */
export const ErrorObjectSchema = v.looseObject({
  type: v.string(),
  message: v.string(),
});

export const EnvelopeSchema = v.strictObject({
  status: v.picklist(["success", "error"]),
  command: v.nullable(v.string()),
  data: v.nullable(v.unknown()),
  error: v.nullable(ErrorObjectSchema),
});
export type Envelope = v.InferOutput<typeof EnvelopeSchema>;

export const VersionDataSchema = v.strictObject({
  cli_version: v.string(),
  json_api_spec_version: v.pipe(v.string(), v.regex(/^\d+\.\d+\.\d+$/)),
  system: v.nullable(v.strictObject({ memory_total_bytes: v.pipe(v.number(), v.integer(), v.minValue(0)) })),
  /** mlxk: the installed MLX build's backend and why the installer chose it (null: nothing recorded yet). */
  backend: v.optional(
    v.nullable(v.strictObject({ device: v.picklist(["cpu", "cuda", "metal"]), reason: v.string(), wheel: v.nullable(v.string()) })),
  ),
});
export type VersionData = v.InferOutput<typeof VersionDataSchema>;

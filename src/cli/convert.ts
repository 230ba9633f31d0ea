/** `mlxk convert <source> <target>`: quantize, cast or repair a model into a new workspace. */
import { defineCommand } from "citty";
import { MlxkError } from "../errors.ts";
import { formatBytes } from "../hub/progress.ts";
import type { ConvertData } from "../schemas/workspace.ts";
import { convert } from "../workspace/convert.ts";
import { QUANT_BITS } from "../workspace/quant-plan.ts";
import { jsonArgs, parseIntArg } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";

const DTYPES = ["float16", "bfloat16", "float32"] as const;

function human(d: ConvertData): string {
  const lines = [`convert: ${d.source} → ${d.target} — ${d.message}`, `  ${formatBytes(d.bytes)} of weights${d.quantized_tensors ? `, ${d.quantized_tensors} tensors quantized` : ""}, content hash ${d.content_hash}`];
  if (Object.keys(d.overrides).length > 0) lines.push(`  per-layer: ${Object.entries(d.overrides).map(([k, v]) => `${k} ${(v as { bits: number }).bits}-bit`).join(", ")}`);
  if (d.warning) lines.push(`  warning: ${d.warning}`);
  if (d.health_check) lines.push(`  health: ${d.health_status} — ${d.health_reason}`);
  return lines.join("\n");
}

export default defineCommand({
  meta: { name: "convert", description: "Quantize (--quantize), cast (--dtype) or repair (--repair-index) a model into a new workspace" },
  args: {
    source: { type: "positional", description: "Cache name, workspace or model dir (MLX or transformers-saved)", required: true },
    target: { type: "positional", description: "New workspace dir (must not exist or be empty); a bare name goes into MLXK_WORKSPACE_HOME", required: true },
    quantize: { type: "string", description: `Bits per weight: ${QUANT_BITS.join(", ")}` },
    "q-group-size": { type: "string", description: "Group size: 32, 64 (default) or 128" },
    "q-mode": { type: "string", description: "affine (default) or mxfp4" },
    dtype: { type: "string", description: "Float dtype of the output: float16, bfloat16 or float32 (default: config torch_dtype, as mlx-lm)" },
    "repair-index": { type: "boolean", description: "Rebuild model.safetensors.index.json from the shard headers (weights copied as they are)" },
    "max-shard-size": { type: "string", description: "Largest shard in MB (default 5120, as mlx-lm)" },
    "skip-health": { type: "boolean", description: "Do not health-check the output before publishing it" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    const bits = parseIntArg("quantize", args.quantize as string | undefined, 2, 8);
    if (bits !== undefined && !(QUANT_BITS as readonly number[]).includes(bits)) throw new MlxkError("InvalidArgumentError", `--quantize must be one of ${QUANT_BITS.join(", ")} (got ${bits})`);
    const groupSize = parseIntArg("q-group-size", args["q-group-size"] as string | undefined, 32, 128);
    if (groupSize !== undefined && ![32, 64, 128].includes(groupSize)) throw new MlxkError("InvalidArgumentError", `--q-group-size must be 32, 64 or 128 (got ${groupSize})`);
    const qMode = args["q-mode"] as string | undefined;
    if (qMode !== undefined && qMode !== "affine" && qMode !== "mxfp4") throw new MlxkError("InvalidArgumentError", `--q-mode must be affine or mxfp4 (got '${qMode}')`);
    const dtype = args.dtype as string | undefined;
    if (dtype !== undefined && !(DTYPES as readonly string[]).includes(dtype)) throw new MlxkError("InvalidArgumentError", `--dtype must be one of ${DTYPES.join(", ")} (got '${dtype}')`);
    const shardMb = parseIntArg("max-shard-size", args["max-shard-size"] as string | undefined, 1);
    const out = await convert({
      source: String(args.source),
      target: String(args.target),
      env: ctx.env,
      quantize: bits,
      groupSize,
      qMode: qMode as "affine" | "mxfp4" | undefined,
      dtype: dtype as (typeof DTYPES)[number] | undefined,
      repairIndex: Boolean(args["repair-index"]),
      maxShardBytes: shardMb === undefined ? undefined : shardMb * 1024 * 1024,
      healthCheck: !args["skip-health"],
    });
    printSuccess(ctx, "convert", out, () => human(out));
  },
});

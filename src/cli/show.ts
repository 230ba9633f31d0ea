/** `mlxk show <model> [--files | --config]`: one model's details (metadata from config and safetensors headers). */
import { defineCommand } from "citty";
import { resolveModel } from "../cache/resolve.ts";
import { showModel } from "../cache/show.ts";
import { hubCacheDir } from "../env.ts";
import { jsonArgs, modelArg } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";
import { renderShow } from "./render/cache.ts";

export default defineCommand({
  meta: { name: "show", description: "Show details of one model" },
  args: {
    ...modelArg,
    files: { type: "boolean", description: "List the files with sizes and types (wins over --config)" },
    config: { type: "boolean", description: "Print config.json" },
    ...jsonArgs,
  },
  run({ args, data }) {
    const ctx = data as CliContext;
    const hubDir = hubCacheDir(ctx.env);
    const resolved = resolveModel(args.model, { hubDir, env: ctx.env });
    const mode = args.files ? "files" : args.config ? "config" : "metadata";
    const out = showModel(resolved, { hubDir, mode });
    printSuccess(ctx, "show", out, () => renderShow(out));
  },
});

/** `mlxk show <model> [--files | --config] [--recalc-hash]`: one model's details (metadata from config and safetensors headers). */
import { defineCommand } from "citty";
import { resolveModel } from "../cache/resolve.ts";
import { recalcHash } from "../cache/content-hash.ts";
import { showModel } from "../cache/show.ts";
import { readSentinel } from "../cache/workspace.ts";
import { MlxkError } from "../errors.ts";
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
    recalcHash: { type: "boolean", description: "Workspaces: recompute the content hash (v2) and re-pin it in .mlxk_workspace.json" },
    ...jsonArgs,
  },
  run({ args, data }) {
    const ctx = data as CliContext;
    const hubDir = hubCacheDir(ctx.env);
    const resolved = resolveModel(args.model, { hubDir, env: ctx.env });
    const mode = args.files ? "files" : args.config ? "config" : "metadata";
    if (args.recalcHash) {
      // the cache is the Hub's content-addressed store: its files are pinned by the snapshot hash, never by us
      if (resolved.kind !== "path") throw new MlxkError("ValidationError", `--recalc-hash works on workspaces only; '${resolved.name}' is a cache model (its snapshot hash already pins it)`);
      recalcHash(resolved.dir, readSentinel(resolved.dir));
    }
    const out = showModel(resolved, { hubDir, mode });
    if (args.recalcHash) out.hash_updated = true;
    printSuccess(ctx, "show", out, () => renderShow(out));
  },
});

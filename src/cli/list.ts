/** `mlxk list [pattern]`: the cached (or local) models; JSON always carries the full list. */
import { defineCommand } from "citty";
import { totalmem } from "node:os";
import { listModelsParallel } from "../cache/pool.ts";
import { hubCacheDir, scanWorkers, workspaceHome } from "../env.ts";
import type { ListData } from "../schemas/cli-output.ts";
import { jsonArgs } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";
import { renderList } from "./render/cache.ts";

export default defineCommand({
  meta: { name: "list", description: "List the models in the Hugging Face cache and MLXK_WORKSPACE_HOME" },
  args: {
    pattern: { type: "positional", description: "Case-insensitive part of the name, or a path to local models", required: false },
    all: { type: "boolean", description: "Show every model, also unhealthy and not runnable ones, with framework" },
    health: { type: "boolean", description: "Add a health column" },
    verbose: { type: "boolean", description: "Full names, framework, integrity/runtime/reason columns" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    const hubDir = hubCacheDir(ctx.env);
    const { models } = await listModelsParallel({
      hubDir,
      pattern: args.pattern ?? null,
      workers: scanWorkers(ctx.env),
      workspaceHome: workspaceHome(ctx.env),
    });
    const mem = totalmem();
    const out: ListData = { models, count: models.length, system: mem > 0 ? { memory_total_bytes: mem } : null };
    printSuccess(ctx, "list", out, () => renderList(models, { all: args.all, health: args.health, verbose: args.verbose }));
    // a first-time user's empty table: say where we looked and how to fill it (stderr: stdout stays the table)
    if (!ctx.json && models.length === 0 && !args.pattern) {
      ctx.stderr(`No models in ${hubDir} (HF_HUB_CACHE / HF_HOME). Get one: mlxk pull mlx-community/Llama-3.2-1B-Instruct-4bit\n`);
    } else if (!ctx.json && !args.all && models.length > 0 && !models.some((m) => m.health === "healthy" && m.runtime_compatible)) {
      ctx.stderr(`${models.length} model(s) found but none is healthy and runnable here; 'mlxk list --all' shows them, 'mlxk health' says why.\n`);
    }
  },
});

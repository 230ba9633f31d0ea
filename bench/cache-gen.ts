/**
 * Generates a benchmark HF cache with N models (default 500): healthy MLX models (single file and 4-shard with
 * index), broken ones (missing shard, bad config, LFS pointer, partial download), GGUF and PyTorch repos.
 * Real blobs and relative symlinks, small files. Usage: bun bench/cache-gen.ts <dir> [N]
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type FileContent, addRepo, lfsPointer, mlxModelFiles, safetensorsBytes } from "../test/support/hf-cache.ts";

export function generateCache(root: string, n = 500): string {
  const hubDir = join(root, "hub");
  mkdirSync(hubDir, { recursive: true });
  const W = safetensorsBytes({ "model.layers.0.weight": { dtype: "U32", shape: [256, 32] }, "model.layers.0.scales": { dtype: "F16", shape: [256, 4] } });
  const readme = "---\nlibrary_name: mlx\ntags:\n- mlx\n---\n# model\n";
  for (let i = 0; i < n; i++) {
    const kind = i % 20;
    const name = `${kind < 16 ? "mlx-community" : `org${i % 7}`}/Model-${i}-${["Instruct-4bit", "8bit", "bf16", "Chat-4bit"][i % 4]}`;
    let files: Record<string, FileContent> = { ...mlxModelFiles({ modelType: ["llama", "qwen3", "mistral", "phi3"][i % 4] }), "README.md": readme };
    let incomplete: string[] | undefined;
    if (kind >= 4 && kind < 8) {
      delete files["model.safetensors"];
      const shards = [1, 2, 3, 4].map((k) => `model-0000${k}-of-00004.safetensors`);
      for (const s of shards) files[s] = W;
      files["model.safetensors.index.json"] = { json: { metadata: {}, weight_map: Object.fromEntries(shards.map((s, k) => [`layer${k}`, s])) } };
    } else if (kind === 8) delete files["model.safetensors"];
    else if (kind === 9) files["config.json"] = "{ not json";
    else if (kind === 10) files["model.safetensors"] = lfsPointer("weights");
    else if (kind === 11) incomplete = [`${i}`.padStart(64, "a")];
    else if (kind >= 16 && kind < 18) files = { "config.json": { json: { model_type: "llama" } }, "model.Q4_K_M.gguf": W, "README.md": "# gguf\n" };
    else if (kind >= 18) {
      files = {
        "config.json": { json: { model_type: "gpt2", architectures: ["GPT2LMHeadModel"] } },
        "model.safetensors": safetensorsBytes({ w: { dtype: "F32", shape: [64, 64] } }, { format: "pt" }),
        "tokenizer.json": { json: { version: "1.0" } },
        "tokenizer_config.json": { json: {} },
      };
    }
    addRepo(hubDir, { name, files, incomplete });
  }
  return hubDir;
}

if (import.meta.main) {
  const dir = process.argv[2];
  if (!dir) throw new Error("usage: bun bench/cache-gen.ts <dir> [N]");
  console.log(generateCache(dir, Number(process.argv[3] ?? 500)));
}

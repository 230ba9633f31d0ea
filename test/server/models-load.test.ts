/**
 * Whatever GET /v1/models lists, the server loads (issue #10): a cache holding MLX-converted and
 * transformers-saved tiny models (plain, MoE, quantized MoE, multimodal wrappers) — every listed id is
 * leased through the real ModelManager and answers; what is not runnable is not listed.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { freemem } from "node:os";
import { join } from "node:path";
import { ModelManager } from "../../src/server/model-manager.ts";
import { listRunnable, loadTarget, resolveTarget } from "../../src/server/models-source.ts";
import { addRepo, type FileContent, makeTempHub, type TempHub } from "../support/hf-cache.ts";
import { type TinyName, type TinyOptions, writeTinyModel } from "../support/tiny-models.ts";

const REPOS: [string, TinyName, TinyOptions][] = [
  ["mlx-community/tiny-qwen3-moe-4bit", "qwen3_moe_q4", {}],
  ["mlx-community/tiny-gemma-3-4bit", "gemma3", {}],
  ["someone/Tiny-Qwen3-MoE", "qwen3_moe", { layout: "hf", spelling: "v5" }],
  ["someone/Tiny-Llama-3.1", "llama3", { layout: "hf", spelling: "v5" }],
  ["someone/Tiny-Gemma-3-it", "gemma3", { layout: "hf", spelling: "v5" }],
  ["someone/Tiny-Mistral-Small-3.1", "mistral3", { layout: "hf", spelling: "v5" }],
  ["someone/tiny-gpt-oss", "gpt_oss", { layout: "hf", spelling: "v5" }],
];
let hub: TempHub;
let env: Record<string, string | undefined>;

async function filesOf(dir: string): Promise<Record<string, FileContent>> {
  const files: Record<string, FileContent> = {};
  for (const f of new Bun.Glob("*").scanSync({ cwd: dir })) files[f] = new Uint8Array(await Bun.file(join(dir, f)).arrayBuffer());
  return files;
}

beforeAll(async () => {
  hub = makeTempHub();
  for (const [name, tiny, opts] of REPOS) {
    const files = await filesOf(writeTinyModel(tiny, join(hub.root, "src", name.replace("/", "--")), opts));
    if (tiny === "gemma3" || tiny === "mistral3") files["preprocessor_config.json"] = { json: { image_processor_type: "Tiny" } };
    addRepo(hub.hubDir, { name, files });
  }
  // not runnable: .bin-only weights, an unsupported architecture
  addRepo(hub.hubDir, { name: "someone/old-bin-model", files: { "config.json": { json: { model_type: "llama" } }, "pytorch_model.bin": new Uint8Array(64) } });
  env = { ...process.env, HF_HUB_CACHE: hub.hubDir, MLXK_WORKSPACE_HOME: join(hub.root, "no-workspaces") };
});

afterAll(() => hub?.cleanup());

test("every model /v1/models lists loads and answers; the others are not listed", async () => {
  const ids = listRunnable({ env }).map((m) => m.id).sort();
  expect(ids).toEqual(REPOS.map(([n]) => n).sort());
  const loaded: string[] = [];
  const manager = new ModelManager({
    resolve: (s) => resolveTarget(s, { env }),
    load: (t) => {
      loaded.push(t.id);
      return loadTarget(t, { env });
    },
    freeMemory: freemem,
  });
  try {
    for (const id of ids) {
      const lease = await manager.lease(id);
      try {
        expect(lease.engine.info.id).toBe(id);
        let n = 0;
        for await (const ev of lease.engine.generate({ input: { prompt: "Hi" }, maxTokens: 3, sampling: { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 } })) {
          if (ev.type === "done") n = ev.usage.completionTokens;
        }
        expect(n).toBeGreaterThan(0);
      } finally {
        lease.release();
      }
    }
    expect(loaded).toEqual(ids);
    // the resident model is leased by its id without resolving the name again
    const again = await manager.lease(ids.at(-1)!);
    again.release();
    expect(loaded).toEqual(ids);
  } finally {
    manager.close();
    manager.dispose();
  }
});

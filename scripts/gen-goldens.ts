/**
 * Regenerate the golden fixtures: build every tiny model with the TS generator, then
 *   - mlx-lm 0.32.2 on the MLX layout (v4 spelling)      → test/fixtures/goldens/tiny-models.json
 *   - transformers (torch f32) on the transformers layout → test/fixtures/goldens/transformers.json, and the
 *     config.json transformers 5 writes for each model    → test/fixtures/configs/<name>.json
 * and the same for the hybrid / newest families (test/support/tiny-hybrid.ts: qwen3_5, qwen3_next, lfm2,
 * gemma4) → tiny-hybrid.json (mlx-lm) and transformers-hybrid.json (transformers on their `_hf` layouts).
 * Python venv .cache/py-ref (mlx, mlx-lm, torch, transformers; never a product dependency).
 * Usage: bun scripts/gen-goldens.ts [hybrid | name ...]   (hybrid: only the hybrid families; names: only those core models' entries)
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { HF_MODELS, HYBRID_MODELS, type HfName, writeHfModel, writeHybridModel } from "../test/support/tiny-hybrid.ts";
import { GOLDEN_PROMPT, GOLDEN_STEPS, HF_QUANTIZED, QUANTIZED, TINY_MODELS, writeTinyModel } from "../test/support/tiny-models.ts";

const ROOT = resolve(import.meta.dir, "..");
const PY = join(ROOT, ".cache", "py-ref", "bin", "python");

function sh(cmd: string[]): void {
  // with model names given, only their entries are rewritten
  const env = { ...process.env, MLXK_GOLDENS_MERGE: only.length > 0 ? "1" : "0" };
  const p = Bun.spawnSync(cmd, { stdout: "inherit", stderr: "inherit", env });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed with ${p.exitCode}`);
}

if (!existsSync(PY)) throw new Error(`${PY} missing: create the venv with mlx[cpu]==0.32.4 mlx-lm==0.32.2 torch transformers`);

const only = process.argv.slice(2);
const hybridOnly = only.length === 1 && only[0] === "hybrid";
const names = only.length > 0 ? TINY_MODELS.filter((n) => only.includes(n)) : TINY_MODELS;
const tmp = mkdtempSync(join(tmpdir(), "mlxk-goldens-"));
try {
  const outDir = join(ROOT, "test", "fixtures", "goldens");
  mkdirSync(outDir, { recursive: true });
  const prompt = GOLDEN_PROMPT.join(",");
  const configs = join(ROOT, "test", "fixtures", "configs");
  if (only.length === 0 || hybridOnly) {
    const mlxH = HYBRID_MODELS.map((n) => `${n}=${writeHybridModel(n, join(tmp, "mlx", n))}`);
    sh([PY, join(ROOT, "scripts", "gen-goldens.py"), join(outDir, "tiny-hybrid.json"), prompt, String(GOLDEN_STEPS), ...mlxH]);
    const hfH = (Object.keys(HF_MODELS) as HfName[]).map((n) => `${n}=${writeHfModel(n, join(tmp, "hf", n))}`);
    sh([PY, join(ROOT, "scripts", "gen-goldens-hf.py"), join(outDir, "transformers-hybrid.json"), configs, prompt, String(GOLDEN_STEPS), ...hfH]);
  }
  if (hybridOnly) process.exit(0);
  const mlx = names.map((n) => `${n}=${writeTinyModel(n, join(tmp, "mlx", n))}`);
  sh([PY, join(ROOT, "scripts", "gen-goldens.py"), join(outDir, "tiny-models.json"), prompt, String(GOLDEN_STEPS), ...mlx]);
  const hf = names.filter((n) => !QUANTIZED.has(n) || HF_QUANTIZED.has(n)).map((n) => `${n}=${writeTinyModel(n, join(tmp, "hf", n), { layout: "hf" })}`);
  sh([PY, join(ROOT, "scripts", "gen-goldens-hf.py"), join(outDir, "transformers.json"), configs, prompt, String(GOLDEN_STEPS), ...hf]);
  console.log(`wrote goldens in ${outDir}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

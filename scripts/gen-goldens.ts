/**
 * Regenerate test/fixtures/goldens/tiny-models.json: build every tiny fixture model with the TS
 * builder, run mlx-lm on it (Python venv .cache/py-ref, created here if missing) and store its
 * logits and greedy tokens; the hybrid / newest families (test/support/tiny-hybrid.ts) go to
 * tiny-hybrid.json, and transformers' outputs for their transformers-saved layouts are merged into
 * transformers.json (scripts/gen-goldens-hf.py). Usage: bun scripts/gen-goldens.ts [core|hybrid] (default: both)
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { HF_MODELS, HYBRID_MODELS, type HfName, writeHfModel, writeHybridModel } from "../test/support/tiny-hybrid.ts";
import { GOLDEN_PROMPT, GOLDEN_STEPS, TINY_MODELS, writeTinyModel } from "../test/support/tiny-models.ts";

const ROOT = resolve(import.meta.dir, "..");
const VENV = join(ROOT, ".cache", "py-ref");
const PY = join(VENV, "bin", "python");

function sh(cmd: string[]): void {
  const p = Bun.spawnSync(cmd, { stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed with ${p.exitCode}`);
}

if (!existsSync(PY)) {
  sh(["python3", "-m", "venv", VENV]);
  sh([PY, "-m", "pip", "install", "--disable-pip-version-check", "mlx[cpu]==0.32.4", "mlx-lm==0.32.2"]);
}

const tmp = mkdtempSync(join(tmpdir(), "mlxk-goldens-"));
try {
  const which = process.argv[2];
  const sets: [string, string[]][] = [];
  if (which !== "hybrid") sets.push(["tiny-models.json", TINY_MODELS.map((n) => `${n}=${writeTinyModel(n, join(tmp, n))}`)]);
  if (which !== "core") sets.push(["tiny-hybrid.json", HYBRID_MODELS.map((n) => `${n}=${writeHybridModel(n, join(tmp, n))}`)]);
  const outDir = join(ROOT, "test", "fixtures", "goldens");
  mkdirSync(outDir, { recursive: true });
  for (const [file, specs] of sets) {
    sh([PY, join(ROOT, "scripts", "gen-goldens.py"), join(outDir, file), GOLDEN_PROMPT.join(","), String(GOLDEN_STEPS), ...specs]);
    console.log(`wrote ${join(outDir, file)}`);
  }
  if (which !== "core") {
    const hf = (Object.keys(HF_MODELS) as HfName[]).map((n) => `${n}=${writeHfModel(n, join(tmp, n))}`);
    sh([PY, join(ROOT, "scripts", "gen-goldens-hf.py"), join(outDir, "transformers.json"), GOLDEN_PROMPT.join(","), String(GOLDEN_STEPS), ...hf]);
    console.log(`merged ${hf.length} transformers references into ${join(outDir, "transformers.json")}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

/**
 * Regenerate test/fixtures/goldens/tiny-models.json: build every tiny fixture model with the TS
 * builder, run mlx-lm on it (Python venv .cache/py-ref, created here if missing) and store its
 * logits and greedy tokens. Usage: bun scripts/gen-goldens.ts
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
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
  const specs = TINY_MODELS.map((n) => `${n}=${writeTinyModel(n, join(tmp, n))}`);
  const outDir = join(ROOT, "test", "fixtures", "goldens");
  mkdirSync(outDir, { recursive: true });
  sh([PY, join(ROOT, "scripts", "gen-goldens.py"), join(outDir, "tiny-models.json"), GOLDEN_PROMPT.join(","), String(GOLDEN_STEPS), ...specs]);
  console.log(`wrote ${join(outDir, "tiny-models.json")}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

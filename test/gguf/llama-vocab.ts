/**
 * llama.cpp's vocab-only GGUF files (tokenizer metadata, no tensors) with their tokenization test
 * vectors (`.inp` texts, `.out` token ids produced by HF tokenizers). They ship inside the pinned
 * llama-cpp-python sdist on PyPI, fetched with `pip download` and cached under `.cache/llama-vocab/`.
 */
import { createHash } from "node:crypto";
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const SDIST = "llama_cpp_python-0.3.16.tar.gz";
const SDIST_SHA256 = "34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6";
/** Vocabs whose `tokenizer.ggml.pre` we map exactly (deepseek-*, falcon use regexes we do not carry). */
export const LLAMA_VOCABS = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "starcoder", "refact", "command-r"];

const DIR = join(resolve(import.meta.dir, "..", ".."), ".cache", "llama-vocab");

let pending: Promise<string> | undefined;

/** Directory holding ggml-vocab-<name>.gguf(.inp/.out) for every name in LLAMA_VOCABS. */
export function llamaVocabDir(): Promise<string> {
  pending ??= ensure();
  return pending;
}

export interface VocabCase {
  text: string;
  ids: number[];
}

/** The test vectors of one vocab: `.inp` entries end with "\n__ggml_vocab_test__\n", `.out` has one line of ids each. */
export function vocabCases(dir: string, name: string): VocabCase[] {
  const base = join(dir, `ggml-vocab-${name}.gguf`);
  const texts = readFileSync(`${base}.inp`, "utf8").split("\n__ggml_vocab_test__\n");
  texts.pop();
  const lines = readFileSync(`${base}.out`, "utf8").split("\n");
  return texts.map((text, i) => ({
    text,
    ids: (lines[i] ?? "").trim().split(/\s+/).filter(Boolean).map(Number),
  }));
}

async function ensure(): Promise<string> {
  const wanted = LLAMA_VOCABS.flatMap((n) => [`ggml-vocab-${n}.gguf`, `ggml-vocab-${n}.gguf.inp`, `ggml-vocab-${n}.gguf.out`]);
  if (wanted.every((f) => existsSync(join(DIR, f)))) return DIR;
  mkdirSync(DIR, { recursive: true });
  const tmp = mkdtempSync(join(tmpdir(), "mlxk-llama-vocab-"));
  try {
    run(["python3", "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
      "llama-cpp-python==0.3.16", "-d", tmp]);
    const sdist = join(tmp, SDIST);
    const h = createHash("sha256");
    for await (const c of createReadStream(sdist)) h.update(c as Buffer);
    const got = h.digest("hex");
    if (got !== SDIST_SHA256) throw new Error(`${SDIST} sha256 mismatch: got ${got}`);
    const members = wanted.map((f) => `llama_cpp_python-0.3.16/vendor/llama.cpp/models/${f}`);
    run(["tar", "-xzf", sdist, "-C", tmp, ...members]);
    // Copy then rename inside DIR: tmpdir may be another filesystem, and a killed run must not leave a half file.
    for (const f of wanted) {
      copyFileSync(join(tmp, "llama_cpp_python-0.3.16/vendor/llama.cpp/models", f), join(DIR, `${f}.partial`));
      renameSync(join(DIR, `${f}.partial`), join(DIR, f));
    }
    return DIR;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function run(cmd: string[]): void {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.slice(0, 4).join(" ")} failed: ${p.stderr.toString().slice(-2000)}`);
}

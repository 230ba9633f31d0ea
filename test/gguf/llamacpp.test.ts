/**
 * GGUFs written by llama.cpp's own converter (convert_hf_to_gguf.py at llama.cpp de3ff81, `--outtype f16`, from
 * the transformers-saved checkpoints of test/support/hf-tiny.ts; scripts/gguf-llamacpp-fixtures.py) load with the
 * same logits and greedy tokens as those checkpoints loaded from safetensors. This checks our reading of the converter's rules against the
 * converter itself: tensor names, llama's q/k permutation, gemma3's norm + 1 and truncated vocab, phi3's fused
 * tensors and longrope factor tensors, qwen2's biases, qwen3's q/k norms, qwen3moe's stacked experts.
 *
 * The reference holds what the file holds: 2-D weights rounded to fp16 as the converter stores them; for gemma3
 * the vocabulary rows the converter kept (the sources use sliding-window pattern 6, the one llama.cpp assumes).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadGgufModel, loadModelDir } from "../../src/engine/load.ts";
import { readGguf } from "../../src/gguf/reader.ts";
import { expectSameModel } from "../support/gguf-compare.ts";
import { readSafetensorsDir } from "../support/hf-to-gguf.ts";
import { HF_TINY_ARCHS, type HfTinyArch, writeHfTiny } from "../support/hf-tiny.ts";
import { writeSafetensors } from "../support/tiny-models.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/gguf");
const tmp = mkdtempSync(join(tmpdir(), "mlxk-lcpp-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const dv = new DataView(new ArrayBuffer(2));
const f16 = (x: number) => (dv.setFloat16(0, x, true), dv.getFloat16(0, true));

/** The source checkpoint with the fp16 values the file holds; gemma3: only the vocabulary rows the converter kept. */
function reference(arch: HfTinyArch, gguf: string): string {
  const dir = writeHfTiny(arch, join(tmp, arch), { round16: true });
  if (arch !== "gemma3_text") return dir;
  const rows = readGguf(gguf).tensors.find((x) => x.name === "token_embd.weight")!.shape[0]!;
  const t = readSafetensorsDir(dir);
  const e = t["model.embed_tokens.weight"]!;
  t["model.embed_tokens.weight"] = { ...e, shape: [rows, e.shape[1]!], data: e.data.slice(0, rows * e.shape[1]!) };
  writeSafetensors(dir, t as never, 1, "pt");
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, vocab_size: rows }));
  return dir;
}

describe.each([...HF_TINY_ARCHS])("%s converted by llama.cpp", (arch) => {
  test("logits within 1e-3 and 32 greedy tokens equal the transformers-saved model", async () => {
    const gguf = join(FIXTURES, `tiny-${arch}.llamacpp.F16.gguf`);
    using g = await loadGgufModel(gguf, { dtype: "float32" });
    using r = await loadModelDir(reference(arch, gguf), { dtype: "float32" });
    expectSameModel(g, r);
  });
});

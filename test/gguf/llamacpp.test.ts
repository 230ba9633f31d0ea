/**
 * GGUFs written by llama.cpp's own converter (convert_hf_to_gguf.py at llama.cpp de3ff81, `--outtype f16`, from
 * the transformers-saved tiny models; scripts/gguf-llamacpp-fixtures.py) load with the same logits and greedy
 * tokens as the tiny model from safetensors. This checks our reading of the converter's rules against the
 * converter itself: tensor names, llama's q/k permutation, gemma3's norm + 1 and truncated vocab, phi3's fused
 * tensors and longrope factor tensors, qwen2's biases, qwen3's q/k norms, qwen3moe's stacked experts.
 *
 * The reference holds what the file holds: 2-D weights rounded to fp16 as the converter stores them; for gemma3
 * the vocabulary rows the converter kept and llama.cpp's fixed sliding-window pattern (6: it writes no key for it).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadGgufModel, loadModelDir } from "../../src/engine/load.ts";
import { readGguf } from "../../src/gguf/reader.ts";
import { expectSameModel } from "../support/gguf-compare.ts";
import { readSafetensorsDir, writeHfQwen3Moe } from "../support/hf-to-gguf.ts";
import { type TinyName, writeSafetensors, writeTinyModel } from "../support/tiny-models.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/gguf");
const tmp = mkdtempSync(join(tmpdir(), "mlxk-lcpp-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const dv = new DataView(new ArrayBuffer(2));
const f16 = (x: number) => (dv.setFloat16(0, x, true), dv.getFloat16(0, true));

function reference(name: TinyName, gguf: string): string {
  const dir = writeTinyModel(name, join(tmp, name));
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  const t = readSafetensorsDir(dir);
  for (const k of Object.keys(t)) if (t[k]!.shape.length >= 2) t[k]!.data = Float32Array.from(t[k]!.data, f16);
  if (name === "gemma3_text") {
    const rows = readGguf(gguf).tensors.find((x) => x.name === "token_embd.weight")!.shape[0]!;
    const e = t["model.embed_tokens.weight"]!;
    t["model.embed_tokens.weight"] = { ...e, shape: [rows, e.shape[1]!], data: e.data.slice(0, rows * e.shape[1]!) };
    Object.assign(config, { vocab_size: rows, sliding_window_pattern: 6 });
  }
  for (const f of ["model.safetensors", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]) {
    rmSync(join(dir, f), { force: true });
  }
  writeSafetensors(dir, t as never, 1);
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

describe("qwen3_moe converted by llama.cpp", () => {
  test("stacked experts and router: logits within 1e-3 and 32 greedy tokens equal the transformers-saved model", async () => {
    using g = await loadGgufModel(join(FIXTURES, "tiny-qwen3_moe.llamacpp.F16.gguf"), { dtype: "float32" });
    using r = await loadModelDir(writeHfQwen3Moe(join(tmp, "qwen3_moe"), { round16: true }), { dtype: "float32" });
    expectSameModel(g, r);
  });
});

describe.each(["llama", "qwen2", "qwen3", "phi3", "gemma3_text"] as TinyName[])("%s converted by llama.cpp", (name) => {
  test("logits within 1e-3 and 32 greedy tokens equal the safetensors model", async () => {
    const gguf = join(FIXTURES, `tiny-${name}.llamacpp.F16.gguf`);
    using g = await loadGgufModel(gguf, { dtype: "float32" });
    using r = await loadModelDir(reference(name, gguf), { dtype: "float32" });
    expectSameModel(g, r);
  });
});

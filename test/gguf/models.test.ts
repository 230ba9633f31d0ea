/**
 * GGUF loading per architecture llama.cpp writes: the tiny models of tiny-models.ts converted with llama.cpp's
 * rules (test/support/hf-to-gguf.ts) load from GGUF with logits within 1e-3 of the same values loaded from
 * safetensors, and the same 32 greedy tokens, for every tensor type mlxk loads (F32, F16, BF16, Q8_0, Q4_0, Q4_1;
 * Q4_K/Q6_K on a llama with 256-wide rows).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadGgufModel, loadModelDir } from "../../src/engine/load.ts";
import { expectSameModel, maxAbsDiff, promptLogits } from "../support/gguf-compare.ts";
import { type GgufQuant, tinyGguf } from "../support/hf-to-gguf.ts";
import type { TinyName } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-ggufm-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ARCHS: TinyName[] = ["llama", "qwen2", "qwen3", "qwen3_moe", "phi3", "gemma3_text"];
// Q5_0/Q5_1 and the K mixes (Q5_0/Q5_1 + Q8_0 fallbacks at these 64-wide rows) go through mlxk's own tensor reader
const TYPES: GgufQuant[] = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "IQ4_XS"];

describe.each(ARCHS)("%s from GGUF = from safetensors", (name) => {
  test.each(TYPES)("%s tensors: logits and 32 greedy tokens", async (type) => {
    const { ggufPaths, refDir } = tinyGguf(name, join(tmp, `${name}-${type}`), { type });
    using g = await loadGgufModel(ggufPaths[0]!, { dtype: "float32" });
    using r = await loadModelDir(refDir, { dtype: "float32" });
    expect(g.modelType).toBe(r.modelType);
    expectSameModel(g, r);
  });
});

describe("K-quants (Q4_K_M / Q5_K_M mixes: Q4_K or Q5_K, Q6_K head and v_proj)", () => {
  test.each([
    ["Q4_K_M", ["F32", "Q4_K", "Q6_K"]],
    ["Q5_K_M", ["F32", "Q5_K", "Q6_K"]],
    ["IQ4_XS", ["F32", "IQ4_XS"]],
  ] as const)("%s on a llama with 256-wide rows: logits and 32 greedy tokens equal the decoded values", async (type, k) => {
    const { ggufPaths, refDir } = tinyGguf("wide_llama", join(tmp, `wide-${type}`), { type });
    const { readGguf } = await import("../../src/gguf/reader.ts");
    const types = new Set(readGguf(ggufPaths[0]!).tensors.map((t) => t.typeName));
    expect([...types].sort()).toEqual([...k]);
    using g = await loadGgufModel(ggufPaths[0]!, { dtype: "float32" });
    using r = await loadModelDir(refDir, { dtype: "float32" });
    expectSameModel(g, r);
  }, 30_000);
});

describe("split GGUF", () => {
  test("a 3-part qwen3 loads all parts from the first part's path", async () => {
    const { ggufPaths, refDir } = tinyGguf("qwen3", join(tmp, "split"), { type: "Q8_0", split: 3 });
    expect(ggufPaths).toHaveLength(3);
    using g = await loadGgufModel(ggufPaths[0]!, { dtype: "float32" });
    using r = await loadModelDir(refDir, { dtype: "float32" });
    expect(maxAbsDiff(promptLogits(g), promptLogits(r))).toBeLessThan(1e-3);
  });
});

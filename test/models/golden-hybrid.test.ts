/**
 * The hybrid / newest architectures (test/support/tiny-hybrid.ts) against mlx-lm on the same tiny random
 * weights (test/fixtures/goldens/tiny-hybrid.json, made by scripts/gen-goldens.ts): f32 logits of the
 * whole prompt within 1e-3, and identical 32-token greedy continuations through the real decode loop
 * (prefill in chunks of 5 too, so recurrent state and KV caches carry across chunk boundaries). The
 * transformers-saved layouts (and their multimodal-wrapper forms) are checked against transformers itself
 * (test/fixtures/goldens/transformers-hybrid.json, torch f32), where mlx-lm reads the config wrongly or not at all.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prefill, tokenLoop } from "../../src/engine/generate.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import { maxAbsDiff, promptLogits } from "../support/gguf-compare.ts";
import { HF_MODELS, HF_WRAPPERS, HYBRID_MODELS, writeHfModel, writeHybridModel } from "../support/tiny-hybrid.ts";
import { GOLDEN_PROMPT, GOLDEN_STEPS } from "../support/tiny-models.ts";

type Goldens = { prompt: number[]; models: Record<string, { logits: number[][]; greedy: number[] }> };
const read = (f: string) => JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/goldens", f), "utf8")) as Goldens;
const mlxGoldens = read("tiny-hybrid.json");
const hfGoldens = read("transformers-hybrid.json");
test("both references were computed for the same prompt", () => expect(hfGoldens.prompt).toEqual(mlxGoldens.prompt));

/** The config.json transformers 5 wrote for an `_hf` model (scripts/gen-goldens-hf.py save_pretrained round trip). */
const v5Config = (n: string) => readFileSync(join(import.meta.dir, "../fixtures/configs", `${n}.json`), "utf8");
/** Write a model, then replace its config.json with the transformers-5-written one. */
const withV5 = (write: (d: string) => string, n: string) => (d: string) => {
  const dir = write(d);
  writeFileSync(join(dir, "config.json"), v5Config(n));
  return dir;
};

/** name → [writer, reference golden]. */
const CASES: (readonly [string, (dir: string) => string, Goldens["models"][string]])[] = [
  ...HYBRID_MODELS.map((n) => [n, (d: string) => writeHybridModel(n, d), mlxGoldens.models[n]!] as const),
  ...Object.keys(HF_MODELS).map((n) => [n, (d: string) => writeHfModel(n as keyof typeof HF_MODELS, d), hfGoldens.models[n]!] as const),
  // Both layouts with the config exactly as transformers 5 saved it.
  ...Object.keys(HF_MODELS).map((n) => [`${n} (v5 config)`, withV5((d: string) => writeHfModel(n as keyof typeof HF_MODELS, d), n), hfGoldens.models[n]!] as const),
  ...Object.entries(HF_MODELS).map(([n, mlx]) => [`${mlx} MLX layout (v5 config)`, withV5((d: string) => writeHybridModel(mlx, d), n), hfGoldens.models[n]!] as const),
  ...Object.entries(HF_WRAPPERS).map(([n, ref]) => [n, (d: string) => writeHfModel(n as keyof typeof HF_WRAPPERS, d), hfGoldens.models[ref]!] as const),
];
const tmp = mkdtempSync(join(tmpdir(), "mlxk-golden-hybrid-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));


describe.each(CASES)("%s matches its reference", (name, write, golden) => {
  const dir = () => write(join(tmp, name.replace(/[^\w]+/g, "_")));

  test.each([1, 2])("logits of the prompt (streams=%d)", async (streams) => {
    expect(mlxGoldens.prompt).toEqual([...GOLDEN_PROMPT]);
    using m = await loadModelDir(dir(), { dtype: "float32", streams });
    const logits = promptLogits(m);
    const V = golden.logits[0]!.length;
    expect(logits.length).toBe(GOLDEN_PROMPT.length * V);
    expect(maxAbsDiff(logits, golden.logits.flat())).toBeLessThan(1e-3);
  });

  test("last-token logits after a chunked prefill", async () => {
    using m = await loadModelDir(dir(), { dtype: "float32" });
    const cache = m.model.makeCache();
    const last = prefill(m.model, cache, GOLDEN_PROMPT, 5);
    const got = last.toFloat32Array();
    last.dispose();
    for (const c of cache) c[Symbol.dispose]();
    expect(maxAbsDiff(got, golden.logits.at(-1)!)).toBeLessThan(1e-3);
  });

  test("32-token greedy continuation", async () => {
    using m = await loadModelDir(dir(), { dtype: "float32" });
    const tokens = [...tokenLoop({ model: m.model, prompt: GOLDEN_PROMPT, maxTokens: GOLDEN_STEPS })].map((s) => s.token);
    expect(tokens).toEqual(golden.greedy);
  });
});

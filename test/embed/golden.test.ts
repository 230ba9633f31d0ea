/**
 * Our embedders against sentence-transformers (torch CPU) on the same tiny random checkpoints, saved exactly as
 * transformers + sentence-transformers save them (scripts/gen-embed-fixtures.py wrote the goldens; no Python here).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Embedder, planBatches } from "../../src/embed/embedder.ts";
import { queryPrompt } from "../../src/embed/open.ts";
import { cosine } from "../support/vectors.ts";

const FIX = join(import.meta.dir, "..", "fixtures", "embeddings");
// nomic_bert_remote: the nomic_bert weights as the Hub's trust_remote_code repos spell them (same golden)
const NAMES = ["bert", "bert_cls", "bert_dense", "xlm_roberta", "modernbert", "nomic_bert", "nomic_bert_remote", "qwen3_embedding"] as const;
const tmp = mkdtempSync(join(tmpdir(), "mlxk-embed-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Golden {
  texts: string[];
  token_ids: number[][];
  embeddings: number[][];
  single: number[];
  queries?: string[];
  query_prompt?: string;
  query_embeddings?: number[][];
  instruct?: string;
  instruct_embeddings?: number[][];
  document_prompt?: string;
  document_embeddings?: number[][];
}

const golden = (n: string): Golden => JSON.parse(readFileSync(join(FIX, `${n.replace(/_remote$/, "")}.golden.json`), "utf8"));


function expectClose(got: Float32Array[], want: number[][]): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => {
    expect(g.length).toBe(want[i]!.length);
    expect(cosine(g, want[i]!)).toBeGreaterThanOrEqual(0.9999);
  });
}

describe.each(NAMES)("%s vs sentence-transformers", (name) => {
  test("token ids, a padded batch, a single input (cosine ≥ 0.9999)", async () => {
    const g = golden(name);
    using e = await Embedder.load(join(FIX, name), { name: `test/${name}` });
    expect(g.texts.map((t) => e.tokenize(t, false))).toEqual(g.token_ids);
    expectClose(e.embed(g.texts).vectors, g.embeddings);
    expectClose(e.embed([g.texts[2]!], { batchSize: 1 }).vectors, [g.single]);
    // batching never changes a vector: batch of 2 vs all at once, all in one padded pass, one length per pass
    const two = e.embed(g.texts, { batchSize: 2 }).vectors;
    expectClose(two, g.embeddings);
    expectClose(e.embed(g.texts, { passCostTokens: 1e9 }).vectors, g.embeddings);
    expectClose(e.embed(g.texts, { passCostTokens: 0 }).vectors, g.embeddings);
  });
});

test("planBatches: one length per pass when passes are free, one padded pass when they are dear, limits kept", () => {
  const L = [12, 12, 11, 9, 9, 9, 4];
  expect(planBatches(L, 64, 16384, 0)).toEqual([[0, 2], [2, 3], [3, 6], [6, 7]]);
  expect(planBatches(L, 64, 16384, 1e9)).toEqual([[0, 7]]);
  // at most 3 rows: three passes, and of those the split that pads least
  expect(planBatches(L, 3, 16384, 1e9)).toEqual([[0, 3], [3, 6], [6, 7]]);
  // the default cost (8 tokens a pass) pads 11 → 12 and 4 → 9, but not the 9s to 12 (9 tokens)
  expect(planBatches(L, 64, 16384)).toEqual([[0, 3], [3, 7]]);
  // a token budget smaller than two rows still lets a single long row through
  expect(planBatches([300, 200], 64, 256, 1e9)).toEqual([[0, 1], [1, 2]]);
  expect(planBatches([], 8, 100)).toEqual([]);
});

test("qwen3 embedding: query prompt and a custom instruction", async () => {
  const g = golden("qwen3_embedding");
  using e = await Embedder.load(join(FIX, "qwen3_embedding"), { name: "test/qwen3_embedding" });
  expect(e.recipe).toMatchObject({ pooling: "lasttoken", normalize: true, prompts: { query: g.query_prompt } });
  // the prompt alone is longer than this tiny model's 64-token limit: sentence-transformers truncates silently,
  // we refuse unless asked to truncate — and then cut the same way (keep the head, re-append the end token)
  expect(() => e.embed(g.queries!, { prompt: g.query_prompt })).toThrow(/at most 64/);
  expectClose(e.embed(g.queries!, { prompt: g.query_prompt, truncate: true }).vectors, g.query_embeddings!);
  expectClose(e.embed(g.queries!, { prompt: g.instruct }).vectors, g.instruct_embeddings!);
});

test("classic sentence-transformers pooling spelling (pooling_mode_*_tokens) reads the same", async () => {
  const dir = join(tmp, "bert_classic");
  cpSync(join(FIX, "bert"), dir, { recursive: true });
  writeFileSync(join(dir, "1_Pooling", "config.json"), JSON.stringify({ word_embedding_dimension: 32, pooling_mode_cls_token: false, pooling_mode_mean_tokens: true, pooling_mode_max_tokens: false, pooling_mode_mean_sqrt_len_tokens: false, pooling_mode_weightedmean_tokens: false, pooling_mode_lasttoken: false, include_prompt: true }));
  writeFileSync(join(dir, "modules.json"), JSON.stringify([{ idx: 0, name: "0", path: "", type: "sentence_transformers.models.Transformer" }, { idx: 1, name: "1", path: "1_Pooling", type: "sentence_transformers.models.Pooling" }, { idx: 2, name: "2", path: "2_Normalize", type: "sentence_transformers.models.Normalize" }]));
  using e = await Embedder.load(dir, { name: "x" });
  expectClose(e.embed(golden("bert").texts).vectors, golden("bert").embeddings);
});

test("ModernBERT config in the transformers 4 spelling (global_attn_every_n_layers, *_rope_theta) reads the same", async () => {
  const dir = join(tmp, "modernbert_v4");
  cpSync(join(FIX, "modernbert"), dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  delete cfg.layer_types;
  delete cfg.rope_parameters;
  Object.assign(cfg, { global_attn_every_n_layers: 3, global_rope_theta: 160000, local_rope_theta: 10000, transformers_version: "4.48.0" });
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  using e = await Embedder.load(dir, { name: "x" });
  expectClose(e.embed(golden("modernbert").texts).vectors, golden("modernbert").embeddings);
});

describe.each(["nomic_bert", "nomic_bert_remote"])("%s: nomic's task prefixes", (name) => {
  test("search_query: / search_document: from mlxk's table (the ST files carry empty prompts)", async () => {
    const g = golden(name);
    using e = await Embedder.load(join(FIX, name), { name: `test/${name}` });
    expect(g.query_prompt).toBe("search_query: ");
    expect(queryPrompt(e, { query: true })).toBe("search_query: ");
    expect(queryPrompt(e, { document: true })).toBe("search_document: ");
    expectClose(e.embed(g.queries!, { prompt: queryPrompt(e, { query: true }) }).vectors, g.query_embeddings!);
    expectClose(e.embed(g.queries!, { prompt: queryPrompt(e, { document: true }) }).vectors, g.document_embeddings!);
  });
});

describe("nomic_bert: what it does not implement is refused by name", () => {
  test.each([
    ["moe_every_n_layers", 2, /moe_every_n_layers 2/],
    ["rotary_scaling_factor", 2, /rotary_scaling_factor 2 \(dynamic NTK/],
    ["prenorm", true, /prenorm/],
    ["activation_function", "gelu", /activation 'gelu'/],
  ])("%s = %p", async (key, value, re) => {
    const dir = join(tmp, `nomic_${key}`);
    cpSync(join(FIX, "nomic_bert_remote"), dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    cfg[key] = value;
    writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
    await expect(Embedder.load(dir, { name: "x" })).rejects.toThrow(re);
  });
});

describe("sentence-transformers modules after pooling", () => {
  const withModules = (from: string, name: string, edit: (dir: string) => void): string => {
    const dir = join(tmp, name);
    cpSync(join(FIX, from), dir, { recursive: true });
    edit(dir);
    return dir;
  };
  const modules = (dir: string) => JSON.parse(readFileSync(join(dir, "modules.json"), "utf8")) as Array<Record<string, unknown>>;

  test("Dense (16 dims, Tanh) then Normalize: the recipe lists both and the width is the projection's", async () => {
    using e = await Embedder.load(join(FIX, "bert_dense"), { name: "x" });
    expect(e.dims).toBe(16);
    expect(e.recipe.normalize).toBe(true);
    expect(e.recipe.post.map((p) => p.kind)).toEqual(["dense", "normalize"]);
  });

  test("a Dense after Normalize leaves the output unnormalised (as sentence-transformers would)", async () => {
    const dir = withModules("bert_dense", "dense_last", (d) => {
      const m = modules(d);
      writeFileSync(join(d, "modules.json"), JSON.stringify([m[0], m[1], m[3], m[2]]));
    });
    using e = await Embedder.load(dir, { name: "x" });
    expect(e.recipe.normalize).toBe(false);
    const v = e.embed(["a man is eating food"]).vectors[0]!;
    expect(Math.abs(Math.hypot(...v) - 1)).toBeGreaterThan(1e-3);
  });

  test.each([
    ["an activation we do not run", (d: string) => writeFileSync(join(d, "2_Dense", "config.json"), JSON.stringify({ in_features: 32, out_features: 16, bias: true, activation_function: "torch.nn.modules.activation.Softsign" })), /Dense\) uses activation torch.nn.modules.activation.Softsign/],
    ["in_features that do not match the pooled width", (d: string) => writeFileSync(join(d, "2_Dense", "config.json"), JSON.stringify({ in_features: 64, out_features: 16, bias: true, activation_function: "torch.nn.modules.activation.Tanh" })), /in_features 64 does not match the 32-wide vector/],
    ["only a pickle (pytorch_model.bin)", (d: string) => {
      rmSync(join(d, "2_Dense", "model.safetensors"));
      writeFileSync(join(d, "2_Dense", "pytorch_model.bin"), "not read");
    }, /only pytorch_model.bin/],
    ["a module we do not run (LayerNorm)", (d: string) => {
      const m = modules(d);
      writeFileSync(join(d, "modules.json"), JSON.stringify([m[0], m[1], { idx: 2, name: "2", path: "2_LayerNorm", type: "sentence_transformers.models.LayerNorm" }, m[3]]));
    }, /module 2 \(sentence_transformers.models.LayerNorm\) is not supported/],
    ["a Dense before pooling", (d: string) => {
      const m = modules(d);
      writeFileSync(join(d, "modules.json"), JSON.stringify([m[0], m[2], m[1], m[3]]));
    }, /module 1 \(.*Dense\) is not supported there/],
  ])("refused with unsupported_model: %s", async (_what, edit, re) => {
    const dir = withModules("bert_dense", `dense_${String(_what).replace(/\W+/g, "_")}`, edit);
    const err = await Embedder.load(dir, { name: "x" }).then(() => null, (e: unknown) => e as { type?: string; message: string });
    expect(err?.type).toBe("unsupported_model");
    expect(err?.message).toMatch(re);
  });
});

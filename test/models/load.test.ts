/** Loading refuses what would run wrong: a config whose head layout disagrees with the weights. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModelDir } from "../../src/engine/load.ts";
import { MlxkError } from "../../src/errors.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-load-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function edit(dir: string, f: (c: Record<string, any>) => void): string {
  const p = join(dir, "config.json");
  const c = JSON.parse(readFileSync(p, "utf8"));
  f(c);
  writeFileSync(p, JSON.stringify(c));
  return dir;
}

test("heads × head_dim that disagree with the projections are refused, naming the tensor", async () => {
  const dir = edit(writeTinyModel("llama", join(tmp, "llama")), (c) => {
    c.num_attention_heads = 8;
  });
  const e = await loadModelDir(dir).catch((x) => x);
  expect(e).toBeInstanceOf(MlxkError);
  expect(e.type).toBe("unsupported_model");
  // head_dim follows from hidden_size / heads here, so q_proj still fits and k_proj gives it away
  expect(e.message).toContain("model.layers.0.self_attn.k_proj: 32 outputs in the weights");
});

test("a wrapper's text_config falls back to transformers' defaults (here: 8 heads, not the 4 of the weights) and is refused, not run wrong", async () => {
  const dir = edit(writeTinyModel("gemma3", join(tmp, "gemma3"), { layout: "hf" }), (c) => {
    delete c.text_config.num_attention_heads;
  });
  const e = await loadModelDir(dir).catch((x) => x);
  expect(e).toBeInstanceOf(MlxkError);
  expect(e.message).toContain("8 heads");
});

/** Config schemas per architecture, the registry's errors, and the quantization config. */
import { describe, expect, test } from "bun:test";
import { MlxkError } from "../../src/errors.ts";
import * as mx from "../../src/mlx/index.ts";
import { parseConfig, QuantConfig } from "../../src/models/base.ts";
import { loadModelModule, MODEL_TYPES } from "../../src/models/registry.ts";

describe("registry", () => {
  test("an unsupported model_type names the supported ones", async () => {
    const err = await loadModelModule("mamba").catch((e) => e);
    expect(err).toBeInstanceOf(MlxkError);
    expect(err.type).toBe("unsupported_model");
    expect(err.message).toContain("mamba");
    for (const t of MODEL_TYPES) expect(err.message).toContain(t);
    expect((await loadModelModule(undefined).catch((e) => e)).message).toContain("no model_type");
  });

  test("mistral is an alias of llama", async () => {
    expect(await loadModelModule("mistral")).toBe(await loadModelModule("llama"));
  });
});

describe("config schemas", () => {
  const base = { hidden_size: 64, num_hidden_layers: 2, intermediate_size: 128, num_attention_heads: 4, vocab_size: 100 };

  test("defaults are filled and unknown keys kept out of the way", async () => {
    const llama = await loadModelModule("llama");
    const c = parseConfig(llama.configSchema, { ...base, something_new: [1, 2] }, "llama");
    expect(c.num_key_value_heads).toBe(4);
    expect(c.head_dim).toBe(16);
    expect(c.rope_theta).toBe(10000);
    expect(c.tie_word_embeddings).toBe(true);
    const qwen2 = await loadModelModule("qwen2");
    const q = parseConfig(qwen2.configSchema, { ...base, num_key_value_heads: 2 }, "qwen2");
    expect(q.rope_theta).toBe(1000000);
    const qwen3 = await loadModelModule("qwen3");
    const q3 = parseConfig(qwen3.configSchema, { ...base, num_key_value_heads: 2, head_dim: 32, rope_parameters: { rope_theta: 5e6 } }, "qwen3");
    expect(q3.rope_theta).toBe(5e6);
  });

  test("a bad or missing key is an error naming it", async () => {
    const llama = await loadModelModule("llama");
    expect(() => parseConfig(llama.configSchema, { ...base, hidden_size: "wide" }, "llama")).toThrow(/hidden_size/);
    const { vocab_size: _, ...noVocab } = base;
    expect(() => parseConfig(llama.configSchema, noVocab, "llama")).toThrow(/vocab_size/);
  });
});

describe("quantization config", () => {
  test("per-module overrides win; fp modes are recognised by their uint8 scales", () => {
    const q = QuantConfig.from({ quantization: { group_size: 64, bits: 4, "model.layers.0.mlp.down_proj": { group_size: 32, bits: 8 } } })!;
    mx.scope(() => {
      const w4 = mx.zeros([8, 64], mx.Dtype.uint32); // 512 inputs at 4 bits
      const s64 = mx.zeros([8, 8], mx.Dtype.float32);
      expect(q.paramsFor("model.layers.0.self_attn.q_proj", w4, s64)).toEqual({ bits: 4, groupSize: 64, mode: "affine" });
      expect(q.paramsFor("model.layers.0.mlp.down_proj", w4, s64)).toEqual({ groupSize: 32, bits: 8, mode: "affine" });
      const fp = mx.zeros([8, 16], mx.Dtype.uint8); // mxfp4: 512 inputs / 32
      expect(q.paramsFor("model.layers.1.mlp.experts.up_proj", w4, fp)).toEqual({ bits: 4, groupSize: 32, mode: "mxfp4" });
    });
    expect(QuantConfig.from({ quantization_config: { quant_method: "mxfp4" } })!.defaults).toEqual({ groupSize: 32, bits: 4, mode: "mxfp4" });
    expect(QuantConfig.from({})).toBeNull();
  });
});

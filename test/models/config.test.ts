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

describe("config normaliser (both transformers spellings)", () => {
  const base = { hidden_size: 64, num_hidden_layers: 2, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 100 };
  const parse = async (modelType: string, raw: Record<string, unknown>) => {
    const mod = await loadModelModule(modelType);
    return parseConfig(mod.configSchema, { model_type: modelType, ...raw }, modelType, mod.configOptions) as Record<string, any>;
  };
  const err = async (modelType: string, raw: Record<string, unknown>) => (await parse(modelType, raw).catch((e) => e)) as MlxkError;

  test("qwen2: a rope base only under rope_parameters is read (was the 1e6 default)", async () => {
    expect((await parse("qwen2", { ...base, rope_parameters: { rope_type: "default", rope_theta: 5e6 } })).rope_theta).toBe(5e6);
    expect((await parse("qwen2", { ...base, rope_theta: 3e6 })).rope_theta).toBe(3e6);
  });

  test("llama: llama3 scaling under rope_parameters and under rope_scaling.type / rope_type", async () => {
    const s = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    for (const raw of [
      { rope_parameters: { rope_type: "llama3", rope_theta: 5e5, ...s } },
      { rope_theta: 5e5, rope_scaling: { rope_type: "llama3", ...s } },
      { rope_theta: 5e5, rope_scaling: { type: "llama3", ...s } },
    ]) {
      const c = await parse("llama", { ...base, ...raw });
      expect(c.rope_theta).toBe(5e5);
      expect(c.rope_scaling).toMatchObject({ rope_type: "llama3", factor: 8 });
    }
    expect((await parse("llama", { ...base, rope_scaling: { type: "default" } })).rope_scaling).toBeNull();
  });

  test("gemma3_text: layer_types win over sliding_window_pattern; per-layer-type rope blocks are read", async () => {
    const g = { ...base, head_dim: 16, num_key_value_heads: 1, num_hidden_layers: 3 };
    const c = await parse("gemma3_text", { ...g, sliding_window_pattern: 2, layer_types: ["full_attention", "full_attention", "sliding_attention"] });
    expect(c.layer_types).toEqual(["full_attention", "full_attention", "sliding_attention"]);
    expect((await parse("gemma3_text", { ...g, sliding_window_pattern: 3 })).layer_types).toEqual(["sliding_attention", "sliding_attention", "full_attention"]);
    const v5 = await parse("gemma3_text", {
      ...g,
      rope_parameters: { full_attention: { rope_type: "linear", factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: "default", rope_theta: 1e4 } },
    });
    expect(v5.global_rope).toEqual({ theta: 1e6, scaling: { rope_type: "linear", factor: 8 } });
    expect(v5.local_rope).toEqual({ theta: 1e4, scaling: null });
    const v4 = await parse("gemma3_text", { ...g, rope_theta: 2e6, rope_local_base_freq: 2e4, rope_scaling: { rope_type: "linear", factor: 4 } });
    expect(v4.global_rope).toEqual({ theta: 2e6, scaling: { rope_type: "linear", factor: 4 } });
    expect(v4.local_rope).toEqual({ theta: 2e4, scaling: null });
  });

  test("phi3: longrope (and its old name su) under rope_parameters; original context from the top level", async () => {
    const f = [1, 1, 1, 1];
    for (const t of ["longrope", "su"]) {
      const c = await parse("phi3", { ...base, original_max_position_embeddings: 4096, rope_parameters: { rope_type: t, rope_theta: 1e4, short_factor: f, long_factor: f } });
      expect(c.rope_scaling).toMatchObject({ rope_type: "longrope", original_max_position_embeddings: 4096 });
    }
    expect((await err("phi3", { ...base, rope_parameters: { rope_type: "longrope", rope_theta: 1e4 } })).message).toContain("rope_parameters.short_factor");
  });

  test("experts: num_local_experts (transformers 5) and num_experts (mlx-lm) are the same key", async () => {
    const moe = { ...base, head_dim: 16, num_experts_per_tok: 2, moe_intermediate_size: 32 };
    expect((await parse("qwen3_moe", { ...moe, num_local_experts: 8 })).num_experts).toBe(8);
    expect((await parse("qwen3_moe", { ...moe, num_experts: 8 })).num_experts).toBe(8);
    expect((await err("qwen3_moe", { ...moe, num_experts: 8, num_local_experts: 4 })).message).toContain("num_experts");
  });

  test("wrappers: text_config wins over the top level (vocab_size included)", async () => {
    const c = await parse("gemma3", { vocab_size: 262208, text_config: { ...base, model_type: "gemma3_text", head_dim: 16, vocab_size: 300 }, vision_config: {} });
    expect(c.vocab_size).toBe(300);
    expect(c.model_type).toBe("gemma3_text");
    expect((await err("mistral3", { text_config: { ...base, model_type: "mistral4" } })).message).toContain("mistral4");
  });

  test("values mlxk does not implement are unsupported_model errors naming key and value, never a default", async () => {
    const e1 = await err("llama", { ...base, rope_parameters: { rope_type: "mrope", rope_theta: 1e4 } });
    expect(e1.type).toBe("unsupported_model");
    expect(e1.message).toContain('rope_parameters.rope_type: "mrope"');
    const e2 = await err("llama", { ...base, layer_types: ["full_attention", "chunked_attention"] });
    expect(e2.type).toBe("unsupported_model");
    expect(e2.message).toContain('layer_types[1]: "chunked_attention"');
    const e3 = await err("llama", { ...base, hidden_act: "gelu" });
    expect(e3.type).toBe("unsupported_model");
    expect(e3.message).toContain('hidden_act: "gelu"');
    const e4 = await err("gemma3_text", { ...base, head_dim: 16, rope_scaling: { rope_type: "yarn", factor: 2 } });
    expect(e4.message).toContain('rope_scaling.rope_type: "yarn"');
  });

  test("a wrong type inside a rope block names its key path", async () => {
    const e = await err("llama", { ...base, rope_parameters: { rope_type: "linear", rope_theta: 1e4, factor: "big" } });
    expect(e.message).toContain("rope_parameters.factor");
    expect((await err("llama", { ...base, rope_parameters: { rope_type: "default", rope_theta: "x" } })).message).toContain("rope_parameters.rope_theta");
  });
});

test("quantization overrides of a wrapper apply to the unprefixed module names", () => {
  const q = QuantConfig.from({ quantization: { group_size: 64, bits: 4, "language_model.model.layers.0.mlp.down_proj": { group_size: 32, bits: 8 } } })!;
  mx.scope(() => {
    const w = mx.zeros([8, 64], mx.Dtype.uint32);
    const s = mx.zeros([8, 8], mx.Dtype.float32);
    expect(q.paramsFor("model.layers.0.mlp.down_proj", w, s)).toEqual({ groupSize: 32, bits: 8, mode: "affine" });
  });
});

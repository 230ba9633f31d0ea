/**
 * Config reading of the hybrid / newest families: what transformers 5 writes is understood (per_layer_config,
 * layer_types, rope_parameters, configs without mlx-lm's keys), and what mlxk cannot honour is refused with a
 * message naming the key — never a silent default.
 */
import { describe, expect, test } from "bun:test";
import { MlxkError } from "../../src/errors.ts";
import { parseConfig } from "../../src/models/base.ts";
import { loadModelModule } from "../../src/models/registry.ts";
import { buildHf, buildHybrid } from "../support/tiny-hybrid.ts";

async function parse(modelType: string, raw: Record<string, unknown>): Promise<Record<string, unknown>> {
  const mod = await loadModelModule(modelType);
  return parseConfig(mod.configSchema, raw, modelType, mod.configOptions);
}

async function refusal(modelType: string, raw: Record<string, unknown>): Promise<MlxkError> {
  const e = await parse(modelType, raw).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(MlxkError);
  return e as MlxkError;
}

describe("qwen3_5", () => {
  const wrapper = buildHf("qwen3_5_hf_wrapper").config;

  test("a wrapper's text_config is read; layer_types wins over full_attention_interval", async () => {
    const text = wrapper.text_config as Record<string, unknown>;
    const c = await parse("qwen3_5", { ...wrapper, text_config: { ...text, full_attention_interval: 4 } });
    expect(c.layer_types).toEqual(text.layer_types);
    expect(c.hidden_size).toBe(64);
    expect(c.rope_theta).toBe(10000);
    expect(c.partial_rotary_factor).toBe(0.25);
  });

  test("a missing linear-attention size names the key; heads that do not divide are refused", async () => {
    const text = { ...(wrapper.text_config as Record<string, unknown>) };
    delete text.linear_num_key_heads;
    expect((await refusal("qwen3_5", { ...wrapper, text_config: text })).message).toContain("linear_num_key_heads");
    const bad = await refusal("qwen3_5", { ...wrapper, text_config: { ...(wrapper.text_config as object), linear_num_value_heads: 3 } });
    expect(bad.type).toBe("unsupported_model");
    expect(bad.message).toContain("linear_num_value_heads");
  });

  test("an unknown layer type or rope type is refused by name", async () => {
    const text = wrapper.text_config as Record<string, unknown>;
    const layers = (text.layer_types as string[]).map((t, i) => (i === 0 ? "mamba" : t));
    expect((await refusal("qwen3_5", { ...wrapper, text_config: { ...text, layer_types: layers } })).message).toContain("mamba");
    const rope = { ...(text.rope_parameters as object), rope_type: "ntk-by-parts" };
    expect((await refusal("qwen3_5", { ...wrapper, text_config: { ...text, rope_parameters: rope } })).message).toContain("ntk-by-parts");
  });
});

describe("gemma4", () => {
  test("per_layer_config sets the full layers' head size and KV heads (no global_head_dim needed)", async () => {
    const c = (await parse("gemma4_text", buildHf("gemma4_moe_hf").config)) as { layers: { headDim: number; kvHeads: number }[] };
    expect(c.layers.map((l) => [l.headDim, l.kvHeads])).toEqual([[16, 2], [32, 1], [16, 2], [32, 1]]);
  });

  test("the wrapper takes vocab_size from text_config, not the top level", async () => {
    const cfg = buildHf("gemma4_hf_wrapper").config;
    const c = await parse("gemma4", { ...cfg, vocab_size: 262144 });
    expect(c.vocab_size).toBe(272);
  });

  test("an encoder config (bidirectional attention) and an unknown activation are refused", async () => {
    const text = buildHybrid("gemma4_text").config;
    expect((await refusal("gemma4_text", { ...text, use_bidirectional_attention: "all" })).type).toBe("unsupported_model");
    expect((await refusal("gemma4_text", { ...text, hidden_activation: "relu" })).message).toContain("relu");
  });
});

describe("lfm2", () => {
  test("a transformers-5 config without block_dim / block_ff_dim is read", async () => {
    const c = await parse("lfm2", buildHf("lfm2_hf").config);
    expect(c.block_dim).toBe(64);
    expect(c.ff_dim).toBe(128);
  });
  test("no intermediate size at all is refused by name", async () => {
    const { intermediate_size: _i, block_ff_dim: _b, ...rest } = buildHybrid("lfm2").config;
    expect((await refusal("lfm2", rest)).message).toContain("intermediate_size");
  });
});

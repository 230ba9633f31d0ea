/**
 * Tiny transformers-saved checkpoints (HF names, `architectures`, f32 "pt" safetensors) of the architectures
 * llama.cpp's converter writes, seeded and independent of tiny-models.ts (whose weights change as architectures
 * are added): the sources of test/fixtures/gguf/tiny-*.llamacpp.F16.gguf, and — with `round16`, the fp16 values
 * those files hold — the references they are compared with. qwen3_moe has every layer sparse: llama.cpp's
 * converter has no dense-layer form for qwen3moe.
 *
 * Exports: HF_TINY_ARCHS, HfTinyArch, writeHfTiny(arch, dir, { round16? })
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors, writeTinyModel } from "./tiny-models.ts";

export const HF_TINY_ARCHS = ["llama", "qwen2", "qwen3", "qwen3_moe", "phi3", "gemma3_text"] as const;
export type HfTinyArch = (typeof HF_TINY_ARCHS)[number];

const ARCHITECTURES: Record<HfTinyArch, string> = {
  llama: "LlamaForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
  qwen3_moe: "Qwen3MoeForCausalLM",
  phi3: "Phi3ForCausalLM",
  gemma3_text: "Gemma3ForCausalLM",
};

const f16dv = new DataView(new ArrayBuffer(2));
const f16r = (x: number) => (f16dv.setFloat16(0, x, true), f16dv.getFloat16(0, true));

/** F32 tensors from a seeded LCG, uniform in ±scale (+ base); `round16`: 2-D+ tensors rounded to fp16. */
export function seededTensors(seed: number, round16 = false) {
  let a = seed;
  const rnd = () => {
    a = (a * 1103515245 + 12345) % 2147483648;
    return a / 2147483648;
  };
  const t: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  const put = (name: string, shape: number[], scale: number, base = 0) => {
    const n = shape.reduce((x, y) => x * y, 1);
    const data = Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale + base);
    t[name] = { dtype: "F32", shape, data: round16 && shape.length >= 2 ? Float32Array.from(data, f16r) : data };
  };
  return { t, put };
}

export function writeHfTiny(arch: HfTinyArch, dir: string, opts: { round16?: boolean } = {}): string {
  writeTinyModel("llama", dir); // tokenizer files; config and weights are replaced below
  for (const f of ["model.safetensors", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]) {
    rmSync(join(dir, f), { force: true });
  }
  const gemma = arch === "gemma3_text";
  const moe = arch === "qwen3_moe";
  const [H, V, L, F, E, FE] = [64, 272, gemma ? 3 : 2, 128, 4, 32];
  const heads = 4;
  const kv = gemma ? 1 : 2;
  const hd = arch === "qwen3" || gemma ? 32 : 16;
  const tied = arch === "qwen2" || arch === "qwen3" || gemma;
  const normBase = gemma ? 0 : 1; // gemma's norms scale by (1 + w)
  const { t, put } = seededTensors(9000 + HF_TINY_ARCHS.indexOf(arch), opts.round16);
  const lin = (name: string, out: number, inp: number) => put(`${name}.weight`, [out, inp], Math.sqrt(3 / inp));
  put("model.embed_tokens.weight", [V, H], gemma ? 0.03 : tied ? 0.15 : 1);
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}`;
    if (arch === "phi3") {
      lin(`${p}.self_attn.qkv_proj`, (heads + 2 * kv) * hd, H);
      lin(`${p}.self_attn.o_proj`, H, heads * hd);
      lin(`${p}.mlp.gate_up_proj`, 2 * 96, H);
      lin(`${p}.mlp.down_proj`, H, 96);
    } else {
      for (const [n, out] of [["q_proj", heads * hd], ["k_proj", kv * hd], ["v_proj", kv * hd]] as const) {
        lin(`${p}.self_attn.${n}`, out, H);
        if (arch === "qwen2") put(`${p}.self_attn.${n}.bias`, [out], 0.1);
      }
      lin(`${p}.self_attn.o_proj`, H, heads * hd);
      if (arch === "qwen3" || moe || gemma) {
        put(`${p}.self_attn.q_norm.weight`, [hd], 0.2, normBase);
        put(`${p}.self_attn.k_norm.weight`, [hd], 0.2, normBase);
      }
      if (moe) {
        lin(`${p}.mlp.gate`, E, H);
        for (let e = 0; e < E; e++) {
          lin(`${p}.mlp.experts.${e}.gate_proj`, FE, H);
          lin(`${p}.mlp.experts.${e}.up_proj`, FE, H);
          lin(`${p}.mlp.experts.${e}.down_proj`, H, FE);
        }
      } else {
        lin(`${p}.mlp.gate_proj`, F, H);
        lin(`${p}.mlp.up_proj`, F, H);
        lin(`${p}.mlp.down_proj`, H, F);
      }
    }
    const norms = gemma ? ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"] : ["input_layernorm", "post_attention_layernorm"];
    for (const n of norms) put(`${p}.${n}.weight`, [H], 0.2, normBase);
  }
  put("model.norm.weight", [H], 0.2, normBase);
  if (!tied) lin("lm_head", V, H);
  const config: Record<string, unknown> = {
    architectures: [ARCHITECTURES[arch]],
    model_type: arch,
    hidden_size: H,
    intermediate_size: arch === "phi3" ? 96 : F,
    num_hidden_layers: L,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    rms_norm_eps: gemma ? 1e-6 : 1e-5,
    vocab_size: V,
    max_position_embeddings: 512,
    rope_theta: arch === "llama" || arch === "phi3" ? 10000 : 1000000,
    tie_word_embeddings: tied,
    hidden_act: gemma ? "gelu_pytorch_tanh" : "silu",
    eos_token_id: 258,
    bos_token_id: 256,
  };
  if (arch === "qwen3" || moe || gemma) config.head_dim = hd;
  if (moe) Object.assign(config, { num_experts: E, num_experts_per_tok: 2, moe_intermediate_size: FE, norm_topk_prob: true, decoder_sparse_step: 1, mlp_only_layers: [] });
  if (gemma) {
    Object.assign(config, { query_pre_attn_scalar: hd, sliding_window: 8, sliding_window_pattern: 6, rope_local_base_freq: 10000, hidden_activation: "gelu_pytorch_tanh" });
  }
  if (arch === "phi3") {
    const n = (hd * 0.5) / 2;
    Object.assign(config, {
      partial_rotary_factor: 0.5,
      max_position_embeddings: 4096,
      original_max_position_embeddings: 1024,
      rope_scaling: { type: "longrope", short_factor: Array.from({ length: n }, (_, i) => 1 + i * 0.05), long_factor: Array.from({ length: n }, (_, i) => 1 + i * 0.3) },
    });
  }
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  writeSafetensors(dir, t as never, 1, "pt");
  return dir;
}

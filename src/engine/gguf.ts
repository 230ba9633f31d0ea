/**
 * A llama-family GGUF file as an MLX model: MLX loads Q4_0/Q4_1/Q8_0 as affine-quantized triples
 * (group 32; Q4_1 = scale·q + min is exactly affine), F16/F32 as floats. Tensor names are mapped to
 * HF names, the q/k rows llama.cpp's converter permuted for its rope layout are put back, and
 * config.json is built from the `llama.*` metadata.
 */
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";

const LAYER_NAMES: Record<string, string> = {
  attn_norm: "input_layernorm",
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  ffn_norm: "post_attention_layernorm",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
};
const TOP_NAMES: Record<string, string> = { token_embd: "model.embed_tokens", output_norm: "model.norm", output: "lm_head" };

/** `blk.3.attn_q.scales` → `model.layers.3.self_attn.q_proj.scales`; null for tensors we don't use. */
export function hfName(name: string): string | null {
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|scales|biases|bias)$/.exec(name);
  if (m) {
    const mapped = LAYER_NAMES[m[2]!];
    return mapped ? `model.layers.${m[1]}.${mapped}.${m[3]}` : null;
  }
  const t = /^([a-z_]+)\.(weight|scales|biases|bias)$/.exec(name);
  const top = t ? TOP_NAMES[t[1]!] : undefined;
  return top ? `${top}.${t![2]}` : null;
}

/** Undo llama.cpp's q/k row permutation (a pure row permutation, so it applies to packed rows too). */
export function unpermute(a: mx.Array, nHead: number): mx.Array {
  const [rows, cols] = a.shape as [number, number];
  const r = mx.reshape(a, [nHead, rows / nHead / 2, 2, cols]);
  return mx.contiguous(mx.reshape(mx.swapaxes(r, 1, 2), [rows, cols]));
}

function meta(md: Map<string, mx.GgufValue>, key: string): number | undefined {
  const v = md.get(key);
  return typeof v === "number" ? v : undefined;
}

/** Tensors (HF names, owned by the caller) and a config.json for a llama-architecture GGUF. */
export function ggufToModel(path: string): { config: Record<string, unknown>; tensors: Map<string, mx.Array> } {
  const f = mx.loadGguf(path);
  const arch = f.metadata.get("general.architecture");
  if (arch !== "llama" && arch !== "mistral") {
    mx.disposeAll(f.weights);
    throw new MlxkError("unsupported_model", `GGUF architecture '${String(arch)}' is not supported (supported: llama)`);
  }
  const md = f.metadata;
  const p = `${arch}.`;
  const heads = meta(md, `${p}attention.head_count`)!;
  const kvHeads = meta(md, `${p}attention.head_count_kv`) ?? heads;
  const tokens = md.get("tokenizer.ggml.tokens");
  const hidden = meta(md, `${p}embedding_length`)!;
  const config: Record<string, unknown> = {
    model_type: "llama",
    hidden_size: hidden,
    num_hidden_layers: meta(md, `${p}block_count`),
    intermediate_size: meta(md, `${p}feed_forward_length`),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    rms_norm_eps: meta(md, `${p}attention.layer_norm_rms_epsilon`) ?? 1e-5,
    rope_theta: meta(md, `${p}rope.freq_base`) ?? 10000,
    max_position_embeddings: meta(md, `${p}context_length`) ?? 4096,
    vocab_size: meta(md, `${p}vocab_size`) ?? (Array.isArray(tokens) ? tokens.length : undefined),
    tie_word_embeddings: !f.weights.has("output.weight"),
  };
  const keyLen = meta(md, `${p}attention.key_length`);
  if (keyLen !== undefined && keyLen !== hidden / heads) config.head_dim = keyLen;
  const tensors = new Map<string, mx.Array>();
  const overrides: Record<string, unknown> = {};
  try {
    for (const [name, a] of f.weights) {
      const hf = hfName(name);
      if (hf === null) {
        a.dispose();
        continue;
      }
      let t = a;
      if (/\.self_attn\.(q|k)_proj\.(weight|scales|biases)$/.test(hf)) {
        t = mx.keep(unpermute(a, hf.includes(".q_proj.") ? heads : kvHeads));
        a.dispose();
      }
      tensors.set(hf, t);
    }
    // Q8_0 tensors next to Q4 ones: record their bits as per-module overrides.
    for (const [k, s] of tensors) {
      if (!k.endsWith(".scales")) continue;
      const base = k.slice(0, -".scales".length);
      const bits = tensors.get(`${base}.weight`)!.shape[1]! / s.shape[1]!;
      overrides[base] = { group_size: 32, bits };
    }
  } catch (e) {
    mx.disposeAll(f.weights);
    mx.disposeAll(tensors);
    throw e;
  }
  if (Object.keys(overrides).length > 0) config.quantization = { group_size: 32, bits: 4, ...overrides };
  return { config, tensors };
}

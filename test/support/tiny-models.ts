/**
 * Tiny random-weight models, one per architecture, written deterministically from a seeded PRNG:
 * config.json + model*.safetensors (+ a byte-level tokenizer.json with a ChatML template).
 * The same bytes feed our engine and mlx-lm (scripts/gen-goldens.ts), so logits can be compared.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type TinyName =
  | "llama"
  | "llama_q4"
  | "qwen2"
  | "qwen2_q4"
  | "qwen3"
  | "phi3"
  | "gemma3_text"
  | "gpt_oss"
  | "gpt_oss_mxfp4";

export const TINY_MODELS: readonly TinyName[] = [
  "llama",
  "llama_q4",
  "qwen2",
  "qwen2_q4",
  "qwen3",
  "phi3",
  "gemma3_text",
  "gpt_oss",
  "gpt_oss_mxfp4",
];

/** Prompt token ids the goldens were computed for (all < 256, so plain byte tokens). */
export const GOLDEN_PROMPT: readonly number[] = [72, 101, 108, 108, 111, 32, 116, 105, 110, 121, 32, 109, 111, 100, 101, 108];
export const GOLDEN_STEPS = 32;

const H = 64; // hidden size: a multiple of 32 so every group size used here divides it
const VOCAB = 272; // 256 byte tokens + specials + padding

type Dtype = "F32" | "U32" | "U8";
interface Tensor {
  dtype: Dtype;
  shape: number[];
  data: Float32Array | Uint32Array | Uint8Array;
}
type Tensors = Record<string, Tensor>;

/** mulberry32: tiny, fast, and identical on every platform. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  private rnd: () => number;
  readonly t: Tensors = {};
  constructor(seed: number) {
    this.rnd = prng(seed);
  }
  /** Uniform in [-a, a]; scale chosen per tensor so activations stay O(1). */
  uniform(shape: number[], a: number): Float32Array {
    const n = shape.reduce((x, y) => x * y, 1);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.rnd() * 2 - 1) * a;
    return out;
  }
  float(name: string, shape: number[], a: number, base = 0): void {
    const data = this.uniform(shape, a);
    if (base !== 0) for (let i = 0; i < data.length; i++) data[i]! += base;
    this.t[name] = { dtype: "F32", shape, data };
  }
  /** A Linear with Kaiming-like scale; quantized when `q` is set. */
  linear(prefix: string, out: number, inp: number, opts: { bias?: boolean; q?: Quant }): void {
    const w = this.uniform([out, inp], Math.sqrt(3 / inp));
    if (opts.q) Object.assign(this.t, quantize(prefix, w, [out, inp], opts.q, this.rnd));
    else this.t[`${prefix}.weight`] = { dtype: "F32", shape: [out, inp], data: w };
    if (opts.bias) this.float(`${prefix}.bias`, [out], 0.1);
  }
  norm(name: string, dim: number, base = 1): void {
    this.float(`${name}.weight`, [dim], 0.2, base);
  }
}

interface Quant {
  mode: "affine" | "mxfp4";
  bits: number;
  groupSize: number;
}

/** MLX's packed layout: values LSB-first in uint32 words along the last axis. */
function quantize(prefix: string, w: Float32Array, shape: number[], q: Quant, rnd: () => number): Tensors {
  const [rows, cols] = [shape.slice(0, -1).reduce((a, b) => a * b, 1), shape.at(-1)!];
  const per = 32 / q.bits;
  const packed = new Uint32Array((rows * cols) / per);
  const groups = cols / q.groupSize;
  const qshape = [...shape.slice(0, -1), cols / per];
  const sshape = [...shape.slice(0, -1), groups];
  if (q.mode === "mxfp4") {
    // Random e2m1 codes and e8m0 scales near 2^-3: a valid mxfp4 tensor without porting the encoder.
    for (let i = 0; i < packed.length; i++) packed[i] = Math.floor(rnd() * 2 ** 32) >>> 0;
    const scales = new Uint8Array(rows * groups);
    for (let i = 0; i < scales.length; i++) scales[i] = 122 + Math.floor(rnd() * 3);
    return {
      [`${prefix}.weight`]: { dtype: "U32", shape: qshape, data: packed },
      [`${prefix}.scales`]: { dtype: "U8", shape: sshape, data: scales },
    };
  }
  const levels = 2 ** q.bits - 1;
  const scales = new Float32Array(rows * groups);
  const biases = new Float32Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const off = r * cols + g * q.groupSize;
      let lo = Infinity;
      let hi = -Infinity;
      for (let j = 0; j < q.groupSize; j++) {
        lo = Math.min(lo, w[off + j]!);
        hi = Math.max(hi, w[off + j]!);
      }
      const scale = Math.fround((hi - lo) / levels);
      scales[r * groups + g] = scale;
      biases[r * groups + g] = lo;
      for (let j = 0; j < q.groupSize; j++) {
        const v = Math.min(levels, Math.max(0, Math.round((w[off + j]! - lo) / scale)));
        const idx = off + j;
        packed[Math.floor(idx / per)]! |= (v << ((idx % per) * q.bits)) >>> 0;
      }
    }
  }
  return {
    [`${prefix}.weight`]: { dtype: "U32", shape: qshape, data: packed },
    [`${prefix}.scales`]: { dtype: "F32", shape: sshape, data: scales },
    [`${prefix}.biases`]: { dtype: "F32", shape: sshape, data: biases },
  };
}

/** Write tensors as safetensors; with `shards > 1` also the index file mlx-lm and HF use. */
export function writeSafetensors(dir: string, tensors: Tensors, shards = 1): void {
  const names = Object.keys(tensors).sort();
  const per = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const part = names.slice(s * per, (s + 1) * per);
    const file = shards === 1 ? "model.safetensors" : `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const header: Record<string, unknown> = { __metadata__: { format: "mlx" } };
    let off = 0;
    for (const n of part) {
      const t = tensors[n]!;
      header[n] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
      off += t.data.byteLength;
      weightMap[n] = file;
    }
    let json = JSON.stringify(header);
    json += " ".repeat((8 - (json.length % 8)) % 8);
    const hdr = Buffer.from(json, "utf8");
    const out = Buffer.alloc(8 + hdr.length + off);
    out.writeBigUInt64LE(BigInt(hdr.length), 0);
    hdr.copy(out, 8);
    let pos = 8 + hdr.length;
    for (const n of part) {
      const d = tensors[n]!.data;
      Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, pos);
      pos += d.byteLength;
    }
    writeFileSync(join(dir, file), out);
  }
  if (shards > 1) {
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
  }
}

const Q4: Quant = { mode: "affine", bits: 4, groupSize: 32 };
const MXFP4: Quant = { mode: "mxfp4", bits: 4, groupSize: 32 };

interface Built {
  config: Record<string, unknown>;
  tensors: Tensors;
  shards?: number;
}

function attention(g: Gen, p: string, o: { heads: number; kv: number; hd: number; bias?: boolean; oBias?: boolean; q?: Quant }): void {
  g.linear(`${p}.q_proj`, o.heads * o.hd, H, { bias: o.bias, q: o.q });
  g.linear(`${p}.k_proj`, o.kv * o.hd, H, { bias: o.bias, q: o.q });
  g.linear(`${p}.v_proj`, o.kv * o.hd, H, { bias: o.bias, q: o.q });
  g.linear(`${p}.o_proj`, H, o.heads * o.hd, { bias: o.oBias, q: o.q });
}

function llamaLike(name: TinyName, seed: number): Built {
  const q = name.endsWith("_q4") ? Q4 : undefined;
  const qwen2 = name.startsWith("qwen2");
  const qwen3 = name === "qwen3";
  const g = new Gen(seed);
  const layers = 2;
  const [heads, kv, hd, ff] = [4, 2, qwen3 ? 32 : 16, 128];
  const tied = name !== "llama";
  // Tied heads echo the input token when embeddings dominate the residual stream; keep them small.
  g.float("model.embed_tokens.weight", [VOCAB, H], tied ? 0.15 : 1);
  if (q) Object.assign(g.t, quantize("model.embed_tokens", g.t["model.embed_tokens.weight"]!.data as Float32Array, [VOCAB, H], q, () => 0));
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    attention(g, `${p}.self_attn`, { heads, kv, hd, bias: qwen2, q });
    if (qwen3) {
      g.norm(`${p}.self_attn.q_norm`, hd);
      g.norm(`${p}.self_attn.k_norm`, hd);
    }
    g.linear(`${p}.mlp.gate_proj`, ff, H, { q });
    g.linear(`${p}.mlp.up_proj`, ff, H, { q });
    g.linear(`${p}.mlp.down_proj`, H, ff, { q });
    g.norm(`${p}.input_layernorm`, H);
    g.norm(`${p}.post_attention_layernorm`, H);
  }
  g.norm("model.norm", H);
  if (!tied) g.linear("lm_head", VOCAB, H, { q });
  const config: Record<string, unknown> = {
    model_type: qwen2 ? "qwen2" : qwen3 ? "qwen3" : "llama",
    hidden_size: H,
    num_hidden_layers: layers,
    intermediate_size: ff,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    rms_norm_eps: 1e-5,
    vocab_size: VOCAB,
    max_position_embeddings: 512,
    rope_theta: qwen2 ? 1000000 : 10000,
    tie_word_embeddings: tied,
    some_unused_key: { ignored: true },
  };
  if (qwen3) config.head_dim = hd;
  if (q) config.quantization = { group_size: 32, bits: 4, mode: "affine" };
  // Shard one model so the index path is exercised.
  return { config, tensors: g.t, shards: name === "qwen2" ? 2 : 1 };
}

function phi3(seed: number): Built {
  const g = new Gen(seed);
  const [heads, kv, hd, ff, layers] = [4, 2, 16, 96, 2];
  g.float("model.embed_tokens.weight", [VOCAB, H], 1);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    g.linear(`${p}.self_attn.qkv_proj`, (heads + 2 * kv) * hd, H, {});
    g.linear(`${p}.self_attn.o_proj`, H, heads * hd, {});
    g.linear(`${p}.mlp.gate_up_proj`, 2 * ff, H, {});
    g.linear(`${p}.mlp.down_proj`, H, ff, {});
    g.norm(`${p}.input_layernorm`, H);
    g.norm(`${p}.post_attention_layernorm`, H);
  }
  g.norm("model.norm", H);
  g.linear("lm_head", VOCAB, H, {});
  const short = Array.from({ length: hd / 4 }, (_, i) => 1 + i * 0.05);
  const long = Array.from({ length: hd / 4 }, (_, i) => 1 + i * 0.3);
  const config = {
    model_type: "phi3",
    hidden_size: H,
    num_hidden_layers: layers,
    intermediate_size: ff,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    rms_norm_eps: 1e-5,
    vocab_size: VOCAB,
    rope_theta: 10000,
    partial_rotary_factor: 0.5,
    max_position_embeddings: 4096,
    original_max_position_embeddings: 1024,
    rope_scaling: { type: "longrope", short_factor: short, long_factor: long },
    tie_word_embeddings: false,
  };
  return { config, tensors: g.t };
}

function gemma3(seed: number): Built {
  const g = new Gen(seed);
  const [heads, kv, hd, ff, layers] = [4, 1, 32, 128, 3];
  g.float("model.embed_tokens.weight", [VOCAB, H], 0.03);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    attention(g, `${p}.self_attn`, { heads, kv, hd });
    g.norm(`${p}.self_attn.q_norm`, hd, 0);
    g.norm(`${p}.self_attn.k_norm`, hd, 0);
    g.linear(`${p}.mlp.gate_proj`, ff, H, {});
    g.linear(`${p}.mlp.up_proj`, ff, H, {});
    g.linear(`${p}.mlp.down_proj`, H, ff, {});
    for (const n of ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"]) {
      g.norm(`${p}.${n}`, H, 0);
    }
  }
  g.norm("model.norm", H, 0);
  const config = {
    model_type: "gemma3_text",
    hidden_size: H,
    num_hidden_layers: layers,
    intermediate_size: ff,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: hd,
    rms_norm_eps: 1e-6,
    vocab_size: VOCAB,
    rope_theta: 1000000,
    rope_local_base_freq: 10000,
    query_pre_attn_scalar: hd,
    sliding_window: 8,
    sliding_window_pattern: 3,
    max_position_embeddings: 512,
  };
  return { config, tensors: g.t };
}

function gptOss(seed: number, q?: Quant): Built {
  const g = new Gen(seed);
  const [heads, kv, hd, ff, layers, experts] = [4, 2, 16, 64, 2, 4];
  g.float("model.embed_tokens.weight", [VOCAB, H], 1);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    attention(g, `${p}.self_attn`, { heads, kv, hd, bias: true, oBias: true });
    g.float(`${p}.self_attn.sinks`, [heads], 1);
    g.linear(`${p}.mlp.router`, experts, H, { bias: true });
    for (const [n, out, inp] of [["gate_proj", ff, H], ["up_proj", ff, H], ["down_proj", H, ff]] as const) {
      const e = `${p}.mlp.experts.${n}`;
      const w = g.uniform([experts, out, inp], Math.sqrt(3 / inp));
      if (q) Object.assign(g.t, quantize(e, w, [experts, out, inp], q, prngFor(g)));
      else g.t[`${e}.weight`] = { dtype: "F32", shape: [experts, out, inp], data: w };
      g.float(`${e}.bias`, [experts, out], 0.1);
    }
    g.norm(`${p}.input_layernorm`, H);
    g.norm(`${p}.post_attention_layernorm`, H);
  }
  g.norm("model.norm", H);
  g.linear("lm_head", VOCAB, H, {});
  const config: Record<string, unknown> = {
    model_type: "gpt_oss",
    hidden_size: H,
    num_hidden_layers: layers,
    intermediate_size: ff,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: hd,
    num_local_experts: experts,
    num_experts_per_tok: 2,
    rms_norm_eps: 1e-5,
    vocab_size: VOCAB,
    rope_theta: 150000,
    sliding_window: 8,
    layer_types: ["sliding_attention", "full_attention"],
  };
  if (q) config.quantization = { group_size: 32, bits: 4, mode: "mxfp4" };
  return { config, tensors: g.t };
}

/** A second stream of randomness derived from the generator, for the mxfp4 codes. */
function prngFor(g: Gen): () => number {
  const s = g.uniform([1], 1)[0]!;
  return prng(Math.floor((s + 1) * 1e9));
}

function build(name: TinyName): Built {
  const seed = 1000 + TINY_MODELS.indexOf(name);
  switch (name) {
    case "phi3":
      return phi3(seed);
    case "gemma3_text":
      return gemma3(seed);
    case "gpt_oss":
      return gptOss(seed);
    case "gpt_oss_mxfp4":
      return gptOss(seed, MXFP4);
    default:
      return llamaLike(name, seed);
  }
}

const CHATML =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** A byte-level BPE tokenizer without merges: every byte is one token, plus three specials at 256..258. */
function tokenizerJson(): unknown {
  const bytes: string[] = [];
  // GPT-2 byte→unicode table: printable bytes map to themselves, the rest to 256+n.
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    bytes.push(printable ? String.fromCharCode(b) : String.fromCharCode(256 + n++));
  }
  const vocab: Record<string, number> = {};
  bytes.forEach((c, i) => {
    vocab[c] = i;
  });
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  specials.forEach((s, i) => {
    vocab[s] = 256 + i;
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((s, i) => ({
      id: 256 + i,
      content: s,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

/** Write tiny model `name` into `dir` (created if needed); returns `dir`. Same name → same bytes. */
export function writeTinyModel(name: TinyName, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const b = build(name);
  writeFileSync(join(dir, "config.json"), JSON.stringify({ eos_token_id: 258, bos_token_id: 256, pad_token_id: 256, ...b.config }, null, 2));
  writeSafetensors(dir, b.tensors, b.shards ?? 1);
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson()));
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({ chat_template: CHATML, eos_token: "<|im_end|>", bos_token: null, pad_token: "<|endoftext|>", add_bos_token: false }, null, 2),
  );
  return dir;
}

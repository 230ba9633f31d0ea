/**
 * The tiny models of tiny-models.ts written as GGUF the way llama.cpp's convert_hf_to_gguf.py writes them
 * (tensor names per architecture, q/k rows permuted for llama only, gemma norms stored as value + 1, phi3
 * longrope factors as tensors, `<arch>.*` metadata, a byte-level gpt2 tokenizer with the ChatML template),
 * plus a reference HF dir holding exactly the values the GGUF decodes to (F16 rounding, Q8_0/Q4_0/Q4_1
 * blocks quantized as ggml does), so GGUF and safetensors loads of "the same model" can be compared exactly.
 *
 * Exports: GgufQuant, tinyGguf(name, dir, { type, split? }) → { ggufPaths, refDir }, encodeTinyGguf(...), readSafetensorsDir(dir)
 */
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  concatBytes,
  encodeGguf,
  f16Data,
  f32Data,
  type GgmlType,
  type GgufMeta,
  type GgufTensor,
  q4_0Block,
  q4_1Block,
  q5_0Block,
  q5_1Block,
  q8_0Block,
} from "./gguf-writer.ts";
import {
  dequantizeIQ4NL,
  dequantizeIQ4XS,
  dequantizeQ4K,
  dequantizeQ5K,
  dequantizeQ6K,
  quantizeIQ4NL,
  quantizeIQ4XS,
  quantizeQ4K,
  quantizeQ5K,
  quantizeQ6K,
} from "./kquants.ts";
import { seededTensors } from "./hf-tiny.ts";
import { type TinyName, writeSafetensors, writeTinyModel } from "./tiny-models.ts";

/**
 * Q4_K_M / Q5_K_M: as llama.cpp mixes them — Q6_K for the output head and v_proj, Q4_K / Q5_K elsewhere; where a
 * row is not a multiple of 256 it falls back like llama.cpp (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, IQ4_XS → IQ4_NL).
 */
export type GgufQuant = "F32" | "F16" | "BF16" | "Q8_0" | "Q4_0" | "Q4_1" | "Q5_0" | "Q5_1" | "Q4_K_M" | "Q5_K_M" | "IQ4_XS";
type TensorQuant = Exclude<GgufQuant, "Q4_K_M" | "Q5_K_M"> | "Q4_K" | "Q5_K" | "Q6_K" | "IQ4_NL";

const ARCH: Record<string, string> = { wide_llama: "llama", llama: "llama", qwen2: "qwen2", qwen3: "qwen3", qwen3_moe: "qwen3moe", phi3: "phi3", gemma3_text: "gemma3" };

const LAYER: Record<string, string> = {
  input_layernorm: "attn_norm",
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.qkv_proj": "attn_qkv",
  "self_attn.o_proj": "attn_output",
  "self_attn.q_norm": "attn_q_norm",
  "self_attn.k_norm": "attn_k_norm",
  post_attention_layernorm: "ffn_norm",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.gate_up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
  "mlp.gate": "ffn_gate_inp",
  "mlp.switch_mlp.gate_proj": "ffn_gate_exps",
  "mlp.switch_mlp.up_proj": "ffn_up_exps",
  "mlp.switch_mlp.down_proj": "ffn_down_exps",
};
const GEMMA: Record<string, string> = {
  post_attention_layernorm: "post_attention_norm",
  pre_feedforward_layernorm: "ffn_norm",
  post_feedforward_layernorm: "post_ffw_norm",
};

function ggufName(hf: string, arch: string): string {
  const top: Record<string, string> = { "model.embed_tokens": "token_embd", "model.norm": "output_norm", lm_head: "output" };
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (m) {
    const n = (arch === "gemma3" ? GEMMA[m[2]!] : undefined) ?? LAYER[m[2]!];
    if (!n) throw new Error(`no GGUF name for ${hf}`);
    return `blk.${m[1]}.${n}.${m[3]}`;
  }
  const t = /^(.+)\.(weight|bias)$/.exec(hf)!;
  if (!top[t[1]!]) throw new Error(`no GGUF name for ${hf}`);
  return `${top[t[1]!]}.${t[2]}`;
}

/** llama.cpp LlamaModel.permute: rows (n_head, 2, rows/n_head/2) → (n_head, rows/n_head/2, 2). */
function permute(w: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = rows / nHead / 2;
  for (let h = 0; h < nHead; h++)
    for (let two = 0; two < 2; two++)
      for (let i = 0; i < half; i++) {
        const src = h * 2 * half + two * half + i;
        const dst = h * 2 * half + i * 2 + two;
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
  return out;
}

const f16dv = new DataView(new ArrayBuffer(2));
function f16r(x: number): number {
  f16dv.setFloat16(0, x, true);
  return f16dv.getFloat16(0, true);
}

/** Encode rows of `w` in `type` as ggml does; returns the bytes and the decoded values. */
function encode(w: Float32Array, type: TensorQuant): { data: Uint8Array; decoded: Float32Array } {
  const decoded = new Float32Array(w.length);
  if (type === "F32") return { data: f32Data(w), decoded: w };
  if (type === "Q4_K") {
    const data = quantizeQ4K(w);
    return { data, decoded: dequantizeQ4K(data) };
  }
  if (type === "IQ4_XS" || type === "IQ4_NL") {
    const data = type === "IQ4_XS" ? quantizeIQ4XS(w) : quantizeIQ4NL(w);
    return { data, decoded: type === "IQ4_XS" ? dequantizeIQ4XS(data) : dequantizeIQ4NL(data) };
  }
  if (type === "Q5_K") {
    const data = quantizeQ5K(w);
    return { data, decoded: dequantizeQ5K(data) };
  }
  if (type === "Q6_K") {
    const data = quantizeQ6K(w);
    return { data, decoded: dequantizeQ6K(data) };
  }
  if (type === "BF16") {
    // round to nearest even, as torch/numpy do
    const u = new Uint32Array(Float32Array.from(w).buffer);
    const hi = Uint16Array.from(u, (b) => ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff);
    const back = new Uint32Array(hi.length);
    hi.forEach((h, i) => (back[i] = h << 16));
    return { data: new Uint8Array(hi.buffer), decoded: new Float32Array(back.buffer) };
  }
  if (type === "F16") {
    for (let i = 0; i < w.length; i++) decoded[i] = f16r(w[i]!);
    return { data: f16Data(w), decoded };
  }
  const blocks: Uint8Array[] = [];
  for (let b = 0; b < w.length; b += 32) {
    const x = w.subarray(b, b + 32);
    if (type === "Q8_0") {
      let amax = 0;
      for (const v of x) amax = Math.max(amax, Math.abs(v));
      const d = amax / 127;
      const q = Array.from(x, (v) => (d === 0 ? 0 : Math.round(v / d)));
      const d16 = f16r(d);
      q.forEach((qi, j) => (decoded[b + j] = qi * d16));
      blocks.push(q8_0Block(d, q));
    } else if (type === "Q5_0" || type === "Q4_0") {
      // ggml's quantize_row_q{4,5}_0: d from the signed value of largest magnitude, codes offset by half the range
      const half = type === "Q5_0" ? 16 : 8;
      let max = 0;
      for (const v of x) if (Math.abs(v) > Math.abs(max)) max = v;
      const d = max / -half;
      const id = d === 0 ? 0 : 1 / d;
      const q = Array.from(x, (v) => Math.min(2 * half - 1, Math.trunc(v * id + half + 0.5)));
      const d16 = f16r(d);
      q.forEach((qi, j) => (decoded[b + j] = (qi - half) * d16));
      blocks.push(type === "Q5_0" ? q5_0Block(d, q) : q4_0Block(d, q));
    } else {
      // Q4_1 / Q5_1: scale and min per block
      const top = type === "Q5_1" ? 31 : 15;
      let lo = Infinity;
      let hi = -Infinity;
      for (const v of x) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      const d = (hi - lo) / top;
      const id = d === 0 ? 0 : 1 / d;
      const q = Array.from(x, (v) => Math.min(top, Math.trunc((v - lo) * id + 0.5)));
      const [d16, m16] = [f16r(d), f16r(lo)];
      q.forEach((qi, j) => (decoded[b + j] = qi * d16 + m16));
      blocks.push(type === "Q5_1" ? q5_1Block(d, lo, q) : q4_1Block(d, lo, q));
    }
  }
  return { data: concatBytes(blocks), decoded };
}

export interface StTensor {
  dtype: string;
  shape: number[];
  data: Float32Array;
}

export function readSafetensorsDir(dir: string): Record<string, StTensor> {
  const out: Record<string, StTensor> = {};
  for (const f of readdirSync(dir).filter((n) => n.endsWith(".safetensors"))) {
    const buf = readFileSync(join(dir, f));
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    for (const [k, t] of Object.entries(header)) {
      if (k === "__metadata__") continue;
      if (t.dtype !== "F32") throw new Error(`hf-to-gguf: ${k} is ${t.dtype}; only float tiny models convert`);
      const bytes = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
      out[k] = { dtype: t.dtype, shape: t.shape, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) };
    }
  }
  return out;
}

const CHATML =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** The byte-level vocabulary of tiny-models.ts as GGUF tokenizer metadata (gpt2 model, no merges). */
function tokenizerMeta(vocab: number): Record<string, GgufMeta> {
  const tokens: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    tokens.push(printable ? String.fromCharCode(b) : String.fromCharCode(256 + n++));
  }
  tokens.push("<|endoftext|>", "<|im_start|>", "<|im_end|>");
  while (tokens.length < vocab) tokens.push(`<|pad_${tokens.length}|>`);
  const types = tokens.map((_, i) => (i >= 256 && i < 259 ? 3 : i >= 259 ? 5 : 1));
  return {
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": "qwen2",
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.token_type": { type: "i32", value: types },
    "tokenizer.ggml.merges": [],
    "tokenizer.ggml.eos_token_id": { type: "u32", value: 258 },
    "tokenizer.ggml.padding_token_id": { type: "u32", value: 256 },
    "tokenizer.ggml.add_bos_token": { type: "bool", value: 0 },
    "tokenizer.chat_template": CHATML,
  };
}

function archMeta(arch: string, c: Record<string, unknown>): Record<string, GgufMeta> {
  const u = (v: unknown): GgufMeta => ({ type: "u32", value: v as number });
  const f = (v: unknown): GgufMeta => ({ type: "f32", value: v as number });
  const heads = c.num_attention_heads as number;
  const hd = (c.head_dim as number | undefined) ?? (c.hidden_size as number) / heads;
  const m: Record<string, GgufMeta> = {
    "general.architecture": arch,
    "general.name": `tiny-${arch}`,
    "general.file_type": u(1),
    [`${arch}.block_count`]: u(c.num_hidden_layers),
    [`${arch}.context_length`]: u(c.max_position_embeddings),
    [`${arch}.embedding_length`]: u(c.hidden_size),
    [`${arch}.feed_forward_length`]: u(c.intermediate_size),
    [`${arch}.attention.head_count`]: u(heads),
    [`${arch}.attention.head_count_kv`]: u(c.num_key_value_heads),
    [`${arch}.attention.layer_norm_rms_epsilon`]: f(c.rms_norm_eps),
    [`${arch}.rope.freq_base`]: f(c.rope_theta),
    [`${arch}.attention.key_length`]: u(hd),
    [`${arch}.attention.value_length`]: u(hd),
  };
  if (arch === "gemma3") {
    m[`${arch}.attention.sliding_window`] = u(c.sliding_window);
    m[`${arch}.attention.sliding_window_pattern`] = u(c.sliding_window_pattern);
  }
  if (arch === "qwen3moe") {
    m[`${arch}.expert_count`] = u(c.num_experts);
    m[`${arch}.expert_used_count`] = u(c.num_experts_per_tok);
    m[`${arch}.expert_feed_forward_length`] = u(c.moe_intermediate_size);
  }
  if (arch === "phi3") {
    m[`${arch}.rope.dimension_count`] = u(hd * (c.partial_rotary_factor as number));
    m[`${arch}.rope.scaling.original_context_length`] = u(c.original_max_position_embeddings);
  }
  return m;
}

/** Metadata + tensors of the GGUF for tiny model `name` and the decoded (reference) tensors. */
export function encodeTinyGguf(name: TinyName | "wide_llama", srcDir: string, type: GgufQuant): { metadata: Record<string, GgufMeta>; tensors: GgufTensor[]; reference: Record<string, StTensor> } {
  const config = JSON.parse(readFileSync(join(srcDir, "config.json"), "utf8")) as Record<string, unknown>;
  const arch = ARCH[name];
  if (!arch) throw new Error(`hf-to-gguf: no GGUF architecture for ${name}`);
  const st = readSafetensorsDir(srcDir);
  const heads = config.num_attention_heads as number;
  const kv = config.num_key_value_heads as number;
  const tensors: GgufTensor[] = [];
  const reference: Record<string, StTensor> = {};
  for (const hf of Object.keys(st).sort()) {
    const t = st[hf]!;
    // llama.cpp keeps the router (ffn_gate_inp) in F32; experts are 3-D, quantized along the last axis
    const matrix = t.shape.length >= 2 && t.shape.at(-1)! % 32 === 0 && hf.endsWith(".weight") && !hf.endsWith("mlp.gate.weight");
    let tt: TensorQuant = matrix ? (type === "Q4_K_M" ? "Q4_K" : type === "Q5_K_M" ? "Q5_K" : type) : "F32";
    if ((tt === "Q4_K" || tt === "Q5_K") && (hf === "lm_head.weight" || hf.endsWith("v_proj.weight"))) tt = "Q6_K";
    if (tt === "Q4_K" && t.shape.at(-1)! % 256 !== 0) tt = "Q5_0";
    if (tt === "Q5_K" && t.shape.at(-1)! % 256 !== 0) tt = "Q5_1";
    if (tt === "IQ4_XS" && t.shape.at(-1)! % 256 !== 0) tt = "IQ4_NL";
    if (tt === "Q6_K" && t.shape.at(-1)! % 256 !== 0) tt = "Q8_0";
    const { data, decoded } = encode(t.data, tt);
    reference[hf] = { ...t, data: decoded };
    let stored = decoded;
    let bytes = data;
    if (arch === "llama" && /self_attn\.(q|k)_proj\.weight$/.test(hf)) {
      // permute the encoded rows (blocks never cross rows), as the converter permutes before quantizing
      stored = permute(t.data, t.shape[0]!, t.shape[1]!, hf.includes("q_proj") ? heads : kv);
      bytes = encode(stored, tt).data;
    }
    if (arch === "gemma3" && hf.endsWith("norm.weight")) bytes = f32Data(Array.from(t.data, (v) => v + 1));
    tensors.push({ name: ggufName(hf, arch), shape: t.shape, type: tt as GgmlType, data: bytes });
  }
  if (arch === "phi3") {
    const rs = config.rope_scaling as { short_factor: number[]; long_factor: number[] };
    tensors.push({ name: "rope_factors_long.weight", shape: [rs.long_factor.length], type: "F32", data: f32Data(rs.long_factor) });
    tensors.push({ name: "rope_factors_short.weight", shape: [rs.short_factor.length], type: "F32", data: f32Data(rs.short_factor) });
  }
  const metadata = { ...archMeta(arch, config), ...tokenizerMeta(config.vocab_size as number) };
  return { metadata, tensors, reference };
}

/**
 * A llama with rows of 256 (hidden 256, FFN 512), so K-quants (super-blocks of 256) apply; the tiny models'
 * hidden size 64 is below one block. Seeded, same bytes every time.
 */
function writeWideLlama(dir: string): string {
  writeTinyModel("llama", dir); // tokenizer files; config and weights are replaced below
  const [H, F, V, L, heads, kv, hd] = [256, 512, 272, 2, 4, 2, 64];
  const { t, put } = seededTensors(4242);
  put("model.embed_tokens.weight", [V, H], 1);
  put("lm_head.weight", [V, H], Math.sqrt(3 / H));
  put("model.norm.weight", [H], 0.2, 1);
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}`;
    put(`${p}.self_attn.q_proj.weight`, [heads * hd, H], Math.sqrt(3 / H));
    put(`${p}.self_attn.k_proj.weight`, [kv * hd, H], Math.sqrt(3 / H));
    put(`${p}.self_attn.v_proj.weight`, [kv * hd, H], Math.sqrt(3 / H));
    put(`${p}.self_attn.o_proj.weight`, [H, heads * hd], Math.sqrt(3 / H));
    put(`${p}.mlp.gate_proj.weight`, [F, H], Math.sqrt(3 / H));
    put(`${p}.mlp.up_proj.weight`, [F, H], Math.sqrt(3 / H));
    put(`${p}.mlp.down_proj.weight`, [H, F], Math.sqrt(3 / F));
    put(`${p}.input_layernorm.weight`, [H], 0.2, 1);
    put(`${p}.post_attention_layernorm.weight`, [H], 0.2, 1);
  }
  const config = {
    model_type: "llama",
    hidden_size: H,
    intermediate_size: F,
    num_hidden_layers: L,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    vocab_size: V,
    max_position_embeddings: 512,
    tie_word_embeddings: false,
    eos_token_id: 258,
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  writeSafetensors(dir, t as never, 1);
  return dir;
}

/**
 * Tiny model `name` as GGUF file(s) in `dir` (split into `split` parts as gguf-split does: every part a GGUF
 * with `split.*` keys, the first with all metadata) and its reference HF dir `dir/ref`.
 */
export function tinyGguf(name: TinyName | "wide_llama", dir: string, opts: { type: GgufQuant; split?: number; file?: string }): { ggufPaths: string[]; refDir: string; bytes: Uint8Array[] } {
  mkdirSync(dir, { recursive: true });
  const src = name === "wide_llama" ? writeWideLlama(join(dir, "src")) : writeTinyModel(name, join(dir, "src"));
  const { metadata, tensors, reference } = encodeTinyGguf(name, src, opts.type);
  const refDir = join(dir, "ref");
  mkdirSync(refDir, { recursive: true });
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(src, f), join(refDir, f));
  writeSafetensors(refDir, reference as never, 1);
  const stem = opts.file ?? `tiny-${name}.${opts.type}`;
  const n = opts.split ?? 1;
  const bytes: Uint8Array[] = [];
  const ggufPaths: string[] = [];
  const per = Math.ceil(tensors.length / n);
  for (let i = 0; i < n; i++) {
    const part = tensors.slice(i * per, (i + 1) * per);
    const meta: Record<string, GgufMeta> = i === 0 ? { ...metadata } : { "general.architecture": metadata["general.architecture"]! };
    if (n > 1) {
      meta["split.no"] = { type: "u16", value: i };
      meta["split.count"] = { type: "u16", value: n };
      meta["split.tensors.count"] = { type: "i32", value: tensors.length };
    }
    const b = encodeGguf(meta, part);
    const file = n > 1 ? `${stem}-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.gguf` : `${stem}.gguf`;
    writeFileSync(join(dir, file), b);
    bytes.push(b);
    ggufPaths.push(join(dir, file));
  }
  return { ggufPaths, refDir, bytes };
}

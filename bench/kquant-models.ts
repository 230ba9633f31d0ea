/**
 * Random-weight Q4_K_M GGUFs for bench/llama.ts, written the way llama-quantize mixes Q4_K_M (Q6_K for the tied
 * embedding/output and for attn_v / ffn_down on llama.cpp's "more bits" layers, Q4_K elsewhere, norms and the MoE
 * router F32), with SmolLM2's tokenizer padded to the vocabulary size so llama.cpp loads them too:
 * - Qwen3-0.6B-shaped (hidden 1024, 28 layers, 16/8 heads of 128, FF 3072, vocab 151936, tied): every matrix row
 *   is a multiple of 256, so every matrix is a K-quant (Qwen2.5-0.5B's 896-wide rows would fall back to Q5_0/Q8_0).
 * - Qwen3-30B-A3B-like MoE scaled to fit (qwen3moe: hidden 1024, 12 layers, 16/4 heads of 64, 64 experts of 512,
 *   top 8, vocab 49152): K-quant experts through the gather kernel.
 * Blocks are drawn from a pool that test/support/kquants.ts's quantizer made from uniform values, rescaled per
 * tensor (d and dmin scale every value of a block exactly), so they are valid K-quant encodings, fast to write.
 *
 * - SmolLM2-135M-Instruct with its real weights, ffn_down re-encoded as Q4_K_M does (Q6_K on the "more bits"
 *   layers, Q4_K elsewhere; its other matrices have 576-wide rows, where Q4_K_M falls back to 32-blocks anyway, so
 *   they keep the file's Q4_1/Q8_0): a real model whose greedy path has clear margins, for the llama.cpp agreement.
 *
 * Exports: qwen3ShapedQ4KM(smollm2), qwen3MoeShapedQ4KM(smollm2), smollm2Q4K(smollm2) → path (under .cache/bench/)
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const CACHE = join(resolve(import.meta.dir, ".."), ".cache", "bench");

let seed = 7;
function rnd(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
}

type KType = "Q4_K" | "Q6_K";
const BB: Record<KType, number> = { Q4_K: 144, Q6_K: 210 };
const pools = new Map<KType, Uint8Array>();

async function pool(t: KType): Promise<Uint8Array> {
  let p = pools.get(t);
  if (!p) {
    const { quantizeQ4K, quantizeQ6K } = await import("../test/support/kquants.ts");
    const x = Float32Array.from({ length: 2048 * 256 }, () => (rnd() * 2 - 1) * Math.sqrt(3)); // unit variance
    p = t === "Q4_K" ? quantizeQ4K(x) : quantizeQ6K(x);
    pools.set(t, p);
  }
  return p;
}

/** rows × cols values (cols a multiple of 256) of standard deviation `std`, as `t` blocks. */
async function blocks(t: KType, rows: number, cols: number, std: number): Promise<Uint8Array> {
  const src = await pool(t);
  const bb = BB[t];
  const n = src.length / bb;
  // the pool rescaled once per tensor: d (and dmin) times std
  const scaled = src.slice();
  const dv = new DataView(scaled.buffer);
  for (let i = 0; i < n; i++) {
    for (const o of t === "Q6_K" ? [208] : [0, 2]) dv.setFloat16(i * bb + o, dv.getFloat16(i * bb + o, true) * std, true);
  }
  const count = (rows * cols) / 256;
  const out = new Uint8Array(count * bb);
  for (let b = 0; b < count; b++) {
    const k = Math.floor(rnd() * n);
    out.set(scaled.subarray(k * bb, (k + 1) * bb), b * bb);
  }
  return out;
}

/** llama.cpp's use_more_bits(i, n): the layers Q4_K_M gives Q6_K for attn_v and ffn_down. */
const moreBits = (i: number, n: number) => i < n / 8 || i >= (7 * n) / 8 || (i - Math.floor(n / 8)) % 3 === 2;

interface Tensor {
  name: string;
  shape: number[];
  type: "F32" | KType;
  data: Uint8Array;
}

const f32 = (n: number, v = 1) => new Uint8Array(Float32Array.from({ length: n }, () => v).buffer);

async function matrix(name: string, shape: number[], type: KType): Promise<Tensor> {
  const cols = shape.at(-1)!;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return { name, shape, type, data: await blocks(type, rows, cols, 1 / Math.sqrt(cols)) };
}

async function tokenizerMeta(smollm2: string, vocab: number): Promise<Record<string, unknown>> {
  const { readGguf } = await import("../src/gguf/reader.ts");
  const src = readGguf(smollm2);
  const tokens = [...(src.metadata.get("tokenizer.ggml.tokens")!.value as string[])];
  const types = Array.from(src.metadata.get("tokenizer.ggml.token_type")!.value as ArrayLike<number>);
  for (let i = tokens.length; i < vocab; i++) {
    tokens.push(`<pad_${i}>`);
    types.push(4);
  }
  const u32 = (value: number) => ({ type: "u32" as const, value });
  return {
    "tokenizer.ggml.model": String(src.metadata.get("tokenizer.ggml.model")!.value),
    "tokenizer.ggml.pre": String(src.metadata.get("tokenizer.ggml.pre")!.value),
    "tokenizer.ggml.tokens": tokens.slice(0, vocab),
    "tokenizer.ggml.token_type": { type: "i32" as const, value: types.slice(0, vocab) },
    "tokenizer.ggml.merges": src.metadata.get("tokenizer.ggml.merges")!.value as string[],
    "tokenizer.ggml.bos_token_id": u32(Number(src.metadata.get("tokenizer.ggml.bos_token_id")!.value)),
    "tokenizer.ggml.eos_token_id": u32(Number(src.metadata.get("tokenizer.ggml.eos_token_id")!.value)),
  };
}

interface Shape {
  file: string;
  name: string;
  arch: "qwen3" | "qwen3moe";
  H: number;
  L: number;
  NH: number;
  KV: number;
  D: number;
  FF: number;
  V: number;
  experts?: { E: number; k: number; I: number };
}

async function write(s: Shape, smollm2: string): Promise<string> {
  const path = join(CACHE, s.file);
  if (existsSync(path)) return path;
  const { encodeGguf } = await import("../test/support/gguf-writer.ts");
  const { H, L, NH, KV, D, FF, V } = s;
  const tensors: Tensor[] = [
    await matrix("token_embd.weight", [V, H], "Q6_K"), // tied: llama.cpp quantizes it as the output head
    { name: "output_norm.weight", shape: [H], type: "F32", data: f32(H) },
  ];
  for (let i = 0; i < L; i++) {
    const p = `blk.${i}`;
    const more: KType = moreBits(i, L) ? "Q6_K" : "Q4_K";
    tensors.push(
      { name: `${p}.attn_norm.weight`, shape: [H], type: "F32", data: f32(H) },
      { name: `${p}.ffn_norm.weight`, shape: [H], type: "F32", data: f32(H) },
      { name: `${p}.attn_q_norm.weight`, shape: [D], type: "F32", data: f32(D) },
      { name: `${p}.attn_k_norm.weight`, shape: [D], type: "F32", data: f32(D) },
      await matrix(`${p}.attn_q.weight`, [NH * D, H], "Q4_K"),
      await matrix(`${p}.attn_k.weight`, [KV * D, H], "Q4_K"),
      await matrix(`${p}.attn_v.weight`, [KV * D, H], more),
      await matrix(`${p}.attn_output.weight`, [H, NH * D], "Q4_K"),
    );
    if (s.experts) {
      const { E, I } = s.experts;
      const router = Float32Array.from({ length: E * H }, () => (rnd() * 2 - 1) * Math.sqrt(3 / H));
      tensors.push(
        { name: `${p}.ffn_gate_inp.weight`, shape: [E, H], type: "F32", data: new Uint8Array(router.buffer) },
        await matrix(`${p}.ffn_gate_exps.weight`, [E, I, H], "Q4_K"),
        await matrix(`${p}.ffn_up_exps.weight`, [E, I, H], "Q4_K"),
        await matrix(`${p}.ffn_down_exps.weight`, [E, H, I], more),
      );
    } else {
      tensors.push(
        await matrix(`${p}.ffn_gate.weight`, [FF, H], "Q4_K"),
        await matrix(`${p}.ffn_up.weight`, [FF, H], "Q4_K"),
        await matrix(`${p}.ffn_down.weight`, [H, FF], more),
      );
    }
  }
  const u32 = (value: number) => ({ type: "u32" as const, value });
  const a = s.arch;
  const meta: Record<string, unknown> = {
    "general.architecture": a,
    "general.name": s.name,
    "general.file_type": u32(15), // MOSTLY_Q4_K_M
    [`${a}.block_count`]: u32(L),
    [`${a}.context_length`]: u32(32768),
    [`${a}.embedding_length`]: u32(H),
    [`${a}.feed_forward_length`]: u32(FF),
    [`${a}.attention.head_count`]: u32(NH),
    [`${a}.attention.head_count_kv`]: u32(KV),
    [`${a}.attention.key_length`]: u32(D),
    [`${a}.attention.value_length`]: u32(D),
    [`${a}.attention.layer_norm_rms_epsilon`]: { type: "f32" as const, value: 1e-6 },
    [`${a}.rope.freq_base`]: { type: "f32" as const, value: 1000000 },
    [`${a}.vocab_size`]: u32(V),
    ...(await tokenizerMeta(smollm2, V)),
  };
  if (s.experts) {
    meta[`${a}.expert_count`] = u32(s.experts.E);
    meta[`${a}.expert_used_count`] = u32(s.experts.k);
    meta[`${a}.expert_feed_forward_length`] = u32(s.experts.I);
  }
  mkdirSync(CACHE, { recursive: true });
  writeFileSync(path, encodeGguf(meta as never, tensors));
  return path;
}

export function qwen3ShapedQ4KM(smollm2: string): Promise<string> {
  return write(
    { file: "qwen3-0.6b-shaped.Q4_K_M.gguf", name: "qwen3-0.6b-shaped-random", arch: "qwen3", H: 1024, L: 28, NH: 16, KV: 8, D: 128, FF: 3072, V: 151936 },
    smollm2,
  );
}

export function qwen3MoeShapedQ4KM(smollm2: string): Promise<string> {
  return write(
    {
      file: "qwen3moe-a3b-shaped.Q4_K_M.gguf",
      name: "qwen3-30b-a3b-shaped-random",
      arch: "qwen3moe",
      H: 1024,
      L: 12,
      NH: 16,
      KV: 4,
      D: 64,
      FF: 3072,
      V: 49152,
      experts: { E: 64, k: 8, I: 512 },
    },
    smollm2,
  );
}

const META_TYPES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"] as const;

/** Q4_1 blocks (f16 d, f16 m, 16 bytes of nibbles: low = values 0..15, high = 16..31) → floats. */
function q41Floats(b: Uint8Array): Float32Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const y = new Float32Array((b.length / 20) * 32);
  for (let k = 0; k < b.length / 20; k++) {
    const d = dv.getFloat16(k * 20, true);
    const m = dv.getFloat16(k * 20 + 2, true);
    for (let j = 0; j < 16; j++) {
      const q = b[k * 20 + 4 + j]!;
      y[k * 32 + j] = d * (q & 15) + m;
      y[k * 32 + j + 16] = d * (q >> 4) + m;
    }
  }
  return y;
}

export async function smollm2Q4K(smollm2: string): Promise<string> {
  const path = join(CACHE, "SmolLM2-135M-Instruct.ffn_down-Q4_K_M.gguf");
  if (existsSync(path)) return path;
  const { readGguf } = await import("../src/gguf/reader.ts");
  const { readTensorBytes } = await import("../src/engine/gguf-kquants.ts");
  const { encodeGguf } = await import("../test/support/gguf-writer.ts");
  const { quantizeQ4K, quantizeQ6K } = await import("../test/support/kquants.ts");
  const h = readGguf(smollm2);
  const meta: Record<string, unknown> = {};
  for (const [k, e] of h.metadata) {
    const t = META_TYPES[e.type]!;
    if (t === "string") meta[k] = String(e.value);
    else if (t === "array") {
      const at = META_TYPES[e.arrayType!]!;
      meta[k] = at === "string" ? [...(e.value as string[])] : { type: at, value: Array.from(e.value as ArrayLike<number>, Number) };
    } else meta[k] = { type: t, value: Number(e.value) };
  }
  const L = Number(h.metadata.get("llama.block_count")!.value);
  const tensors = h.tensors.map((t) => {
    const data = readTensorBytes(smollm2, t.fileOffset, t.byteSize!);
    const m = /^blk\.(\d+)\.ffn_down\.weight$/.exec(t.name);
    if (!m || t.typeName !== "Q4_1") return { name: t.name, shape: t.shape, type: t.typeName, data };
    const type: KType = moreBits(Number(m[1]), L) ? "Q6_K" : "Q4_K";
    const x = q41Floats(data);
    return { name: t.name, shape: t.shape, type, data: type === "Q6_K" ? quantizeQ6K(x) : quantizeQ4K(x) };
  });
  mkdirSync(CACHE, { recursive: true });
  writeFileSync(path, encodeGguf(meta as never, tensors as never));
  return path;
}

if (import.meta.main) {
  const { smollm2Gguf } = await import("../test/support/smollm2.ts");
  const smol = await smollm2Gguf();
  console.log(await qwen3ShapedQ4KM(smol));
  console.log(await qwen3MoeShapedQ4KM(smol));
  console.log(await smollm2Q4K(smol));
}

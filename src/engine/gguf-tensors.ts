/**
 * GGUF tensors read by mlxk itself, for files MLX 0.32.4's reader refuses as a whole (it throws on Q5_0/Q5_1,
 * which llama.cpp's K-quant files use for rows that are not a multiple of 256). Every block type maps losslessly
 * onto an MLX affine layout with group 32 where it can (value = scale·code + bias):
 *   Q4_0 (q−8)·d → 4-bit; Q4_1 q·d+m → 4-bit; Q4_K (gguf-kquants.ts) → 4-bit;
 *   Q5_0 (q−16)·d, Q5_1 q·d+m, Q5_K d·sc·q − dmin·m, Q8_0 q·d, and IQ4_NL/IQ4_XS d·kvalues[q] (the codebook is
 *   integers in −127..113) → 8-bit codes (MLX has no 5-bit layout we rely on; 8 bits hold them exactly);
 * Q6_K (scales per 16 values, below MLX's smallest group) is decoded to float32 as ggml does; F32/F16/BF16 as they are.
 * With `packed` (our CPU kernels run here), Q4_K/Q5_K/Q6_K instead stay the file's blocks, one uint8 row of blocks
 * per output row (src/mlx/kquant.ts runs them), so resident weight bytes equal file bytes.
 *
 * Exports: TS_TENSOR_TYPES, K_PACKED, loadTensors(path, tensors, { packed }) → Map<name, Array> (`x.weight` +
 *          `x.scales`/`x.biases`)
 */
import type { GgufTensorInfo } from "../gguf/reader.ts";
import * as mx from "../mlx/index.ts";
import { KQUANT_BLOCK_BYTES, type KQuantMode } from "../mlx/kquant.ts";
import { halves, pack4, q4kToAffine, readTensorBytes } from "./gguf-kquants.ts";

export const TS_TENSOR_TYPES: ReadonlySet<string> = new Set([
  "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS",
]);

/** GGUF K-quant types that can stay packed, with the layer mode that runs them. */
export const K_PACKED: Readonly<Record<string, KQuantMode>> = { Q4_K: "q4_k", Q5_K: "q5_k", Q6_K: "q6_k" };

const HALF = halves();
function half(b: Uint8Array, o: number): number {
  return HALF[b[o]! | (b[o + 1]! << 8)]!;
}

interface Affine {
  bits: 8;
  codes: Uint8Array; // one code per value, in order
  scales: Float32Array; // per 32 values
  biases: Float32Array;
}

/** 8-bit codes as MLX words (four codes per uint32, little-endian = LSB-first) with their scales and biases. */
function pack(a: Affine, shape: number[]): Map<string, mx.Array> {
  const cols = shape.at(-1)!;
  const lead = shape.slice(0, -1);
  return new Map([
    ["weight", mx.fromBytes(new Uint32Array(a.codes.buffer, a.codes.byteOffset, a.codes.length / 4), [...lead, cols / 4], mx.Dtype.uint32)],
    ["scales", mx.fromBytes(a.scales, [...lead, cols / 32], mx.Dtype.float32)],
    ["biases", mx.fromBytes(a.biases, [...lead, cols / 32], mx.Dtype.float32)],
  ]);
}

/** Q4_0 / Q4_1 blocks straight into MLX words: low nibbles are values 0..15, high nibbles 16..31. */
function legacy4(type: string, b: Uint8Array, n: number, shape: number[]): Map<string, mx.Array> {
  const blocks = n / 32;
  const words = new Uint32Array(n / 8);
  const scales = new Float32Array(blocks);
  const biases = new Float32Array(blocks);
  const q41 = type === "Q4_1";
  const size = q41 ? 20 : 18;
  const u32 = (o: number) => b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24);
  for (let k = 0, o = 0; k < blocks; k++, o += size) {
    const d = half(b, o);
    scales[k] = d;
    biases[k] = q41 ? half(b, o + 2) : -8 * d;
    const qs = o + (q41 ? 4 : 2);
    const [x0, x1, x2, x3] = [u32(qs), u32(qs + 4), u32(qs + 8), u32(qs + 12)];
    const w = k * 4;
    words[w] = (pack4(x0 & 0x0f0f0f0f) | (pack4(x1 & 0x0f0f0f0f) << 16)) >>> 0;
    words[w + 1] = (pack4(x2 & 0x0f0f0f0f) | (pack4(x3 & 0x0f0f0f0f) << 16)) >>> 0;
    words[w + 2] = (pack4((x0 >>> 4) & 0x0f0f0f0f) | (pack4((x1 >>> 4) & 0x0f0f0f0f) << 16)) >>> 0;
    words[w + 3] = (pack4((x2 >>> 4) & 0x0f0f0f0f) | (pack4((x3 >>> 4) & 0x0f0f0f0f) << 16)) >>> 0;
  }
  const cols = shape.at(-1)!;
  const lead = shape.slice(0, -1);
  return new Map([
    ["weight", mx.fromBytes(words, [...lead, cols / 8], mx.Dtype.uint32)],
    ["scales", mx.fromBytes(scales, [...lead, cols / 32], mx.Dtype.float32)],
    ["biases", mx.fromBytes(biases, [...lead, cols / 32], mx.Dtype.float32)],
  ]);
}

/** Q5_0, Q5_1 and Q8_0 blocks as 8-bit affine codes. */
function legacy8(type: string, b: Uint8Array, n: number): Affine {
  const blocks = n / 32;
  const codes = new Uint8Array(n);
  const scales = new Float32Array(blocks);
  const biases = new Float32Array(blocks);
  const size = { Q5_0: 22, Q5_1: 24, Q8_0: 34 }[type as "Q8_0"];
  const hasMin = type === "Q5_1";
  for (let k = 0, o = 0; k < blocks; k++, o += size) {
    const d = half(b, o);
    const out = k * 32;
    scales[k] = d;
    if (type === "Q8_0") {
      biases[k] = -128 * d;
      for (let j = 0; j < 32; j++) codes[out + j] = b[o + 2 + j]! ^ 0x80; // int8 + 128
      continue;
    }
    const h = o + (hasMin ? 4 : 2);
    const qh = b[h]! | (b[h + 1]! << 8) | (b[h + 2]! << 16) | (b[h + 3]! << 24);
    const qs = h + 4;
    biases[k] = hasMin ? half(b, o + 2) : -16 * d;
    for (let j = 0; j < 16; j++) {
      const byte = b[qs + j]!;
      // ggml: low nibbles are values 0..15, high nibbles 16..31; the fifth bits sit in qh (bit j, bit j+16)
      codes[out + j] = (byte & 0x0f) | (((qh >>> j) & 1) << 4);
      codes[out + j + 16] = (byte >> 4) | (((qh >>> (j + 16)) & 1) << 4);
    }
  }
  return { bits: 8, codes, scales, biases };
}

/** Q5_K (176-byte blocks: d, dmin, 12 bytes of 6-bit scales/mins, 32 bytes of fifth bits, 128 of nibbles) as codes. */
function q5k(b: Uint8Array, n: number): Affine {
  const codes = new Uint8Array(n);
  const scales = new Float32Array(n / 32);
  const biases = new Float32Array(n / 32);
  for (let blk = 0, o = 0; blk < n / 256; blk++, o += 176) {
    const d = half(b, o);
    const dmin = half(b, o + 2);
    const k = o + 4;
    for (let j = 0; j < 8; j++) {
      // ggml's get_scale_min_k4
      const sc = j < 4 ? b[k + j]! & 63 : (b[k + j + 4]! & 0xf) | ((b[k + j - 4]! >> 6) << 4);
      const m = j < 4 ? b[k + j + 4]! & 63 : (b[k + j + 4]! >> 4) | ((b[k + j]! >> 6) << 4);
      const g = blk * 8 + j;
      scales[g] = Math.fround(d * sc);
      biases[g] = -Math.fround(dmin * m);
      const ql = o + 48 + (j >> 1) * 32;
      const shift = (j & 1) * 4;
      for (let l = 0; l < 32; l++) codes[g * 32 + l] = ((b[ql + l]! >> shift) & 15) | (((b[o + 16 + l]! >> j) & 1) << 4);
    }
  }
  return { bits: 8, codes, scales, biases };
}

/** llama.cpp's kvalues_iq4nl: the non-linear 4-bit codebook of IQ4_NL and IQ4_XS. */
const IQ4 = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** IQ4_NL (18-byte blocks of 32) and IQ4_XS (136-byte blocks of 256, 6-bit scales per 32) as 8-bit codes. */
function iq4(type: string, b: Uint8Array, n: number): Affine {
  const codes = new Uint8Array(n);
  const scales = new Float32Array(n / 32);
  const biases = new Float32Array(n / 32);
  const put = (g: number, dl: number, qs: number) => {
    scales[g] = dl;
    biases[g] = -128 * dl;
    for (let j = 0; j < 16; j++) {
      const q = b[qs + j]!;
      codes[g * 32 + j] = IQ4[q & 15]! + 128;
      codes[g * 32 + j + 16] = IQ4[q >> 4]! + 128;
    }
  };
  if (type === "IQ4_NL") {
    for (let g = 0, o = 0; g < n / 32; g++, o += 18) put(g, half(b, o), o + 2);
  } else {
    for (let blk = 0, o = 0; blk < n / 256; blk++, o += 136) {
      const d = half(b, o);
      const hi = b[o + 2]! | (b[o + 3]! << 8);
      for (let ib = 0; ib < 8; ib++) {
        const ls = ((b[o + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 15) | (((hi >> (2 * ib)) & 3) << 4);
        put(blk * 8 + ib, Math.fround(d * (ls - 32)), o + 8 + ib * 16);
      }
    }
  }
  return { bits: 8, codes, scales, biases };
}

/** ggml's dequantize_row_q6_K (values in float32). */
function q6k(b: Uint8Array, n: number): Float32Array {
  const y = new Float32Array(n);
  for (let blk = 0, o = 0; blk < n / 256; blk++, o += 210) {
    const d = half(b, o + 208);
    for (let h = 0; h < 2; h++) {
      const ql = o + h * 64;
      const qh = o + 128 + h * 32;
      const sc = o + 192 + h * 8;
      const base = blk * 256 + h * 128;
      for (let l = 0; l < 32; l++) {
        const is = sc + (l >> 4);
        const hb = b[qh + l]!;
        const lo = b[ql + l]!;
        const hi = b[ql + l + 32]!;
        y[base + l] = Math.fround(d * ((b[is]! << 24) >> 24)) * (((lo & 0xf) | ((hb & 3) << 4)) - 32);
        y[base + l + 32] = Math.fround(d * ((b[is + 2]! << 24) >> 24)) * (((hi & 0xf) | (((hb >> 2) & 3) << 4)) - 32);
        y[base + l + 64] = Math.fround(d * ((b[is + 4]! << 24) >> 24)) * (((lo >> 4) | (((hb >> 4) & 3) << 4)) - 32);
        y[base + l + 96] = Math.fround(d * ((b[is + 6]! << 24) >> 24)) * (((hi >> 4) | (((hb >> 6) & 3) << 4)) - 32);
      }
    }
  }
  return y;
}

/** One tensor as MLX arrays: `.weight` (+ `.scales`/`.biases` when it stays quantized), keyed by full name. */
function loadOne(path: string, t: GgufTensorInfo, packed: boolean): Map<string, mx.Array> {
  return convert(readTensorBytes(path, t.fileOffset, t.byteSize!), t, packed);
}

/**
 * What loadOne would return for `t`, as lazy zeros that are never evaluated (no bytes read or allocated): a
 * pipeline rank builds the layers it does not run from these. Shapes/dtypes come from converting one zero row.
 */
export function placeholderTensors(t: GgufTensorInfo, packed = false): Map<string, mx.Array> {
  const cols = t.shape.at(-1)!;
  const rows = t.shape.reduce((a, b) => a * b, 1) / cols;
  const lead = t.shape.slice(0, -1);
  const one = convert(new Uint8Array(t.byteSize! / rows), { ...t, shape: [1, cols] }, packed);
  const out = new Map<string, mx.Array>();
  for (const [k, a] of one) {
    out.set(k, mx.zeros([...lead, ...a.shape.slice(1)], a.dtype));
    a.dispose();
  }
  return out;
}

function convert(bytes: Uint8Array, t: GgufTensorInfo, packed: boolean): Map<string, mx.Array> {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const km = K_PACKED[t.typeName];
  if (packed && km) {
    const cols = t.shape.at(-1)!;
    return new Map([[t.name, mx.fromBytes(bytes, [...t.shape.slice(0, -1), (cols / 256) * KQUANT_BLOCK_BYTES[km]], mx.Dtype.uint8)]]);
  }
  const stem = t.name.replace(/\.weight$/, "");
  const named = (m: Map<string, mx.Array>) => new Map([...m].map(([k, a]) => [`${stem}.${k}`, a]));
  switch (t.typeName) {
    case "F32":
      return new Map([[t.name, mx.fromBytes(bytes, t.shape, mx.Dtype.float32)]]);
    case "F16":
      return new Map([[t.name, mx.fromBytes(bytes, t.shape, mx.Dtype.float16)]]);
    case "BF16":
      return new Map([[t.name, mx.fromBytes(bytes, t.shape, mx.Dtype.bfloat16)]]);
    case "Q6_K":
      return new Map([[t.name, mx.fromBytes(q6k(bytes, n), t.shape, mx.Dtype.float32)]]);
    case "Q5_K":
      return named(pack(q5k(bytes, n), t.shape));
    case "IQ4_NL":
    case "IQ4_XS":
      return named(pack(iq4(t.typeName, bytes, n), t.shape));
    case "Q4_K": {
      const q = q4kToAffine(bytes, t.shape);
      return named(new Map([["weight", q.weight], ["scales", q.scales], ["biases", q.biases]]));
    }
    case "Q4_0":
    case "Q4_1":
      return named(legacy4(t.typeName, bytes, n, t.shape));
    default:
      return named(pack(legacy8(t.typeName, bytes, n), t.shape));
  }
}

/**
 * Every tensor of one GGUF file (types in TS_TENSOR_TYPES, checked by the caller); `packed`: K-quants as blocks;
 * `read` false for a tensor = a placeholder (a pipeline rank's other layers).
 */
export function loadTensors(
  path: string,
  tensors: readonly GgufTensorInfo[],
  o: { packed?: boolean; read?: (t: GgufTensorInfo) => boolean } = {},
): Map<string, mx.Array> {
  const out = new Map<string, mx.Array>();
  const packed = o.packed ?? false;
  const read = o.read ?? (() => true);
  try {
    for (const t of tensors) for (const [k, a] of read(t) ? loadOne(path, t, packed) : placeholderTensors(t, packed)) out.set(k, a);
  } catch (e) {
    mx.disposeAll(out);
    throw e;
  }
  return out;
}

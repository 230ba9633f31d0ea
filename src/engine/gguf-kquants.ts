/**
 * ggml K-quant tensors MLX's GGUF reader cannot be trusted with. Q4_K is, per 32-value sub-block, exactly an
 * affine 4-bit code (value = d·sc·q − dmin·m): it is repacked losslessly into MLX's affine layout (group 32,
 * LSB-first nibbles in uint32 words) straight from the file bytes, because MLX 0.32.4 decodes it wrongly
 * (every odd sub-block gets the wrong scale/min; checked against llama.cpp's gguf-py). Q6_K (sub-blocks of 16,
 * not an MLX group size) is left to MLX, whose fp16 decode matches ggml's to fp16 rounding.
 *
 * Exports: q4kToAffine(bytes, shape) → { weight, scales, biases }, readTensorBytes(path, offset, size), halves(), pack4(x)
 */
import { closeSync, openSync, readSync } from "node:fs";
import * as mx from "../mlx/index.ts";

export function readTensorBytes(path: string, offset: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const fd = openSync(path, "r");
  try {
    let got = 0;
    while (got < size) {
      const n = readSync(fd, out, got, size - got, offset + got);
      if (n === 0) throw new Error(`unexpected end of file reading ${path}`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

let halfTable: Float32Array | null = null;
/** fp16 bits → value, for all 65536 patterns (DataView.getFloat16 per scale is far slower). */
export function halves(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  const dv = new DataView(new ArrayBuffer(2));
  for (let i = 0; i < 65536; i++) {
    dv.setUint16(0, i, true);
    t[i] = dv.getFloat16(0, true);
  }
  halfTable = t;
  return t;
}

/** The 4 nibbles at bits 0, 8, 16, 24 of `x` (each already masked to 4 bits) packed into 16 bits, first lowest. */
export function pack4(x: number): number {
  const t = (x | (x >>> 4)) & 0x00ff00ff;
  return (t | (t >>> 8)) & 0xffff;
}

/** Q4_K blocks (144 bytes per 256 values, row-major along the last axis) → MLX affine 4-bit, group 32. */
export function q4kToAffine(bytes: Uint8Array, shape: number[]): { weight: mx.Array; scales: mx.Array; biases: mx.Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const cols = shape.at(-1)!;
  const lead = shape.slice(0, -1);
  const words = new Uint32Array(n / 8);
  const scales = new Float32Array(n / 32);
  const biases = new Float32Array(n / 32);
  // 144-byte blocks keep 4-byte alignment: read the nibbles a word (8 values) at a time
  const src = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.byteLength >>> 2);
  const u16 = new Uint16Array(src.buffer, src.byteOffset, src.byteLength >>> 1);
  const half = halves();
  for (let blk = 0, o = 0; blk < n / 256; blk++, o += 144) {
    const d = half[u16[o >>> 1]!]!;
    const dmin = half[u16[(o >>> 1) + 1]!]!;
    for (let j = 0; j < 8; j++) {
      let sc: number;
      let m: number;
      const k = o + 4;
      if (j < 4) {
        sc = src[k + j]! & 63;
        m = src[k + j + 4]! & 63;
      } else {
        sc = (src[k + j + 4]! & 0xf) | ((src[k + j - 4]! >> 6) << 4);
        m = (src[k + j + 4]! >> 4) | ((src[k + j]! >> 6) << 4);
      }
      const g = blk * 8 + j;
      scales[g] = Math.fround(d * sc);
      biases[g] = -Math.fround(dmin * m);
      // sub-blocks 2k and 2k+1 share 32 bytes: low nibbles are 2k, high nibbles 2k+1
      const q = (o + 16 + (j >> 1) * 32) >>> 2;
      const shift = (j & 1) * 4;
      for (let w = 0; w < 4; w++) {
        const x = (u32[q + 2 * w]! >>> shift) & 0x0f0f0f0f;
        const y = (u32[q + 2 * w + 1]! >>> shift) & 0x0f0f0f0f;
        words[g * 4 + w] = (pack4(x) | (pack4(y) << 16)) >>> 0;
      }
    }
  }
  return {
    weight: mx.fromBytes(words, [...lead, cols / 8], mx.Dtype.uint32),
    scales: mx.fromBytes(scales, [...lead, cols / 32], mx.Dtype.float32),
    biases: mx.fromBytes(biases, [...lead, cols / 32], mx.Dtype.float32),
  };
}

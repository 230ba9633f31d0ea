/**
 * ggml K-quant tensors MLX's GGUF reader cannot be trusted with. Q4_K is, per 32-value sub-block, exactly an
 * affine 4-bit code (value = d·sc·q − dmin·m): it is repacked losslessly into MLX's affine layout (group 32,
 * LSB-first nibbles in uint32 words) straight from the file bytes, because MLX 0.32.4 decodes it wrongly
 * (every odd sub-block gets the wrong scale/min; checked against llama.cpp's gguf-py). Q6_K (sub-blocks of 16,
 * not an MLX group size) is left to MLX, whose fp16 decode matches ggml's to fp16 rounding.
 *
 * Exports: q4kToAffine(bytes, shape) → { weight, scales, biases }, readTensorBytes(path, offset, size)
 */
import { closeSync, openSync, readSync } from "node:fs";
import * as mx from "../mlx/index.ts";

/** ggml's get_scale_min_k4: 6-bit scale and min of sub-block j from the 12 packed bytes at `o`. */
function scaleMin(b: Uint8Array, o: number, j: number): [number, number] {
  if (j < 4) return [b[o + j]! & 63, b[o + j + 4]! & 63];
  return [(b[o + j + 4]! & 0xf) | ((b[o + j - 4]! >> 6) << 4), (b[o + j + 4]! >> 4) | ((b[o + j]! >> 6) << 4)];
}

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

/** Q4_K blocks (144 bytes per 256 values, row-major along the last axis) → MLX affine 4-bit, group 32. */
export function q4kToAffine(bytes: Uint8Array, shape: number[]): { weight: mx.Array; scales: mx.Array; biases: mx.Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const cols = shape.at(-1)!;
  const lead = shape.slice(0, -1);
  const words = new Uint32Array(n / 8);
  const scales = new Float32Array(n / 32);
  const biases = new Float32Array(n / 32);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let blk = 0, o = 0; blk < n / 256; blk++, o += 144) {
    const d = dv.getFloat16(o, true);
    const dmin = dv.getFloat16(o + 2, true);
    for (let j = 0; j < 8; j++) {
      const [sc, m] = scaleMin(bytes, o + 4, j);
      const g = blk * 8 + j;
      scales[g] = Math.fround(d * sc);
      biases[g] = -Math.fround(dmin * m);
      // sub-blocks 2k and 2k+1 share 32 bytes: low nibbles are 2k, high nibbles 2k+1
      const q = o + 16 + (j >> 1) * 32;
      const shift = (j & 1) * 4;
      for (let w = 0; w < 4; w++) {
        let word = 0;
        for (let i = 0; i < 8; i++) word |= ((bytes[q + w * 8 + i]! >> shift) & 15) << (4 * i);
        words[g * 4 + w] = word >>> 0;
      }
    }
  }
  return {
    weight: mx.fromBytes(words, [...lead, cols / 8], mx.Dtype.uint32),
    scales: mx.fromBytes(scales, [...lead, cols / 32], mx.Dtype.float32),
    biases: mx.fromBytes(biases, [...lead, cols / 32], mx.Dtype.float32),
  };
}

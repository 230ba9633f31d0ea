/**
 * The low-level half of the tiny-model generator: seeded randomness, MLX's packed quantized layout and a
 * safetensors writer. Split from tiny-models.ts, which describes the architectures.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export type Dtype = "F32" | "F16" | "BF16" | "U32" | "U8";
export interface Tensor {
  dtype: Dtype;
  shape: number[];
  data: Float32Array | Uint32Array | Uint8Array | Uint16Array;
}
export type Tensors = Record<string, Tensor>;

/** mulberry32: tiny, fast, and identical on every platform. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Gen {
  private rnd: () => number;
  readonly t: Tensors = {};
  constructor(
    seed: number,
    /** Round every float to this precision (so a 16-bit transformers layout holds exactly the same values). */
    readonly round: ((x: number) => number) | null = null,
  ) {
    this.rnd = prng(seed);
  }
  /** Uniform in [-a, a] (+ base); scale chosen per tensor so activations stay O(1). */
  uniform(shape: number[], a: number, base = 0): Float32Array {
    const n = shape.reduce((x, y) => x * y, 1);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.rnd() * 2 - 1) * a + base;
    if (this.round) for (let i = 0; i < n; i++) out[i] = this.round(out[i]!);
    return out;
  }
  float(name: string, shape: number[], a: number, base = 0): void {
    this.t[name] = { dtype: "F32", shape, data: this.uniform(shape, a, base) };
  }
  /** A Linear (or stacked experts when `shape` has 3 dims) with Kaiming-like scale; quantized when `q` is set. */
  linear(prefix: string, shape: number[], opts: { bias?: boolean; q?: Quant } = {}): void {
    const w = this.uniform(shape, Math.sqrt(3 / shape.at(-1)!));
    if (opts.q) Object.assign(this.t, quantize(prefix, w, shape, opts.q, opts.q.mode === "mxfp4" ? prngFrom(this.rnd) : this.rnd));
    else this.t[`${prefix}.weight`] = { dtype: "F32", shape, data: w };
    if (opts.bias) this.float(`${prefix}.bias`, shape.slice(0, -1), 0.1);
  }
  norm(name: string, dim: number, base = 1): void {
    this.float(`${name}.weight`, [dim], 0.2, base);
  }
}

/** A second stream of randomness (mxfp4 codes). */
export function prngFrom(r: () => number): () => number {
  return prng(Math.floor(r() * 2 ** 31));
}

export interface Quant {
  mode: "affine" | "mxfp4";
  bits: number;
  groupSize: number;
}

/** MLX's packed layout: values LSB-first in uint32 words along the last axis. */
export function quantize(prefix: string, w: Float32Array, shape: number[], q: Quant, rnd: () => number): Tensors {
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
export function writeSafetensors(dir: string, tensors: Tensors, shards = 1, format = "mlx"): void {
  const names = Object.keys(tensors).sort();
  const per = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const part = names.slice(s * per, (s + 1) * per);
    const file = shards === 1 ? "model.safetensors" : `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const header: Record<string, unknown> = { __metadata__: { format } };
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

export const Q4: Quant = { mode: "affine", bits: 4, groupSize: 32 };
export const MXFP4: Quant = { mode: "mxfp4", bits: 4, groupSize: 32 };

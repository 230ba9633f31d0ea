/**
 * A tiny GGUF v3 writer for tests: metadata (numbers, strings, string lists, numeric lists) and
 * tensors in F32, F16, Q4_0, Q4_1 and Q8_0, plus block encoders that take the exact block
 * parameters (scale d, min m, integer codes) so tests know the decoded values exactly.
 */
import { closeSync, openSync, writeSync } from "node:fs";

const VT = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;
type NumType = Exclude<keyof typeof VT, "string" | "array">;

export type GgufMeta = string | string[] | { type: NumType; value: number | number[] };

/** Q4_K/Q6_K blocks come from test/support/kquants.ts; Q3_K only for headers (mlxk refuses it). */
export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14, IQ4_NL: 20, IQ4_XS: 23, BF16: 30 } as const;
export type GgmlType = keyof typeof GGML;

export interface GgufTensor {
  name: string;
  /** Row-major (MLX) shape; written to the file innermost-first as GGUF expects. */
  shape: number[];
  type: GgmlType;
  /** Encoded bytes (F32/F16 values, or the concatenated quantization blocks). */
  data: Uint8Array;
}

class Out {
  private chunks: Uint8Array[] = [];
  length = 0;
  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  private num(size: number, set: (d: DataView) => void): void {
    const b = new Uint8Array(size);
    set(new DataView(b.buffer));
    this.bytes(b);
  }
  u32(v: number): void {
    this.num(4, (d) => d.setUint32(0, v, true));
  }
  u64(v: number): void {
    this.num(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  scalar(t: NumType, v: number): void {
    const sizes: Record<NumType, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8 };
    this.num(sizes[t], (d) => {
      if (t === "u8" || t === "bool") d.setUint8(0, v);
      else if (t === "i8") d.setInt8(0, v);
      else if (t === "u16") d.setUint16(0, v, true);
      else if (t === "i16") d.setInt16(0, v, true);
      else if (t === "u32") d.setUint32(0, v, true);
      else if (t === "i32") d.setInt32(0, v, true);
      else if (t === "f32") d.setFloat32(0, v, true);
      else if (t === "u64") d.setBigUint64(0, BigInt(v), true);
      else if (t === "i64") d.setBigInt64(0, BigInt(v), true);
      else d.setFloat64(0, v, true);
    });
  }
  pad(align: number): void {
    const n = (align - (this.length % align)) % align;
    if (n) this.bytes(new Uint8Array(n));
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

const ALIGN = 32;

/** Header, metadata and tensor infos, padded to the data alignment (the tensor data follows). */
function ggufHeader(metadata: Record<string, GgufMeta>, tensors: GgufTensor[]): Uint8Array {
  const o = new Out();
  o.bytes(new TextEncoder().encode("GGUF"));
  o.u32(3);
  o.u64(tensors.length);
  o.u64(Object.keys(metadata).length);
  for (const [k, v] of Object.entries(metadata)) {
    o.str(k);
    if (typeof v === "string") {
      o.u32(VT.string);
      o.str(v);
    } else if (Array.isArray(v)) {
      o.u32(VT.array);
      o.u32(VT.string);
      o.u64(v.length);
      for (const s of v) o.str(s);
    } else if (Array.isArray(v.value)) {
      o.u32(VT.array);
      o.u32(VT[v.type]);
      o.u64(v.value.length);
      for (const x of v.value) o.scalar(v.type, x);
    } else {
      o.u32(VT[v.type]);
      o.scalar(v.type, v.value);
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    offset += t.data.length;
    offset += (ALIGN - (offset % ALIGN)) % ALIGN;
  }
  tensors.forEach((t, i) => {
    o.str(t.name);
    o.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) o.u64(d);
    o.u32(GGML[t.type]);
    o.u64(offsets[i]!);
  });
  o.pad(ALIGN);
  return o.concat();
}

const padding = (n: number): number => (ALIGN - (n % ALIGN)) % ALIGN;

export function encodeGguf(metadata: Record<string, GgufMeta>, tensors: GgufTensor[]): Uint8Array {
  const parts = [ggufHeader(metadata, tensors)];
  for (const t of tensors) parts.push(t.data, new Uint8Array(padding(t.data.length)));
  return join(parts);
}

/** Streams the tensor data to the file: models of several GB never sit in one buffer. */
export function writeGguf(path: string, metadata: Record<string, GgufMeta>, tensors: GgufTensor[]): void {
  const fd = openSync(path, "w");
  try {
    writeSync(fd, ggufHeader(metadata, tensors));
    for (const t of tensors) {
      writeSync(fd, t.data);
      writeSync(fd, new Uint8Array(padding(t.data.length)));
    }
  } finally {
    closeSync(fd);
  }
}

function f16(v: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setFloat16(0, v, true);
  return b;
}

function join(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function f32Data(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
export function f16Data(values: ArrayLike<number>): Uint8Array {
  return join(Array.from(values, (v) => f16(v)));
}

/** Q4_0 block of 32: f16 d, 16 bytes of nibbles (low = values 0..15, high = 16..31); value = (q-8)·d. */
export function q4_0Block(d: number, q: readonly number[]): Uint8Array {
  const qs = new Uint8Array(16);
  for (let j = 0; j < 16; j++) qs[j] = (q[j]! & 15) | ((q[j + 16]! & 15) << 4);
  return join([f16(d), qs]);
}

/** Q4_1 block of 32: f16 d, f16 m, 16 bytes of nibbles; value = q·d + m. */
export function q4_1Block(d: number, m: number, q: readonly number[]): Uint8Array {
  const qs = new Uint8Array(16);
  for (let j = 0; j < 16; j++) qs[j] = (q[j]! & 15) | ((q[j + 16]! & 15) << 4);
  return join([f16(d), f16(m), qs]);
}

/** Q5_0 block of 32: f16 d, u32 fifth bits (bit j = value j), 16 bytes of low nibbles as Q4_0; value = (q-16)·d. */
export function q5_0Block(d: number, q: readonly number[]): Uint8Array {
  return join([f16(d), q5High(q), q5Low(q)]);
}

/** Q5_1 block of 32: f16 d, f16 m, u32 fifth bits, 16 bytes of low nibbles; value = q·d + m. */
export function q5_1Block(d: number, m: number, q: readonly number[]): Uint8Array {
  return join([f16(d), f16(m), q5High(q), q5Low(q)]);
}

function q5High(q: readonly number[]): Uint8Array {
  let qh = 0;
  for (let j = 0; j < 32; j++) qh |= ((q[j]! >> 4) & 1) << j;
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, qh >>> 0, true);
  return b;
}

function q5Low(q: readonly number[]): Uint8Array {
  const qs = new Uint8Array(16);
  for (let j = 0; j < 16; j++) qs[j] = (q[j]! & 15) | ((q[j + 16]! & 15) << 4);
  return qs;
}

/** Q8_0 block of 32: f16 d, 32 int8; value = q·d. */
export function q8_0Block(d: number, q: readonly number[]): Uint8Array {
  return join([f16(d), Uint8Array.from(Int8Array.from(q))]);
}

export { join as concatBytes };

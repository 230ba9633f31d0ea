/**
 * Pure TypeScript GGUF header reader (format v2/v3, little-endian).
 *
 * Layout: magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, then kv_count metadata entries
 * (string key, u32 value type, value), then tensor_count tensor infos (string name, u32 n_dims,
 * n_dims × u64 dims innermost-first, u32 ggml type, u64 offset relative to the data section), then
 * padding up to `general.alignment` (default 32) and the tensor data. Only the header is read: the
 * file is pulled in chunks until the tensor infos end, never the weights.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { MlxkError } from "../errors.ts";

/** GGUF metadata value types (gguf.md `gguf_metadata_value_type`). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

/**
 * Numeric arrays come back as typed arrays (a 262k-entry `scores` array stays compact); 64-bit
 * integer arrays as BigInt64/BigUint64 arrays; strings and bools as plain arrays.
 */
export type GgufArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | string[]
  | boolean[]
  | GgufValue[];

/** A scalar 64-bit integer is a number when it is a safe integer, a bigint otherwise. */
export type GgufValue = number | bigint | boolean | string | GgufArray;

export interface GgufMetadataEntry {
  type: GgufValueType;
  /** Element type when `type` is ARRAY. */
  arrayType?: GgufValueType;
  value: GgufValue;
  /** Element count of an ARRAY; with `skipArrays` the elements themselves are not kept (value is empty). */
  length?: number;
}

/** ggml tensor types with their block geometry (elements per block, bytes per block). */
const GGML_TYPES: Record<number, { name: string; blockSize: number; typeSize: number }> = {
  0: { name: "F32", blockSize: 1, typeSize: 4 },
  1: { name: "F16", blockSize: 1, typeSize: 2 },
  2: { name: "Q4_0", blockSize: 32, typeSize: 18 },
  3: { name: "Q4_1", blockSize: 32, typeSize: 20 },
  6: { name: "Q5_0", blockSize: 32, typeSize: 22 },
  7: { name: "Q5_1", blockSize: 32, typeSize: 24 },
  8: { name: "Q8_0", blockSize: 32, typeSize: 34 },
  9: { name: "Q8_1", blockSize: 32, typeSize: 36 },
  10: { name: "Q2_K", blockSize: 256, typeSize: 84 },
  11: { name: "Q3_K", blockSize: 256, typeSize: 110 },
  12: { name: "Q4_K", blockSize: 256, typeSize: 144 },
  13: { name: "Q5_K", blockSize: 256, typeSize: 176 },
  14: { name: "Q6_K", blockSize: 256, typeSize: 210 },
  15: { name: "Q8_K", blockSize: 256, typeSize: 292 },
  16: { name: "IQ2_XXS", blockSize: 256, typeSize: 66 },
  17: { name: "IQ2_XS", blockSize: 256, typeSize: 74 },
  18: { name: "IQ3_XXS", blockSize: 256, typeSize: 98 },
  19: { name: "IQ1_S", blockSize: 256, typeSize: 50 },
  20: { name: "IQ4_NL", blockSize: 32, typeSize: 18 },
  21: { name: "IQ3_S", blockSize: 256, typeSize: 110 },
  22: { name: "IQ2_S", blockSize: 256, typeSize: 82 },
  23: { name: "IQ4_XS", blockSize: 256, typeSize: 136 },
  24: { name: "I8", blockSize: 1, typeSize: 1 },
  25: { name: "I16", blockSize: 1, typeSize: 2 },
  26: { name: "I32", blockSize: 1, typeSize: 4 },
  27: { name: "I64", blockSize: 1, typeSize: 8 },
  28: { name: "F64", blockSize: 1, typeSize: 8 },
  29: { name: "IQ1_M", blockSize: 256, typeSize: 56 },
  30: { name: "BF16", blockSize: 1, typeSize: 2 },
  34: { name: "TQ1_0", blockSize: 256, typeSize: 54 },
  35: { name: "TQ2_0", blockSize: 256, typeSize: 66 },
  39: { name: "MXFP4", blockSize: 32, typeSize: 17 },
};

/** Name of a ggml tensor type, or `TYPE_<n>` when unknown to this reader. */
export function ggmlTypeName(type: number): string {
  return GGML_TYPES[type]?.name ?? `TYPE_${type}`;
}

export interface GgufTensorInfo {
  name: string;
  /** Dimensions as stored: innermost (contiguous) first, i.e. the reverse of the row-major shape. */
  dims: number[];
  /** Row-major shape (reversed `dims`), as MLX/numpy expect it. */
  shape: number[];
  type: number;
  typeName: string;
  /** Offset relative to the start of the data section. */
  offset: number;
  /** Absolute file offset of the tensor data. */
  fileOffset: number;
  /** Byte size of the data; null for a ggml type this reader does not know. */
  byteSize: number | null;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufMetadataEntry>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute offset of the data section (after the header and alignment padding). */
  dataOffset: number;
}

const MAGIC = 0x46554747; // "GGUF" read as little-endian u32
const CHUNK = 1 << 20;

/** Reads forward through a file descriptor, pulling more bytes only when a value needs them. */
class Cursor {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0; // file offset of buf[0]
  pos = 0; // absolute file offset
  private readonly decoder = new TextDecoder("utf-8");

  constructor(
    private readonly fd: number,
    private readonly path: string,
  ) {}

  private ensure(n: number): number {
    const rel = this.pos - this.bufStart;
    if (rel + n <= this.buf.length) return rel;
    // Keep the unread tail, append at least CHUNK fresh bytes.
    const keep = this.buf.subarray(rel);
    const next = new Uint8Array(keep.length + Math.max(CHUNK, n));
    next.set(keep);
    let filled = keep.length;
    while (filled < n) {
      const got = readSync(this.fd, next, filled, next.length - filled, this.pos + filled);
      if (got === 0) throw corrupt(this.path, `unexpected end of file at offset ${this.pos + filled}`);
      filled += got;
    }
    if (filled < next.length) {
      const got = readSync(this.fd, next, filled, next.length - filled, this.pos + filled);
      filled += got;
    }
    this.buf = next.subarray(0, filled);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.bufStart = this.pos;
    return 0;
  }

  u8(): number {
    const r = this.ensure(1);
    this.pos += 1;
    return this.view.getUint8(r);
  }
  u32(): number {
    const r = this.ensure(4);
    this.pos += 4;
    return this.view.getUint32(r, true);
  }
  u64(): number | bigint {
    const r = this.ensure(8);
    this.pos += 8;
    return narrow(this.view.getBigUint64(r, true));
  }
  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  size(what: string): number {
    const v = this.u64();
    if (typeof v === "bigint") throw corrupt(this.path, `${what} too large: ${v}`);
    return v;
  }
  string(): string {
    const len = this.size("string length");
    const r = this.ensure(len);
    this.pos += len;
    return this.decoder.decode(this.buf.subarray(r, r + len));
  }
  scalar(type: number): number | bigint | boolean | string {
    const v = (n: number) => {
      const r = this.ensure(n);
      this.pos += n;
      return r;
    };
    switch (type) {
      case GgufValueType.UINT8:
        return this.view.getUint8(v(1));
      case GgufValueType.INT8:
        return this.view.getInt8(v(1));
      case GgufValueType.UINT16:
        return this.view.getUint16(v(2), true);
      case GgufValueType.INT16:
        return this.view.getInt16(v(2), true);
      case GgufValueType.UINT32:
        return this.view.getUint32(v(4), true);
      case GgufValueType.INT32:
        return this.view.getInt32(v(4), true);
      case GgufValueType.FLOAT32:
        return this.view.getFloat32(v(4), true);
      case GgufValueType.BOOL:
        return this.view.getUint8(v(1)) !== 0;
      case GgufValueType.STRING:
        return this.string();
      case GgufValueType.UINT64:
        return narrow(this.view.getBigUint64(v(8), true));
      case GgufValueType.INT64:
        return narrow(this.view.getBigInt64(v(8), true));
      case GgufValueType.FLOAT64:
        return this.view.getFloat64(v(8), true);
      default:
        throw corrupt(this.path, `unknown metadata value type ${type}`);
    }
  }
  /** Move past `n` bytes without keeping them. */
  skip(n: number): void {
    while (n > 0) {
      const step = Math.min(n, CHUNK);
      this.ensure(step);
      this.pos += step;
      n -= step;
    }
  }
  /** Move past a string without decoding it. */
  skipString(): void {
    this.skip(this.size("string length"));
  }
  /** Copy `count` fixed-size elements into a fresh typed array (copy: the chunk buffer is reused). */
  typed<T>(count: number, width: number, make: (b: ArrayBuffer) => T): T {
    const bytes = count * width;
    const r = this.ensure(bytes);
    this.pos += bytes;
    const copy = this.buf.slice(r, r + bytes);
    return make(copy.buffer);
  }
}

function narrow(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

function corrupt(path: string, why: string): MlxkError {
  // detail = the bare reason, for health messages that name the file themselves
  return new MlxkError("unsupported_model", `Not a readable GGUF file: ${path} (${why})`, { detail: why });
}

function readArray(c: Cursor, path: string): { arrayType: GgufValueType; value: GgufArray } {
  const t = c.u32() as GgufValueType;
  const n = c.size("array length");
  // Little-endian host assumed (x86-64/arm64), so typed arrays can view the bytes directly.
  switch (t) {
    case GgufValueType.UINT8:
      return { arrayType: t, value: c.typed(n, 1, (b) => new Uint8Array(b)) };
    case GgufValueType.INT8:
      return { arrayType: t, value: c.typed(n, 1, (b) => new Int8Array(b)) };
    case GgufValueType.UINT16:
      return { arrayType: t, value: c.typed(n, 2, (b) => new Uint16Array(b)) };
    case GgufValueType.INT16:
      return { arrayType: t, value: c.typed(n, 2, (b) => new Int16Array(b)) };
    case GgufValueType.UINT32:
      return { arrayType: t, value: c.typed(n, 4, (b) => new Uint32Array(b)) };
    case GgufValueType.INT32:
      return { arrayType: t, value: c.typed(n, 4, (b) => new Int32Array(b)) };
    case GgufValueType.FLOAT32:
      return { arrayType: t, value: c.typed(n, 4, (b) => new Float32Array(b)) };
    case GgufValueType.FLOAT64:
      return { arrayType: t, value: c.typed(n, 8, (b) => new Float64Array(b)) };
    case GgufValueType.UINT64:
      return { arrayType: t, value: c.typed(n, 8, (b) => new BigUint64Array(b)) };
    case GgufValueType.INT64:
      return { arrayType: t, value: c.typed(n, 8, (b) => new BigInt64Array(b)) };
    case GgufValueType.BOOL: {
      const raw = c.typed(n, 1, (b) => new Uint8Array(b));
      return { arrayType: t, value: Array.from(raw, (x) => x !== 0) };
    }
    case GgufValueType.STRING: {
      const out = new Array<string>(n);
      for (let i = 0; i < n; i++) out[i] = c.string();
      return { arrayType: t, value: out };
    }
    case GgufValueType.ARRAY: {
      const out = new Array<GgufValue>(n);
      for (let i = 0; i < n; i++) out[i] = readArray(c, path).value;
      return { arrayType: t, value: out };
    }
    default:
      throw corrupt(path, `unknown array element type ${t}`);
  }
}

const WIDTH: Partial<Record<number, number>> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Walk past an array's elements (vocabularies of 150k strings cost most of a header read), keeping only its length. */
function skipArray(c: Cursor, path: string): { arrayType: GgufValueType; length: number } {
  const t = c.u32() as GgufValueType;
  const n = c.size("array length");
  const w = WIDTH[t];
  if (w !== undefined) c.skip(n * w);
  else if (t === GgufValueType.STRING) for (let i = 0; i < n; i++) c.skipString();
  else if (t === GgufValueType.ARRAY) for (let i = 0; i < n; i++) skipArray(c, path);
  else throw corrupt(path, `unknown array element type ${t}`);
  return { arrayType: t, length: n };
}

/**
 * Read the header, metadata and tensor infos of a GGUF file. Throws MlxkError(unsupported_model) on a bad file.
 * `skipArrays`: array values are walked but not kept (only `length`): for health and listings.
 */
export function readGguf(path: string, opts: { skipArrays?: boolean } = {}): GgufFile {
  const fd = openSync(path, "r");
  try {
    const c = new Cursor(fd, path);
    if (c.u32() !== MAGIC) throw corrupt(path, "bad magic");
    const version = c.u32();
    if (version < 2 || version > 3) throw corrupt(path, `unsupported GGUF version ${version}`);
    const tensorCount = c.size("tensor count");
    const kvCount = c.size("metadata count");
    const metadata = new Map<string, GgufMetadataEntry>();
    for (let i = 0; i < kvCount; i++) {
      const key = c.string();
      const type = c.u32() as GgufValueType;
      if (type === GgufValueType.ARRAY && opts.skipArrays) {
        const { arrayType, length } = skipArray(c, path);
        metadata.set(key, { type, arrayType, value: [], length });
      } else if (type === GgufValueType.ARRAY) {
        const { arrayType, value } = readArray(c, path);
        metadata.set(key, { type, arrayType, value, length: (value as ArrayLike<unknown>).length });
      } else {
        metadata.set(key, { type, value: c.scalar(type) });
      }
    }
    const alignEntry = metadata.get("general.alignment")?.value;
    const alignment = typeof alignEntry === "number" && alignEntry > 0 ? alignEntry : 32;
    const raw: Omit<GgufTensorInfo, "fileOffset">[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = c.string();
      const nDims = c.u32();
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(c.size("tensor dimension"));
      const type = c.u32();
      const offset = c.size("tensor offset");
      const geom = GGML_TYPES[type];
      const n = dims.reduce((a, b) => a * b, 1);
      const byteSize = geom ? (n / geom.blockSize) * geom.typeSize : null;
      raw.push({ name, dims, shape: [...dims].reverse(), type, typeName: ggmlTypeName(type), offset, byteSize });
    }
    const dataOffset = Math.ceil(c.pos / alignment) * alignment;
    const tensors = raw.map((t) => ({ ...t, fileOffset: dataOffset + t.offset }));
    return { version, metadata, tensors, alignment, dataOffset };
  } finally {
    closeSync(fd);
  }
}

/** Typed accessors over GGUF metadata; each returns undefined when the key is absent or has another type. */
export function metaString(f: GgufFile, key: string): string | undefined {
  const v = f.metadata.get(key)?.value;
  return typeof v === "string" ? v : undefined;
}

export function metaNumber(f: GgufFile, key: string): number | undefined {
  const v = f.metadata.get(key)?.value;
  return typeof v === "number" ? v : undefined;
}

export function metaBool(f: GgufFile, key: string): boolean | undefined {
  const v = f.metadata.get(key)?.value;
  return typeof v === "boolean" ? v : undefined;
}

/** Element count of an array entry (also when read with `skipArrays`). */
export function metaArrayLength(f: GgufFile, key: string): number | undefined {
  return f.metadata.get(key)?.length;
}

export function metaStrings(f: GgufFile, key: string): string[] | undefined {
  const e = f.metadata.get(key);
  return e?.arrayType === GgufValueType.STRING ? (e.value as string[]) : undefined;
}

/** A numeric array as plain numbers (scores, token types); undefined for non-numeric arrays. */
export function metaNumbers(f: GgufFile, key: string): ArrayLike<number> | undefined {
  const e = f.metadata.get(key);
  if (e?.type !== GgufValueType.ARRAY || e.arrayType === undefined) return undefined;
  const t = e.arrayType;
  if (t === GgufValueType.STRING || t === GgufValueType.ARRAY || t === GgufValueType.BOOL) return undefined;
  if (t === GgufValueType.UINT64 || t === GgufValueType.INT64) return Array.from(e.value as BigInt64Array, Number);
  return e.value as ArrayLike<number>;
}

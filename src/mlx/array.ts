/** The Array handle class, dtypes, and creating arrays from / reading them into JS memory. */
import { ptr } from "bun:ffi";
import { F64_PTR, f64Out, fail, ints, lib, OUT_PTR, outPtr } from "./ffi.ts";
import { type Scope, track } from "./scope.ts";
import { currentStream } from "./stream.ts";

/** MLX dtypes; the numbers are the shim's codes (mlx::core::Dtype::Val order). */
export const Dtype = {
  bool: 0, uint8: 1, uint16: 2, uint32: 3, uint64: 4, int8: 5, int16: 6, int32: 7, int64: 8,
  float16: 9, float32: 10, float64: 11, bfloat16: 12, complex64: 13,
} as const;
export type Dtype = (typeof Dtype)[keyof typeof Dtype];
export type DtypeName = keyof typeof Dtype;

const NAMES = Object.fromEntries(Object.entries(Dtype).map(([k, v]) => [v, k])) as Record<Dtype, DtypeName>;
export const dtypeName = (d: Dtype): DtypeName => NAMES[d];
export function parseDtype(name: string): Dtype {
  const d = (Dtype as Record<string, Dtype>)[name];
  if (d === undefined) throw new TypeError(`unknown dtype '${name}'`);
  return d;
}
export const isFloating = (d: Dtype): boolean => d === Dtype.float16 || d === Dtype.float32 || d === Dtype.float64 || d === Dtype.bfloat16;
export const isInteger = (d: Dtype): boolean => d >= Dtype.uint8 && d <= Dtype.int64;
const ITEMSIZE: Record<Dtype, number> = [1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 2, 8] as unknown as Record<Dtype, number>;
export const itemsize = (d: Dtype): number => ITEMSIZE[d];

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | Uint8Array | Uint16Array | Uint32Array
  | BigInt64Array | BigUint64Array;

/**
 * An MLX array (a lazy graph node) owned through a native handle. Free it with `dispose()`,
 * `using`, or by creating it inside `scope()`. Shape and dtype are cached (they never change).
 */
export class Array implements Disposable {
  #h: number;
  /** Scope that will free this array; null = owned by the caller. */
  owner: Scope | null = null;
  #shape: number[] | null = null;
  #dtype = -1;

  /** Wraps a fresh handle from the shim and takes ownership of it. */
  constructor(handle: number) {
    this.#h = handle;
    track(this);
  }

  /** The native handle (throws if disposed). */
  get handle(): number {
    const h = this.#h;
    if (h === 0) throw new TypeError("MLX array used after dispose()");
    return h;
  }
  get disposed(): boolean {
    return this.#h === 0;
  }
  dispose(): void {
    if (this.#h !== 0) {
      lib().mlxk_array_free(this.#h as never);
      this.#h = 0;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  get shape(): readonly number[] {
    if (this.#shape === null) {
      const L = lib();
      const n = L.mlxk_array_ndim(this.handle as never);
      const buf = new Int32Array(Math.max(n, 1));
      L.mlxk_array_shape(this.handle as never, buf as never);
      this.#shape = globalThis.Array.from(buf.subarray(0, n));
    }
    return this.#shape;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get dtype(): Dtype {
    if (this.#dtype < 0) this.#dtype = lib().mlxk_array_dtype(this.handle as never);
    return this.#dtype as Dtype;
  }
  get size(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }
  get itemsize(): number {
    return ITEMSIZE[this.dtype];
  }
  get nbytes(): number {
    return this.size * this.itemsize;
  }

  /** Evaluate now (blocking); returns this for chaining. */
  eval(): this {
    if (lib().mlxk_array_eval(this.handle as never) !== 0) fail("eval");
    return this;
  }

  /** The value of a one-element array as a JS number (evaluates). */
  item(): number {
    if (lib().mlxk_array_item(this.handle as never, F64_PTR as never) !== 0) fail("item");
    return f64Out();
  }

  /** A second, independently disposable handle on the same array (not tracked by any scope). */
  retain(): Array {
    if (lib().mlxk_array_retain(OUT_PTR as never, this.handle as never) !== 0) fail("retain");
    const a = new Array(outPtr());
    a.owner = null;
    return a;
  }

  /** Row-major copy into `dst` (whose byte length must equal nbytes); evaluates. */
  copyTo(dst: TypedArray | Uint8Array): void {
    if (dst.byteLength === 0) return;
    if (lib().mlxk_array_to_host(this.handle as never, dst as never, dst.byteLength) !== 0) fail("to_host");
  }

  /** Raw bytes in the array's own dtype (f16/bf16 come back as their 16-bit patterns). */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.nbytes);
    this.copyTo(out);
    return out;
  }

  /** Values converted to `dtype` and copied out; the temporary cast is freed immediately. */
  #readAs<T extends TypedArray>(dtype: Dtype, make: (n: number) => T): T {
    const out = make(this.size);
    if (this.dtype === dtype) {
      this.copyTo(out);
      return out;
    }
    const L = lib();
    if (L.mlxk_astype(OUT_PTR as never, this.handle as never, dtype, currentStream() as never) !== 0) fail("astype");
    const tmp = outPtr();
    try {
      if (out.byteLength > 0 && L.mlxk_array_to_host(tmp as never, out as never, out.byteLength) !== 0) fail("to_host");
    } finally {
      L.mlxk_array_free(tmp as never);
    }
    return out;
  }
  toFloat32Array(): Float32Array {
    return this.#readAs(Dtype.float32, (n) => new Float32Array(n));
  }
  toFloat64Array(): Float64Array {
    return this.#readAs(Dtype.float64, (n) => new Float64Array(n));
  }
  toInt32Array(): Int32Array {
    return this.#readAs(Dtype.int32, (n) => new Int32Array(n));
  }
  toUint32Array(): Uint32Array {
    return this.#readAs(Dtype.uint32, (n) => new Uint32Array(n));
  }
  toUint8Array(): Uint8Array {
    return this.#readAs(Dtype.uint8, (n) => new Uint8Array(n));
  }
  /** Values in the natural JS typed array for the dtype (f16/bf16 → Float32Array, bool → Uint8Array). */
  toTypedArray(): TypedArray {
    switch (this.dtype) {
      case Dtype.bool: case Dtype.uint8: return this.toUint8Array();
      case Dtype.int8: return this.#readAs(Dtype.int8, (n) => new Int8Array(n));
      case Dtype.uint16: return this.#readAs(Dtype.uint16, (n) => new Uint16Array(n));
      case Dtype.int16: return this.#readAs(Dtype.int16, (n) => new Int16Array(n));
      case Dtype.uint32: return this.toUint32Array();
      case Dtype.int32: return this.toInt32Array();
      case Dtype.uint64: return this.#readAs(Dtype.uint64, (n) => new BigUint64Array(n));
      case Dtype.int64: return this.#readAs(Dtype.int64, (n) => new BigInt64Array(n));
      case Dtype.float64: return this.toFloat64Array();
      default: return this.toFloat32Array();
    }
  }
  /** Nested JS arrays of numbers (for tests and small values). */
  toList(): unknown {
    const flat = globalThis.Array.from(this.toTypedArray() as ArrayLike<number | bigint>, (x) => Number(x));
    const shape = this.shape;
    if (shape.length === 0) return flat[0];
    const build = (dim: number, off: number): unknown[] => {
      const n = shape[dim]!;
      if (dim === shape.length - 1) return flat.slice(off, off + n);
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      return globalThis.Array.from({ length: n }, (_, i) => build(dim + 1, off + i * stride));
    };
    return build(0, 0);
  }

  /** Cast (a new array). */
  astype(dtype: Dtype): Array {
    if (lib().mlxk_astype(OUT_PTR as never, this.handle as never, dtype, currentStream() as never) !== 0) fail("astype");
    return new Array(outPtr());
  }

  toString(): string {
    return this.disposed ? "array(<disposed>)" : `array(shape=[${this.shape.join(", ")}], dtype=${dtypeName(this.dtype)})`;
  }
}

function typedDtype(t: TypedArray): Dtype {
  if (t instanceof Float32Array) return Dtype.float32;
  if (t instanceof Int32Array) return Dtype.int32;
  if (t instanceof Uint32Array) return Dtype.uint32;
  if (t instanceof Uint8Array) return Dtype.uint8;
  if (t instanceof Float64Array) return Dtype.float64;
  if (t instanceof Int8Array) return Dtype.int8;
  if (t instanceof Int16Array) return Dtype.int16;
  if (t instanceof Uint16Array) return Dtype.uint16;
  if (t instanceof BigInt64Array) return Dtype.int64;
  return Dtype.uint64;
}

/** Copy raw bytes (already laid out in `dtype`, row-major) into a new MLX array. */
export function fromBytes(data: ArrayBufferView, shape: readonly number[], dtype: Dtype): Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.byteLength !== n * ITEMSIZE[dtype]) {
    throw new TypeError(`fromBytes: ${data.byteLength} bytes do not fill shape [${shape.join(", ")}] of ${dtypeName(dtype)}`);
  }
  const shapePtr = ints(shape);
  // ptr() right at the call: nothing may allocate (and trigger GC) between taking and using it.
  const src = data.byteLength === 0 ? null : ptr(data as TypedArray | DataView);
  if (lib().mlxk_array_from_data(OUT_PTR as never, src as never, shapePtr as never, shape.length, dtype) !== 0) fail("array");
  return new Array(outPtr());
}

/** A 0-d array. */
export function scalar(value: number | boolean, dtype: Dtype = typeof value === "boolean" ? Dtype.bool : Dtype.float32): Array {
  if (lib().mlxk_array_scalar(OUT_PTR as never, Number(value), dtype) !== 0) fail("scalar");
  return new Array(outPtr());
}

type Nested = number | boolean | readonly Nested[];

function inferShape(v: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = v;
  while (globalThis.Array.isArray(cur)) {
    shape.push(cur.length);
    cur = (cur as readonly Nested[])[0] ?? 0;
  }
  return shape;
}

/** Host buffer type used to stage values of a given dtype (half types go through float32). */
function stagingDtype(d: Dtype): Dtype {
  return d === Dtype.float16 || d === Dtype.bfloat16 || d === Dtype.complex64 ? Dtype.float32 : d;
}

function allocTyped(d: Dtype, n: number): TypedArray {
  switch (d) {
    case Dtype.bool: case Dtype.uint8: return new Uint8Array(n);
    case Dtype.int8: return new Int8Array(n);
    case Dtype.uint16: return new Uint16Array(n);
    case Dtype.int16: return new Int16Array(n);
    case Dtype.uint32: return new Uint32Array(n);
    case Dtype.int32: return new Int32Array(n);
    case Dtype.uint64: return new BigUint64Array(n);
    case Dtype.int64: return new BigInt64Array(n);
    case Dtype.float64: return new Float64Array(n);
    default: return new Float32Array(n);
  }
}

/**
 * Create an array from JS values (copied): a number/boolean (0-d), nested number arrays, or a typed
 * array (dtype inferred from it; `shape` defaults to its length). A different `dtype` casts.
 */
export function array(data: Nested | TypedArray, opts: { shape?: readonly number[]; dtype?: Dtype } = {}): Array {
  if (typeof data === "number" || typeof data === "boolean") return scalar(data, opts.dtype);
  let typed: TypedArray;
  let shape: readonly number[];
  let want = opts.dtype;
  if (ArrayBuffer.isView(data)) {
    typed = data;
    shape = opts.shape ?? [data.length];
  } else {
    shape = opts.shape ?? inferShape(data);
    const flat = (data as unknown[]).flat(Number.POSITIVE_INFINITY) as (number | boolean)[];
    const target = opts.dtype ?? (flat.some((x) => typeof x === "boolean") ? Dtype.bool : Dtype.float32);
    want = target;
    typed = allocTyped(stagingDtype(target), flat.length);
    if (typed instanceof BigInt64Array || typed instanceof BigUint64Array) flat.forEach((x, i) => { typed[i] = BigInt(Number(x)); });
    else flat.forEach((x, i) => { (typed as Float32Array)[i] = Number(x); });
  }
  const src = typedDtype(typed);
  const base = fromBytes(typed, shape, src === Dtype.uint8 && want === Dtype.bool ? Dtype.bool : src);
  if (want === undefined || want === base.dtype) return base;
  try {
    return base.astype(want);
  } finally {
    base.dispose();
  }
}

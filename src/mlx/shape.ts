/** Constructors, shape manipulation, slicing and indexing. */
import { Array, Dtype } from "./array.ts";
import { fail, handles, ints, lib, OUT_PTR, outPtr } from "./ffi.ts";
import { type ArrayLike, result } from "./ops.ts";
import { currentStream as S } from "./stream.ts";

// ---- constructors ----
export function zeros(shape: readonly number[], dtype: Dtype = Dtype.float32): Array {
  return result(lib().mlxk_zeros(OUT_PTR as never, ints(shape) as never, shape.length, dtype, S() as never), "zeros");
}
export function ones(shape: readonly number[], dtype: Dtype = Dtype.float32): Array {
  return result(lib().mlxk_ones(OUT_PTR as never, ints(shape) as never, shape.length, dtype, S() as never), "ones");
}
export function full(shape: readonly number[], value: number, dtype: Dtype = Dtype.float32): Array {
  return result(lib().mlxk_full(OUT_PTR as never, ints(shape) as never, shape.length, value, dtype, S() as never), "full");
}
export const zerosLike = (a: Array): Array => zeros(a.shape, a.dtype);
export const onesLike = (a: Array): Array => ones(a.shape, a.dtype);

/** arange(stop) or arange(start, stop, step); int32 when all bounds are integers, else float32 (as in MLX). */
export function arange(start: number, stop?: number, step = 1, dtype?: Dtype): Array {
  const [lo, hi] = stop === undefined ? [0, start] : [start, stop];
  const dt = dtype ?? ([lo, hi, step].every(Number.isInteger) ? Dtype.int32 : Dtype.float32);
  return result(lib().mlxk_arange(OUT_PTR as never, lo, hi, step, dt, S() as never), "arange");
}
/** n×m matrix with ones at and below diagonal k. */
export function tri(n: number, m = n, k = 0, dtype: Dtype = Dtype.float32): Array {
  return result(lib().mlxk_tri(OUT_PTR as never, n, m, k, dtype, S() as never), "tri");
}
export const tril = (a: Array, k = 0): Array => result(lib().mlxk_tril(OUT_PTR as never, a.handle as never, k, S() as never), "tril");
export const triu = (a: Array, k = 0): Array => result(lib().mlxk_triu(OUT_PTR as never, a.handle as never, k, S() as never), "triu");

export const astype = (a: Array, dtype: Dtype): Array => a.astype(dtype);
/** Row-major copy (or column-major if allowed and already so). */
export function contiguous(a: Array, allowColMajor = false): Array {
  return result(lib().mlxk_contiguous(OUT_PTR as never, a.handle as never, allowColMajor, S() as never), "contiguous");
}
/** Reinterpret the bytes as another dtype. */
export function view(a: Array, dtype: Dtype): Array {
  return result(lib().mlxk_view(OUT_PTR as never, a.handle as never, dtype, S() as never), "view");
}

// ---- shapes ----
export function reshape(a: Array, shape: readonly number[]): Array {
  return result(lib().mlxk_reshape(OUT_PTR as never, a.handle as never, ints(shape) as never, shape.length, S() as never), "reshape");
}
export function flatten(a: Array, startAxis = 0, endAxis = -1): Array {
  return result(lib().mlxk_flatten(OUT_PTR as never, a.handle as never, startAxis, endAxis, S() as never), "flatten");
}
/** Permute axes (default: reverse them). */
export function transpose(a: Array, axes?: readonly number[]): Array {
  const p = axes ? ints(axes) : 0;
  return result(lib().mlxk_transpose(OUT_PTR as never, a.handle as never, p as never, axes?.length ?? 0, S() as never), "transpose");
}
export function swapaxes(a: Array, axis1: number, axis2: number): Array {
  return result(lib().mlxk_swapaxes(OUT_PTR as never, a.handle as never, axis1, axis2, S() as never), "swapaxes");
}
export function expandDims(a: Array, axis: number | readonly number[]): Array {
  const axes = typeof axis === "number" ? [axis] : axis;
  return result(lib().mlxk_expand_dims(OUT_PTR as never, a.handle as never, ints(axes) as never, axes.length, S() as never), "expand_dims");
}
/** Remove size-1 axes (default: all of them). */
export function squeeze(a: Array, axis?: number | readonly number[]): Array {
  const axes = axis === undefined ? null : typeof axis === "number" ? [axis] : axis;
  const p = axes ? ints(axes) : 0;
  return result(lib().mlxk_squeeze(OUT_PTR as never, a.handle as never, p as never, axes?.length ?? 0, S() as never), "squeeze");
}
export function broadcastTo(a: Array, shape: readonly number[]): Array {
  return result(lib().mlxk_broadcast_to(OUT_PTR as never, a.handle as never, ints(shape) as never, shape.length, S() as never), "broadcast_to");
}
export function repeat(a: Array, repeats: number, axis: number): Array {
  return result(lib().mlxk_repeat(OUT_PTR as never, a.handle as never, repeats, axis, S() as never), "repeat");
}
export function tile(a: Array, reps: readonly number[]): Array {
  return result(lib().mlxk_tile(OUT_PTR as never, a.handle as never, ints(reps) as never, reps.length, S() as never), "tile");
}
/** Constant padding: `widths[i] = [before, after]` for axis i (missing axes unpadded). */
export function pad(a: Array, widths: readonly (readonly [number, number])[], value = 0): Array {
  const axes = widths.map((_, i) => i);
  const L = lib();
  if (L.mlxk_array_scalar(OUT_PTR as never, value, a.dtype) !== 0) fail("scalar");
  const hv = outPtr();
  try {
    return result(
      L.mlxk_pad(OUT_PTR as never, a.handle as never, ints(axes, 0) as never, ints(widths.map((w) => w[0]), 1) as never,
        ints(widths.map((w) => w[1]), 2) as never, axes.length, hv as never, S() as never),
      "pad",
    );
  } finally {
    L.mlxk_array_free(hv as never);
  }
}

export function concatenate(arrays: readonly Array[], axis = 0): Array {
  const hs = arrays.map((a) => a.handle);
  return result(lib().mlxk_concatenate(OUT_PTR as never, handles(hs) as never, hs.length, axis, S() as never), "concatenate");
}
export function stack(arrays: readonly Array[], axis = 0): Array {
  const hs = arrays.map((a) => a.handle);
  return result(lib().mlxk_stack(OUT_PTR as never, handles(hs) as never, hs.length, axis, S() as never), "stack");
}

/** Split into `sections` equal parts, or at the given indices, along `axis`. */
export function split(a: Array, sections: number | readonly number[], axis = 0): Array[] {
  const n = typeof sections === "number" ? sections : sections.length + 1;
  const outs = new Uint32Array(2 * n);
  const idx = typeof sections === "number" ? 0 : ints(sections);
  const rc = lib().mlxk_split(outs as never, a.handle as never, typeof sections === "number" ? sections : 0, idx as never,
    typeof sections === "number" ? 0 : sections.length, axis, S() as never);
  if (rc !== 0) fail("split");
  return globalThis.Array.from({ length: n }, (_, i) => new Array(outs[2 * i]! + outs[2 * i + 1]! * 4294967296));
}

// ---- slicing ----
/** a[start:stop:strides] per axis (one entry per axis, from axis 0). Negative indices count from the end. */
export function slice(a: Array, start: readonly number[], stop: readonly number[], strides?: readonly number[]): Array {
  const n = start.length;
  if (stop.length !== n || (strides && strides.length !== n)) throw new TypeError("slice: start/stop/strides lengths differ");
  return result(
    lib().mlxk_slice(OUT_PTR as never, a.handle as never, ints(start, 0) as never, ints(stop, 1) as never,
      (strides ? ints(strides, 2) : 0) as never, n, S() as never),
    "slice",
  );
}

/** a[..., start:stop, ...] on one axis. */
export function sliceAxis(a: Array, axis: number, start: number, stop: number): Array {
  const shape = a.shape;
  const ax = axis < 0 ? axis + shape.length : axis;
  const lo = shape.map(() => 0);
  const hi = [...shape];
  lo[ax] = start;
  hi[ax] = stop;
  return slice(a, lo, hi);
}

/** A copy of `src` with src[start:stop:strides] replaced by `update` (in place when MLX can donate src). */
export function sliceUpdate(src: Array, update: Array, start: readonly number[], stop: readonly number[], strides?: readonly number[]): Array {
  const n = start.length;
  if (stop.length !== n || (strides && strides.length !== n)) throw new TypeError("sliceUpdate: start/stop/strides lengths differ");
  return result(
    lib().mlxk_slice_update(OUT_PTR as never, src.handle as never, update.handle as never, ints(start, 0) as never,
      ints(stop, 1) as never, (strides ? ints(strides, 2) : 0) as never, n, S() as never),
    "slice_update",
  );
}

/** Slice of `sliceSize` starting at the positions held by the array `start` (one per axis in `axes`). */
export function sliceDynamic(a: Array, start: Array, axes: readonly number[], sliceSize: readonly number[]): Array {
  return result(
    lib().mlxk_slice_dynamic(OUT_PTR as never, a.handle as never, start.handle as never, ints(axes, 0) as never, axes.length,
      ints(sliceSize, 1) as never, sliceSize.length, S() as never),
    "slice_dynamic",
  );
}
export function sliceUpdateDynamic(src: Array, update: Array, start: Array, axes: readonly number[]): Array {
  return result(
    lib().mlxk_slice_update_dynamic(OUT_PTR as never, src.handle as never, update.handle as never, start.handle as never,
      ints(axes) as never, axes.length, S() as never),
    "slice_update_dynamic",
  );
}

// ---- indexing ----
/** Gather along `axis` (default: over the flattened array), e.g. embedding rows: take(table, ids, 0). */
export function take(a: Array, indices: Array, axis?: number): Array {
  return result(lib().mlxk_take(OUT_PTR as never, a.handle as never, indices.handle as never, axis ?? 0, axis !== undefined, S() as never), "take");
}
export function takeAlongAxis(a: Array, indices: Array, axis: number): Array {
  return result(lib().mlxk_take_along_axis(OUT_PTR as never, a.handle as never, indices.handle as never, axis, S() as never), "take_along_axis");
}
export function putAlongAxis(a: Array, indices: Array, values: ArrayLike, axis: number): Array {
  const L = lib();
  let hv: number;
  let temp = 0;
  if (values instanceof Array) hv = values.handle;
  else {
    if (L.mlxk_array_scalar(OUT_PTR as never, Number(values), a.dtype) !== 0) fail("scalar");
    hv = temp = outPtr();
  }
  try {
    return result(L.mlxk_put_along_axis(OUT_PTR as never, a.handle as never, indices.handle as never, hv as never, axis, S() as never), "put_along_axis");
  } finally {
    if (temp) L.mlxk_array_free(temp as never);
  }
}

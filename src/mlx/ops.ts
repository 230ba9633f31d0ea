/**
 * Elementwise ops, activations, reductions, scans and sorting — camelCase of the MLX Python names.
 * Binary ops accept JS numbers for either operand; a number takes the dtype of the array operand
 * when that keeps its value (like MLX's weak Python scalars), so bf16 stays bf16.
 */
import { Array, Dtype, isFloating } from "./array.ts";
import { fail, ints, lib, OUT_PTR, outPtr, type Symbols } from "./ffi.ts";
import { currentStream as S } from "./stream.ts";

export type ArrayLike = Array | number | boolean;
type Axis = number | readonly number[];

/** Wrap the handle a successful call wrote to OUT, or throw MlxError with MLX's message. */
export function result(rc: number, op: string): Array {
  if (rc !== 0) fail(op);
  return new Array(outPtr());
}

function scalarDtype(v: number | boolean, other: ArrayLike): Dtype {
  if (typeof v === "boolean") return Dtype.bool;
  if (other instanceof Array) {
    const d = other.dtype;
    if (isFloating(d)) return d;
    if (Number.isInteger(v) && d !== Dtype.bool) return d;
    if (Number.isInteger(v)) return Dtype.int32;
  }
  return Dtype.float32;
}

/** Handle for an operand; numbers become temporary scalars pushed onto `temps` (freed by the caller). */
function operand(v: ArrayLike, other: ArrayLike, temps: number[]): number {
  if (v instanceof Array) return v.handle;
  if (lib().mlxk_array_scalar(OUT_PTR as never, Number(v), scalarDtype(v, other)) !== 0) fail("scalar");
  const h = outPtr();
  temps.push(h);
  return h;
}

function freeTemps(temps: number[]): void {
  const L = lib();
  for (const h of temps) L.mlxk_array_free(h as never);
}

type UnaryName = { [K in keyof Symbols]: Symbols[K] extends Symbols["mlxk_exp"] ? K : never }[keyof Symbols];
type BinaryName = { [K in keyof Symbols]: Symbols[K] extends Symbols["mlxk_add"] ? K : never }[keyof Symbols];

function unary(name: UnaryName, a: Array): Array {
  return result(lib()[name](OUT_PTR as never, a.handle as never, S() as never), name.slice(5));
}

function binary(name: BinaryName, a: ArrayLike, b: ArrayLike): Array {
  const L = lib();
  if (a instanceof Array && b instanceof Array) {
    return result(L[name](OUT_PTR as never, a.handle as never, b.handle as never, S() as never), name.slice(5));
  }
  const temps: number[] = [];
  try {
    const ha = operand(a, b, temps);
    const hb = operand(b, a, temps);
    return result(L[name](OUT_PTR as never, ha as never, hb as never, S() as never), name.slice(5));
  } finally {
    freeTemps(temps);
  }
}

// ---- unary ----
export const abs = (a: Array): Array => unary("mlxk_abs", a);
export const negative = (a: Array): Array => unary("mlxk_negative", a);
export const sign = (a: Array): Array => unary("mlxk_sign", a);
export const exp = (a: Array): Array => unary("mlxk_exp", a);
export const expm1 = (a: Array): Array => unary("mlxk_expm1", a);
export const log = (a: Array): Array => unary("mlxk_log", a);
export const log1p = (a: Array): Array => unary("mlxk_log1p", a);
export const log2 = (a: Array): Array => unary("mlxk_log2", a);
export const sigmoid = (a: Array): Array => unary("mlxk_sigmoid", a);
export const tanh = (a: Array): Array => unary("mlxk_tanh", a);
export const erf = (a: Array): Array => unary("mlxk_erf", a);
export const sqrt = (a: Array): Array => unary("mlxk_sqrt", a);
export const rsqrt = (a: Array): Array => unary("mlxk_rsqrt", a);
export const square = (a: Array): Array => unary("mlxk_square", a);
export const reciprocal = (a: Array): Array => unary("mlxk_reciprocal", a);
export const sin = (a: Array): Array => unary("mlxk_sin", a);
export const cos = (a: Array): Array => unary("mlxk_cos", a);
export const floor = (a: Array): Array => unary("mlxk_floor", a);
export const ceil = (a: Array): Array => unary("mlxk_ceil", a);
export const logicalNot = (a: Array): Array => unary("mlxk_logical_not", a);
export const isnan = (a: Array): Array => unary("mlxk_isnan", a);
export const isinf = (a: Array): Array => unary("mlxk_isinf", a);
export const stopGradient = (a: Array): Array => unary("mlxk_stop_gradient", a);
// activations (definitions of mlx.nn, computed in the input's dtype)
export const silu = (a: Array): Array => unary("mlxk_silu", a);
/** Exact GELU: x·½(1+erf(x/√2)). */
export const gelu = (a: Array): Array => unary("mlxk_gelu", a);
/** tanh approximation: ½x(1+tanh(√(2/π)(x+0.044715x³))). */
export const geluApprox = (a: Array): Array => unary("mlxk_gelu_approx", a);
/** Sigmoid approximation: x·σ(1.702x). */
export const geluFastApprox = (a: Array): Array => unary("mlxk_gelu_fast_approx", a);
export const relu = (a: Array): Array => unary("mlxk_relu", a);
export const softplus = (a: Array): Array => unary("mlxk_softplus", a);

// ---- binary ----
export const add = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_add", a, b);
export const subtract = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_subtract", a, b);
export const multiply = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_multiply", a, b);
export const divide = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_divide", a, b);
export const maximum = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_maximum", a, b);
export const minimum = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_minimum", a, b);
export const power = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_power", a, b);
export const floorDivide = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_floor_divide", a, b);
export const remainder = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_remainder", a, b);
export const logaddexp = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_logaddexp", a, b);
export const equal = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_equal", a, b);
export const notEqual = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_not_equal", a, b);
export const greater = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_greater", a, b);
export const greaterEqual = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_greater_equal", a, b);
export const less = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_less", a, b);
export const lessEqual = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_less_equal", a, b);
export const logicalAnd = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_logical_and", a, b);
export const logicalOr = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_logical_or", a, b);
export const bitwiseAnd = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_bitwise_and", a, b);
export const bitwiseOr = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_bitwise_or", a, b);
export const bitwiseXor = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_bitwise_xor", a, b);
export const leftShift = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_left_shift", a, b);
export const rightShift = (a: ArrayLike, b: ArrayLike): Array => binary("mlxk_right_shift", a, b);
export const matmul = (a: Array, b: Array): Array => binary("mlxk_matmul", a, b);
export const outer = (a: Array, b: Array): Array => binary("mlxk_outer", a, b);

/** alpha·(a@b) + beta·c */
export function addmm(c: Array, a: Array, b: Array, alpha = 1, beta = 1): Array {
  return result(lib().mlxk_addmm(OUT_PTR as never, c.handle as never, a.handle as never, b.handle as never, alpha, beta, S() as never), "addmm");
}

export function where(cond: Array, x: ArrayLike, y: ArrayLike): Array {
  const temps: number[] = [];
  try {
    const hx = operand(x, y, temps);
    const hy = operand(y, x, temps);
    return result(lib().mlxk_where(OUT_PTR as never, cond.handle as never, hx as never, hy as never, S() as never), "where");
  } finally {
    freeTemps(temps);
  }
}

/** Clip to [min, max]; either bound may be null. */
export function clip(a: Array, min: ArrayLike | null, max: ArrayLike | null): Array {
  const temps: number[] = [];
  try {
    const lo = min === null ? 0 : operand(min, a, temps);
    const hi = max === null ? 0 : operand(max, a, temps);
    return result(lib().mlxk_clip(OUT_PTR as never, a.handle as never, lo as never, hi as never, S() as never), "clip");
  } finally {
    freeTemps(temps);
  }
}

// ---- reductions ----
type ReduceName = { [K in keyof Symbols]: Symbols[K] extends Symbols["mlxk_sum"] ? K : never }[keyof Symbols];

function reduce(name: ReduceName, a: Array, axis: Axis | undefined, keepdims: boolean): Array {
  const axes = axis === undefined ? null : typeof axis === "number" ? [axis] : axis;
  const p = axes === null ? 0 : ints(axes);
  return result(lib()[name](OUT_PTR as never, a.handle as never, p as never, axes?.length ?? 0, keepdims, S() as never), name.slice(5));
}

/** Reductions over `axis` (a number, a list, or undefined = all axes). */
export const sum = (a: Array, axis?: Axis, keepdims = false): Array => reduce("mlxk_sum", a, axis, keepdims);
export const mean = (a: Array, axis?: Axis, keepdims = false): Array => reduce("mlxk_mean", a, axis, keepdims);
export const max = (a: Array, axis?: Axis, keepdims = false): Array => reduce("mlxk_max", a, axis, keepdims);
export const min = (a: Array, axis?: Axis, keepdims = false): Array => reduce("mlxk_min", a, axis, keepdims);
export const prod = (a: Array, axis?: Axis, keepdims = false): Array => reduce("mlxk_prod", a, axis, keepdims);
export const logsumexp = (a: Array, axis?: Axis, keepdims = false): Array => reduce("mlxk_logsumexp", a, axis, keepdims);
export const any = (a: Array, axis?: Axis, keepdims = false): Array => reduce("mlxk_any", a, axis, keepdims);
export const all = (a: Array, axis?: Axis, keepdims = false): Array => reduce("mlxk_all", a, axis, keepdims);

export function variance(a: Array, axis?: Axis, keepdims = false, ddof = 0): Array {
  const axes = axis === undefined ? null : typeof axis === "number" ? [axis] : axis;
  const p = axes === null ? 0 : ints(axes);
  return result(lib().mlxk_var(OUT_PTR as never, a.handle as never, p as never, axes?.length ?? 0, keepdims, ddof, S() as never), "var");
}

export function argmax(a: Array, axis?: number, keepdims = false): Array {
  return result(lib().mlxk_argmax(OUT_PTR as never, a.handle as never, axis ?? 0, axis !== undefined, keepdims, S() as never), "argmax");
}
export function argmin(a: Array, axis?: number, keepdims = false): Array {
  return result(lib().mlxk_argmin(OUT_PTR as never, a.handle as never, axis ?? 0, axis !== undefined, keepdims, S() as never), "argmin");
}

/** Softmax over `axis` (default: all axes); `precise` computes in float32 for half inputs. */
export function softmax(a: Array, axis?: Axis, precise = false): Array {
  const axes = axis === undefined ? null : typeof axis === "number" ? [axis] : axis;
  const p = axes === null ? 0 : ints(axes);
  return result(lib().mlxk_softmax(OUT_PTR as never, a.handle as never, p as never, axes?.length ?? 0, precise, S() as never), "softmax");
}

export interface ScanOptions {
  reverse?: boolean;
  inclusive?: boolean;
}
export function cumsum(a: Array, axis: number, o: ScanOptions = {}): Array {
  return result(lib().mlxk_cumsum(OUT_PTR as never, a.handle as never, axis, o.reverse ?? false, o.inclusive ?? true, S() as never), "cumsum");
}
export function cumprod(a: Array, axis: number, o: ScanOptions = {}): Array {
  return result(lib().mlxk_cumprod(OUT_PTR as never, a.handle as never, axis, o.reverse ?? false, o.inclusive ?? true, S() as never), "cumprod");
}
export function cummax(a: Array, axis: number, o: ScanOptions = {}): Array {
  return result(lib().mlxk_cummax(OUT_PTR as never, a.handle as never, axis, o.reverse ?? false, o.inclusive ?? true, S() as never), "cummax");
}

// ---- sorting / selection ----
export function sort(a: Array, axis = -1): Array {
  return result(lib().mlxk_sort(OUT_PTR as never, a.handle as never, axis, S() as never), "sort");
}
export function argsort(a: Array, axis = -1): Array {
  return result(lib().mlxk_argsort(OUT_PTR as never, a.handle as never, axis, S() as never), "argsort");
}
export function partition(a: Array, kth: number, axis = -1): Array {
  return result(lib().mlxk_partition(OUT_PTR as never, a.handle as never, kth, axis, S() as never), "partition");
}
/** Indices that partition `a` so that element `kth` is in sorted position (smaller ones before it). */
export function argpartition(a: Array, kth: number, axis = -1): Array {
  return result(lib().mlxk_argpartition(OUT_PTR as never, a.handle as never, kth, axis, S() as never), "argpartition");
}
/** The k largest values along `axis` (unordered, like MLX). */
export function topk(a: Array, k: number, axis = -1): Array {
  return result(lib().mlxk_topk(OUT_PTR as never, a.handle as never, k, axis, S() as never), "topk");
}

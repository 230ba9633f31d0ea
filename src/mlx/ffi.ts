/**
 * The FFI chokepoint: lazily dlopens our shim (mlx-c/build/libmlxk.*) and declares every symbol.
 * Handles are declared `ptr` (JS Numbers, no BigInt on hot paths); out-params go through reused
 * scratch buffers. Only src/mlx/ touches pointers. All calls must come from one JS thread.
 */
import { CString, dlopen, type FFIFunction, FFIType, ptr } from "bun:ffi";
import { type Env } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { findShim, readInstallStatus, shimCandidates } from "./paths.ts";

const P = FFIType.ptr;
const I = FFIType.i32;
const F = FFIType.f32;
const D = FFIType.f64;
const B = FFIType.bool;
const V = FFIType.void;
const U64 = FFIType.u64;

const un = { args: [P, P, P], returns: I } as const;
const bin = { args: [P, P, P, P], returns: I } as const;
const red = { args: [P, P, P, I, B, P], returns: I } as const;
const scan = { args: [P, P, I, B, B, P], returns: I } as const;
const axisOp = { args: [P, P, I, P], returns: I } as const;
const kAxisOp = { args: [P, P, I, I, P], returns: I } as const;
const shapeOp = { args: [P, P, P, I, P], returns: I } as const;
const ctor = { args: [P, P, I, I, P], returns: I } as const;
const triOp = { args: [P, P, I, P], returns: I } as const;
const argRed = { args: [P, P, I, B, B, P], returns: I } as const;
const memGet = { args: [], returns: D } as const;
const memSet = { args: [D], returns: D } as const;
const strOf = { args: [], returns: P } as const;

const DEFS = {
  // runtime.cpp
  mlxk_version: strOf, mlxk_mlx_version: strOf, mlxk_last_error: strOf,
  mlxk_clear_error: { args: [], returns: V },
  mlxk_eval: { args: [P, I], returns: I }, mlxk_async_eval: { args: [P, I], returns: I },
  mlxk_default_device_type: { args: [], returns: I }, mlxk_set_default_device: { args: [I], returns: I },
  mlxk_device_available: { args: [I], returns: I },
  mlxk_device_count: { args: [I], returns: I },
  mlxk_device_info_number: { args: [I, P], returns: D }, mlxk_device_info_string: { args: [I, P], returns: P },
  mlxk_stream_default: { args: [P, I], returns: I }, mlxk_stream_new: { args: [P, I], returns: I },
  mlxk_stream_free: { args: [P], returns: V }, mlxk_stream_index: { args: [P], returns: I },
  mlxk_stream_device_type: { args: [P], returns: I }, mlxk_set_default_stream: { args: [P], returns: I },
  mlxk_synchronize: { args: [P], returns: I },
  mlxk_get_active_memory: memGet, mlxk_get_peak_memory: memGet, mlxk_get_cache_memory: memGet,
  mlxk_get_memory_limit: memGet, mlxk_reset_peak_memory: { args: [], returns: V },
  mlxk_set_cache_limit: memSet, mlxk_set_memory_limit: memSet, mlxk_set_wired_limit: memSet,
  mlxk_clear_cache: { args: [], returns: V },
  // array.cpp
  mlxk_array_from_data: { args: [P, P, P, I, I], returns: I },
  mlxk_array_scalar: { args: [P, D, I], returns: I },
  mlxk_array_retain: { args: [P, P], returns: I },
  mlxk_array_free: { args: [P], returns: V },
  mlxk_array_ndim: { args: [P], returns: I }, mlxk_array_shape: { args: [P, P], returns: I },
  mlxk_array_dtype: { args: [P], returns: I }, mlxk_array_size: { args: [P], returns: D },
  mlxk_array_nbytes: { args: [P], returns: D }, mlxk_array_itemsize: { args: [P], returns: I },
  mlxk_array_eval: { args: [P], returns: I },
  mlxk_array_to_host: { args: [P, P, D], returns: I },
  mlxk_array_item: { args: [P, P], returns: I },
  mlxk_astype: { args: [P, P, I, P], returns: I },
  mlxk_contiguous: { args: [P, P, B, P], returns: I },
  mlxk_zeros: ctor, mlxk_ones: ctor,
  mlxk_full: { args: [P, P, I, D, I, P], returns: I },
  mlxk_arange: { args: [P, D, D, D, I, P], returns: I },
  mlxk_tri: { args: [P, I, I, I, I, P], returns: I },
  mlxk_tril: triOp, mlxk_triu: triOp,
  // ops.cpp — unary
  mlxk_abs: un, mlxk_negative: un, mlxk_sign: un, mlxk_exp: un, mlxk_expm1: un, mlxk_log: un,
  mlxk_log1p: un, mlxk_log2: un, mlxk_sigmoid: un, mlxk_tanh: un, mlxk_erf: un, mlxk_sqrt: un,
  mlxk_rsqrt: un, mlxk_square: un, mlxk_reciprocal: un, mlxk_sin: un, mlxk_cos: un, mlxk_floor: un,
  mlxk_ceil: un, mlxk_logical_not: un, mlxk_isnan: un, mlxk_isinf: un, mlxk_stop_gradient: un,
  mlxk_silu: un, mlxk_gelu: un, mlxk_gelu_approx: un, mlxk_gelu_fast_approx: un, mlxk_relu: un,
  mlxk_softplus: un,
  // binary
  mlxk_add: bin, mlxk_subtract: bin, mlxk_multiply: bin, mlxk_divide: bin, mlxk_maximum: bin,
  mlxk_minimum: bin, mlxk_power: bin, mlxk_floor_divide: bin, mlxk_remainder: bin, mlxk_logaddexp: bin,
  mlxk_equal: bin, mlxk_not_equal: bin, mlxk_greater: bin, mlxk_greater_equal: bin, mlxk_less: bin,
  mlxk_less_equal: bin, mlxk_logical_and: bin, mlxk_logical_or: bin, mlxk_bitwise_and: bin,
  mlxk_bitwise_or: bin, mlxk_bitwise_xor: bin, mlxk_left_shift: bin, mlxk_right_shift: bin,
  mlxk_matmul: bin, mlxk_outer: bin,
  mlxk_addmm: { args: [P, P, P, P, F, F, P], returns: I },
  mlxk_where: { args: [P, P, P, P, P], returns: I },
  mlxk_clip: { args: [P, P, P, P, P], returns: I },
  // reductions, scans, sorting
  mlxk_sum: red, mlxk_mean: red, mlxk_max: red, mlxk_min: red, mlxk_prod: red, mlxk_logsumexp: red,
  mlxk_any: red, mlxk_all: red,
  mlxk_var: { args: [P, P, P, I, B, I, P], returns: I },
  mlxk_argmax: argRed, mlxk_argmin: argRed,
  mlxk_softmax: { args: [P, P, P, I, B, P], returns: I },
  mlxk_cumsum: scan, mlxk_cumprod: scan, mlxk_cummax: scan,
  mlxk_sort: axisOp, mlxk_argsort: axisOp,
  mlxk_partition: kAxisOp, mlxk_argpartition: kAxisOp, mlxk_topk: kAxisOp,
  // shapes
  mlxk_reshape: shapeOp, mlxk_transpose: shapeOp, mlxk_expand_dims: shapeOp, mlxk_squeeze: shapeOp,
  mlxk_broadcast_to: shapeOp, mlxk_tile: shapeOp,
  mlxk_flatten: { args: [P, P, I, I, P], returns: I },
  mlxk_swapaxes: { args: [P, P, I, I, P], returns: I },
  mlxk_repeat: { args: [P, P, I, I, P], returns: I },
  mlxk_pad: { args: [P, P, P, P, P, I, P, P], returns: I },
  mlxk_concatenate: { args: [P, P, I, I, P], returns: I },
  mlxk_stack: { args: [P, P, I, I, P], returns: I },
  mlxk_split: { args: [P, P, I, P, I, I, P], returns: I },
  mlxk_slice: { args: [P, P, P, P, P, I, P], returns: I },
  mlxk_slice_update: { args: [P, P, P, P, P, P, I, P], returns: I },
  mlxk_slice_dynamic: { args: [P, P, P, P, I, P, I, P], returns: I },
  mlxk_slice_update_dynamic: { args: [P, P, P, P, P, I, P], returns: I },
  mlxk_take: { args: [P, P, P, I, B, P], returns: I },
  mlxk_take_along_axis: { args: [P, P, P, I, P], returns: I },
  mlxk_put_along_axis: { args: [P, P, P, P, I, P], returns: I },
  mlxk_view: { args: [P, P, I, P], returns: I },
  // quant.cpp
  mlxk_quantize: { args: [P, P, I, I, I, P], returns: I },
  mlxk_dequantize: { args: [P, P, P, P, I, I, I, I, P], returns: I },
  mlxk_quantized_matmul: { args: [P, P, P, P, P, B, I, I, I, P], returns: I },
  mlxk_gather_qmm: { args: [P, P, P, P, P, P, P, B, I, I, I, B, P], returns: I },
  mlxk_gather_mm: { args: [P, P, P, P, P, B, P], returns: I },
  mlxk_random_seed: { args: [U64], returns: I },
  mlxk_random_key: { args: [P, U64], returns: I },
  mlxk_random_split: { args: [P, P, I, P], returns: I },
  mlxk_random_categorical: { args: [P, P, I, I, P, P], returns: I },
  mlxk_random_uniform: { args: [P, P, P, P, I, I, P, P], returns: I },
  mlxk_random_normal: { args: [P, P, I, I, F, F, P, P], returns: I },
  // fast.cpp
  mlxk_fast_rms_norm: { args: [P, P, P, F, P], returns: I },
  mlxk_fast_layer_norm: { args: [P, P, P, P, F, P], returns: I },
  mlxk_fast_rope: { args: [P, P, I, B, B, F, F, I, P, P, P], returns: I },
  mlxk_fast_sdpa: { args: [P, P, P, P, F, I, P, P, P], returns: I },
  // kernels/*.cpp: our CPU kernels as MLX primitives (kernels.ts)
  mlxk_kernels_available: { args: [], returns: I }, mlxk_kernels_threads: { args: [], returns: I },
  mlxk_kernels_force_scalar: { args: [I], returns: I },
  mlxk_fast_quantized_matmul: { args: [P, P, P, P, P, B, I, I, I, P], returns: I },
  mlxk_kernel_rms_norm: { args: [P, P, P, F, P], returns: I },
  mlxk_kernel_rope: { args: [P, P, I, B, B, F, F, I, P, P, P], returns: I },
  mlxk_kernel_sdpa: { args: [P, P, P, P, F, I, P, P, P], returns: I },
  mlxk_kernel_rope_rows: { args: [P, P, I, B, B, F, F, P, I, P, P], returns: I },
  mlxk_kernel_sdpa_rows: { args: [P, P, P, P, F, P, I, P], returns: I },
  mlxk_kernel_sdpa_keys: { args: [P, P, P, P, F, P, I, P], returns: I },
  mlxk_kernel_swiglu: { args: [P, P, P, P], returns: I },
  mlxk_kernel_bias_act: { args: [P, P, P, I, P], returns: I },
  mlxk_fast_linear: { args: [P, P, P, P], returns: I },
  mlxk_kernel_gated_delta: { args: [P, P, P, P, P, P, P, P], returns: I },
  mlxk_kernel_conv_silu: { args: [P, P, P, P], returns: I },
  // io.cpp
  mlxk_load_safetensors: { args: [P, P, P], returns: I },
  mlxk_load_gguf: { args: [P, P, P], returns: I },
  mlxk_map_free: { args: [P], returns: V },
  mlxk_map_size: { args: [P], returns: I },
  mlxk_map_key: { args: [P, I], returns: P },
  mlxk_map_array: { args: [P, P, I], returns: I },
  mlxk_map_meta_size: { args: [P], returns: I },
  mlxk_map_meta_key: { args: [P, I], returns: P },
  mlxk_map_meta_kind: { args: [P, I], returns: I },
  mlxk_map_meta_string: { args: [P, I], returns: P },
  mlxk_map_meta_array: { args: [P, P, I], returns: I },
  mlxk_map_meta_strings_size: { args: [P, I], returns: I },
  mlxk_map_meta_strings_at: { args: [P, I, I], returns: P },
  mlxk_save_safetensors: { args: [P, P, P, I, P, I], returns: I },
  // distributed.cpp
  mlxk_distributed_is_available: { args: [P], returns: I },
  mlxk_distributed_init: { args: [P, P, B], returns: I },
  mlxk_group_free: { args: [P], returns: V },
  mlxk_group_rank: { args: [P], returns: I },
  mlxk_group_size: { args: [P], returns: I },
  mlxk_all_sum: { args: [P, P, P, P], returns: I },
  mlxk_all_gather: { args: [P, P, P, P], returns: I },
  mlxk_all_max: { args: [P, P, P, P], returns: I },
  mlxk_send: { args: [P, P, I, P, P], returns: I },
  mlxk_recv: { args: [P, P, I, I, I, P, P], returns: I },
  mlxk_recv_like: { args: [P, P, I, P, P], returns: I },
} as const;

function load(path: string) {
  return dlopen(path, DEFS).symbols;
}
export type Symbols = ReturnType<typeof load>;

/** Thrown by any failing MLX call; carries MLX's own message. Type `execution_error` (HTTP 500, exit 1). */
export class MlxError extends MlxkError {
  readonly op: string;
  constructor(op: string, message: string) {
    super("execution_error", message);
    this.name = "MlxError";
    this.op = op;
  }
}

export interface MlxAvailability {
  available: boolean;
  /** Why MLX cannot be used (installer status or dlopen error); absent when available. */
  reason?: string;
  shim?: string;
  mlxVersion?: string;
}

let symbols: Symbols | null = null;
let loadError: string | null = null;
let loadFailed = false;

function explainMissing(env: Env): string {
  const status = readInstallStatus();
  if (status && !status.ok && status.reason) return `MLX runtime not installed: ${status.reason}`;
  return `MLX shim not found (looked in ${shimCandidates(env).join(", ")}); \`mlxk run\`/\`mlxk server\` set it up on first use, \`mlxk doctor\` shows what is missing`;
}

function tryLoad(env: Env): Symbols | null {
  if (symbols || loadFailed) return symbols;
  const shim = findShim(env);
  if (!shim) {
    // not sticky: a first-use setup (src/mlx/setup.ts) may put one there later in this process
    loadError = explainMissing(env);
    return null;
  }
  try {
    symbols = load(shim);
    shimPath = shim;
  } catch (e) {
    const status = readInstallStatus();
    const hint = status && !status.ok && status.reason ? ` (installer: ${status.reason})` : "";
    loadFailed = true;
    loadError = `cannot load ${shim}: ${e instanceof Error ? e.message : String(e)}${hint}`;
  }
  return symbols;
}
let shimPath: string | undefined;

/** Whether MLX can be used, and if not why; never throws. Loads the shim on first call. */
export function mlxAvailability(env: Env = process.env): MlxAvailability {
  const s = tryLoad(env);
  if (!s) return { available: false, reason: loadError ?? "unknown" };
  return { available: true, shim: shimPath, mlxVersion: new CString(s.mlxk_mlx_version() as never).toString() };
}

/**
 * Symbols added to the shim after this file's table, bound on their own so a shim built before them (bench
 * --baseline-shim) still loads: a lookup done once, on first use; null when MLX is unavailable or the shim lacks them.
 */
export function laterSymbols<D extends Record<string, FFIFunction>>(defs: D): () => ReturnType<typeof dlopen<D>>["symbols"] | null {
  // the library object is held for the process lifetime: the symbols' trampolines belong to it
  let held: ReturnType<typeof dlopen<D>> | null | undefined;
  return () => {
    if (held === undefined) {
      held = null;
      const shim = mlxAvailability().shim;
      try {
        if (shim) held = dlopen(shim, defs);
      } catch {
        held = null;
      }
    }
    return held?.symbols ?? null;
  };
}

/** The loaded symbols; throws MlxkError(mlx_unavailable) with the reason when MLX cannot be loaded. */
export function lib(): Symbols {
  if (symbols) return symbols;
  const s = tryLoad(process.env);
  if (!s) throw new MlxkError("mlx_unavailable", loadError ?? "MLX unavailable");
  return s;
}

/** Turn a non-zero return code into MlxError with the shim's thread-local message. */
export function fail(op: string): never {
  const msg = new CString(lib().mlxk_last_error() as never).toString();
  throw new MlxError(op, msg || `${op} failed`);
}

// ---- scratch buffers (safe to reuse: FFI calls are synchronous and never call back into JS) ----
// Each sits on its own ArrayBuffer: the storage of a small "fast" typed array can move after ptr()
// was taken (observed with Bun 1.4.5: the C side then wrote to stale memory and the process crashed).
const scratch = <T>(make: (b: ArrayBuffer) => T, bytes: number): T => make(new ArrayBuffer(bytes));
const OUT = scratch((b) => new Uint32Array(b), 64);
export const OUT_PTR = ptr(OUT);
/** Read the i-th pointer written to OUT (little-endian lo/hi words → Number; pointers fit in 53 bits). */
export function outPtr(i = 0): number {
  return OUT[2 * i]! + OUT[2 * i + 1]! * 4294967296;
}
const F64 = scratch((b) => new Float64Array(b), 8);
export const F64_PTR = ptr(F64);
export const f64Out = (): number => F64[0]!;

/** Three independent int-list slots (slice needs start/stop/strides at once). */
const INTS = [0, 1, 2].map(() => scratch((b) => new Int32Array(b), 256));
const INT_PTRS = INTS.map((a) => ptr(a));
export function ints(list: readonly number[], slot = 0): number {
  let buf = INTS[slot]!;
  if (list.length > buf.length) {
    buf = INTS[slot] = scratch((b) => new Int32Array(b), list.length * 8);
    INT_PTRS[slot] = ptr(buf);
  }
  for (let i = 0; i < list.length; i++) buf[i] = list[i]!;
  return INT_PTRS[slot]!;
}

let handleBuf = scratch((b) => new Uint32Array(b), 256);
let handleBufPtr = ptr(handleBuf);
/** Pack handles into a C `void*[]` in a reused buffer; returns its address. */
export function handles(hs: readonly number[]): number {
  if (hs.length * 2 > handleBuf.length) {
    handleBuf = scratch((b) => new Uint32Array(b), hs.length * 16);
    handleBufPtr = ptr(handleBuf);
  }
  for (let i = 0; i < hs.length; i++) {
    const h = hs[i]!;
    handleBuf[2 * i] = h % 4294967296;
    handleBuf[2 * i + 1] = Math.floor(h / 4294967296);
  }
  return handleBufPtr;
}

/** NUL-terminated UTF-8 for `const char*` args. */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

/** Read a `const char*` result (null → null). */
export function readCString(p: number | null): string | null {
  return p ? new CString(p as never).toString() : null;
}

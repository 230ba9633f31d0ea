/**
 * Our own CPU kernels (mlx-c/src/kernels/: AVX2/FMA, one thread pool) exposed as MLX ops.
 * Drop-ins with the same arguments and results (within f32 rounding) as the MLX functions they replace:
 * `fastQuantizedMatmul` (quantizedMatmul), `fastRmsNorm`, `fastRope`, `fastScaledDotProductAttention`
 * (mx.fast.*), `fastSwiglu` (multiply(silu(gate), up)), `fastLinear` (float x·wᵀ). They use our kernels when the shim has them, the CPU supports them and MLXK_KERNELS is not 0;
 * the shim itself falls back to MLX's op for GPU streams and unsupported cases, so callers never branch.
 * `kernelGatedDelta` / `kernelConvSilu` (Gated DeltaNet) have no MLX twin here: they return null when the
 * kernels cannot run (off, unavailable, not float32) and the model falls back to its MLX-op path.
 */
import { FFIType, ptr } from "bun:ffi";
import { type Env, kernelsEnabled as envKernelsEnabled } from "../env.ts";
import { Array, array, Dtype } from "./array.ts";
import { fail, handles, laterSymbols, lib, mlxAvailability, OUT_PTR, type Symbols } from "./ffi.ts";
import { add, gelu, geluApprox, matmul, multiply, relu, result, silu } from "./ops.ts";
import { swapaxes } from "./shape.ts";
import * as mxfast from "./fast.ts";
import { type QuantMode, type QuantOptions, quantizedMatmul } from "./quant.ts";
import { currentStream as S } from "./stream.ts";

const MODES: Record<QuantMode, number> = { affine: 0, mxfp4: 1, nvfp4: 2, mxfp8: 3 };

// undefined = not probed yet; null = MLX is missing or this CPU has no kernels. The symbols are ffi.ts's one table.
let syms: Symbols | null | undefined;
let override: boolean | null = null;
let fromEnv: boolean | undefined;

function symbols(): Symbols | null {
  if (syms !== undefined) return syms;
  syms = null;
  if (!mlxAvailability().available) return syms;
  const s = lib();
  if (s.mlxk_kernels_available() > 0) syms = s;
  return syms;
}

// ISA / int8 / thread-policy controls, bound apart from ffi.ts's table: a shim built before them still loads
// and runs its kernels (bench/llama.ts --baseline-shim times one), it just has no controls.
const CONTROL_DEFS = {
  mlxk_kernels_isa: { args: [], returns: FFIType.i32 },
  mlxk_kernels_set_isa: { args: [FFIType.i32], returns: FFIType.i32 },
  mlxk_kernels_int8: { args: [FFIType.i32], returns: FFIType.i32 },
  mlxk_kernels_threads_for: { args: [FFIType.f64], returns: FFIType.i32 },
  mlxk_kernels_set_threads: { args: [FFIType.i32], returns: FFIType.i32 },
  mlxk_kernels_qmm_profile: { args: [FFIType.ptr], returns: FFIType.void },
  mlxk_kernels_qgemm_rows: { args: [FFIType.i32], returns: FFIType.i32 },
  mlxk_linear_pack: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  mlxk_fast_linear_packed: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
} as const;
// Added after CONTROL_DEFS: bound on their own so a shim from before them keeps its other controls.
const LOAD_DEFS = {
  mlxk_kernels_others_load: { args: [], returns: FFIType.f32 },
  mlxk_kernels_pin_others_load: { args: [FFIType.f32], returns: FFIType.f32 },
} as const;
const loadSymbols = laterSymbols(LOAD_DEFS);
function loadControls() {
  return symbols() !== null ? loadSymbols() : null;
}

/** Cores other processes kept busy lately, as the kernel thread policy sees it (Linux /proc; 0 elsewhere). */
export function othersLoad(): number {
  return loadControls()?.mlxk_kernels_others_load() ?? 0;
}

/** Tests: fix the other processes' load the policy sees (null: measure again). Returns the previous pin (-1: none). */
export function pinOthersLoad(cores: number | null): number {
  return loadControls()?.mlxk_kernels_pin_others_load(cores ?? -1) ?? -1;
}
// The decode batch's buffer composition (kernels/kv_compose.cpp), bound on its own like LOAD_DEFS.
const COMPOSE_DEFS = {
  mlxk_kernel_kv_compose: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr],
    returns: FFIType.i32,
  },
} as const;
const composeSymbols = laterSymbols(COMPOSE_DEFS);
const ARGMAX_DEFS = { mlxk_kernel_argmax_rows: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } } as const;
const argmaxSymbols = laterSymbols(ARGMAX_DEFS);

/**
 * argmax(x, -1) as uint32, exactly MLX's (the first NaN of a row if any, else the first index of its maximum),
 * vectorised and on the pool for float32 rows; null where our kernels cannot run (use mx.argmax).
 */
export function kernelArgmaxRows(x: Array): Array | null {
  if (!kernelsEnabled() || symbols() === null) return null;
  const s = argmaxSymbols();
  if (!s) return null;
  return result(s.mlxk_kernel_argmax_rows(OUT_PTR as never, x.handle as never, S() as never), "argmax_rows");
}

/**
 * A decode batch's buffer [B, H, cap, D] from `srcs` ([·, H, ·, D], one dtype): output row b is source plan[4b],
 * batch row plan[4b+1], positions [plan[4b+2], +plan[4b+3]) written at [idx - len, idx), zeros before, positions
 * from idx on left as allocated (the batch writes each before reading it). Null where our kernels cannot run
 * (off, unavailable, a shim without it): compose with MLX ops then.
 */
export function kernelKvCompose(srcs: readonly Array[], plan: Int32Array, idx: number, cap: number): Array | null {
  if (!kernelsEnabled() || symbols() === null) return null;
  const s = composeSymbols();
  if (!s) return null;
  const rc = s.mlxk_kernel_kv_compose(OUT_PTR as never, handles(srcs.map((a) => a.handle)) as never, srcs.length,
    ptr(plan) as never, plan.length / 4, idx, cap, S() as never);
  return result(rc, "kv_compose");
}

const controlSymbols = laterSymbols(CONTROL_DEFS);
function controls() {
  return symbols() !== null ? controlSymbols() : null;
}

/** Kernel ISA levels, lowest first ("none": MLX's ops are used). */
export type KernelIsa = "none" | "scalar" | "avx2" | "avx512";
const ISAS: readonly KernelIsa[] = ["none", "scalar", "avx2", "avx512"];

export interface KernelInfo {
  /** Best ISA of this CPU: "avx512" (AVX-512 F/BW/VL/DQ quantized matmul, AVX2 elsewhere), "avx2" (AVX2/FMA),
   * "scalar" (x86 without AVX2) or "none". */
  level: KernelIsa;
  /** The ISA in use: `level` capped by MLXK_ISA (or forceIsa). */
  isa: KernelIsa;
  /** Whether the opt-in int8-activation path (MLXK_INT8_ACT=1, AVX-512 VNNI) runs affine 4-bit matmuls. */
  int8: boolean;
  /** Whether fastQuantizedMatmul currently routes to the kernels (level ≠ none and not disabled). */
  enabled: boolean;
  /** Threads of the kernel pool (0 when unavailable); MLXK_THREADS pins it. */
  threads: number;
}

export function kernelInfo(env: Env = process.env): KernelInfo {
  const s = symbols();
  const c = controls();
  const lvl = s ? s.mlxk_kernels_available() : 0;
  return {
    level: ISAS[lvl] ?? "none",
    isa: ISAS[c ? c.mlxk_kernels_isa() : lvl] ?? "none",
    int8: c !== null && c.mlxk_kernels_int8(-1) === 1,
    enabled: s !== null && kernelsEnabled(env),
    threads: s ? s.mlxk_kernels_threads() : 0,
  };
}

/** Tests: run the kernels at `isa` (capped at what the CPU has; null = back to MLXK_ISA / the best). Returns the previous ISA. */
export function forceIsa(isa: Exclude<KernelIsa, "none"> | null): KernelIsa {
  const s = controls();
  if (!s) return "none";
  return ISAS[s.mlxk_kernels_set_isa(isa === null ? 0 : ISAS.indexOf(isa))] ?? "none";
}

/** Whether this CPU has the int8-activation path (AVX-512 VNNI). */
export function int8Available(): boolean {
  const s = controls();
  return s !== null && s.mlxk_kernels_int8(-1) >= 0;
}

/**
 * Tests and benchmarks: switch the int8-activation path (MLXK_INT8_ACT=1 sets it at start). On Intel CPUs the
 * setting leaves affine matmuls on the f32 tiles (faster there, qmm.cpp); `affineEverywhere` runs the affine
 * int8 tiles on every CPU. Returns the previous setting.
 */
export function setInt8Activations(on: boolean, o: { affineEverywhere?: boolean } = {}): boolean {
  const s = controls();
  return s ? s.mlxk_kernels_int8(on ? (o.affineEverywhere ? 2 : 1) : 0) === 1 : false;
}

/**
 * Tests and benchmarks: the rows of x from which quantized matmuls (affine and K-quant) run as a
 * dequantized-panel GEMM (0 = never, null = back to MLXK_QGEMM_ROWS / the defaults). Returns the previous setting (-1 = the defaults).
 */
export function setQgemmRows(n: number | null): number {
  const s = controls();
  return s ? s.mlxk_kernels_qgemm_rows(n === null ? -1 : n) : 0;
}

/** The kernel thread policy: threads an op of `work` multiply-adds gets (1 = inline). */
export function kernelThreadsFor(work: number): number {
  const s = controls();
  return s ? s.mlxk_kernels_threads_for(work) : 0;
}

/** With MLXK_KERNEL_PROFILE=1: calls, wall ms and multiply-adds of the quantized matmul so far (zeros otherwise). */
export function qmmProfile(): { calls: number; ms: number; macs: number } {
  const s = controls();
  const out = new Float64Array(3);
  if (s) s.mlxk_kernels_qmm_profile(ptr(out) as never);
  return { calls: out[0]!, ms: out[1]!, macs: out[2]! };
}

/** Tests: pin every op to n threads (0 = back to MLXK_THREADS / the policy). Returns the previous pin. */
export function pinKernelThreads(n: number): number {
  const s = controls();
  return s ? s.mlxk_kernels_set_threads(n) : 0;
}

/** MLXK_KERNELS (read once) unless setKernelsEnabled overrode it. */
export function kernelsEnabled(env: Env = process.env): boolean {
  if (override !== null) return override;
  fromEnv ??= envKernelsEnabled(env);
  return fromEnv;
}

/** In-process A/B switch for tests and benchmarks; null returns to MLXK_KERNELS. */
export function setKernelsEnabled(on: boolean | null): void {
  override = on;
}

/** Tests only: run the portable scalar kernels even on AVX2 machines. Returns the previous setting. */
export function forceScalarKernels(on: boolean): boolean {
  const s = symbols();
  return s ? s.mlxk_kernels_force_scalar(on ? 1 : 0) !== 0 : false;
}

/** Drop-in for quantizedMatmul that uses our CPU kernel when available and enabled. */
export function fastQuantizedMatmul(
  x: Array,
  wq: Array,
  scales: Array,
  biases: Array | null,
  o: QuantOptions & { transpose?: boolean } = {},
): Array {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return quantizedMatmul(x, wq, scales, biases, o);
  const mode = MODES[o.mode ?? "affine"];
  if (mode === undefined) throw new TypeError(`unknown quantization mode '${o.mode}'`);
  return result(
    s.mlxk_fast_quantized_matmul(OUT_PTR as never, x.handle as never, wq.handle as never, scales.handle as never,
      (biases?.handle ?? 0) as never, o.transpose ?? true, o.groupSize ?? 0, o.bits ?? 0, mode, S() as never),
    "fast_quantized_matmul",
  );
}

/** Drop-in for mx.fast.rmsNorm (one fused op instead of MLX's 11-node CPU composite). */
export function fastRmsNorm(x: Array, weight: Array | null, eps: number): Array {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return mxfast.rmsNorm(x, weight, eps);
  return result(s.mlxk_kernel_rms_norm(OUT_PTR as never, x.handle as never, (weight?.handle ?? 0) as never, eps, S() as never), "fast.rms_norm");
}

/** Drop-in for mx.fast.rope (one fused op instead of MLX's 29-node CPU composite). */
export function fastRope(x: Array, o: mxfast.RopeOptions): Array {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return mxfast.rope(x, o);
  if (o.base === undefined && !o.freqs) throw new TypeError("fast.rope: give base or freqs");
  const off = o.offset ?? 0;
  return result(
    s.mlxk_kernel_rope(OUT_PTR as never, x.handle as never, o.dims, o.traditional ?? false, o.base !== undefined,
      o.base ?? 0, o.scale ?? 1, typeof off === "number" ? off : 0, (typeof off === "number" ? 0 : off.handle) as never,
      (o.freqs?.handle ?? 0) as never, S() as never),
    "fast.rope",
  );
}

/** Drop-in for mx.fast.scaledDotProductAttention (fused for no mask / causal; mask arrays and sinks go to MLX). */
export function fastScaledDotProductAttention(q: Array, k: Array, v: Array, o: mxfast.SdpaOptions): Array {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return mxfast.scaledDotProductAttention(q, k, v, o);
  const m = o.mask ?? null;
  const mode = m === null ? 0 : m === "causal" ? 1 : 2;
  return result(
    s.mlxk_kernel_sdpa(OUT_PTR as never, q.handle as never, k.handle as never, v.handle as never, o.scale, mode,
      (typeof m === "object" && m !== null ? m.handle : 0) as never, (o.sinks?.handle ?? 0) as never, S() as never),
    "fast.scaled_dot_product_attention",
  );
}

/** MLX's rope with one offset per batch entry (the fallback of fastRopeRows; GPU). */
export function mlxRopeRows(x: Array, o: Omit<mxfast.RopeOptions, "offset">, offsets: readonly number[]): Array {
  const off = array(Int32Array.from(offsets), { shape: [offsets.length], dtype: Dtype.int32 });
  try {
    return mxfast.rope(x, { ...o, offset: off });
  } finally {
    off.dispose();
  }
}

/** MLX's attention where batch entry b sees keys [from, to) = range(b, Lk), the rest masked out. */
function mlxSdpaRanges(q: Array, k: Array, v: Array, scale: number, n: number, range: (b: number, Lk: number) => [number, number]): Array {
  const Lk = k.shape[2]!;
  const keep = new Uint8Array(n * Lk);
  for (let b = 0; b < n; b++) {
    const [from, to] = range(b, Lk);
    keep.fill(1, b * Lk + from, b * Lk + to);
  }
  const mask = array(keep, { shape: [n, 1, 1, Lk], dtype: Dtype.bool });
  try {
    return mxfast.scaledDotProductAttention(q, k, v, { scale, mask });
  } finally {
    mask.dispose();
  }
}

/** MLX's attention with the padding before each row's start masked out (the fallback of fastSdpaRows; GPU). */
export function mlxSdpaRows(q: Array, k: Array, v: Array, scale: number, starts: readonly number[]): Array {
  return mlxSdpaRanges(q, k, v, scale, starts.length, (b, Lk) => [starts[b]!, Lk]);
}

/**
 * Rope of a decode batch x [B, H, L, D]: batch entry b at its own position offsets[b], each entry exactly as
 * fastRope rotates it alone (MLX's rope with an offset array where our kernels cannot run).
 */
export function fastRopeRows(x: Array, o: Omit<mxfast.RopeOptions, "offset">, offsets: readonly number[]): Array {
  if (o.base === undefined && !o.freqs) throw new TypeError("fast.rope: give base or freqs");
  const s = symbols();
  const offs = Int32Array.from(offsets);
  if (!s || !kernelsEnabled()) return mlxRopeRows(x, o, offsets);
  return result(
    s.mlxk_kernel_rope_rows(OUT_PTR as never, x.handle as never, o.dims, o.traditional ?? false, o.base !== undefined,
      o.base ?? 0, o.scale ?? 1, ptr(offs) as never, offs.length, (o.freqs?.handle ?? 0) as never, S() as never),
    "fast.rope_rows",
  );
}

/**
 * Attention of a decode batch, q [B, Hq, 1, D] over a left-padded cache k, v [B, Hkv, Lk, D]: entry b sees keys
 * [starts[b], Lk), computed exactly as fastScaledDotProductAttention computes that entry alone (a masked MLX
 * attention where our kernels cannot run).
 */
export function fastSdpaRows(q: Array, k: Array, v: Array, scale: number, starts: readonly number[]): Array {
  return kernelSdpaRanges("mlxk_kernel_sdpa_rows", "fast.sdpa_rows", q, k, v, scale, starts) ?? mlxSdpaRows(q, k, v, scale, starts);
}

/** Our attention over per-entry key ranges (`per`: starts for sdpa_rows, lengths for sdpa_keys); null without kernels. */
function kernelSdpaRanges(sym: "mlxk_kernel_sdpa_rows" | "mlxk_kernel_sdpa_keys", what: string, q: Array, k: Array, v: Array, scale: number, per: readonly number[]): Array | null {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return null;
  const a = Int32Array.from(per);
  return result(s[sym](OUT_PTR as never, q.handle as never, k.handle as never, v.handle as never, scale, ptr(a) as never, a.length, S() as never), what);
}

/** MLX's attention with the keys from each entry's length on masked out (the fallback of fastSdpaKeys; GPU). */
export function mlxSdpaKeys(q: Array, k: Array, v: Array, scale: number, lens: readonly number[]): Array {
  return mlxSdpaRanges(q, k, v, scale, lens.length, (b) => [0, lens[b]!]);
}

/**
 * Attention of a right-padded encoder batch q [B, H, L, D] over k, v [B, Hkv, Lk, D]: entry b sees keys
 * [0, lens[b]) (MLX's attention with an array mask where our kernels cannot run).
 */
export function fastSdpaKeys(q: Array, k: Array, v: Array, scale: number, lens: readonly number[]): Array {
  return kernelSdpaRanges("mlxk_kernel_sdpa_keys", "fast.sdpa_keys", q, k, v, scale, lens) ?? mlxSdpaKeys(q, k, v, scale, lens);
}

/** Drop-in for multiply(silu(gate), up): one fused op with a vectorised exp. */
export function fastSwiglu(gate: Array, up: Array): Array {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return multiply(silu(gate), up);
  return result(s.mlxk_kernel_swiglu(OUT_PTR as never, gate.handle as never, up.handle as never, S() as never), "swiglu");
}

/** Activations fastBiasAct fuses (transformers' ACT2FN names: gelu = erf, gelu_tanh = gelu_new/gelu_pytorch_tanh). */
export type BiasAct = "identity" | "gelu" | "gelu_tanh" | "relu" | "silu";
const ACTS: Record<BiasAct, number> = { identity: 0, gelu: 1, gelu_tanh: 2, relu: 3, silu: 4 };

/** act(x + bias) from MLX's ops. */
export function mlxBiasAct(x: Array, bias: Array | null, act: BiasAct): Array {
  const y = bias ? add(x, bias) : x;
  return act === "gelu" ? gelu(y) : act === "gelu_tanh" ? geluApprox(y) : act === "relu" ? relu(y) : act === "silu" ? silu(y) : y;
}

/** act(x + bias) in one pass (encoder MLPs: MLX's CPU erf-GELU is the slow part there); MLX's ops otherwise. */
export function fastBiasAct(x: Array, bias: Array | null, act: BiasAct): Array {
  const code = ACTS[act];
  if (code === undefined) throw new TypeError(`unknown activation '${act}'`);
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return mlxBiasAct(x, bias, act);
  return result(s.mlxk_kernel_bias_act(OUT_PTR as never, x.handle as never, (bias?.handle ?? 0) as never, code, S() as never), "bias_act");
}

/**
 * Drop-in for matmul(x, swapaxes(w, -1, -2)) with float32 x [..., K] and w [N, K] (a float Linear): our AVX2 /
 * AVX-512 kernels, where MLX's CPU matmul runs through its wheel's reference BLAS. Other dtypes and GPU fall back
 * to MLX. With `pack` (packLinear(w)), inputs of many rows run the packed outer-product kernel (gemm_packed.cpp).
 */
export function fastLinear(x: Array, w: Array, pack: Array | null = null): Array {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return matmul(x, swapaxes(w, -1, -2));
  const c = pack ? controls() : null;
  if (c && pack) return result(c.mlxk_fast_linear_packed(OUT_PTR as never, x.handle as never, w.handle as never, pack.handle as never, S() as never), "fast_linear_packed");
  return result(s.mlxk_fast_linear(OUT_PTR as never, x.handle as never, w.handle as never, S() as never), "fast_linear");
}

/**
 * The pack fastLinear reads for w (float32 [N, K]): [ceil(N/32), K, 32], as much memory again as w, lazy like any
 * op; the caller owns it and frees it with w. Null where the kernels cannot use one (off, no kernels, another
 * dtype, a shim without the packed kernel).
 */
export function packLinear(w: Array): Array | null {
  const c = kernelsEnabled() && symbols() ? controls() : null;
  if (!c || w.dtype !== Dtype.float32 || w.shape.length !== 2 || w.size === 0) return null;
  return result(c.mlxk_linear_pack(OUT_PTR as never, w.handle as never, S() as never), "linear_pack");
}

// Two output handles (gated delta: y, state); own buffer, so OUT_PTR users are never clobbered.
const OUTS = new Uint32Array(new ArrayBuffer(16));
const OUTS_PTR = ptr(OUTS);
const f32 = (...as: Array[]) => as.every((a) => a.dtype === Dtype.float32);

/**
 * The gated delta rule over T tokens (models/gated_delta.ts gatedDeltaOps) in one primitive:
 * q, k [B,T,Hk,Dk], v [B,T,Hv,Dv], g, beta [B,T,Hv], state [B,Hv,Dv,Dk] → [y, new state]; null when the
 * kernels cannot run (the caller uses MLX's ops).
 */
export function kernelGatedDelta(q: Array, k: Array, v: Array, g: Array, beta: Array, state: Array): [Array, Array] | null {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s || !f32(q, k, v, g, beta, state)) return null;
  const rc = s.mlxk_kernel_gated_delta(OUTS_PTR as never, q.handle as never, k.handle as never, v.handle as never, g.handle as never,
    beta.handle as never, state.handle as never, S() as never);
  if (rc !== 0) fail("gated_delta");
  const at = (i: number) => OUTS[2 * i]! + OUTS[2 * i + 1]! * 4294967296;
  return [new Array(at(0)), new Array(at(1))];
}

/** silu(depthwise causal conv): x [B, L, C], weight [C, K, 1] → [B, L-K+1, C]; null when the kernels cannot run. */
export function kernelConvSilu(x: Array, w: Array): Array | null {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s || !f32(x, w)) return null;
  return result(s.mlxk_kernel_conv_silu(OUT_PTR as never, x.handle as never, w.handle as never, S() as never), "conv_silu");
}

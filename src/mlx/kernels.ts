/**
 * Our own CPU kernels (mlx-c/src/kernels/: AVX2/FMA, one thread pool) exposed as MLX ops.
 * Drop-ins with the same arguments and results (within f32 rounding) as the MLX functions they replace:
 * `fastQuantizedMatmul` (quantizedMatmul), `fastRmsNorm`, `fastRope`, `fastScaledDotProductAttention`
 * (mx.fast.*), `fastSwiglu` (multiply(silu(gate), up)), `fastLinear` (float x·wᵀ). They use our kernels when the shim has them, the CPU supports them and MLXK_KERNELS is not 0;
 * the shim itself falls back to MLX's op for GPU streams and unsupported cases, so callers never branch.
 * `kernelGatedDelta` / `kernelConvSilu` (Gated DeltaNet) have no MLX twin here: they return null when the
 * kernels cannot run (off, unavailable, not float32) and the model falls back to its MLX-op path.
 */
import { ptr } from "bun:ffi";
import { type Env, kernelsEnabled as envKernelsEnabled } from "../env.ts";
import { Array, Dtype } from "./array.ts";
import { fail, lib, mlxAvailability, OUT_PTR, type Symbols } from "./ffi.ts";
import { matmul, multiply, result, silu } from "./ops.ts";
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

export interface KernelInfo {
  /** "avx2" (AVX2/FMA), "scalar" (x86 without AVX2) or "none" (MLX's ops are used). */
  level: "avx2" | "scalar" | "none";
  /** Whether fastQuantizedMatmul currently routes to the kernels (level ≠ none and not disabled). */
  enabled: boolean;
  /** Threads of the kernel pool (0 when unavailable). */
  threads: number;
}

export function kernelInfo(env: Env = process.env): KernelInfo {
  const s = symbols();
  const lvl = s ? s.mlxk_kernels_available() : 0;
  return {
    level: lvl === 2 ? "avx2" : lvl === 1 ? "scalar" : "none",
    enabled: s !== null && kernelsEnabled(env),
    threads: s ? s.mlxk_kernels_threads() : 0,
  };
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

/** Drop-in for multiply(silu(gate), up): one fused op with a vectorised exp. */
export function fastSwiglu(gate: Array, up: Array): Array {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return multiply(silu(gate), up);
  return result(s.mlxk_kernel_swiglu(OUT_PTR as never, gate.handle as never, up.handle as never, S() as never), "swiglu");
}

/**
 * Drop-in for matmul(x, swapaxes(w, -1, -2)) with float32 x [..., K] and w [N, K] (a float Linear): our AVX2
 * kernel, where MLX's CPU matmul runs through its wheel's reference BLAS. Other dtypes and GPU fall back to MLX.
 */
export function fastLinear(x: Array, w: Array): Array {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return matmul(x, swapaxes(w, -1, -2));
  return result(s.mlxk_fast_linear(OUT_PTR as never, x.handle as never, w.handle as never, S() as never), "fast_linear");
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

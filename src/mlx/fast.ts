/** Fused kernels (mx.fast): RMSNorm, LayerNorm, RoPE, scaled dot-product attention. */
import type { Array } from "./array.ts";
import { lib, OUT_PTR } from "./ffi.ts";
import { result } from "./ops.ts";
import { currentStream as S } from "./stream.ts";

/** x / sqrt(mean(x², -1) + eps) · weight (weight null = 1). */
export function rmsNorm(x: Array, weight: Array | null, eps: number): Array {
  return result(lib().mlxk_fast_rms_norm(OUT_PTR as never, x.handle as never, (weight?.handle ?? 0) as never, eps, S() as never), "fast.rms_norm");
}

export function layerNorm(x: Array, weight: Array | null, bias: Array | null, eps: number): Array {
  return result(
    lib().mlxk_fast_layer_norm(OUT_PTR as never, x.handle as never, (weight?.handle ?? 0) as never, (bias?.handle ?? 0) as never, eps, S() as never),
    "fast.layer_norm",
  );
}

export interface RopeOptions {
  /** Rotate the first `dims` features of the last axis. */
  dims: number;
  /** true: rotate consecutive pairs (x0,x1); false (default): halves (x_i, x_{i+dims/2}). */
  traditional?: boolean;
  /** θ base (e.g. 10000); give either base or freqs. */
  base?: number;
  /** Custom inverse frequencies [dims/2] (llama3 / yarn / longrope scaling). */
  freqs?: Array | null;
  scale?: number;
  /** Position of the first token: a number, or a scalar int array (no graph rebuild when it changes). */
  offset?: number | Array;
}

/** Rotary position embedding over the second-to-last axis (positions) of x [..., L, D]. */
export function rope(x: Array, o: RopeOptions): Array {
  if (o.base === undefined && !o.freqs) throw new TypeError("fast.rope: give base or freqs");
  const off = o.offset ?? 0;
  return result(
    lib().mlxk_fast_rope(OUT_PTR as never, x.handle as never, o.dims, o.traditional ?? false, o.base !== undefined,
      o.base ?? 0, o.scale ?? 1, typeof off === "number" ? off : 0, (typeof off === "number" ? 0 : off.handle) as never,
      (o.freqs?.handle ?? 0) as never, S() as never),
    "fast.rope",
  );
}

export interface SdpaOptions {
  /** Usually 1/sqrt(head_dim). */
  scale: number;
  /** "causal", an additive float mask / boolean keep-mask broadcastable to [B, H, Lq, Lk], or none. */
  mask?: "causal" | Array | null;
  /** Per-head attention sinks [H] (gpt-oss). */
  sinks?: Array | null;
}

/** softmax(q·kᵀ·scale + mask)·v with q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D] (grouped-query when Hq > Hkv). */
export function scaledDotProductAttention(q: Array, k: Array, v: Array, o: SdpaOptions): Array {
  const m = o.mask ?? null;
  const mode = m === null ? 0 : m === "causal" ? 1 : 2;
  return result(
    lib().mlxk_fast_sdpa(OUT_PTR as never, q.handle as never, k.handle as never, v.handle as never, o.scale, mode,
      (typeof m === "object" && m !== null ? m.handle : 0) as never, (o.sinks?.handle ?? 0) as never, S() as never),
    "fast.scaled_dot_product_attention",
  );
}

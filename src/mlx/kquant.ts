/**
 * GGUF K-quant weights kept packed (mlx-c/src/kernels/kquant*.cpp) and mixture-of-experts gather_qmm in our
 * kernels (gather.cpp), as MLX ops.
 * - `kquantMatmul(x, w, type)`: x · dequant(w)ᵀ for w the file's blocks as uint8 [N, K/256·block bytes]; our
 *   kernel when kernels are enabled, else the exact float weights per call and MLX's matmul (same values).
 * - `kquantDequantize(w, type)`: those rows as float32 (llama.cpp's dequantize_row_q*_K), for embeddings.
 * - `kernelGatherQmm(...)`: gather_qmm over stacked experts (MLX affine/mxfp4 or K-quant), or null when the
 *   kernels are off or do not take the case (callers keep MLX's gather_qmm).
 * - `kquantInt8(on)`: the opt-in int8-activation path (MLXK_INT8_ACT=1), as llama.cpp computes K-quant dots.
 * All are CPU ops; the GGUF loader widens K-quants on load where they cannot run (kquantPackable()).
 */
import { dlopen, FFIType } from "bun:ffi";
import { Array } from "./array.ts";
import { fail, mlxAvailability, OUT_PTR, outPtr } from "./ffi.ts";
import { kernelInfo, kernelsEnabled } from "./kernels.ts";
import { result } from "./ops.ts";
import { currentStream as S } from "./stream.ts";

export type KQuantMode = "q4_k" | "q5_k" | "q6_k";
const KTYPES: Record<KQuantMode, number> = { q4_k: 0, q5_k: 1, q6_k: 2 };
/** Bytes of one 256-value block. */
export const KQUANT_BLOCK_BYTES: Record<KQuantMode, number> = { q4_k: 144, q5_k: 176, q6_k: 210 };

export function isKQuantMode(mode: string | undefined | null): mode is KQuantMode {
  return mode === "q4_k" || mode === "q5_k" || mode === "q6_k";
}

const P = FFIType.ptr;
const I = FFIType.i32;
const DEFS = {
  mlxk_kquant_matmul: { args: [P, P, P, I, I, P], returns: I },
  mlxk_kquant_dequantize: { args: [P, P, I, P], returns: I },
  mlxk_kernel_gather_qmm: { args: [P, P, P, P, P, P, I, I, I, I, P], returns: I },
  mlxk_kquant_int8: { args: [I], returns: I },
} as const;
// looked up apart, so a shim built before it (bench/llama.ts --baseline-shim) keeps the K-quant ops
const DECODE_DEFS = { mlxk_kquant_decode: { args: [I], returns: I } } as const;
let decodeLib: ReturnType<typeof dlopen<typeof DECODE_DEFS>> | null | undefined;
type Lib = ReturnType<typeof dlopen<typeof DEFS>>;
let lib: Lib | null | undefined;

function symbols(): Lib["symbols"] | null {
  if (lib !== undefined) return lib?.symbols ?? null;
  lib = null;
  const av = mlxAvailability();
  if (!av.available || !av.shim) return null;
  try {
    lib = dlopen(av.shim, DEFS);
  } catch {
    lib = null; // a shim built before these kernels
  }
  return lib?.symbols ?? null;
}

/** Whether K-quant weights can stay packed here (the shim has the K-quant ops and the CPU runs our kernels). */
export function kquantPackable(): boolean {
  return symbols() !== null && kernelInfo().level !== "none";
}

function need(): Lib["symbols"] {
  const s = symbols();
  if (!s) throw new Error("this MLX shim has no K-quant ops (rebuild it: bun scripts/install-mlx.ts)");
  return s;
}

/** `kernels` false: the exact float weights per call and MLX's matmul (the MLX-ops profile, kernels switched off). */
export function kquantMatmul(x: Array, w: Array, mode: KQuantMode, kernels = kernelsEnabled()): Array {
  return result(
    need().mlxk_kquant_matmul(OUT_PTR as never, x.handle as never, w.handle as never, KTYPES[mode], kernels ? 1 : 0, S() as never),
    "kquant_matmul",
  );
}

export function kquantDequantize(w: Array, mode: KQuantMode): Array {
  return result(need().mlxk_kquant_dequantize(OUT_PTR as never, w.handle as never, KTYPES[mode], S() as never), "kquant_dequantize");
}

/**
 * The opt-in int8-activation path of the K-quant kernels (MLXK_INT8_ACT=1 sets it at start): x rounded to int8
 * per 256 values as llama.cpp's q8_K, integer dot products. `on` null only reads it. Returns the previous setting.
 */
export function kquantInt8(on: boolean | null = null): boolean {
  const s = symbols();
  return s ? s.mlxk_kquant_int8(on === null ? -1 : on ? 1 : 0) === 1 : false;
}

export type KQuantDecode = "f32" | "bf16";
const DECODE_MODES: (KQuantDecode | null)[] = [null, "f32", "bf16"];

/**
 * The AVX-512 K-quant decode tiles (1..8 rows): "f32" (weights dequantized in registers, f32 FMAs; the default
 * on Intel) or "bf16" (x split into three bf16 pieces, vdpbf16ps; the default on AMD); MLXK_KQ_DECODE sets the
 * default. `mode` "auto" goes back to the default, null only reads. Returns the previous (or current) mode,
 * null where neither runs (no AVX-512 or an older shim); a mode the CPU lacks is ignored.
 */
export function kquantDecode(mode: KQuantDecode | "auto" | null = null): KQuantDecode | null {
  if (decodeLib === undefined) {
    decodeLib = null;
    const av = mlxAvailability();
    if (symbols() && av.shim) {
      try {
        decodeLib = dlopen(av.shim, DECODE_DEFS);
      } catch {
        decodeLib = null;
      }
    }
  }
  const s = decodeLib?.symbols;
  if (!s) return null;
  const code = mode === null ? -1 : mode === "auto" ? 0 : mode === "f32" ? 1 : 2;
  return DECODE_MODES[s.mlxk_kquant_decode(code)] ?? null;
}

const QMODES: Record<string, number> = { affine: 0, mxfp4: 1 };

/**
 * x [R, K] (R = tokens, each used by all k slots, or tokens·k), indices [..., k] → [..., k, N] through our
 * kernel; null when kernels are off or the case is not one it takes.
 */
export interface GatherQuant {
  groupSize: number;
  bits: number;
  mode: string;
}

export function kernelGatherQmm(x: Array, w: Array, scales: Array | null, biases: Array | null, indices: Array, q: GatherQuant): Array | null {
  const s = kernelsEnabled() ? symbols() : null;
  if (!s) return null;
  const kt = isKQuantMode(q.mode) ? KTYPES[q.mode] : -1;
  const qm = QMODES[q.mode];
  if (kt < 0 && qm === undefined) return null;
  const rc = s.mlxk_kernel_gather_qmm(OUT_PTR as never, x.handle as never, w.handle as never, (scales?.handle ?? 0) as never,
    (biases?.handle ?? 0) as never, indices.handle as never, q.groupSize, q.bits, qm ?? 0, kt, S() as never);
  if (rc !== 0) fail("gather_qmm");
  const h = outPtr();
  return h ? new Array(h) : null;
}

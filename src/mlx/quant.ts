/** Quantization (affine, mxfp4, nvfp4, mxfp8), quantized / gathered matmuls, and random numbers. */
import { Array, Dtype } from "./array.ts";
import { fail, ints, lib, OUT_PTR, outPtr } from "./ffi.ts";
import { result } from "./ops.ts";
import { currentStream as S } from "./stream.ts";

export type QuantMode = "affine" | "mxfp4" | "nvfp4" | "mxfp8";
const MODES: Record<QuantMode, number> = { affine: 0, mxfp4: 1, nvfp4: 2, mxfp8: 3 };
function modeCode(m: QuantMode | undefined): number {
  const c = MODES[m ?? "affine"];
  if (c === undefined) throw new TypeError(`unknown quantization mode '${m}'`);
  return c;
}

export interface QuantOptions {
  /** Default per mode: affine 64, mxfp4/mxfp8 32, nvfp4 16. */
  groupSize?: number;
  /** Default per mode: affine 4, fp modes 4/8. */
  bits?: number;
  mode?: QuantMode;
}

export interface Quantized {
  /** uint32, [..., in·bits/32], packed LSB-first. */
  wq: Array;
  scales: Array;
  /** null for the fp modes (they have no biases). */
  biases: Array | null;
}

/** Quantize along the last axis. */
export function quantize(w: Array, o: QuantOptions = {}): Quantized {
  const outs = new Uint32Array(6);
  if (lib().mlxk_quantize(outs as never, w.handle as never, o.groupSize ?? 0, o.bits ?? 0, modeCode(o.mode), S() as never) !== 0) fail("quantize");
  const at = (i: number): number => outs[2 * i]! + outs[2 * i + 1]! * 4294967296;
  const b = at(2);
  return { wq: new Array(at(0)), scales: new Array(at(1)), biases: b ? new Array(b) : null };
}

export function dequantize(wq: Array, scales: Array, biases: Array | null, o: QuantOptions & { dtype?: Dtype } = {}): Array {
  return result(
    lib().mlxk_dequantize(OUT_PTR as never, wq.handle as never, scales.handle as never, (biases?.handle ?? 0) as never,
      o.groupSize ?? 0, o.bits ?? 0, modeCode(o.mode), o.dtype ?? -1, S() as never),
    "dequantize",
  );
}

/** x @ dequantize(w)ᵀ (transpose=true, the Linear layout) without materializing the weights. */
export function quantizedMatmul(x: Array, wq: Array, scales: Array, biases: Array | null, o: QuantOptions & { transpose?: boolean } = {}): Array {
  return result(
    lib().mlxk_quantized_matmul(OUT_PTR as never, x.handle as never, wq.handle as never, scales.handle as never,
      (biases?.handle ?? 0) as never, o.transpose ?? true, o.groupSize ?? 0, o.bits ?? 0, modeCode(o.mode), S() as never),
    "quantized_matmul",
  );
}

export interface GatherOptions {
  lhsIndices?: Array | null;
  rhsIndices?: Array | null;
  sortedIndices?: boolean;
}

/** Quantized matmul with the weight matrix chosen per row by rhsIndices (mixture-of-experts). */
export function gatherQmm(x: Array, wq: Array, scales: Array, biases: Array | null, o: QuantOptions & GatherOptions & { transpose?: boolean } = {}): Array {
  return result(
    lib().mlxk_gather_qmm(OUT_PTR as never, x.handle as never, wq.handle as never, scales.handle as never,
      (biases?.handle ?? 0) as never, (o.lhsIndices?.handle ?? 0) as never, (o.rhsIndices?.handle ?? 0) as never,
      o.transpose ?? true, o.groupSize ?? 0, o.bits ?? 0, modeCode(o.mode), o.sortedIndices ?? false, S() as never),
    "gather_qmm",
  );
}

export function gatherMm(a: Array, b: Array, o: GatherOptions = {}): Array {
  return result(
    lib().mlxk_gather_mm(OUT_PTR as never, a.handle as never, b.handle as never, (o.lhsIndices?.handle ?? 0) as never,
      (o.rhsIndices?.handle ?? 0) as never, o.sortedIndices ?? false, S() as never),
    "gather_mm",
  );
}

/** mx.random: keys are uint32 [2] arrays; without a key the global (seedable) key sequence is used. */
export const random = {
  seed(seed: number): void {
    if (lib().mlxk_random_seed(seed as never) !== 0) fail("random.seed");
  },
  key(seed: number): Array {
    return result(lib().mlxk_random_key(OUT_PTR as never, seed as never), "random.key");
  },
  /** [num, 2] array of new keys. */
  split(key: Array, num = 2): Array {
    return result(lib().mlxk_random_split(OUT_PTR as never, key.handle as never, num, S() as never), "random.split");
  },
  /** Sample indices from unnormalized log-probabilities along `axis`. */
  categorical(logits: Array, o: { axis?: number; numSamples?: number; key?: Array | null } = {}): Array {
    return result(
      lib().mlxk_random_categorical(OUT_PTR as never, logits.handle as never, o.axis ?? -1, o.numSamples ?? 0,
        (o.key?.handle ?? 0) as never, S() as never),
      "random.categorical",
    );
  },
  uniform(o: { low?: number; high?: number; shape?: readonly number[]; dtype?: Dtype; key?: Array | null } = {}): Array {
    const L = lib();
    const shape = o.shape ?? [];
    const dt = o.dtype ?? Dtype.float32;
    if (L.mlxk_array_scalar(OUT_PTR as never, o.low ?? 0, dt) !== 0) fail("scalar");
    const lo = outPtr();
    if (L.mlxk_array_scalar(OUT_PTR as never, o.high ?? 1, dt) !== 0) {
      L.mlxk_array_free(lo as never);
      fail("scalar");
    }
    const hi = outPtr();
    try {
      return result(
        L.mlxk_random_uniform(OUT_PTR as never, lo as never, hi as never, ints(shape) as never, shape.length, dt,
          (o.key?.handle ?? 0) as never, S() as never),
        "random.uniform",
      );
    } finally {
      L.mlxk_array_free(lo as never);
      L.mlxk_array_free(hi as never);
    }
  },
  normal(o: { shape?: readonly number[]; dtype?: Dtype; loc?: number; scale?: number; key?: Array | null } = {}): Array {
    const shape = o.shape ?? [];
    return result(
      lib().mlxk_random_normal(OUT_PTR as never, ints(shape) as never, shape.length, o.dtype ?? Dtype.float32, o.loc ?? 0,
        o.scale ?? 1, (o.key?.handle ?? 0) as never, S() as never),
      "random.normal",
    );
  },
};

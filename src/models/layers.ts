/**
 * Building blocks shared by the model files: (quantized) Linear and Embedding, projections of one input that
 * may run side by side, RMSNorm, attention over a KV cache and the decoder skeleton (rope: rope.ts). What
 * runs underneath (our CPU kernels or MLX's own ops, one CPU stream or two) is the backend profile's choice
 * (src/mlx/backend.ts), made at load: model files only call these.
 */
import * as mx from "../mlx/index.ts";
import { type BackendProfile, type BiasAct, layerOps } from "../mlx/backend.ts";
import { isKQuantMode, type KQuantMode, kquantDequantize } from "../mlx/kquant.ts";
import { isRowsCache } from "./batch_cache.ts";
import { isPerRowCache } from "./batch_rows_cache.ts";

export type { BiasAct };
import type { KVCache } from "./cache.ts";

/** MLX's modes, and GGUF K-quant blocks kept as the file has them (weight = uint8 rows of blocks, no scales). */
export type MlxQuantMode = "affine" | "mxfp4" | "nvfp4" | "mxfp8";
export type QuantMode = MlxQuantMode | KQuantMode;
export interface QuantParams {
  groupSize: number;
  bits: number;
  mode: QuantMode;
}

export interface LinearParts {
  weight: mx.Array;
  bias?: mx.Array | null;
  scales?: mx.Array | null;
  biases?: mx.Array | null;
  q?: QuantParams | null;
}

/** y = x W^T (+ b); W float, MLX-quantized (packed uint32 + scales [+ biases]) or GGUF K-quant blocks (uint8). */
export class Linear {
  readonly weight: mx.Array;
  readonly bias: mx.Array | null;
  readonly scales: mx.Array | null;
  readonly biases: mx.Array | null;
  readonly q: QuantParams | null;
  /**
   * Set by loaders whose calls carry many rows (embedders): on first use a float weight is packed for the
   * backend's packed GEMM (twice the weight's memory) and the pack handed to this callback, which owns it and
   * frees it with the weight (WeightStore). Null: never packed.
   */
  packOnUse: ((pack: mx.Array) => void) | null = null;
  // shared with withoutBias() views, so one weight is packed once
  #slot: { pack: mx.Array | null } = { pack: null };

  constructor(p: LinearParts) {
    this.weight = p.weight;
    this.bias = p.bias ?? null;
    this.scales = p.scales ?? null;
    this.biases = p.biases ?? null;
    this.q = p.q ?? null;
  }

  /** Output features. */
  get outDims(): number {
    return this.weight.shape[0]!;
  }

  forward(x: mx.Array): mx.Array {
    const ops = layerOps();
    const q = this.q;
    const y = !q
      ? ops.linear(x, this.weight, this.packFor(ops))
      : isKQuantMode(q.mode)
        ? ops.kquantMatmul(x, this.weight, q.mode)
        : ops.quantizedMatmul(x, this.weight, this.scales!, this.biases, { transpose: true, ...q, mode: q.mode });
    return this.bias ? mx.add(y, this.bias) : y;
  }

  private packFor(ops: ReturnType<typeof layerOps>): mx.Array | null {
    if (this.#slot.pack || !this.packOnUse) return this.#slot.pack;
    const p = ops.packLinear(this.weight);
    if (!p) return null;
    this.#slot.pack = mx.keep(p);
    mx.eval([p]);
    this.packOnUse(p);
    return p;
  }

  /** This Linear without its bias (the caller adds it, fused): same weight, and the same pack. */
  withoutBias(): Linear {
    const u = new Linear({ weight: this.weight, scales: this.scales, biases: this.biases, q: this.q });
    u.packOnUse = this.packOnUse;
    u.#slot = this.#slot;
    return u;
  }

  /** Rows [start, stop) of the output as their own Linear (contiguous copies, evaluated). */
  rows(start: number, stop: number): Linear {
    const cut = (a: mx.Array | null, axis: number) => {
      if (!a) return null;
      const s = a.shape.map(() => 0);
      const e = [...a.shape];
      s[axis] = start;
      e[axis] = stop;
      return mx.contiguous(mx.slice(a, s, e));
    };
    const parts = mx.keep({
      weight: cut(this.weight, 0)!,
      scales: cut(this.scales, 0),
      biases: cut(this.biases, 0),
      bias: cut(this.bias, 0),
    });
    mx.eval([parts.weight, parts.scales, parts.biases, parts.bias].filter((a): a is mx.Array => a !== null));
    return new Linear({ ...parts, q: this.q });
  }
}

/** Token embedding table; `asLinear` reuses it as the (tied) output head. */
export class Embedding {
  readonly weight: mx.Array;
  readonly scales: mx.Array | null;
  readonly biases: mx.Array | null;
  readonly q: QuantParams | null;

  constructor(p: LinearParts) {
    this.weight = p.weight;
    this.scales = p.scales ?? null;
    this.biases = p.biases ?? null;
    this.q = p.q ?? null;
  }

  forward(ids: mx.Array): mx.Array {
    if (!this.q) return mx.take(this.weight, ids, 0);
    const w = mx.take(this.weight, ids, 0);
    if (isKQuantMode(this.q.mode)) return kquantDequantize(w, this.q.mode);
    const s = mx.take(this.scales!, ids, 0);
    const b = this.biases ? mx.take(this.biases, ids, 0) : null;
    return mx.dequantize(w, s, b, { ...this.q, mode: this.q.mode, dtype: this.scales!.dtype === mx.Dtype.uint8 ? mx.Dtype.float32 : this.scales!.dtype });
  }

  asLinear(): Linear {
    return new Linear({ weight: this.weight, scales: this.scales, biases: this.biases, q: this.q });
  }
}

/** What a model's output head (or any big projection) is: a Linear, possibly split by the backend. */
export interface Projection {
  forward(x: mx.Array): mx.Array;
  /** Arrays this projection owns beyond the weight store's (split halves), freed with the model. */
  owned(): mx.Array[];
}

/** A Linear whose output rows are split in two halves the backend computes side by side (two CPU streams). */
class SplitLinear implements Projection {
  readonly #parts: [Linear, Linear];
  constructor(
    full: Linear,
    readonly backend: BackendProfile,
  ) {
    const n = full.outDims;
    this.#parts = [full.rows(0, n >> 1), full.rows(n >> 1, n)];
  }

  forward(x: mx.Array): mx.Array {
    const [p0, p1] = this.#parts;
    const [a, b] = this.backend.pair(
      () => p0.forward(x),
      () => p1.forward(x),
    );
    return mx.concatenate([a, b], -1);
  }

  owned(): mx.Array[] {
    return this.#parts.flatMap((l) => [l.weight, l.scales, l.biases, l.bias].filter((a): a is mx.Array => a !== null));
  }
}

/** `l` as the backend runs a large projection: split over two CPU streams when it has them and `l` is wide. */
export function projection(l: Linear, backend: BackendProfile): Projection {
  if (backend.parallel && l.outDims >= 1024) return new SplitLinear(l, backend);
  return { forward: (x) => l.forward(x), owned: () => [] };
}

/**
 * Linears applied to the same input (q/k/v, gate/up): the backend may compute the first and the rest side by
 * side. `forward` returns the outputs in the order given.
 */
export class Fanout {
  constructor(
    readonly linears: readonly Linear[],
    readonly backend: BackendProfile,
  ) {}

  forward(x: mx.Array): mx.Array[] {
    const [first, ...rest] = this.linears;
    const [a, b] = this.backend.pair(
      () => first!.forward(x),
      () => rest.map((l) => l.forward(x)),
    );
    return [a, ...b];
  }
}

/** x / sqrt(mean(x², -1) + eps) · weight (null weight = 1). */
export function rmsNorm(x: mx.Array, weight: mx.Array | null, eps: number): mx.Array {
  return layerOps().rmsNorm(x, weight, eps);
}

/** silu(gate) · up. */
export function swiglu(gate: mx.Array, up: mx.Array): mx.Array {
  return layerOps().swiglu(gate, up);
}

/** act(x + bias) in one pass where the backend fuses it (encoder MLPs: erf-GELU). */
export function biasAct(x: mx.Array, bias: mx.Array | null, act: BiasAct): mx.Array {
  return layerOps().biasAct(x, bias, act);
}

/** Rotary embedding of the first `o.dims` features of x (the rope layers in rope.ts build the options). */
export function rope(x: mx.Array, o: mx.RopeOptions): mx.Array {
  return layerOps().rope(x, o);
}

/** The gated delta rule as one fused op, or null where the backend has none (gated_delta.ts composes it). */
export function fusedGatedDelta(q: mx.Array, k: mx.Array, v: mx.Array, g: mx.Array, beta: mx.Array, state: mx.Array): [mx.Array, mx.Array] | null {
  return layerOps().gatedDelta(q, k, v, g, beta, state);
}

/** silu(depthwise causal conv) as one fused op, or null where the backend has none. */
export function fusedConvSilu(x: mx.Array, w: mx.Array): mx.Array | null {
  return layerOps().convSilu(x, w);
}

/** Scaled dot-product attention of q [B,Hq,L,D] over keys/values [B,Hkv,S,D] → [B,Hq,L,D]. */
export function sdpa(q: mx.Array, k: mx.Array, v: mx.Array, o: mx.SdpaOptions): mx.Array {
  return layerOps().sdpa(q, k, v, o);
}

/** Attention of q [B,Hq,L,D] over the cache after appending k, v [B,Hkv,L,D]; returns [B,L,Hq*D]. */
export function attend(opts: {
  q: mx.Array;
  k: mx.Array;
  v: mx.Array;
  cache: KVCache;
  scale: number;
  sinks?: mx.Array | null;
}): mx.Array {
  const L = opts.q.shape[2]!;
  const mask = opts.cache.makeMask(L);
  if (isPerRowCache(opts.cache)) {
    // sliding-window rows of a decode batch (src/models/batch_rows_cache.ts): the solo call per row
    const each = opts.cache.attendEach(opts.q, opts.k, opts.v, (q, k, v) => sdpa(q, k, v, { scale: opts.scale, mask: null, sinks: opts.sinks ?? null }));
    return mx.reshape(mx.transpose(each, [0, 2, 1, 3]), [each.shape[0]!, L, -1]);
  }
  const [keys, values] = opts.cache.updateAndFetch(opts.k, opts.v);
  if (isRowsCache(opts.cache) && opts.sinks) {
    // learned sinks (gpt_oss): the batch's row attention has none, so each row takes the solo call on its keys
    const [B, H, S, D] = keys.shape as [number, number, number, number];
    const starts = opts.cache.rowStarts;
    const rows = Array.from({ length: B }, (_, b) => {
      const kv = (a: mx.Array) => mx.slice(a, [b, 0, starts[b]!, 0], [b + 1, H, S, a.shape[3] ?? D]);
      return sdpa(mx.sliceAxis(opts.q, 0, b, b + 1), kv(keys), kv(values), { scale: opts.scale, mask: null, sinks: opts.sinks! });
    });
    const each = B === 1 ? rows[0]! : mx.concatenate(rows, 0);
    return mx.reshape(mx.transpose(each, [0, 2, 1, 3]), [B, L, -1]);
  }
  // a decode batch (src/models/batch_cache.ts): each row attends from its own first key
  const o = isRowsCache(opts.cache)
    ? layerOps().sdpaRows(opts.q, keys, values, opts.scale, opts.cache.rowStarts)
    : sdpa(opts.q, keys, values, { scale: opts.scale, mask: mask ?? null, sinks: opts.sinks ?? null });
  const B = o.shape[0]!;
  return mx.reshape(mx.transpose(o, [0, 2, 1, 3]), [B, L, -1]);
}

/** [B, L, H*D] → [B, H, L, D]. */
export function heads(x: mx.Array, n: number): mx.Array {
  const [B, L] = x.shape as [number, number];
  return mx.transpose(mx.reshape(x, [B, L, n, -1]), [0, 2, 1, 3]);
}

/** A transformer block as the decoder loop calls it. */
export interface DecoderBlock {
  forward(x: mx.Array, cache: KVCache): mx.Array;
}

/**
 * embed → blocks → final RMSNorm → head, the shape llama, phi3 and gpt_oss share; each subclass builds the
 * parts (named by their HF weight keys) and its caches.
 */
export abstract class DecoderModel {
  abstract readonly embed_tokens: Embedding;
  abstract readonly layers: DecoderBlock[];
  abstract readonly norm: mx.Array;
  abstract readonly lm_head: Projection;
  protected abstract readonly rope: { dispose(): void };
  protected abstract readonly normEps: number;

  get numLayers(): number {
    return this.layers.length;
  }

  hidden(inputs: mx.Array, cache: KVCache[]): mx.Array {
    let h = this.embed_tokens.forward(inputs);
    this.layers.forEach((layer, i) => {
      h = layer.forward(h, cache[i]!);
    });
    return rmsNorm(h, this.norm, this.normEps);
  }

  logits(h: mx.Array): mx.Array {
    return this.lm_head.forward(h);
  }

  [Symbol.dispose](): void {
    this.rope.dispose();
    for (const a of this.lm_head.owned()) a.dispose();
  }
}

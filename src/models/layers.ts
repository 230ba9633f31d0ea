/**
 * Building blocks shared by the model files: (quantized) Linear and Embedding, RMSNorm, attention over a
 * KV cache, the decoder skeleton, and running two independent ops on two CPU streams (rope: rope.ts).
 */
import * as mx from "../mlx/index.ts";
import { fastLinear, fastQuantizedMatmul, fastRmsNorm, fastScaledDotProductAttention, fastSwiglu } from "../mlx/kernels.ts";
import { isKQuantMode, type KQuantMode, kquantDequantize, kquantMatmul } from "../mlx/kquant.ts";
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
    const q = this.q;
    const y = !q
      ? fastLinear(x, this.weight)
      : isKQuantMode(q.mode)
        ? kquantMatmul(x, this.weight, q.mode)
        : fastQuantizedMatmul(x, this.weight, this.scales!, this.biases, { transpose: true, ...q, mode: q.mode });
    return this.bias ? mx.add(y, this.bias) : y;
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

/** The two streams a model may split work over; with one stream everything runs on the current one. */
export class Streams {
  constructor(readonly list: mx.Stream[]) {}

  get parallel(): boolean {
    return this.list.length > 1;
  }

  /** Build `a` on stream 0 and `b` on stream 1, so the two CPU workers compute them at the same time. */
  pair<A, B>(a: () => A, b: () => B): [A, B] {
    if (!this.parallel) return [a(), b()];
    return [mx.withStream(this.list[0]!, a), mx.withStream(this.list[1]!, b)];
  }
}

/** A Linear whose output rows are split in two halves computed on two streams. */
export class SplitLinear {
  readonly #parts: [Linear, Linear] | null;
  constructor(
    readonly full: Linear,
    readonly streams: Streams,
  ) {
    const n = full.outDims;
    this.#parts = streams.parallel && n >= 1024 ? [full.rows(0, n >> 1), full.rows(n >> 1, n)] : null;
  }

  forward(x: mx.Array): mx.Array {
    if (!this.#parts) return this.full.forward(x);
    const [p0, p1] = this.#parts;
    const [a, b] = this.streams.pair(
      () => p0.forward(x),
      () => p1.forward(x),
    );
    return mx.concatenate([a, b], -1);
  }

  /** Arrays this split owns (the halves; the full weight belongs to the weight store). */
  owned(): mx.Array[] {
    if (!this.#parts) return [];
    return this.#parts.flatMap((l) => [l.weight, l.scales, l.biases, l.bias].filter((a): a is mx.Array => a !== null));
  }
}

export function rmsNorm(x: mx.Array, weight: mx.Array, eps: number): mx.Array {
  return fastRmsNorm(x, weight, eps);
}

export function swiglu(gate: mx.Array, up: mx.Array): mx.Array {
  return fastSwiglu(gate, up);
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
  const [keys, values] = opts.cache.updateAndFetch(opts.k, opts.v);
  const o = fastScaledDotProductAttention(opts.q, keys, values, { scale: opts.scale, mask: mask ?? null, sinks: opts.sinks ?? null });
  const B = o.shape[0]!;
  return mx.reshape(mx.transpose(o, [0, 2, 1, 3]), [B, L, -1]);
}

/** [B, L, H*D] → [B, H, L, D]. */
export function heads(x: mx.Array, n: number): mx.Array {
  const [B, L] = x.shape as [number, number];
  return mx.transpose(mx.reshape(x, [B, L, n, -1]), [0, 2, 1, 3]);
}

/** A transformer block as the decoder loop calls it (blocks that don't split work over streams ignore them). */
export interface DecoderBlock {
  forward(x: mx.Array, cache: KVCache, streams: Streams): mx.Array;
}

/**
 * embed → blocks → final RMSNorm → head, the shape llama, phi3 and gpt_oss share; each subclass builds the
 * parts (named by their HF weight keys) and its caches.
 */
export abstract class DecoderModel {
  abstract readonly embed_tokens: Embedding;
  abstract readonly layers: DecoderBlock[];
  abstract readonly norm: mx.Array;
  abstract readonly lm_head: SplitLinear;
  protected abstract readonly rope: { dispose(): void };
  protected abstract readonly streams: Streams;
  protected abstract readonly normEps: number;

  get numLayers(): number {
    return this.layers.length;
  }

  hidden(inputs: mx.Array, cache: KVCache[]): mx.Array {
    let h = this.embed_tokens.forward(inputs);
    this.layers.forEach((layer, i) => {
      h = layer.forward(h, cache[i]!, this.streams);
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

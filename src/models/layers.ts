/**
 * Building blocks shared by the model files: (quantized) Linear and Embedding, RMSNorm, RoPE variants,
 * attention over a KV cache, and running two independent ops on two CPU streams.
 */
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { fastQuantizedMatmul, fastRmsNorm, fastRope, fastScaledDotProductAttention, fastSwiglu } from "../mlx/kernels.ts";
import type { KVCache } from "../engine/kv-cache.ts";

export type QuantMode = "affine" | "mxfp4" | "nvfp4" | "mxfp8";
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

/** y = x W^T (+ b); W either float or MLX-quantized (packed uint32 + scales [+ biases]). */
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
    const y = this.q
      ? fastQuantizedMatmul(x, this.weight, this.scales!, this.biases, { transpose: true, ...this.q })
      : mx.matmul(x, mx.swapaxes(this.weight, -1, -2));
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
    const s = mx.take(this.scales!, ids, 0);
    const b = this.biases ? mx.take(this.biases, ids, 0) : null;
    return mx.dequantize(w, s, b, { ...this.q, dtype: this.scales!.dtype === mx.Dtype.uint8 ? mx.Dtype.float32 : this.scales!.dtype });
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

/** Rotary embedding: plain (`base`, `scale`) or with explicit per-dimension frequencies. */
export class Rope {
  readonly #freqs: mx.Array | null;
  constructor(
    readonly dims: number,
    readonly opts: { traditional?: boolean; base?: number; scale?: number; freqs?: Float32Array; inputScale?: number },
  ) {
    this.#freqs = opts.freqs ? mx.keep(mx.array(opts.freqs, { shape: [opts.freqs.length], dtype: mx.Dtype.float32 })) : null;
  }

  forward(x0: mx.Array, offset: number): mx.Array {
    let x = x0;
    const s = this.opts.inputScale ?? 1;
    if (s !== 1) {
      // Scale only the rotated features (yarn's attention factor).
      const D = x.shape.at(-1)!;
      const rot = mx.multiply(mx.sliceAxis(x, -1, 0, this.dims), s);
      x = this.dims === D ? rot : mx.concatenate([rot, mx.sliceAxis(x, -1, this.dims, D)], -1);
    }
    return fastRope(x, {
      dims: this.dims,
      traditional: this.opts.traditional ?? false,
      base: this.#freqs ? undefined : (this.opts.base ?? 10000),
      scale: this.opts.scale ?? 1,
      offset,
      freqs: this.#freqs,
    });
  }

  dispose(): void {
    this.#freqs?.dispose();
  }
}

export interface RopeConfig {
  dims: number;
  base: number;
  traditional?: boolean;
  scaling?: Record<string, unknown> | null;
  maxPositionEmbeddings?: number;
}

/** The rope variants of HF `rope_scaling`: default, linear, llama3, yarn (others are refused by name). */
export function initializeRope(c: RopeConfig): Rope {
  const type = String(c.scaling?.type ?? c.scaling?.rope_type ?? "default");
  const traditional = c.traditional ?? false;
  if (type === "default" || type === "linear") {
    const factor = type === "linear" ? Number(c.scaling?.factor ?? 1) : 1;
    return new Rope(c.dims, { traditional, base: c.base, scale: 1 / factor });
  }
  if (type === "llama3") {
    const s = c.scaling!;
    const factor = Number(s.factor);
    const low = Number(s.low_freq_factor ?? 1);
    const high = Number(s.high_freq_factor ?? 4);
    const old = Number(s.original_max_position_embeddings ?? 8192);
    const freqs = new Float32Array(c.dims / 2);
    for (let i = 0; i < freqs.length; i++) {
      const f = Math.fround(c.base ** Math.fround((2 * i) / c.dims));
      const wavelen = 2 * Math.PI * f;
      let out = wavelen > old / low ? f * factor : f;
      if (wavelen > old / high && wavelen < old / low) {
        const smooth = (old / wavelen - low) / (high - low);
        out = out / ((1 - smooth) / factor + smooth);
      }
      freqs[i] = out;
    }
    return new Rope(c.dims, { traditional, freqs });
  }
  if (type === "yarn") return yarnRope(c);
  throw new MlxkError("unsupported_model", `rope_scaling type '${type}' is not supported`);
}

function yarnRope(c: RopeConfig): Rope {
  const s = c.scaling!;
  const factor = Number(s.factor ?? 1);
  const orig = Number(s.original_max_position_embeddings ?? 4096);
  const betaFast = Number(s.beta_fast ?? 32);
  const betaSlow = Number(s.beta_slow ?? 1);
  const mscale = (scale: number, m: number) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  const correction = (rot: number) => (c.dims * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(c.base));
  const low = Math.max(Math.floor(correction(betaFast)), 0);
  let high = Math.min(Math.ceil(correction(betaSlow)), c.dims - 1);
  if (low === high) high += 0.001;
  const freqs = new Float32Array(c.dims / 2);
  for (let i = 0; i < freqs.length; i++) {
    const extra = Math.fround(c.base ** Math.fround((2 * i) / c.dims));
    const inter = factor * extra;
    const mask = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)));
    freqs[i] = (inter * extra) / (inter * mask + extra * (1 - mask));
  }
  const inputScale = mscale(factor, Number(s.mscale ?? 1)) / mscale(factor, Number(s.mscale_all_dim ?? 0));
  return new Rope(c.dims, { traditional: c.traditional, freqs, inputScale });
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

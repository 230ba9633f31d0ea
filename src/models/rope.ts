/**
 * Rotary position embeddings; agrees with mlx-lm 0.32.2 models/rope_utils.py (initialize_rope) except where
 * transformers 5.x (modeling_rope_utils.py) computes otherwise, which wins: yarn honours `truncate` and
 * `attention_factor` and takes mscale only when both mscale keys are set; longrope uses `short_factor`
 * while the sequence fits `original_max_position_embeddings` and `long_factor` beyond (mlx-lm always long).
 * The scaling block arrives already normalised (config.ts: canonical `rope_type`, required keys checked).
 */
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import type { RopeScaling } from "./config.ts";
import { layerOps } from "../mlx/backend.ts";
import type { BlockRope } from "../mlx/block.ts";
import { rope as applyRope } from "./layers.ts";

/** What attention calls: rotate the first `dims` features of x [B, H, L, D] at position `offset`. */
export interface RopeLayer {
  readonly dims: number;
  forward(x: mx.Array, offset: number): mx.Array;
  /**
   * A decode batch x [B, H, 1, D], entry b at position offsets[b], each exactly as forward rotates it alone.
   * Absent where the rotation depends on the sequence length (dynamic NTK, longrope): such models do not batch.
   */
  forwardRows?(x: mx.Array, offsets: readonly number[]): mx.Array;
  /** The plain rotation forward applies (no input scaling, position-independent frequencies), for fused kernels. */
  blockRope?(): BlockRope | null;
  dispose(): void;
}

function freqArray(f: Float32Array): mx.Array {
  return mx.keep(mx.array(f, { shape: [f.length], dtype: mx.Dtype.float32 }));
}

/** base ** (2i / dims) in f32, as mlx and torch compute it. */
function baseFreqs(dims: number, base: number): Float32Array {
  const out = new Float32Array(dims / 2);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(base ** Math.fround((2 * i) / dims));
  return out;
}

/** Multiply only the rotated features by s (yarn / longrope attention factor on q and k). */
function scaleRotated(x: mx.Array, dims: number, s: number): mx.Array {
  if (s === 1) return x;
  const D = x.shape.at(-1)!;
  const rot = mx.multiply(mx.sliceAxis(x, -1, 0, dims), s);
  return dims === D ? rot : mx.concatenate([rot, mx.sliceAxis(x, -1, dims, D)], -1);
}

/** Plain rope (`base`, `scale`) or one with explicit per-dimension frequencies. */
export class Rope implements RopeLayer {
  readonly #freqs: mx.Array | null;
  constructor(
    readonly dims: number,
    readonly opts: { traditional?: boolean; base?: number; scale?: number; freqs?: Float32Array; inputScale?: number },
  ) {
    this.#freqs = opts.freqs ? freqArray(opts.freqs) : null;
  }

  forward(x: mx.Array, offset: number): mx.Array {
    return applyRope(scaleRotated(x, this.dims, this.opts.inputScale ?? 1), { ...this.#options(), offset });
  }

  forwardRows(x: mx.Array, offsets: readonly number[]): mx.Array {
    return layerOps().ropeRows(scaleRotated(x, this.dims, this.opts.inputScale ?? 1), this.#options(), offsets);
  }

  blockRope(): BlockRope | null {
    if ((this.opts.inputScale ?? 1) !== 1) return null;
    const o = this.#options();
    return { dims: o.dims, traditional: o.traditional, base: o.base ?? 1, scale: o.scale, freqs: o.freqs };
  }

  #options() {
    return {
      dims: this.dims,
      traditional: this.opts.traditional ?? false,
      base: this.#freqs ? undefined : (this.opts.base ?? 10000),
      scale: this.opts.scale ?? 1,
      freqs: this.#freqs,
    };
  }

  dispose(): void {
    this.#freqs?.dispose();
  }
}

/** Dynamic NTK: the base grows with the sequence once it passes max_position_embeddings. */
class DynamicNtkRope implements RopeLayer {
  constructor(
    readonly dims: number,
    readonly base: number,
    readonly factor: number,
    readonly maxPos: number,
    readonly traditional: boolean,
  ) {}

  forward(x: mx.Array, offset: number): mx.Array {
    const seq = Math.max(x.shape.at(-2)! + offset, this.maxPos);
    const base = this.base * ((this.factor * seq) / this.maxPos - (this.factor - 1)) ** (this.dims / (this.dims - 2));
    return applyRope(x, { dims: this.dims, traditional: this.traditional, base, scale: 1, offset });
  }

  dispose(): void {}
}

/** LongRoPE (Phi-3 "su"): short factors inside the original context, long ones past it; q/k scaled. */
class LongRope implements RopeLayer {
  readonly #short: mx.Array;
  readonly #long: mx.Array;
  constructor(
    readonly dims: number,
    base: number,
    short: number[],
    long: number[],
    readonly original: number,
    readonly scale: number,
  ) {
    const f = baseFreqs(dims, base);
    if (short.length !== f.length || long.length !== f.length) {
      throw new MlxkError("unsupported_model", `rope longrope: short_factor/long_factor need ${f.length} entries (rotary dims ${dims}), got ${short.length}/${long.length}`);
    }
    this.#short = freqArray(f.map((v, i) => v * short[i]!));
    this.#long = freqArray(f.map((v, i) => v * long[i]!));
  }

  forward(x: mx.Array, offset: number): mx.Array {
    const seq = offset + x.shape.at(-2)!;
    const freqs = seq > this.original ? this.#long : this.#short;
    return applyRope(scaleRotated(x, this.dims, this.scale), { dims: this.dims, traditional: false, scale: 1, offset, freqs });
  }

  dispose(): void {
    this.#short.dispose();
    this.#long.dispose();
  }
}

export interface RopeInit {
  /** Rotated features (head_dim × partial_rotary_factor). */
  dims: number;
  base: number;
  traditional?: boolean;
  /** Normalised scaling block; null = default rope. */
  scaling?: RopeScaling | null;
  maxPositionEmbeddings?: number;
  /** Proportional rope only: `dims` is the whole head and this share of its frequencies rotates. */
  partialRotaryFactor?: number;
}

const num = (v: unknown, d: number): number => (typeof v === "number" ? v : d);

/** The rope a config asks for. */
export function initializeRope(c: RopeInit): RopeLayer {
  const s = c.scaling ?? null;
  const traditional = c.traditional ?? false;
  const type = s?.rope_type ?? "default";
  switch (type) {
    case "default":
      return new Rope(c.dims, { traditional, base: c.base });
    case "linear":
      return new Rope(c.dims, { traditional, base: c.base, scale: 1 / num(s!.factor, 1) });
    case "dynamic":
      return new DynamicNtkRope(c.dims, c.base, num(s!.factor, 1), c.maxPositionEmbeddings ?? num(s!.original_max_position_embeddings, 2048), traditional);
    case "llama3":
      return llama3Rope(c, s!);
    case "yarn":
      return yarnRope(c, s!);
    case "longrope": {
      const orig = num(s!.original_max_position_embeddings, c.maxPositionEmbeddings ?? 4096);
      const factor = s!.factor !== undefined ? num(s!.factor, 1) : (c.maxPositionEmbeddings ?? orig) / orig;
      const scale = typeof s!.attention_factor === "number" ? s!.attention_factor : factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(orig));
      return new LongRope(c.dims, c.base, s!.short_factor as number[], s!.long_factor as number[], orig, scale);
    }
    case "proportional":
      return proportionalRope(c, s!);
  }
}

/**
 * gemma4's proportional rope (mlx-lm ProportionalRoPE, transformers _compute_proportional_rope_parameters):
 * frequencies factor·base^(2i/D) for the first partial·D/2 pairs of the whole head D, the rest never rotate
 * (infinite wavelength).
 */
function proportionalRope(c: RopeInit, s: RopeScaling): Rope {
  const rotated = Math.floor(c.dims * (c.partialRotaryFactor ?? 1));
  const factor = num(s.factor, 1);
  const base = baseFreqs(c.dims, c.base);
  const freqs = base.map((f, i) => (i < rotated / 2 ? factor * f : Number.POSITIVE_INFINITY));
  return new Rope(c.dims, { traditional: c.traditional, freqs });
}

function llama3Rope(c: RopeInit, s: RopeScaling): Rope {
  const factor = num(s.factor, 1);
  const low = num(s.low_freq_factor, 1);
  const high = num(s.high_freq_factor, 4);
  const old = num(s.original_max_position_embeddings, 8192);
  const freqs = baseFreqs(c.dims, c.base).map((f) => {
    const wavelen = 2 * Math.PI * f;
    let out = wavelen > old / low ? f * factor : f;
    if (wavelen > old / high && wavelen < old / low) {
      const smooth = (old / wavelen - low) / (high - low);
      out = out / ((1 - smooth) / factor + smooth);
    }
    return out;
  });
  return new Rope(c.dims, { traditional: c.traditional, freqs });
}

function yarnRope(c: RopeInit, s: RopeScaling): Rope {
  const factor = num(s.factor, 1);
  const orig = num(s.original_max_position_embeddings, c.maxPositionEmbeddings ?? 4096);
  const betaFast = num(s.beta_fast, 32) || 32;
  const betaSlow = num(s.beta_slow, 1) || 1;
  const truncate = s.truncate !== false;
  const getMscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  const correction = (rot: number) => (c.dims * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(c.base));
  let low = correction(betaFast);
  let high = correction(betaSlow);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, c.dims - 1);
  if (low === high) high += 0.001;
  const freqs = baseFreqs(c.dims, c.base).map((extra, i) => {
    const inter = factor * extra;
    const mask = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)));
    return (inter * extra) / (inter * mask + extra * (1 - mask));
  });
  let attn: number;
  if (typeof s.attention_factor === "number") attn = s.attention_factor;
  else if (typeof s.mscale === "number" && s.mscale && typeof s.mscale_all_dim === "number" && s.mscale_all_dim) {
    attn = getMscale(factor, s.mscale) / getMscale(factor, s.mscale_all_dim);
  } else attn = getMscale(factor);
  return new Rope(c.dims, { traditional: c.traditional, freqs, inputScale: attn });
}

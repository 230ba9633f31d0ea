/**
 * What an encoder (embedding) architecture file exports — an EncoderModule — and the pieces BERT-family files
 * share: the padding mask, LayerNorm, activations, checkpoint key clean-up. Encoders see the whole padded batch at
 * once (no KV cache): token ids [B, L] plus a 0/1 mask [B, L] → hidden states [B, L, H].
 *
 * Exports: EncoderModel, EncoderModule, keyMask(mask, dtype), paddingMask(mask, dtype), layerNorm(x, w, b, eps), activation(name),
 *          denseAct(linear, x, act), encoderAttention(q, k, v, scale, mask), stripPrefixes(weights, prefixes)
 */
import type * as v from "valibot";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { layerOps } from "../mlx/backend.ts";
import type { WeightStore } from "./base.ts";
import { type BiasAct, biasAct, Linear, sdpa } from "./layers.ts";
import type { NormalizeOptions } from "./config.ts";

export interface EncoderModel {
  /**
   * ids int32 [B, L], mask int32 [B, L] (1 = token, 0 = padding) → hidden states [B, L, H]. A null mask says no
   * row is padded (the embedder groups inputs of one length), so attention needs no mask at all.
   */
  forward(ids: mx.Array, mask: mx.Array | null): mx.Array;
}

export interface EncoderModule {
  configSchema: v.GenericSchema<unknown, Record<string, unknown>>;
  /** How config.ts normalises this architecture's config.json (both transformers spellings). */
  configOptions?: NormalizeOptions;
  sanitize?(weights: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array>;
  createEncoder(config: Record<string, unknown>, weights: WeightStore): EncoderModel;
  /** Longest input (tokens, specials included) the position table allows. */
  maxPositions(config: Record<string, unknown>): number;
}

/**
 * Additive attention mask [B, 1, 1, L] hiding padded keys. A large finite negative rather than -inf: a query row
 * whose keys are all hidden stays finite instead of NaN, and exp() still rounds the hidden weights to exactly 0.
 */
export function keyMask(mask: mx.Array, dtype: mx.Dtype): mx.Array {
  const [B, L] = mask.shape as [number, number];
  const hidden = mx.multiply(mx.subtract(1, mask.astype(dtype)), -1e9);
  return mx.reshape(hidden, [B, 1, 1, L]);
}

export function layerNorm(x: mx.Array, w: mx.Array | null, b: mx.Array | null, eps: number): mx.Array {
  return mx.fast.layerNorm(x, w, b, eps);
}

/** transformers' ACT2FN names the BERT family uses, as the activations fastBiasAct fuses. */
export function activation(name: string): BiasAct {
  switch (name) {
    case "gelu":
      return "gelu";
    case "gelu_new":
    case "gelu_pytorch_tanh":
    case "gelu_fast":
      return "gelu_tanh";
    case "relu":
      return "relu";
    case "silu":
    case "swish":
      return "silu";
    default:
      throw new MlxkError("unsupported_model", `hidden activation '${name}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)`);
  }
}

const unbiased = new WeakMap<Linear, Linear>();

/** act(x·Wᵀ + b): the matmul, then bias and activation in one fused pass (not three over the intermediate). */
export function denseAct(l: Linear, x: mx.Array, act: BiasAct): mx.Array {
  let u = unbiased.get(l);
  if (!u) {
    u = l.bias ? l.withoutBias() : l;
    unbiased.set(l, u);
  }
  return biasAct(u.forward(x), l.bias, act);
}

/** Right-padded rows as their lengths (row b's keys [0, lens[b]) are real), else an additive mask, else none. */
export type PaddingMask = { lens: number[] } | mx.Array | null;

/**
 * The padding of a 0/1 mask [B, L] for encoderAttention: each row's length where every row is tokens then padding
 * (what the embedder builds; attention then runs over each row's real keys only, no mask array), else keyMask.
 */
export function paddingMask(mask: mx.Array | null, dtype: mx.Dtype): PaddingMask {
  if (!mask) return null;
  const [B, L] = mask.shape as [number, number];
  const f = mask.astype(mx.Dtype.float32);
  const m = f.toFloat32Array();
  f.dispose();
  const lens: number[] = [];
  for (let b = 0; b < B; b++) {
    let n = 0;
    while (n < L && m[b * L + n] !== 0) n++;
    for (let j = n; j < L; j++) if (m[b * L + j] !== 0) return keyMask(mask, dtype);
    if (n === 0) return keyMask(mask, dtype);
    lens.push(n);
  }
  return { lens };
}

/** Attention of q, k, v [B, H, L, D] under a padding mask (or none) → [B, L, H·D]. */
export function encoderAttention(q: mx.Array, k: mx.Array, v: mx.Array, scale: number, mask: PaddingMask): mx.Array {
  const [B, , L] = q.shape as [number, number, number];
  const o = mask && "lens" in mask ? layerOps().sdpaKeys(q, k, v, scale, mask.lens) : sdpa(q, k, v, { scale, mask });
  return mx.reshape(mx.transpose(o, [0, 2, 1, 3]), [B, L, -1]);
}

/**
 * Checkpoints saved from a task head (`BertForMaskedLM`, `XLMRobertaForSequenceClassification`, …) prefix the
 * encoder with its name; old TF-converted ones call LayerNorm parameters gamma/beta. Heads are dropped.
 */
export function stripPrefixes(w: Map<string, mx.Array>, prefixes: string[], keep: (k: string) => boolean): Map<string, mx.Array> {
  const out = new Map<string, mx.Array>();
  for (const [k0, a] of w) {
    let k = k0;
    for (const p of prefixes) if (k.startsWith(p)) k = k.slice(p.length);
    k = k.replace(/\.gamma$/, ".weight").replace(/\.beta$/, ".bias");
    if (keep(k)) out.set(k, a);
    else a.dispose();
  }
  return out;
}

/**
 * Token sampling over a Float32Array of logits, with mlx-lm semantics (`sample_utils.py`):
 * repetition penalty on the last N tokens (logit<0 ? logit*p : logit/p), logprobs = logits − logsumexp,
 * temperature 0 → argmax, else filters top_p → min_p → top_k on the temperature-1 distribution and a
 * categorical draw from softmax(logits / temperature) over what is left.
 *
 * Every filter keeps a prefix of the tokens sorted by logit, so only the head of that order is ever
 * needed: it is found by partial selection (a bounded min-heap), growing the head only when top_p needs
 * more mass, instead of sorting the whole vocabulary (262k for Gemma).
 */
import type { SamplingParams } from "../engine/types.ts";

/** mlx-knife defaults (`mlxk run` / server). */
export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 0.7,
  topP: 0.9,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1.1,
  repetitionContextSize: 20,
};

export interface SampledToken {
  token: number;
  /** log-probability of `token` under the penalized temperature-1 distribution (what mlx-lm reports); NaN unless requested. */
  logprob: number;
  /** The `topLogprobs` most likely tokens, most likely first. */
  top: { token: number; logprob: number }[];
}

export interface SampleOptions {
  /** Tokens so far (prompt + generated): the repetition penalty looks at the last `repetitionContextSize`. */
  history?: readonly number[];
  /** Compute `logprob` of the chosen token. @default false */
  logprobs?: boolean;
  /** How many top logprobs to return (0..20). @default 0 */
  topLogprobs?: number;
}

/** xoshiro128** PRNG: small, fast, fully determined by its seed. */
export class Rng {
  private s = new Uint32Array(4);

  constructor(seed?: number) {
    let x = seed === undefined ? crypto.getRandomValues(new Uint32Array(1))[0]! : seed >>> 0;
    // splitmix32 expands the 32-bit seed into the 128-bit state.
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Apply the repetition penalty in place to the logits of tokens seen in the last `window` tokens. */
export function applyRepetitionPenalty(logits: Float32Array, history: readonly number[], penalty: number, window: number): void {
  if (penalty === 1 || window <= 0 || history.length === 0) return;
  const seen = new Set<number>();
  for (let i = Math.max(0, history.length - window); i < history.length; i++) {
    const t = history[i]!;
    if (seen.has(t) || t < 0 || t >= logits.length) continue;
    seen.add(t);
    const l = logits[t]!;
    logits[t] = l < 0 ? l * penalty : l / penalty;
  }
}

function argmax(logits: Float32Array): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/** max and log(sum(exp(l - max))) in two passes. */
function logSumExp(logits: Float32Array): { max: number; lse: number } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return { max, lse: max + Math.log(sum) };
}

/**
 * Indices of the `k` largest logits, sorted descending. A bounded min-heap keeps the running top-k;
 * most elements fail the single comparison against its root, so this is close to one pass.
 */
export function topKIndices(logits: Float32Array, k: number): Int32Array {
  const n = Math.min(k, logits.length);
  if (n <= 0) return new Int32Array(0);
  const heap = new Int32Array(n); // min-heap on logits[heap[i]]
  let size = 0;
  const less = (a: number, b: number) => logits[a]! < logits[b]! || (logits[a] === logits[b] && a > b);
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && less(heap[l]!, heap[m]!)) m = l;
      if (r < size && less(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      const tmp = heap[i]!;
      heap[i] = heap[m]!;
      heap[m] = tmp;
      i = m;
    }
  };
  for (let idx = 0; idx < logits.length; idx++) {
    if (size < n) {
      let i = size++;
      heap[i] = idx;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!less(heap[i]!, heap[p]!)) break;
        const tmp = heap[i]!;
        heap[i] = heap[p]!;
        heap[p] = tmp;
        i = p;
      }
    } else if (less(heap[0]!, idx)) {
      heap[0] = idx;
      down(0);
    }
  }
  const out = Array.from(heap);
  out.sort((a, b) => logits[b]! - logits[a]! || a - b);
  return Int32Array.from(out);
}

/**
 * The sorted head of the vocabulary that survives top_p / min_p / top_k (mlx-lm order; each keeps a
 * prefix of the descending order, so the result is the shortest of the three prefixes).
 */
function candidates(logits: Float32Array, p: SamplingParams, max: number, lse: number): Int32Array {
  const V = logits.length;
  const topK = p.topK > 0 ? Math.min(p.topK, V) : V;
  const useTopP = p.topP > 0 && p.topP < 1;
  const minLogit = p.minP > 0 ? max + Math.log(p.minP) : -Infinity;
  let head = Math.min(topK, useTopP ? 256 : topK);
  if (!useTopP && p.minP > 0 && topK === V) {
    // min_p alone: the survivors are exactly those above a threshold; count them first.
    let n = 0;
    for (let i = 0; i < V; i++) if (logits[i]! >= minLogit) n++;
    head = Math.max(1, n);
  }
  for (;;) {
    const idx = topKIndices(logits, head);
    let n = idx.length;
    if (p.minP > 0) {
      let m = 0;
      while (m < n && logits[idx[m]!]! >= minLogit) m++;
      n = Math.max(1, m);
    }
    if (useTopP) {
      // Keep a token while the mass of the tokens before it is below top_p (the nucleus incl. the crossing token).
      let mass = 0;
      let m = 0;
      while (m < n && mass < p.topP) {
        mass += Math.exp(logits[idx[m]!]! - lse);
        m++;
      }
      if (mass < p.topP && head < topK && m === idx.length) {
        head = Math.min(topK, head * 4);
        continue; // the head was too short to reach top_p: widen it
      }
      n = Math.min(n, Math.max(1, m));
    }
    return idx.subarray(0, n);
  }
}

/**
 * Pick the next token. Mutates `logits` in place (repetition penalty); pass a copy to keep them.
 */
export function sampleToken(logits: Float32Array, params: SamplingParams, rng: Rng, opts: SampleOptions = {}): SampledToken {
  applyRepetitionPenalty(logits, opts.history ?? [], params.repetitionPenalty, params.repetitionContextSize);
  const nTop = Math.max(0, Math.min(20, opts.topLogprobs ?? 0));
  const needLse = opts.logprobs === true || nTop > 0 || (params.temperature > 0 && params.topP > 0 && params.topP < 1);
  const { max, lse } = needLse ? logSumExp(logits) : { max: NaN, lse: NaN };

  let token: number;
  if (params.temperature <= 0) {
    token = argmax(logits);
  } else {
    const filtered = params.topK > 0 || params.minP > 0 || (params.topP > 0 && params.topP < 1);
    token = filtered
      ? drawFrom(logits, candidates(logits, params, Number.isNaN(max) ? maxOf(logits) : max, lse), params.temperature, rng)
      : drawAll(logits, params.temperature, rng);
  }
  const top = nTop > 0
    ? Array.from(topKIndices(logits, nTop), (t) => ({ token: t, logprob: logits[t]! - lse }))
    : [];
  return { token, logprob: opts.logprobs || nTop > 0 ? logits[token]! - lse : NaN, top };
}

function maxOf(logits: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > m) m = logits[i]!;
  return m;
}

/** Categorical draw over the candidate ids with weights exp((l - l0) / temperature). */
function drawFrom(logits: Float32Array, ids: Int32Array, temperature: number, rng: Rng): number {
  const l0 = logits[ids[0]!]!; // the largest: keeps exp() in range
  const w = new Float64Array(ids.length);
  let total = 0;
  for (let i = 0; i < ids.length; i++) {
    total += Math.exp((logits[ids[i]!]! - l0) / temperature);
    w[i] = total;
  }
  const u = rng.next() * total;
  for (let i = 0; i < ids.length; i++) if (u < w[i]!) return ids[i]!;
  return ids[ids.length - 1]!;
}

/** Categorical draw over the whole vocabulary at `temperature` (no filters): two passes, no allocation per token. */
function drawAll(logits: Float32Array, temperature: number, rng: Rng): number {
  const m = maxOf(logits);
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp((logits[i]! - m) / temperature);
  let u = rng.next() * total;
  for (let i = 0; i < logits.length; i++) {
    u -= Math.exp((logits[i]! - m) / temperature);
    if (u < 0) return i;
  }
  return argmax(logits);
}

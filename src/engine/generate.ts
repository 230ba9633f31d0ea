/**
 * The token loop, as mlx-lm's generate_step runs it: prefill the prompt in chunks (evaluating the cache
 * after each), then decode one token per step. Every step runs in a scope, so only the weights and the
 * KV cache survive it. Greedy decoding stays on the device and is pipelined: step n+1's graph is built
 * and queued (asyncEval) before step n's token is read back.
 */
import * as mx from "../mlx/index.ts";
import type { LanguageModel, LayerCache } from "../models/base.ts";

export const PREFILL_STEP = 512;

/** Chooses the next token from f32 logits [V] on the host (sampling, penalties); null = greedy on device. */
export type HostSampler = (logits: Float32Array, history: readonly number[]) => number;

export interface TokenLoopOptions {
  model: LanguageModel;
  prompt: readonly number[];
  maxTokens: number;
  /** Omitted: greedy argmax on the device (pipelined). */
  sampler?: HostSampler;
  /** Also return the full f32 logits of each generated step (for logprobs). */
  wantLogits?: boolean;
  /**
   * Greedy on the device under a constraint: an additive bias (0 allowed, -inf not) for the logits of the
   * next token, asked for after the previous token was handed out (so the consumer can advance its grammar
   * while the device runs the next forward pass). Ignored with a host sampler.
   */
  deviceMask?: (vocab: number) => Float32Array;
  /** Checked before every step; true stops the loop. */
  shouldStop?: () => boolean;
  /** Existing cache to continue (the caller keeps it); default a fresh one that the loop disposes. */
  cache?: LayerCache[];
  /** Leading prompt tokens `cache` already holds (a prompt-cache hit): only the rest is prefilled. */
  cached?: number;
  /**
   * Prompt positions (absolute, past `cached`) where prefill pauses and `onMark` sees the cache holding exactly
   * that many prompt tokens: the message boundaries where a prompt-cache snapshot is kept.
   */
  marks?: readonly number[];
  onMark?: (tokens: number, cache: LayerCache[]) => void;
  /** Called once the cache holds exactly the prompt, before the first decode step (a prompt-cache snapshot). */
  onPrefilled?: (cache: LayerCache[]) => void;
  /** Filled in as the loop runs (also valid when the consumer stops early). */
  stats?: LoopStats;
  /** Also yield a `{ token: -1, prefilled }` step after each prefill chunk, so an async caller can let its event loop run. */
  yieldPrefill?: boolean;
}

export interface TokenStep {
  /** -1 for a prefill progress step (only with yieldPrefill). */
  token: number;
  /** Prompt tokens processed so far; set only on prefill progress steps. */
  prefilled?: number;
  /** Logits of the distribution this token was drawn from (only with wantLogits or a host sampler). */
  logits?: Float32Array;
}

export interface LoopStats {
  prefillMs: number;
  /** Time from the first generated token to the last. */
  decodeMs: number;
  generated: number;
}

function idsArray(ids: readonly number[]): mx.Array {
  return mx.array(Int32Array.from(ids), { shape: [1, ids.length], dtype: mx.Dtype.int32 });
}

/**
 * One prompt chunk (token ids [1, L]) into `cache`, no logits. The graph is built in a scope that closes before
 * the eval, so MLX frees each layer's intermediates once they are used; evaluated inside the scope, every
 * layer's stayed alive to the end (a 512-token chunk of a 0.6B model: 1.7 GB more at peak, all of it fresh
 * memory, page-faulted in: ~8% of a 2k-token prefill). MLX's buffer cache is emptied after it, as mlx-lm does
 * between chunks.
 */
export function prefillChunk(model: LanguageModel, cache: LayerCache[], chunk: readonly number[]): void {
  mx.eval(
    mx.scope(() => {
      model.hidden(idsArray(chunk), cache);
      return cache.flatMap((c) => c.state());
    }),
  );
  mx.memory.clearCache();
}

/** Last position's logits as f32 [V]. */
function lastLogits(model: LanguageModel, h: mx.Array): mx.Array {
  const L = h.shape[1]!;
  const last = L === 1 ? h : mx.sliceAxis(h, 1, L - 1, L);
  return mx.reshape(model.logits(last), [-1]).astype(mx.Dtype.float32);
}

/**
 * Prefill chunk by chunk (a chunk also ends at each of `marks`, where `onMark` sees the evaluated cache),
 * yielding the tokens done after each chunk; returns the last token's logits [V].
 */
function* prefillChunks(
  model: LanguageModel,
  cache: LayerCache[],
  prompt: readonly number[],
  step: number,
  marks: readonly number[] = [],
  onMark?: (tokens: number) => void,
): Generator<number, mx.Array, undefined> {
  const stops = [...new Set(marks)].filter((m) => m > 0 && m < prompt.length).sort((a, b) => a - b);
  let pos = 0;
  for (;;) {
    const mark = stops.find((m) => m > pos);
    const end = Math.min(pos + step, mark ?? Number.POSITIVE_INFINITY);
    if (end >= prompt.length) break;
    prefillChunk(model, cache, prompt.slice(pos, end));
    pos = end;
    if (pos === mark) onMark?.(pos);
    yield pos;
  }
  return mx.scope(() => lastLogits(model, model.hidden(idsArray(prompt.slice(pos)), cache)));
}

/** Run the prompt through the model; returns the logits [V] after its last token (caller disposes). */
export function prefill(model: LanguageModel, cache: LayerCache[], prompt: readonly number[], step = PREFILL_STEP): mx.Array {
  const chunks = prefillChunks(model, cache, prompt, step);
  for (;;) {
    const r = chunks.next();
    if (r.done) return r.value;
  }
}

/**
 * Generate up to maxTokens tokens after `prompt`. Yields each token as soon as it is known; the
 * returned stats cover prefill and decode times. The prompt must not be empty.
 */
export function* tokenLoop(o: TokenLoopOptions): Generator<TokenStep, LoopStats, undefined> {
  const cache = o.cache ?? o.model.makeCache();
  const t0 = performance.now();
  const stats = o.stats ?? { prefillMs: 0, decodeMs: 0, generated: 0 };
  let generated = 0;
  let tDecode = 0;
  const mark = () => {
    if (generated === 0) {
      stats.prefillMs = performance.now() - t0;
      tDecode = performance.now();
    }
    generated++;
    stats.generated = generated;
    stats.decodeMs = performance.now() - tDecode;
  };
  // Device arrays still queued when the consumer stops early; freed in `finally`.
  const pending = new Set<mx.Array | null>();
  try {
    const skip = o.cached ?? 0;
    const chunks = prefillChunks(
      o.model,
      cache,
      skip ? o.prompt.slice(skip) : o.prompt,
      PREFILL_STEP,
      (o.marks ?? []).map((m) => m - skip),
      (n) => o.onMark?.(n + skip, cache),
    );
    let first: mx.Array;
    for (;;) {
      const r = chunks.next();
      if (r.done) {
        first = r.value;
        break;
      }
      if (o.yieldPrefill) yield { token: -1, prefilled: r.value };
      if (o.shouldStop?.()) return stats;
    }
    o.onPrefilled?.(cache);
    if (o.sampler) {
      // Host sampling: the next input is only known after reading the logits back.
      const history = [...o.prompt];
      let logits: mx.Array = first;
      for (;;) {
        const host = logits.toFloat32Array();
        logits.dispose();
        const token = o.sampler(host, history);
        history.push(token);
        mark();
        yield { token, logits: host };
        if (generated >= o.maxTokens || o.shouldStop?.()) break;
        logits = mx.scope(() => lastLogits(o.model, o.model.hidden(idsArray([token]), cache)));
      }
    } else if (o.deviceMask) {
      // Masked greedy: the argmax waits for the mask, but the next forward pass is queued before the
      // token is read back, so the device computes it while the host advances the grammar.
      let logits: mx.Array = first;
      for (;;) {
        const l = logits;
        const tok = mx.scope(() => mx.argmax(mx.add(l, mx.array(o.deviceMask!(l.shape[0]!))), -1));
        l.dispose();
        pending.delete(l);
        pending.add(tok);
        let next: mx.Array | null = null;
        if (generated + 1 < o.maxTokens) {
          next = mx.scope(() => lastLogits(o.model, o.model.hidden(mx.reshape(tok, [1, 1]), cache)));
          pending.add(next);
          mx.asyncEval([next]);
        }
        const token = tok.item();
        tok.dispose();
        pending.delete(tok);
        mark();
        yield { token };
        if (next === null || o.shouldStop?.()) break;
        logits = next;
        if (generated % 256 === 0) mx.memory.clearCache();
      }
    } else {
      let y = mx.scope(() => ({ tok: mx.argmax(first, -1), logits: o.wantLogits ? first : null }));
      if (!o.wantLogits) first.dispose();
      pending.add(y.tok).add(y.logits);
      mx.asyncEval(y.logits ? [y.tok, y.logits] : [y.tok]);
      for (;;) {
        let next: typeof y | null = null;
        if (generated + 1 < o.maxTokens) {
          const input = y.tok;
          next = mx.scope(() => {
            const l = lastLogits(o.model, o.model.hidden(mx.reshape(input, [1, 1]), cache));
            return { tok: mx.argmax(l, -1), logits: o.wantLogits ? l : null };
          });
          mx.asyncEval(next.logits ? [next.tok, next.logits] : [next.tok]);
          pending.add(next.tok).add(next.logits);
        }
        const token = y.tok.item();
        const host = y.logits?.toFloat32Array();
        y.tok.dispose();
        y.logits?.dispose();
        pending.delete(y.tok);
        pending.delete(y.logits);
        mark();
        yield host ? { token, logits: host } : { token };
        if (next === null || o.shouldStop?.()) break;
        y = next;
        if (generated % 256 === 0) mx.memory.clearCache();
      }
    }
  } finally {
    for (const a of pending) a?.dispose();
    if (!o.cache) for (const c of cache) c[Symbol.dispose]();
  }
  return stats;
}

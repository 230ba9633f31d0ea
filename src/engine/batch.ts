/**
 * The model side of continuous batching (the scheduler, scheduler.ts, owns the lifecycle): a newcomer is
 * prefilled on its own cache in the same chunks as a solo run, then its KV joins the batch's left-padded
 * buffers (src/models/batch_cache.ts) and every decode step runs all rows through the model at once. Each row
 * keeps its own way of choosing tokens (greedy on the device, a constraint's bias, a host sampler). A row is
 * computed exactly as alone (row-independent kernels), so batched greedy output is the solo output.
 */
import { layerOps } from "../mlx/backend.ts";
import { kernelArgmaxRows, kernelInfo } from "../mlx/kernels.ts";
import * as mx from "../mlx/index.ts";
import type { LanguageModel, LayerCache } from "../models/base.ts";
import { type BatchLayerCache, composeLayer, layerBatchRefusal } from "../models/batch_layers.ts";
import { type HostSampler, PREFILL_STEP, prefillChunk } from "./generate.ts";
import type { Batcher, RowToken } from "./scheduler.ts";

/** Why this model cannot decode a batch with every row as alone; null when it can. */
export function batchRefusal(model: LanguageModel, modelType: string): string | null {
  if (layerOps().name !== "ours" || !kernelInfo().enabled) {
    return "the backend does not run our CPU kernels (a GPU, MLXK_KERNELS=0, or unavailable); only they compute every row of a batch exactly as alone";
  }
  if (!model.rowBatched) return `${modelType} does not run a decode batch yet (its layers take one sequence at a time)`;
  const caches = model.makeCache();
  try {
    for (const c of caches) {
      const why = layerBatchRefusal(c);
      if (why) return `${modelType} has ${why}`;
    }
  } finally {
    for (const c of caches) c[Symbol.dispose]();
  }
  return null;
}

/** How one row chooses its next token from its logits [V]. */
export interface RowPolicy {
  /** Host sampling over f32 logits; absent = greedy on the device. */
  sampler?: HostSampler;
  /** Greedy under a constraint: additive bias for the next token (asked after the previous one was handed out). */
  deviceMask?: (vocab: number) => Float32Array;
  /** Hand out the f32 logits with each token (logprobs). */
  wantLogits?: boolean;
  /**
   * Greedy on the device after the repetition penalty over the row's last `window` tokens, with the host
   * sampler's arithmetic (applyRepetitionPenalty: f64, rounded to f32), so the token is the host's. Unlike a
   * host sampler it needs no read-back before the next step, so such rows are pipelined like plain greedy ones.
   */
  penalty?: { value: number; window: number };
}

export interface BatchRow {
  prompt: readonly number[];
  /** The row's own cache for prefill (a prompt-cache hit or fresh); the batch takes it over. */
  cache: LayerCache[];
  /** Leading prompt tokens the cache already holds. */
  cached: number;
  policy: RowPolicy;
  /**
   * Called once the row's cache holds exactly the prompt (a prompt-cache snapshot), before it joins; not for a
   * row whose last prompt token the batch step takes (Prefill.feed: its cache is a prompt-cache hit already).
   */
  onPrefilled?: (cache: LayerCache[]) => void;
  /**
   * The prompt-cache lookup, made when the scheduler first turns to this row rather than when it arrived: a
   * row that waited behind others sharing its prompt (clients sending the same system prompt at once) reuses
   * the KV the first of them put in the cache meanwhile. A hit replaces `cache` (the fresh one is freed) and
   * `cached`; null = prefill from `cached` on `cache`. Called at most once.
   */
  lookup?: () => { cache: LayerCache[]; cached: number } | null;
}


/** A row in prefill: feeds one chunk at a time; the last chunk gives the first token. */
export class Prefill {
  #pos: number;
  readonly history: number[];
  #looked = false;
  constructor(
    readonly row: BatchRow,
    private readonly model: LanguageModel,
  ) {
    this.#pos = row.cached;
    this.history = [...row.prompt];
  }

  /** Runs the row's deferred prompt-cache lookup once (BatchRow.lookup), before its first chunk or feed. */
  #resolve(): void {
    if (this.#looked) return;
    this.#looked = true;
    const hit = this.row.lookup?.() ?? null;
    if (!hit) return;
    for (const c of this.row.cache) c[Symbol.dispose]();
    this.row.cache = hit.cache;
    this.row.cached = hit.cached;
    this.#pos = hit.cached;
  }

  /** The last prompt token when the cache holds all the others (and some): the batch step can take it (Batcher.feed). */
  get feed(): number | null {
    this.#resolve();
    const n = this.row.prompt.length;
    return this.#pos > 0 && this.#pos === n - 1 ? this.row.prompt[n - 1]! : null;
  }

  /** Prompt tokens the next chunk processes. */
  get nextChunk(): number {
    this.#resolve();
    return Math.min(PREFILL_STEP, this.row.prompt.length - this.#pos);
  }

  /** One chunk; returns the first token once the whole prompt is in, else null. */
  chunk(): RowToken | null {
    this.#resolve();
    const { prompt, cache } = this.row;
    if (prompt.length - this.#pos > PREFILL_STEP) {
      prefillChunk(this.model, cache, prompt.slice(this.#pos, this.#pos + PREFILL_STEP));
      this.#pos += PREFILL_STEP;
      return null;
    }
    const logits = mx.scope(() => {
      const h = this.model.hidden(ids([prompt.slice(this.#pos)]), cache);
      const L = h.shape[1]!;
      return mx.reshape(this.model.logits(L === 1 ? h : mx.sliceAxis(h, 1, L - 1, L)), [1, -1]).astype(mx.Dtype.float32);
    });
    this.#pos = prompt.length;
    const [t] = chooseRows(logits, [this.row.policy], [this.history]);
    if (t instanceof Error) throw t;
    this.row.onPrefilled?.(cache);
    return t!;
  }
}

/** The running rows' shared caches, one per layer (src/models/batch_layers.ts). */
export class DecodeBatch implements Disposable {
  #layers: BatchLayerCache[] = [];
  #rows: { policy: RowPolicy; history: number[] }[] = [];

  constructor(private readonly model: LanguageModel) {}

  get size(): number {
    return this.#rows.length;
  }

  /** Bytes of the batch's KV buffers. */
  get nbytes(): number {
    return this.#layers.reduce((n, c) => n + c.nbytes, 0);
  }

  /**
   * The new membership: `keep[i]` true keeps running row i; `add` are prefilled rows (their caches taken
   * over and freed). Rebuilds the buffers once.
   */
  rebuild(keep: readonly boolean[], add: readonly { cache: LayerCache[]; policy: RowPolicy; history: number[] }[]): void {
    const kept = keep.flatMap((k, i) => (k && i < this.#rows.length ? [i] : []));
    // one per layer cache (fewer than the layers where layers share KV: gemma4)
    const next = Array.from({ length: add[0]?.cache.length ?? this.#layers.length }, (_, l) =>
      composeLayer(
        this.#layers[l] ?? null,
        kept,
        add.map((a) => a.cache[l]!),
      ),
    );
    // every layer at once, before the old buffers and the newcomers' caches go
    mx.eval(next.flatMap((c) => c.state()));
    for (const c of this.#layers) c[Symbol.dispose]();
    for (const a of add) for (const c of a.cache) c[Symbol.dispose]();
    this.#layers = next;
    this.#rows = [...kept.map((i) => this.#rows[i]!), ...add.map((a) => ({ policy: a.policy, history: a.history }))];
    mx.memory.clearCache();
  }

  /** Row i as caches of its own (compact copies), e.g. for the prompt cache. */
  extract(i: number): LayerCache[] {
    return this.#layers.map((c) => c.extract(i));
  }

  /** One decode step: `last[i]` is row i's previous token; each row gets its next token, or the error it hit. */
  step(last: readonly number[]): (RowToken | Error)[] {
    return this.collect(this.launch(last));
  }

  /** Queue a decode step on the device (returns at once); collect reads its tokens. */
  launch(last: readonly number[]): PendingStep {
    const logits = mx.scope(() => {
      const h = this.model.hidden(ids(last.map((t) => [t])), this.#layers);
      return mx.reshape(this.model.logits(h), [last.length, -1]).astype(mx.Dtype.float32);
    });
    return launchChoice(logits, this.#rows.map((r) => r.policy), this.#rows.map((r) => r.history));
  }

  collect(p: PendingStep): (RowToken | Error)[] {
    return collectChoice(p);
  }

  /** Queue the step after `p` with its greedy tokens (still on the device) as input: greedy rows only. */
  launchNext(p: PendingStep): PendingStep {
    const B = p.policies.length;
    const logits = mx.scope(() => {
      const h = this.model.hidden(mx.reshape(p.argmax, [B, 1]), this.#layers);
      return mx.reshape(this.model.logits(h), [B, -1]).astype(mx.Dtype.float32);
    });
    // p's tokens are not in the histories yet (read back after this is queued): the penalty takes them on the device
    return launchChoice(logits, this.#rows.map((r) => r.policy), this.#rows.map((r) => r.history), p.argmax);
  }

  [Symbol.dispose](): void {
    for (const c of this.#layers) c[Symbol.dispose]();
    this.#layers = [];
    this.#rows = [];
  }
}

function ids(rows: readonly (readonly number[])[]): mx.Array {
  return mx.array(Int32Array.from(rows.flat()), { shape: [rows.length, rows[0]!.length], dtype: mx.Dtype.int32 });
}

/** A step queued on the device: its logits, the greedy argmax, and the rows whose mask already failed. */
export interface PendingStep {
  logits: mx.Array;
  argmax: mx.Array;
  policies: readonly RowPolicy[];
  histories: readonly number[][];
  errors: (Error | undefined)[];
}

/**
 * Queue each row's choice over logits [B, V]: one argmax on the device for the greedy rows (masked rows with their
 * bias added, penalised rows after their repetition penalty), evaluated asynchronously with the logits when a host
 * sampler or logprobs need them. `tail` [B]: each row's newest token, still on the device (not in `histories`).
 */
function launchChoice(logits: mx.Array, policies: readonly RowPolicy[], histories: readonly number[][], tail?: mx.Array): PendingStep {
  const V = logits.shape[1]!;
  const errors: (Error | undefined)[] = new Array(policies.length);
  let bias: Float32Array | null = null;
  policies.forEach((p, i) => {
    if (p.sampler || !p.deviceMask) return;
    try {
      const b = p.deviceMask(V);
      bias ??= new Float32Array(policies.length * V);
      bias.set(b, i * V);
    } catch (e) {
      errors[i] = e instanceof Error ? e : new Error(String(e));
    }
  });
  const argmax = mx.scope(() => {
    let l = penalize(logits, policies, histories, tail);
    if (bias) l = mx.add(l, mx.array(bias, { shape: [policies.length, V] }));
    // MLX's argmax is a scalar loop on one thread (~0.75 ms of an 8-row SmolLM2 step); ours gives the same indices
    return kernelArgmaxRows(l) ?? mx.argmax(l, -1);
  });
  const needHost = policies.some((p) => p.sampler || p.wantLogits);
  mx.asyncEval(needHost ? [argmax, logits] : [argmax]);
  return { logits, argmax, policies, histories, errors };
}

/** Each row's next token from logits [B, V] (taken over), at once: launch and collect (prefill, tests). */
export function chooseRows(logits: mx.Array, policies: readonly RowPolicy[], histories: readonly number[][], tail?: mx.Array): (RowToken | Error)[] {
  return collectChoice(launchChoice(logits, policies, histories, tail));
}

/**
 * The repetition penalty of the rows with `penalty`, on the device: each distinct token among a row's last `window`
 * (a row's tokens gathered [B, W], padded with one of its own), l < 0 ? l·p : l / p in f64 rounded to f32 as the
 * host sampler computes it, scattered back (a repeated token writes the same value). Other rows pass unchanged.
 */
export function penalize(logits: mx.Array, policies: readonly RowPolicy[], histories: readonly number[][], tail?: mx.Array): mx.Array {
  const rows = policies.map((p) => (!p.sampler && !p.deviceMask && p.penalty && p.penalty.value > 0 && p.penalty.value !== 1 && p.penalty.window > 0 ? p.penalty : null));
  if (!rows.some((r) => r)) return logits;
  const B = policies.length;
  const V = logits.shape[1]!;
  const onDevice = tail ? 1 : 0;
  // each row's tokens in the window that the host knows (the newest is `tail` when given)
  const known = rows.map((r, i) => {
    if (!r) return [];
    const h = histories[i]!;
    return h.slice(Math.max(0, h.length - (r.window - onDevice))).filter((t) => t >= 0 && t < V);
  });
  const W = Math.max(1, ...known.map((k) => k.length));
  const idx = new Int32Array(B * W);
  const fromTail = new Uint8Array(B * W);
  const factor = new Float64Array(B).fill(1);
  rows.forEach((r, i) => {
    const k = known[i]!;
    // nothing to penalise (index 0 with factor 1 writes logit 0 back unchanged)
    if (!r || (k.length === 0 && !tail)) return;
    factor[i] = r.value;
    for (let j = 0; j < W; j++) {
      if (j < k.length) idx[i * W + j] = k[j]!;
      else if (k.length > 0) idx[i * W + j] = k[0]!;
      else fromTail[i * W + j] = 1;
    }
  });
  let ix = mx.array(idx, { shape: [B, W], dtype: mx.Dtype.int32 });
  if (tail) {
    const t = mx.reshape(tail, [B, 1]).astype(mx.Dtype.int32);
    ix = mx.concatenate([mx.where(mx.array(fromTail, { shape: [B, W], dtype: mx.Dtype.bool }), t, ix), t], 1);
  }
  const g = mx.takeAlongAxis(logits, ix, 1).astype(mx.Dtype.float64);
  const f = mx.array(factor, { shape: [B, 1], dtype: mx.Dtype.float64 });
  const pen = mx.where(mx.less(g, 0), mx.multiply(g, f), mx.divide(g, f)).astype(mx.Dtype.float32);
  return mx.putAlongAxis(logits, ix, pen, 1);
}

/** Wait for a queued choice: greedy rows take the argmax, host rows their sampler; a row whose policy throws gets the error. */
function collectChoice(p: PendingStep): (RowToken | Error)[] {
  const { policies, histories } = p;
  try {
    const V = p.logits.shape[1]!;
    const greedy = p.argmax.toInt32Array();
    const host = policies.some((q) => q.sampler || q.wantLogits) ? p.logits.toFloat32Array() : null;
    return policies.map((q, i) => {
      const failed = p.errors[i];
      if (failed) return failed;
      const row = () => Float32Array.from(host!.subarray(i * V, (i + 1) * V));
      try {
        const t: RowToken = q.sampler ? { token: q.sampler(row(), histories[i]!), logits: row() } : q.wantLogits ? { token: greedy[i]!, logits: row() } : { token: greedy[i]! };
        // every token handed out joins the row's history (what the penalty and the samplers look back on)
        histories[i]!.push(t.token);
        return t;
      } catch (e) {
        return e instanceof Error ? e : new Error(String(e));
      }
    });
  } finally {
    p.argmax.dispose();
    p.logits.dispose();
  }
}

/** A newcomer as the MLX batcher carries it. */
export interface MlxJoin {
  prefill: Prefill;
  /** The row's KV when it ends normally (its own caches; the receiver owns them), e.g. into the prompt cache. */
  onLeave?: (caches: LayerCache[]) => void;
}

/** The Batcher (scheduler.ts) over an MLX model. */
export class MlxBatcher implements Batcher<MlxJoin>, Disposable {
  readonly #batch: DecodeBatch;

  constructor(private readonly model: LanguageModel) {
    this.#batch = new DecodeBatch(model);
  }

  /** A newcomer's state for Scheduler.join. */
  newcomer(row: BatchRow, onLeave?: MlxJoin["onLeave"]): MlxJoin {
    return { prefill: new Prefill(row, this.model), onLeave };
  }

  prefill(j: MlxJoin): RowToken | null {
    return j.prefill.chunk();
  }

  feed(j: MlxJoin): number | null {
    return j.prefill.feed;
  }

  prefillTokens(j: MlxJoin): number {
    return j.prefill.nextChunk;
  }

  rebuild(keep: readonly boolean[], add: readonly MlxJoin[]): void {
    this.#batch.rebuild(
      keep,
      add.map((a) => ({ cache: a.prefill.row.cache, policy: a.prefill.row.policy, history: a.prefill.history })),
    );
  }

  step(last: readonly number[]): (RowToken | Error)[] {
    return this.#batch.step(last);
  }

  launch(last: readonly number[]): PendingStep {
    return this.#batch.launch(last);
  }

  collect(p: unknown): (RowToken | Error)[] {
    return this.#batch.collect(p as PendingStep);
  }

  launchNext(p: unknown): PendingStep {
    return this.#batch.launchNext(p as PendingStep);
  }

  leave(i: number, j: MlxJoin): void {
    if (j.onLeave) j.onLeave(this.#batch.extract(i));
  }

  discard(j: MlxJoin, finished: boolean): void {
    const caches = j.prefill.row.cache;
    if (finished && j.onLeave) j.onLeave(caches);
    else for (const c of caches) c[Symbol.dispose]();
  }

  [Symbol.dispose](): void {
    this.#batch[Symbol.dispose]();
  }
}

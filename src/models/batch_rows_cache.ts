/**
 * Sliding-window layers of a decode batch (continuous batching, src/engine/scheduler.ts): each row keeps its
 * own RotatingKVCache (the one its prefill filled), writes its token into its own ring and attends over its
 * own window with the same call a solo step makes. Rows sit at different places in their rings (different
 * lengths, wrapped or not), and attention sums keys in ring order, so one shared buffer would add them in
 * another order than alone; per-row rings keep every row bit-identical to its solo run, at the cost of one
 * small attention call per row in these layers (the projections, MLP and full-attention layers still run the
 * batch at once). Rows join and leave as clones of their caches (new handles on the same buffers, no copy).
 */
import * as mx from "../mlx/index.ts";
import type { RowsCache } from "./batch_cache.ts";
import { type KVCache, type Mask, RotatingKVCache } from "./cache.ts";

/** Attention of one row: q [1, Hq, 1, D] over its keys/values [1, Hkv, S, D] (the solo call) → [1, Hq, 1, D]. */
export type RowAttention = (q: mx.Array, keys: mx.Array, values: mx.Array) => mx.Array;

/** A batch cache whose rows attend one at a time through their own caches. */
export interface PerRowCache {
  attendEach(q: mx.Array, k: mx.Array, v: mx.Array, attend: RowAttention): mx.Array;
}

export function isPerRowCache(c: unknown): c is PerRowCache & KVCache {
  return typeof (c as Partial<PerRowCache>).attendEach === "function";
}

export class BatchRotatingKVCache implements KVCache, RowsCache, PerRowCache {
  #rows: RotatingKVCache[] = [];

  private constructor() {}

  /**
   * The next membership: rows `keep` of `prev` (in order), then the newcomers' caches `add`, each as a clone
   * (new handles on the same buffers): `prev` and the newcomers are left as they were, for the caller to free,
   * after which each ring has one owner again and is written in place.
   */
  static compose(prev: BatchRotatingKVCache | null, keep: readonly number[], add: readonly RotatingKVCache[]): BatchRotatingKVCache {
    const c = new BatchRotatingKVCache();
    c.#rows = [...keep.map((i) => prev!.#rows[i]!.clone()), ...add.map((a) => a.clone())];
    return c;
  }

  get batch(): number {
    return this.#rows.length;
  }

  get offset(): number {
    return Math.max(0, ...this.#rows.map((r) => r.offset));
  }

  get rowOffsets(): number[] {
    return this.#rows.map((r) => r.offset);
  }

  /** Each row's keys start at 0 of its own ring (RowsCache's shape; attention goes through attendEach). */
  get rowStarts(): number[] {
    return this.#rows.map(() => 0);
  }

  makeMask(L: number): Mask {
    if (L !== 1) throw new Error("BatchRotatingKVCache decodes one token per row; prefill runs on the row's own cache");
    return undefined;
  }

  updateAndFetch(): [mx.Array, mx.Array] {
    throw new Error("BatchRotatingKVCache: rows attend one at a time (attendEach)");
  }

  /** q, k, v [B, H, 1, D]: row b writes its k, v into its ring and attends over it → [B, Hq, 1, D]. */
  attendEach(q: mx.Array, k: mx.Array, v: mx.Array, attend: RowAttention): mx.Array {
    return this.update(k, v).attend(q, attend);
  }

  /** Write row b's k, v [B, H, 1, D] into its ring; the rows' keys and values to attend to (with one query or more). */
  update(k: mx.Array, v: mx.Array): { attend(q: mx.Array, attend: RowAttention): mx.Array } {
    const B = this.#rows.length;
    if (k.shape[0] !== B || k.shape[2] !== 1) throw new Error(`BatchRotatingKVCache: expected [${B}, H, 1, D], got [${k.shape.join(", ")}]`);
    const row = (a: mx.Array, b: number) => (B === 1 ? a : mx.sliceAxis(a, 0, b, b + 1));
    const kv = this.#rows.map((r, b) => r.updateAndFetch(row(k, b), row(v, b)));
    return {
      attend: (q, attend) => {
        const out = kv.map(([K, V], b) => attend(row(q, b), K, V));
        return B === 1 ? out[0]! : mx.concatenate(out, 0);
      },
    };
  }

  /** Row b as a cache of its own (a clone sharing its buffers; MLX copies on the next write). */
  extract(b: number): RotatingKVCache {
    return this.#rows[b]!.clone();
  }

  state(): mx.Array[] {
    return this.#rows.flatMap((r) => r.state());
  }

  get nbytes(): number {
    return this.state().reduce((n, a) => n + a.nbytes, 0);
  }

  [Symbol.dispose](): void {
    for (const r of this.#rows) r[Symbol.dispose]();
    this.#rows = [];
  }
}

/**
 * The recurrent state of a decode batch (continuous batching, src/engine/scheduler.ts) for linear-attention
 * and short-conv layers (Gated DeltaNet in qwen3_5 / qwen3_next, lfm2's conv): every slot of ArraysCache
 * stacked over the rows, [B, ...]. A recurrent state has a fixed size whatever the row's length, so rows need
 * no padding: the layer runs the batch as B independent sequences (the conv over each row's own last inputs,
 * the gated delta kernel one state row at a time), and a row's result is the one it gets alone. Rows join and
 * leave between decode steps by gathering the kept rows and appending the newcomers' states (a copy, once).
 */
import * as mx from "../mlx/index.ts";
import { ArraysCache } from "./arrays_cache.ts";

export class BatchArraysCache extends ArraysCache {
  #offsets: number[] = [];

  private constructor(size: number) {
    super(size);
  }

  /**
   * The next membership: rows `keep` of `prev` (in order), then the newcomers `add` (their own caches, left
   * as they are). Not evaluated here: the caller evaluates every layer at once.
   */
  static compose(prev: BatchArraysCache | null, keep: readonly number[], add: readonly ArraysCache[]): BatchArraysCache {
    const c = new BatchArraysCache(prev?.size ?? add[0]?.size ?? 0);
    c.#offsets = [...keep.map((i) => prev!.#offsets[i]!), ...add.map((a) => a.offset)];
    if (c.#offsets.length === 0) return c;
    const same = prev !== null && keep.length === prev.batch && keep.every((k, n) => k === n);
    for (let s = 0; s < c.size; s++) {
      const next = mx.scope(() => {
        const parts: mx.Array[] = [];
        if (keep.length > 0) {
          const old = prev!.get(s);
          if (!old) throw new Error(`BatchArraysCache: slot ${s} of the running rows is empty`);
          parts.push(same ? old : mx.take(old, mx.array(Int32Array.from(keep), { shape: [keep.length], dtype: mx.Dtype.int32 }), 0));
        }
        for (const a of add) {
          const v = a.get(s);
          if (!v) throw new Error(`BatchArraysCache: slot ${s} of a newcomer is empty (it was never prefilled)`);
          parts.push(v);
        }
        // a fresh array even when nothing changed, so the new cache owns what it frees
        return parts.length === 1 ? mx.contiguous(parts[0]!) : mx.concatenate(parts, 0);
      });
      c.set(s, next);
    }
    return c;
  }

  get batch(): number {
    return this.#offsets.length;
  }

  /** The longest row (ArraysCache's offset; each row's own count is in rowOffsets). */
  override get offset(): number {
    return this.#offsets.length > 0 ? Math.max(...this.#offsets) : 0;
  }

  get rowOffsets(): readonly number[] {
    return this.#offsets;
  }

  override advance(n: number): void {
    this.#offsets = this.#offsets.map((o) => o + n);
  }

  /** Row b as a cache of its own (compact copies of its slots), e.g. for the prompt cache. */
  extract(b: number): ArraysCache {
    const c = new ArraysCache(this.size);
    for (let s = 0; s < this.size; s++) {
      const v = this.get(s);
      if (v) c.set(s, mx.scope(() => mx.contiguous(mx.sliceAxis(v, 0, b, b + 1))));
    }
    mx.eval(c.state());
    c.advance(this.#offsets[b]!);
    return c;
  }

  /** Bytes the stacked slots hold. */
  get nbytes(): number {
    return this.state().reduce((n, a) => n + a.nbytes, 0);
  }

  override [Symbol.dispose](): void {
    super[Symbol.dispose]();
    this.#offsets = [];
  }
}

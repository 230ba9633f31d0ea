/**
 * The KV cache of a decode batch (continuous batching, src/engine/scheduler.ts), as mlx-lm's BatchKVCache keeps
 * it: one buffer [B, H, cap, D] per layer, rows left-padded so every row writes its next position at the same
 * index (one slice_update for the batch); row b holds its tokens in [starts[b], idx). Attention reads each row
 * from its own start (fastSdpaRows) and rope rotates each row at its own offset, so a row is computed exactly
 * as it would be alone. Rows join and leave between decode steps by rebuilding the buffers (a copy, once).
 */
import { layerOps } from "../mlx/backend.ts";
import * as mx from "../mlx/index.ts";
import { type KVCache, type Mask, StandardKVCache } from "./cache.ts";
import type { RopeLayer } from "./rope.ts";

const STEP = 256;

/** A cache that decodes several sequences at once: each row's position and the first key it may see. */
export interface RowsCache {
  /** Tokens each row has seen (its rope position for the next token). */
  readonly rowOffsets: readonly number[];
  /** First key of each row in the buffers (left padding before it). */
  readonly rowStarts: readonly number[];
}

export function isRowsCache(c: unknown): c is RowsCache & KVCache {
  return Array.isArray((c as Partial<RowsCache>).rowStarts);
}

/**
 * x [B, H, L, D] rotated at the cache's position: in a decode batch each row at its own, in one op where the rope
 * has one (forwardRows), else row by row with the solo call (a rope whose angles depend on the sequence length:
 * dynamic NTK, longrope).
 */
export function ropeAt(rope: RopeLayer, x: mx.Array, cache: KVCache): mx.Array {
  return isRowsCache(cache) ? ropeRows(rope, x, cache.rowOffsets) : rope.forward(x, cache.offset);
}

/** x [B, H, L, D] with row b rotated at offsets[b] (see ropeAt). */
export function ropeRows(rope: RopeLayer, x: mx.Array, offsets: readonly number[]): mx.Array {
  if (rope.forwardRows) return rope.forwardRows(x, offsets);
  return eachRow(x, offsets, (xb, off) => rope.forward(xb, off));
}

/** fn(row b of x, offsets[b]) for every row, concatenated back along axis 0. */
export function eachRow(x: mx.Array, offsets: readonly number[], fn: (xb: mx.Array, offset: number) => mx.Array): mx.Array {
  if (offsets.length === 1) return fn(x, offsets[0]!);
  return mx.concatenate(offsets.map((off, b) => fn(mx.sliceAxis(x, 0, b, b + 1), off)), 0);
}

/** One row's keys and values [1, H, len, D] (views are fine: build copies them). */
export interface RowKV {
  keys: mx.Array;
  values: mx.Array;
}

/** Rows [from, to) of the previous buffers land at rows [at, at + to - from) of the next. */
interface Run {
  from: number;
  to: number;
  at: number;
}

/** The kept rows (indices into the previous buffers, in their new order) as runs of consecutive rows. */
function runsOf(keep: readonly number[]): Run[] {
  const runs: Run[] = [];
  keep.forEach((k, n) => {
    const last = runs[runs.length - 1];
    if (last && last.to === k) last.to++;
    else runs.push({ from: k, to: k + 1, at: n });
  });
  return runs;
}

export class BatchKVCache implements KVCache, RowsCache {
  #keys: mx.Array | null = null;
  #values: mx.Array | null = null;
  /** Next write position, the same for every row. */
  #idx = 0;
  #starts: number[] = [];

  /** The buffers for `rows` (in order), right-aligned at the longest (not evaluated: see compose). */
  static build(rows: readonly RowKV[]): BatchKVCache {
    return BatchKVCache.compose(null, [], rows);
  }

  /**
   * The next membership: the rows `keep` (indices into `prev`, in order) then `add`, right-aligned at the
   * longest. Every kept value is copied once: with our kernels only the live spans (kv_compose: the left padding
   * zeroed, the capacity past the write position unfilled, ~3x faster at 8 rows); else runs of consecutive kept
   * rows and the new rows written into a zeroed buffer (only leaving: the runs concatenated). Nothing is evaluated
   * here, so the caller evaluates all layers at once. `prev` is left as it was.
   */
  static compose(prev: BatchKVCache | null, keep: readonly number[], add: readonly RowKV[]): BatchKVCache {
    const c = new BatchKVCache();
    const keptLens = prev ? keep.map((i) => prev.#idx - prev.#starts[i]!) : [];
    const addLens = add.map((r) => r.keys.shape[2]!);
    const B = keptLens.length + addLens.length;
    if (B === 0) return c;
    const keptMax = keptLens.length > 0 ? Math.max(...keptLens) : 0;
    const idx = Math.max(keptMax, ...addLens);
    const both = BatchKVCache.#composeKernel(prev, keep, keptLens, add, idx) ?? mx.scope(() => {
      const one = (buf: mx.Array | null, rows: mx.Array[]): mx.Array => {
        // the kept rows' live span, as runs of consecutive rows (views; a gather of the strided span copies
        // element by element, ~6x slower than these block copies)
        const runs = prev && buf ? runsOf(keep) : [];
        const span = (r: Run, end: number) => {
          const [, H, , D] = buf!.shape as [number, number, number, number];
          return mx.slice(buf!, [r.from, 0, prev!.#idx - keptMax, 0], [r.to, H, end, D]);
        };
        // only rows leaving: the kept runs in one copy, keeping the old capacity after the write position
        if (add.length === 0) {
          const all = runs.map((r) => span(r, buf!.shape[2]!));
          return all.length === 1 ? mx.contiguous(all[0]!) : mx.concatenate(all, 0);
        }
        const like = rows[0] ?? buf!;
        const [, H, , D] = like.shape as [number, number, number, number];
        const cap = (Math.floor(idx / STEP) + 1) * STEP;
        let out = mx.zeros([B, H, cap, D], like.dtype);
        // each write in place: the previous handle goes at once, so MLX may donate its buffer to the next
        const write = (a: mx.Array, start: number[], stop: number[]) => {
          const next = mx.sliceUpdate(out, a, start, stop);
          out.dispose();
          out = next;
        };
        for (const r of runs) write(span(r, prev!.#idx), [r.at, 0, idx - keptMax, 0], [r.at + r.to - r.from, H, idx, D]);
        rows.forEach((r, n) => {
          const b = keep.length + n;
          write(r, [b, 0, idx - r.shape[2]!, 0], [b + 1, H, idx, D]);
        });
        return out;
      };
      return [one(prev ? prev.#keys : null, add.map((r) => r.keys)), one(prev ? prev.#values : null, add.map((r) => r.values))] as const;
    });
    mx.keep([...both]);
    c.#keys = both[0];
    c.#values = both[1];
    // only rows leaving: the buffer starts at the kept span, so the write position is the longest kept row
    c.#idx = idx;
    c.#starts = [...keptLens.map((l) => idx - l), ...addLens.map((l) => idx - l)];
    return c;
  }

  /**
   * compose's buffers from our kernel (kv_compose.cpp): only the live spans copied, the left padding zeroed, the
   * capacity past idx left unfilled; null where it cannot run (the MLX-op composition then). Either way every row
   * holds the same keys and values at the same positions.
   */
  static #composeKernel(prev: BatchKVCache | null, keep: readonly number[], keptLens: readonly number[], add: readonly RowKV[], idx: number): readonly [mx.Array, mx.Array] | null {
    const ops = layerOps();
    const B = keep.length + add.length;
    const cap = (Math.floor(idx / STEP) + 1) * STEP;
    const one = (buf: mx.Array | null, rows: mx.Array[]): mx.Array | null => {
      const srcs: mx.Array[] = keep.length > 0 ? [buf!] : [];
      const plan = new Int32Array(4 * B);
      keep.forEach((k, n) => plan.set([0, k, prev!.#starts[k]!, keptLens[n]!], 4 * n));
      rows.forEach((r, n) => {
        srcs.push(r);
        plan.set([srcs.length - 1, 0, 0, r.shape[2]!], 4 * (keep.length + n));
      });
      const d = srcs[0]!.dtype;
      if (!srcs.every((a) => a.ndim === 4 && a.dtype === d)) return null;
      return ops.kvCompose(srcs, plan, idx, cap);
    };
    const k = one(prev ? prev.#keys : null, add.map((r) => r.keys));
    if (!k) return null;
    const v = one(prev ? prev.#values : null, add.map((r) => r.values));
    if (!v) {
      k.dispose();
      return null;
    }
    return [k, v];
  }

  get batch(): number {
    return this.#starts.length;
  }

  /** The write position (the longest row's length). */
  get offset(): number {
    return this.#idx;
  }

  get rowOffsets(): number[] {
    return this.#starts.map((s) => this.#idx - s);
  }

  get rowStarts(): number[] {
    return this.#starts;
  }

  makeMask(L: number): Mask {
    if (L !== 1) throw new Error("BatchKVCache decodes one token per row; prefill runs on the row's own cache");
    return undefined;
  }

  /** Row b's keys and values [1, H, len, D] (views of the buffers). */
  row(b: number): RowKV {
    const K = this.#keys!;
    const V = this.#values!;
    const [, H, , Dk] = K.shape as [number, number, number, number];
    const Dv = V.shape[3]!;
    const s = this.#starts[b]!;
    return {
      keys: mx.slice(K, [b, 0, s, 0], [b + 1, H, this.#idx, Dk]),
      values: mx.slice(V, [b, 0, s, 0], [b + 1, H, this.#idx, Dv]),
    };
  }

  /** Row b as a cache of its own (a compact copy), e.g. for the prompt cache. */
  extract(b: number): StandardKVCache {
    const r = mx.scope(() => {
      const v = this.row(b);
      return [mx.contiguous(v.keys), mx.contiguous(v.values)] as const;
    });
    mx.eval([...r]);
    return StandardKVCache.fromArrays(r[0], r[1]);
  }

  updateAndFetch(k: mx.Array, v: mx.Array): [mx.Array, mx.Array] {
    const [K, V, n] = this.updateBuffers(k, v);
    const [B, H, , Dk] = K.shape as [number, number, number, number];
    return [mx.slice(K, [0, 0, 0, 0], [B, H, n, Dk]), mx.slice(V, [0, 0, 0, 0], [B, H, n, V.shape[3]!])];
  }

  /**
   * Append each row's k, v [B, H, 1, D]; returns the whole buffers and the write position after it (row b's keys
   * are [rowStarts[b], n)), for kernels that take the span instead of a sliced view (the fused block).
   */
  updateBuffers(k: mx.Array, v: mx.Array): [mx.Array, mx.Array, number] {
    const [B, H, L, Dk] = k.shape as [number, number, number, number];
    const Dv = v.shape[3]!;
    if (L !== 1 || B !== this.batch) throw new Error(`BatchKVCache: expected [${this.batch}, H, 1, D], got [${k.shape.join(", ")}]`);
    let K = this.#keys!;
    let V = this.#values!;
    if (this.#idx + 1 > K.shape[2]!) {
      K = mx.concatenate([K, mx.zeros([B, H, STEP, Dk], K.dtype)], 2);
      V = mx.concatenate([V, mx.zeros([B, H, STEP, Dv], V.dtype)], 2);
    }
    const i = this.#idx;
    this.#set(mx.sliceUpdate(K, k, [0, 0, i, 0], [B, H, i + 1, Dk]), mx.sliceUpdate(V, v, [0, 0, i, 0], [B, H, i + 1, Dv]));
    this.#idx = i + 1;
    return [this.#keys!, this.#values!, this.#idx];
  }

  #set(k: mx.Array, v: mx.Array): void {
    mx.keep([k, v]);
    if (this.#keys !== k) this.#keys?.dispose();
    if (this.#values !== v) this.#values?.dispose();
    this.#keys = k;
    this.#values = v;
  }

  state(): mx.Array[] {
    return this.#keys ? [this.#keys, this.#values!] : [];
  }

  /** Bytes the buffers hold. */
  get nbytes(): number {
    return (this.#keys?.nbytes ?? 0) + (this.#values?.nbytes ?? 0);
  }

  [Symbol.dispose](): void {
    this.#keys?.dispose();
    this.#values?.dispose();
    this.#keys = this.#values = null;
    this.#starts = [];
    this.#idx = 0;
  }
}

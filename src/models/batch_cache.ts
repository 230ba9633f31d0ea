/**
 * The KV cache of a decode batch (continuous batching, src/engine/scheduler.ts), as mlx-lm's BatchKVCache keeps
 * it: one buffer [B, H, cap, D] per layer, rows left-padded so every row writes its next position at the same
 * index (one slice_update for the batch); row b holds its tokens in [starts[b], idx). Attention reads each row
 * from its own start (fastSdpaRows) and rope rotates each row at its own offset, so a row is computed exactly
 * as it would be alone. Rows join and leave between decode steps by rebuilding the buffers (a copy, once).
 */
import * as mx from "../mlx/index.ts";
import { type KVCache, type Mask, StandardKVCache } from "./cache.ts";

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

/** One row's keys and values [1, H, len, D] (views are fine: build copies them). */
export interface RowKV {
  keys: mx.Array;
  values: mx.Array;
}

export class BatchKVCache implements KVCache, RowsCache {
  #keys: mx.Array | null = null;
  #values: mx.Array | null = null;
  /** Next write position, the same for every row. */
  #idx = 0;
  #starts: number[] = [];

  /** The buffers for `rows` (in order), right-aligned at the longest; evaluated, so the inputs may be freed. */
  static build(rows: readonly RowKV[]): BatchKVCache {
    const c = new BatchKVCache();
    if (rows.length === 0) return c;
    const idx = Math.max(...rows.map((r) => r.keys.shape[2]!));
    // room for the next STEP tokens without regrowing
    const cap = (Math.floor(idx / STEP) + 1) * STEP;
    const pad = (a: mx.Array, left: number, right: number) => {
      const [, H, , D] = a.shape as [number, number, number, number];
      const parts = [...(left > 0 ? [mx.zeros([1, H, left, D], a.dtype)] : []), a, ...(right > 0 ? [mx.zeros([1, H, right, D], a.dtype)] : [])];
      return parts.length === 1 ? a : mx.concatenate(parts, 2);
    };
    const both = mx.scope(() => {
      const ks = rows.map((r) => pad(r.keys, idx - r.keys.shape[2]!, cap - idx));
      const vs = rows.map((r) => pad(r.values, idx - r.values.shape[2]!, cap - idx));
      return [ks.length === 1 ? mx.contiguous(ks[0]!) : mx.concatenate(ks, 0), vs.length === 1 ? mx.contiguous(vs[0]!) : mx.concatenate(vs, 0)] as const;
    });
    mx.keep([...both]);
    mx.eval([...both]);
    c.#keys = both[0];
    c.#values = both[1];
    c.#idx = idx;
    c.#starts = rows.map((r) => idx - r.keys.shape[2]!);
    return c;
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
    return [mx.slice(this.#keys!, [0, 0, 0, 0], [B, H, this.#idx, Dk]), mx.slice(this.#values!, [0, 0, 0, 0], [B, H, this.#idx, Dv])];
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

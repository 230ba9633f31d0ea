/**
 * KV caches, as mlx-lm keeps them (models/cache.py): a buffer that grows in steps of 256 positions and is
 * written in place with slice_update, and a rotating one for sliding-window layers that never holds more
 * than the window. Cache arrays outlive the decode step's scope: they are `keep()`-ed and freed here.
 */
import * as mx from "../mlx/index.ts";

/** What SDPA gets as mask: none, the fused causal mask, or an explicit boolean array. */
export type Mask = "causal" | mx.Array | undefined;

export interface KVCache extends Disposable {
  readonly offset: number;
  /** Mask for L new queries at the current offset (before the update). */
  makeMask(L: number): Mask;
  /** Append k, v [B, H, L, D]; returns all keys/values to attend to. */
  updateAndFetch(k: mx.Array, v: mx.Array): [mx.Array, mx.Array];
  /** Arrays to evaluate so the cache is materialised (after a prefill chunk). */
  state(): mx.Array[];
}

const STEP = 256;

/** Causal mask for N queries at `offset` over offset+N keys, optionally limited to a window. */
export function causalMask(N: number, offset: number, window?: number): mx.Array {
  const rinds = mx.arange(0, offset + N, 1, mx.Dtype.int32);
  const linds = mx.reshape(mx.arange(offset, offset + N, 1, mx.Dtype.int32), [N, 1]);
  let mask = mx.greaterEqual(linds, rinds);
  if (window !== undefined) mask = mx.logicalAnd(mask, mx.less(linds, mx.add(rinds, mx.scalar(window, mx.Dtype.int32))));
  return mask;
}

/** The key/value buffers both caches own: replaced as a pair, old handles freed so MLX can update in place. */
abstract class CacheBuffers implements Disposable {
  protected keys: mx.Array | null = null;
  protected values: mx.Array | null = null;

  protected setBuffers(k: mx.Array, v: mx.Array): void {
    mx.keep([k, v]);
    if (this.keys !== k) this.keys?.dispose();
    if (this.values !== v) this.values?.dispose();
    this.keys = k;
    this.values = v;
  }

  state(): mx.Array[] {
    return this.keys ? [this.keys, this.values!] : [];
  }

  /** Give `dst` this cache's buffers under new handles (a clone; MLX copies a shared buffer on first write). */
  protected cloneInto(dst: CacheBuffers): void {
    if (this.keys) dst.setBuffers(this.keys.retain(), this.values!.retain());
  }

  [Symbol.dispose](): void {
    this.keys?.dispose();
    this.values?.dispose();
    this.keys = this.values = null;
  }
}

export class StandardKVCache extends CacheBuffers implements KVCache, ReusableCache {
  #offset = 0;
  readonly trimmable = true;

  get offset(): number {
    return this.#offset;
  }

  /** A cache holding exactly `keys`, `values` [B, H, L, D] (takes them over), e.g. one row of a decode batch. */
  static fromArrays(keys: mx.Array, values: mx.Array): StandardKVCache {
    const c = new StandardKVCache();
    c.setBuffers(keys, values);
    c.#offset = keys.shape[2]!;
    return c;
  }

  clone(): StandardKVCache {
    const c = new StandardKVCache();
    this.cloneInto(c);
    c.#offset = this.#offset;
    return c;
  }

  /** Positions past the offset are never read (updateAndFetch slices to it), so trimming is moving it back. */
  trim(n: number): number {
    const d = Math.max(0, Math.min(n, this.#offset));
    this.#offset -= d;
    return d;
  }

  makeMask(L: number): Mask {
    return L === 1 ? undefined : "causal";
  }

  updateAndFetch(k: mx.Array, v: mx.Array): [mx.Array, mx.Array] {
    const [K, V, n] = this.updateBuffers(k, v);
    const [B, H, cap, Dk] = K.shape as [number, number, number, number];
    if (n === cap) return [K, V];
    return [mx.slice(K, [0, 0, 0, 0], [B, H, n, Dk]), mx.slice(V, [0, 0, 0, 0], [B, H, n, V.shape[3]!])];
  }

  /**
   * Append k, v [B, H, L, D]; returns the whole buffers and how many leading positions are valid (what
   * updateAndFetch slices to), for kernels that take the length instead of a sliced view.
   */
  updateBuffers(k: mx.Array, v: mx.Array): [mx.Array, mx.Array, number] {
    const prev = this.#offset;
    const L = k.shape[2]!;
    if (this.keys === null || prev + L > this.keys.shape[2]!) {
      const [B, H, , Dk] = k.shape as [number, number, number, number];
      const Dv = v.shape[3]!;
      const n = Math.ceil(L / STEP) * STEP;
      const nk = mx.zeros([B, H, n, Dk], k.dtype);
      const nv = mx.zeros([B, H, n, Dv], v.dtype);
      if (this.keys === null) {
        this.setBuffers(nk, nv);
      } else {
        const ok = prev % STEP === 0 ? this.keys : mx.slice(this.keys, [0, 0, 0, 0], [B, H, prev, Dk]);
        const ov = prev % STEP === 0 ? this.values! : mx.slice(this.values!, [0, 0, 0, 0], [B, H, prev, Dv]);
        this.setBuffers(mx.concatenate([ok, nk], 2), mx.concatenate([ov, nv], 2));
      }
    }
    this.#offset += L;
    const K = this.keys!;
    const V = this.values!;
    const [B, H, , Dk] = K.shape as [number, number, number, number];
    const Dv = V.shape[3]!;
    this.setBuffers(
      mx.sliceUpdate(K, k, [0, 0, prev, 0], [B, H, this.#offset, Dk]),
      mx.sliceUpdate(V, v, [0, 0, prev, 0], [B, H, this.#offset, Dv]),
    );
    return [this.keys!, this.values!, this.#offset];
  }
}

/**
 * Sliding-window cache (keep = 0): holds the last `maxSize` positions. Decode writes into a ring buffer
 * (attention is order-independent once rope is applied); prefill appends in temporal order and trims.
 */
export class RotatingKVCache extends CacheBuffers implements KVCache, ReusableCache {
  #offset = 0;
  /** Next write position in the ring; equals the buffer length while it is in temporal order. */
  #idx = 0;
  #ordered = true;
  /** Positions that left the window are gone: only the whole cache can be reused (by a longer prompt). */
  readonly trimmable = false;

  constructor(readonly maxSize: number) {
    super();
  }

  clone(): RotatingKVCache {
    const c = new RotatingKVCache(this.maxSize);
    this.cloneInto(c);
    c.#offset = this.#offset;
    c.#idx = this.#idx;
    c.#ordered = this.#ordered;
    return c;
  }

  trim(): number {
    return 0;
  }

  get offset(): number {
    return this.#offset;
  }

  makeMask(L: number): Mask {
    if (L === 1) return undefined;
    const offset = Math.min(this.maxSize - 1, this.#offset);
    return offset + L > this.maxSize ? causalMask(L, offset, this.maxSize) : "causal";
  }

  updateAndFetch(k: mx.Array, v: mx.Array): [mx.Array, mx.Array] {
    return k.shape[2] === 1 ? this.#inPlace(k, v) : this.#concat(k, v);
  }

  #temporal(a: mx.Array): mx.Array {
    const [B, H, n, D] = a.shape as [number, number, number, number];
    if (this.#ordered || this.#idx === n) return a;
    const tail = mx.slice(a, [0, 0, this.#idx, 0], [B, H, n, D]);
    const head = mx.slice(a, [0, 0, 0, 0], [B, H, this.#idx, D]);
    return mx.concatenate([tail, head], 2);
  }

  #concat(k: mx.Array, v: mx.Array): [mx.Array, mx.Array] {
    let K = k;
    let V = v;
    if (this.keys !== null) {
      // Keep maxSize - 1 old positions so every new query sees a full window.
      const ok = this.#temporal(this.keys);
      const ov = this.#temporal(this.values!);
      const n = ok.shape[2]!;
      const drop = Math.max(0, n - this.maxSize + 1);
      const [B, H, , Dk] = ok.shape as [number, number, number, number];
      const Dv = ov.shape[3]!;
      K = mx.concatenate([mx.slice(ok, [0, 0, drop, 0], [B, H, n, Dk]), k], 2);
      V = mx.concatenate([mx.slice(ov, [0, 0, drop, 0], [B, H, n, Dv]), v], 2);
    }
    this.setBuffers(K, V);
    this.#offset += k.shape[2]!;
    this.#idx = K.shape[2]!;
    this.#ordered = true;
    return [K, V];
  }

  #inPlace(k: mx.Array, v: mx.Array): [mx.Array, mx.Array] {
    const [B, H, , Dk] = k.shape as [number, number, number, number];
    const Dv = v.shape[3]!;
    if (this.keys !== null && this.keys.shape[2]! > this.maxSize) {
      // After a long prefill the buffer may exceed the window: keep the last maxSize, in order.
      const K = this.#temporal(this.keys);
      const V = this.#temporal(this.values!);
      const n = K.shape[2]!;
      this.setBuffers(mx.slice(K, [0, 0, n - this.maxSize, 0], [B, H, n, Dk]), mx.slice(V, [0, 0, n - this.maxSize, 0], [B, H, n, Dv]));
      this.#idx = this.maxSize;
      this.#ordered = true;
    }
    if (this.keys === null || (this.#idx >= this.keys.shape[2]! && this.keys.shape[2]! < this.maxSize)) {
      const grow = Math.min(STEP, this.maxSize - (this.keys?.shape[2] ?? 0));
      const nk = mx.zeros([B, H, grow, Dk], k.dtype);
      const nv = mx.zeros([B, H, grow, Dv], v.dtype);
      if (this.keys === null) this.setBuffers(nk, nv);
      else this.setBuffers(mx.concatenate([this.keys, nk], 2), mx.concatenate([this.values!, nv], 2));
    }
    if (this.#idx === this.maxSize) {
      this.#idx = 0;
      this.#ordered = false;
    }
    const i = this.#idx;
    this.setBuffers(
      mx.sliceUpdate(this.keys!, k, [0, 0, i, 0], [B, H, i + 1, Dk]),
      mx.sliceUpdate(this.values!, v, [0, 0, i, 0], [B, H, i + 1, Dv]),
    );
    this.#offset += 1;
    this.#idx += 1;
    const n = Math.min(this.#offset, this.keys!.shape[2]!);
    if (n === this.keys!.shape[2]) return [this.keys!, this.values!];
    return [mx.slice(this.keys!, [0, 0, 0, 0], [B, H, n, Dk]), mx.slice(this.values!, [0, 0, 0, 0], [B, H, n, Dv])];
  }
}

/**
 * What the prompt cache (src/engine/prompt-cache.ts) needs of a layer cache to keep it across requests: a
 * clone sharing the buffers (the kept entry never changes), and, where the cache holds every position,
 * trimming back to a shorter prefix. A cache kind without these (e.g. a recurrent state) is never reused.
 */
export interface ReusableCache {
  clone(): ReusableCache;
  /** True when trim(n) leaves exactly the cache of the first offset − n tokens. */
  readonly trimmable: boolean;
  /** Drop the last n positions (trimmable caches only); returns how many were dropped. */
  trim(n: number): number;
}

export function isReusable(c: unknown): c is ReusableCache {
  const r = c as Partial<ReusableCache>;
  return typeof r.clone === "function" && typeof r.trim === "function" && typeof r.trimmable === "boolean";
}

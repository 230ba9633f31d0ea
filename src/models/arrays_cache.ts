/**
 * The recurrent-state cache of linear-attention layers, as mlx-lm keeps it (models/cache.py ArraysCache,
 * mlx-lm 0.32.2): a fixed number of slots (Gated DeltaNet: [0] the last K-1 conv inputs, [1] the SSM
 * state), replaced whole each step. Slots outlive the step's scope: they are `keep()`-ed here and the
 * previous array is freed on replacement. A recurrent state cannot be rewound, so the prompt cache keeps
 * clones of it at message boundaries (src/engine/prompt-cache.ts snapshot) instead of trimming it.
 */
import * as mx from "../mlx/index.ts";
import type { LayerCache } from "./base.ts";
import type { ReusableCache } from "./cache.ts";

export class ArraysCache implements LayerCache, ReusableCache {
  /** The state after n tokens cannot be turned back into the state after fewer. */
  readonly trimmable = false;
  readonly #slots: (mx.Array | null)[];
  #offset = 0;

  constructor(size: number) {
    this.#slots = Array.from({ length: size }, () => null);
  }

  get offset(): number {
    return this.#offset;
  }

  /** Number of slots. */
  get size(): number {
    return this.#slots.length;
  }

  /** The same slots under new handles: every step replaces a slot whole, so the clone never sees a later write. */
  clone(): ArraysCache {
    const c = new ArraysCache(this.#slots.length);
    this.#slots.forEach((a, i) => {
      c.#slots[i] = a ? a.retain() : null;
    });
    c.#offset = this.#offset;
    return c;
  }

  trim(): number {
    return 0;
  }

  get(i: number): mx.Array | null {
    return this.#slots[i] ?? null;
  }

  /** Replace slot i (the old array is freed; the new one is owned by the cache). */
  set(i: number, a: mx.Array): void {
    const old = this.#slots[i];
    this.#slots[i] = mx.keep(a);
    if (old && old !== a) old.dispose();
  }

  /** Count `n` more tokens (mlx-lm's advance; no padding, so only the offset moves). */
  advance(n: number): void {
    this.#offset += n;
  }

  state(): mx.Array[] {
    return this.#slots.filter((a): a is mx.Array => a !== null);
  }

  [Symbol.dispose](): void {
    for (let i = 0; i < this.#slots.length; i++) {
      this.#slots[i]?.dispose();
      this.#slots[i] = null;
    }
  }
}

/**
 * The prefix cache (src/engine/prompt-cache.ts): trie lookups (exact prefix, trimmed shared prefix, one
 * token always left to prefill), the byte-bounded LRU, caches that cannot be trimmed or cloned, snapshots of
 * recurrent states (ArraysCache) and sliding windows, and that evicted KV is freed (MLX active memory back to its baseline).
 */
import { describe, expect, test } from "bun:test";
import { PromptCache } from "../../src/engine/prompt-cache.ts";
import * as mx from "../../src/mlx/index.ts";
import { ArraysCache } from "../../src/models/arrays_cache.ts";
import { type KVCache, RotatingKVCache, StandardKVCache } from "../../src/models/cache.ts";

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

/** Two layer caches holding n positions whose keys are the position numbers (so a read-back shows what is held). */
function caches(n: number, make: () => KVCache = () => new StandardKVCache()): KVCache[] {
  return [make(), make()].map((c) => {
    mx.scope(() => {
      const k = mx.reshape(mx.arange(0, n * 4, 1, mx.Dtype.float32), [1, 1, n, 4]);
      c.updateAndFetch(k, k);
      mx.eval(c.state());
    });
    return c;
  });
}

/** Keys a cache attends to after one more position (what a forward pass would read). */
function heldKeys(c: KVCache): number[] {
  return mx.scope(() => {
    const x = mx.full([1, 1, 1, 4], -1, mx.Dtype.float32);
    const [K] = c.updateAndFetch(x, x);
    return Array.from(K.toFloat32Array());
  });
}

const disposeAll = (cs: readonly Disposable[]) => {
  for (const c of cs) c[Symbol.dispose]();
};

describe("trie lookups", () => {
  test("exact prefix, trimmed shared prefix, and at least one token left to prefill", () => {
    using pc = new PromptCache<KVCache>(1 << 30);
    expect(pc.take(range(0, 5))).toBeNull();
    expect(pc.put(range(0, 10), caches(10))).toBe(true);

    const longer = pc.take([...range(0, 10), 50, 51])!;
    expect(longer.cached).toBe(10);
    expect(longer.caches.map((c) => c.offset)).toEqual([10, 10]);
    disposeAll(longer.caches);

    const branch = pc.take([...range(0, 6), 99, 98])!;
    expect(branch.cached).toBe(6);
    expect(branch.caches[0]!.offset).toBe(6);
    // Trimmed: the next write lands at position 6, and only 0..5 of the old keys are read.
    expect(heldKeys(branch.caches[0]!)).toEqual([...range(0, 24), -1, -1, -1, -1]);
    disposeAll(branch.caches);

    const same = pc.take(range(0, 10))!;
    expect(same.cached).toBe(9);
    disposeAll(same.caches);

    expect(pc.take([7, 1, 2])).toBeNull();
    expect(pc.stats.entries).toBe(1);
  });

  test("a hit is a clone: writing into it leaves the kept entry as it was", () => {
    using pc = new PromptCache<KVCache>(1 << 30);
    pc.put(range(0, 4), caches(4));
    const a = pc.take([0, 1, 9, 9])!;
    heldKeys(a.caches[0]!); // writes position 2 with -1
    disposeAll(a.caches);
    const b = pc.take([0, 1, 2, 3, 4])!;
    expect(b.cached).toBe(4);
    expect(heldKeys(b.caches[0]!).slice(0, 16)).toEqual(range(0, 16));
    disposeAll(b.caches);
  });

  test("a sliding-window cache is reused only when its whole key is a prefix of the prompt", () => {
    using pc = new PromptCache<KVCache>(1 << 30);
    pc.put(range(0, 10), caches(10, () => new RotatingKVCache(4)));
    expect(pc.take([...range(0, 6), 99])).toBeNull();
    const hit = pc.take([...range(0, 10), 10])!;
    expect(hit.cached).toBe(10);
    disposeAll(hit.caches);
    // A mixed model (full + sliding layers) is as reusable as its least reusable layer.
    pc.put(range(100, 110), [...caches(10), ...caches(10, () => new RotatingKVCache(4))]);
    expect(pc.take([...range(100, 105), 7])).toBeNull();
  });

  test("a cache kind that cannot be cloned is never kept", () => {
    using pc = new PromptCache<KVCache>(1 << 30);
    let disposed = 0;
    const recurrent = { offset: 3, state: () => [], [Symbol.dispose]: () => void disposed++ };
    expect(pc.put([1, 2, 3], [recurrent as unknown as KVCache])).toBe(false);
    expect(disposed).toBe(1);
    expect(pc.take([1, 2, 3, 4])).toBeNull();
    // Offsets that disagree with the key are refused too.
    expect(pc.put([1, 2], caches(3))).toBe(false);
    expect(pc.stats.entries).toBe(0);
  });

  test("a longer entry replaces the trimmable entries that are its prefixes", () => {
    using pc = new PromptCache<KVCache>(1 << 30);
    pc.put(range(0, 5), caches(5));
    pc.put(range(0, 12), caches(12));
    expect(pc.stats.entries).toBe(1);
    const hit = pc.take([...range(0, 5), 77])!;
    expect(hit.cached).toBe(5);
    disposeAll(hit.caches);
    // The same key again replaces the old entry.
    pc.put(range(0, 12), caches(12));
    expect(pc.stats.entries).toBe(1);
  });
});

describe("byte-bounded LRU", () => {
  test("never holds more than its budget; the least recently used entry goes first", () => {
    const one = caches(1);
    const entryBytes = one.flatMap((c) => c.state()).reduce((s, a) => s + a.nbytes, 0);
    disposeAll(one);
    using pc = new PromptCache<KVCache>(Math.floor(entryBytes * 2.5));
    pc.put([1, 1], caches(2));
    pc.put([2, 2], caches(2));
    disposeAll(pc.take([1, 1, 5])!.caches); // [1,1] is now more recent than [2,2]
    pc.put([3, 3], caches(2));
    expect(pc.stats.entries).toBe(2);
    expect(pc.stats.bytes).toBeLessThanOrEqual(pc.maxBytes);
    expect(pc.take([2, 2, 5])).toBeNull();
    const hit = pc.take([1, 1, 5]);
    expect(hit?.cached).toBe(2);
    disposeAll(hit!.caches);
    // An entry larger than the whole budget is not kept (and is freed).
    expect(pc.put(range(0, 600), caches(600))).toBe(false); // 768 positions of buffer: 3 entries
    expect(pc.stats.bytes).toBeLessThanOrEqual(pc.maxBytes);
  });

  test("evicted and cleared KV is freed: MLX active memory returns to its baseline", () => {
    mx.synchronize();
    const active0 = mx.memory.active();
    const one = caches(300);
    const bytes = one.flatMap((c) => c.state()).reduce((s, a) => s + a.nbytes, 0);
    disposeAll(one);
    const pc = new PromptCache<KVCache>(bytes * 3);
    for (let i = 0; i < 20; i++) {
      pc.put([i, ...range(0, 299)], caches(300));
      const hit = pc.take([i, ...range(0, 150), 1000, 1001]);
      if (hit) {
        heldKeys(hit.caches[0]!);
        disposeAll(hit.caches);
      }
      expect(pc.stats.bytes).toBeLessThanOrEqual(pc.maxBytes);
    }
    expect(pc.stats.entries).toBe(3);
    pc.clear();
    mx.synchronize();
    expect(mx.memory.active()).toBe(active0);
  });
});

/** A one-slot recurrent state after n tokens: the slot holds [n] (so a read-back shows which state it is). */
function recurrent(n: number): ArraysCache {
  const c = new ArraysCache(1);
  mx.scope(() => c.set(0, mx.full([1, 64], n, mx.Dtype.float32)));
  c.advance(n);
  return c;
}
const slot = (c: ArraysCache) => mx.scope(() => c.get(0)!.toFloat32Array()[0]);

describe("snapshots of caches that cannot be trimmed", () => {
  test("a recurrent state is kept as a clone; later steps of the live cache leave the snapshot as it was", () => {
    using pc = new PromptCache<ArraysCache>(1 << 30);
    using live = recurrent(4);
    pc.snapshot(range(0, 4), [live]);
    // The live cache goes on (its slot is replaced, as every layer step does).
    mx.scope(() => live.set(0, mx.full([1, 64], 99, mx.Dtype.float32)));
    live.advance(3);
    pc.snapshot(range(0, 7), [live]);
    expect(pc.stats.entries).toBe(2);
    // The deepest snapshot that is a prefix of the prompt, never one that is not.
    const deep = pc.take([...range(0, 7), 50])!;
    expect([deep.cached, slot(deep.caches[0]!)]).toEqual([7, 99]);
    disposeAll(deep.caches);
    const mid = pc.take([...range(0, 5), 50])!;
    expect([mid.cached, mid.caches[0]!.offset, slot(mid.caches[0]!)]).toEqual([4, 4, 4]);
    disposeAll(mid.caches);
    expect(pc.take([0, 1, 2, 50])).toBeNull();
    // A snapshot of tokens already held only counts as a use.
    const before = pc.stats.bytes;
    pc.snapshot(range(0, 4), [live]);
    expect(pc.stats).toEqual({ entries: 2, bytes: before, maxBytes: 1 << 30 });
    expect(pc.keys().at(-1)).toEqual(range(0, 4));
  });

  test("a sliding-window snapshot resumes as the cache it was taken from would have", () => {
    using pc = new PromptCache<KVCache>(1 << 30);
    const [live, fresh] = caches(6, () => new RotatingKVCache(4));
    pc.snapshot(range(0, 6), [live!]);
    heldKeys(live!); // the live cache moves on
    heldKeys(live!);
    const hit = pc.take([...range(0, 6), 9])!;
    expect(hit.cached).toBe(6);
    expect(heldKeys(hit.caches[0]!)).toEqual(heldKeys(fresh!));
    disposeAll([...hit.caches, live!, fresh!]);
  });

  test("trimmable caches need no snapshot", () => {
    using pc = new PromptCache<KVCache>(1 << 30);
    const cs = caches(4);
    pc.snapshot(range(0, 4), cs);
    expect(pc.stats.entries).toBe(0);
    disposeAll(cs);
  });

  test("snapshots count in bytes, are evicted least recently used first, and are freed", () => {
    mx.synchronize();
    const active0 = mx.memory.active();
    const one = recurrent(1);
    const bytes = one.state().reduce((s, a) => s + a.nbytes, 0);
    one[Symbol.dispose]();
    const pc = new PromptCache<ArraysCache>(bytes * 3);
    const live = recurrent(0);
    for (let i = 1; i <= 10; i++) {
      mx.scope(() => live.set(0, mx.full([1, 64], i, mx.Dtype.float32)));
      live.advance(1);
      pc.snapshot(range(0, i), [live]);
      expect(pc.stats.bytes).toBe(Math.min(i, 3) * bytes);
    }
    expect(pc.keys()).toEqual([range(0, 8), range(0, 9), range(0, 10)]);
    // A system-prompt snapshot outlives the others (mlx-lm's tiers): the rest go first while they are as many.
    const other = recurrent(1);
    pc.snapshot([7], [other], { system: true });
    expect(pc.keys()).toEqual([range(0, 9), range(0, 10), [7]]);
    for (let i = 11; i <= 13; i++) {
      live.advance(1);
      pc.snapshot(range(0, i), [live]);
    }
    expect(pc.keys()).toEqual([[7], range(0, 12), range(0, 13)]);
    expect(pc.stats.bytes).toBe(3 * bytes);
    other[Symbol.dispose]();
    live[Symbol.dispose]();
    pc.clear();
    mx.synchronize();
    expect(mx.memory.active()).toBe(active0);
  });
});

/**
 * The decode batch's KV cache: rows of different lengths right-aligned in one buffer (left padding), each row
 * read back exactly as it went in, one write position for the batch, per-row offsets and starts, growth past
 * the buffer, and a row taken out as a cache of its own (what the prompt cache keeps). Also the recurrent-state
 * batch (slots stacked per row) and the sliding-window batch (a ring per row).
 */
import { expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { ArraysCache } from "../../src/models/arrays_cache.ts";
import { BatchArraysCache } from "../../src/models/batch_arrays_cache.ts";
import { BatchKVCache, isRowsCache } from "../../src/models/batch_cache.ts";
import { BatchRotatingKVCache, isPerRowCache } from "../../src/models/batch_rows_cache.ts";
import { RotatingKVCache, StandardKVCache } from "../../src/models/cache.ts";

const H = 2, D = 4;
let seed = 3;
const kv = (L: number, B = 1) => mx.random.normal({ shape: [B, H, L, D], key: mx.random.key(seed++) });

test("rows of different lengths: offsets, starts, exact read-back, one write position", () => {
  const rows = [3, 7, 1].map((L) => ({ keys: kv(L), values: kv(L) }));
  using c = BatchKVCache.build(rows);
  expect(isRowsCache(c)).toBe(true);
  expect(c.batch).toBe(3);
  expect(c.offset).toBe(7);
  expect(c.rowOffsets).toEqual([3, 7, 1]);
  expect(c.rowStarts).toEqual([4, 0, 6]);
  rows.forEach((r, b) => {
    expect(c.row(b).keys.toFloat32Array()).toEqual(r.keys.toFloat32Array());
    expect(c.row(b).values.toFloat32Array()).toEqual(r.values.toFloat32Array());
  });
  const k = kv(1, 3);
  const v = kv(1, 3);
  const [K, V] = c.updateAndFetch(k, v);
  expect(K.shape).toEqual([3, H, 8, D]);
  expect(V.shape).toEqual([3, H, 8, D]);
  expect(c.rowOffsets).toEqual([4, 8, 2]);
  // each row: its old keys then its new one
  rows.forEach((r, b) => {
    const want = mx.concatenate([r.keys, mx.sliceAxis(k, 0, b, b + 1)], 2).toFloat32Array();
    expect(c.row(b).keys.toFloat32Array()).toEqual(want);
  });
  expect(() => c.makeMask(2)).toThrow();
  expect(c.makeMask(1)).toBeUndefined();
});

test("the buffer grows past its capacity; extract gives a standalone cache of the row", () => {
  using c = BatchKVCache.build([{ keys: kv(255), values: kv(255) }, { keys: kv(10), values: kv(10) }]);
  const before = c.state()[0]!.shape[2]!;
  expect(before).toBe(256);
  for (let i = 0; i < 3; i++) c.updateAndFetch(kv(1, 2), kv(1, 2));
  expect(c.state()[0]!.shape[2]!).toBe(512);
  expect(c.rowOffsets).toEqual([258, 13]);
  const want = c.row(1).keys.toFloat32Array();
  using one = c.extract(1);
  expect(one).toBeInstanceOf(StandardKVCache);
  expect(one.offset).toBe(13);
  expect(one.state()[0]!.toFloat32Array()).toEqual(want);
  // the extracted cache keeps decoding as a solo cache
  const [K] = one.updateAndFetch(kv(1), kv(1));
  expect(K.shape).toEqual([1, H, 14, D]);
  expect(one.offset).toBe(14);
});

test("membership changes: rows leave (the padding shrinks) and join (longer or shorter), each row kept exactly", () => {
  const rows = [3, 9, 5].map((L) => ({ keys: kv(L), values: kv(L) }));
  using c = BatchKVCache.build(rows);
  const want = (b: number) => c.row(b).keys.toFloat32Array();
  const w0 = want(0);
  const w2 = want(2);
  // the longest row leaves: the others keep their values, the write position drops to the longest left
  using gone = BatchKVCache.compose(c, [0, 2], []);
  expect(gone.rowOffsets).toEqual([3, 5]);
  expect(gone.offset).toBe(5);
  expect(gone.row(0).keys.toFloat32Array()).toEqual(w0);
  expect(gone.row(1).keys.toFloat32Array()).toEqual(w2);
  gone.updateAndFetch(kv(1, 2), kv(1, 2));
  expect(gone.rowOffsets).toEqual([4, 6]);
  // a longer newcomer joins: everything is right-aligned at its length
  const late = { keys: kv(12), values: kv(12) };
  using joined = BatchKVCache.compose(c, [2, 0], [late]);
  expect(joined.rowOffsets).toEqual([5, 3, 12]);
  expect(joined.rowStarts).toEqual([7, 9, 0]);
  expect(joined.row(0).keys.toFloat32Array()).toEqual(w2);
  expect(joined.row(1).keys.toFloat32Array()).toEqual(w0);
  expect(joined.row(2).values.toFloat32Array()).toEqual(late.values.toFloat32Array());
  // the source is left as it was
  expect(c.rowOffsets).toEqual([3, 9, 5]);
  expect(c.row(0).keys.toFloat32Array()).toEqual(w0);
});

test("recurrent state of a batch: slots stacked per row, rows leave and join, a row taken out as its own cache", () => {
  const solo = (offset: number, conv: mx.Array, ssm: mx.Array) => {
    const c = new ArraysCache(2);
    c.set(0, conv);
    c.set(1, ssm);
    c.advance(offset);
    return c;
  };
  const conv = (n: number) => mx.random.normal({ shape: [1, 3, n], key: mx.random.key(seed++) });
  const rows = [5, 12, 1].map((o) => solo(o, conv(6), conv(4)));
  const want = rows.map((r) => r.state().map((a) => a.toFloat32Array()));
  using c = BatchArraysCache.compose(null, [], rows);
  expect(c.batch).toBe(3);
  expect(c.rowOffsets).toEqual([5, 12, 1]);
  expect(c.get(0)!.shape).toEqual([3, 3, 6]);
  c.advance(1);
  expect(c.rowOffsets).toEqual([6, 13, 2]);
  // row 1 leaves, a newcomer joins after row 0 and row 2 (in that order)
  const late = solo(30, conv(6), conv(4));
  using next = BatchArraysCache.compose(c, [2, 0], [late]);
  expect(next.rowOffsets).toEqual([2, 6, 30]);
  using r0 = next.extract(1);
  expect(r0).toBeInstanceOf(ArraysCache);
  expect(r0.offset).toBe(6);
  expect(r0.state().map((a) => a.toFloat32Array())).toEqual(want[0]!);
  using r2 = next.extract(0);
  expect(r2.state().map((a) => a.toFloat32Array())).toEqual(want[2]!);
  using rl = next.extract(2);
  expect(rl.get(1)!.toFloat32Array()).toEqual(late.get(1)!.toFloat32Array());
  // the source keeps its rows
  expect(c.batch).toBe(3);
  expect(c.get(1)!.shape).toEqual([3, 3, 4]);
  for (const r of [...rows, late]) r[Symbol.dispose]();
});

test("sliding-window rows of a batch: each row writes its own ring and attends as alone; join/leave by clones", () => {
  const W = 4;
  // two rows with their own rings: one past its window (wrapped), one short
  const a = new RotatingKVCache(W);
  const b = new RotatingKVCache(W);
  a.updateAndFetch(kv(6), kv(6));
  b.updateAndFetch(kv(2), kv(2));
  const aAlone = a.clone();
  const bAlone = b.clone();
  using c = BatchRotatingKVCache.compose(null, [], [a, b]);
  a[Symbol.dispose]();
  b[Symbol.dispose]();
  expect(isRowsCache(c)).toBe(true);
  expect(isPerRowCache(c)).toBe(true);
  expect(c.rowOffsets).toEqual([6, 2]);
  const q = kv(1, 2), k = kv(1, 2), v = kv(1, 2);
  const seen: number[][] = [];
  const out = c.attendEach(q, k, v, (qb, K, V) => {
    seen.push([qb.shape[0]!, K.shape[2]!, V.shape[2]!]);
    return mx.add(qb, mx.sum(K, 2, true));
  });
  expect(seen).toEqual([[1, W, W], [1, 3, 3]]);
  expect(c.rowOffsets).toEqual([7, 3]);
  // each row's keys are what its solo cache holds after the same token
  const [Ka] = aAlone.updateAndFetch(mx.sliceAxis(k, 0, 0, 1), mx.sliceAxis(v, 0, 0, 1));
  const [Kb] = bAlone.updateAndFetch(mx.sliceAxis(k, 0, 1, 2), mx.sliceAxis(v, 0, 1, 2));
  const rows = [Ka!, Kb!].map((K, r) => mx.add(mx.sliceAxis(q, 0, r, r + 1), mx.sum(K, 2, true)).toFloat32Array());
  expect(out.toFloat32Array()).toEqual(Float32Array.from([...rows[0]!, ...rows[1]!]));
  // row 0 leaves: the kept row is the same ring
  using next = BatchRotatingKVCache.compose(c, [1], []);
  expect(next.rowOffsets).toEqual([3]);
  using one = next.extract(0);
  expect(one.state()[0]!.toFloat32Array()).toEqual(bAlone.state()[0]!.toFloat32Array());
  expect(() => c.updateAndFetch()).toThrow();
  aAlone[Symbol.dispose]();
  bAlone[Symbol.dispose]();
});

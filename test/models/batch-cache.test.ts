/**
 * The decode batch's KV cache: rows of different lengths right-aligned in one buffer (left padding), each row
 * read back exactly as it went in, one write position for the batch, per-row offsets and starts, growth past
 * the buffer, and a row taken out as a cache of its own (what the prompt cache keeps).
 */
import { expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";
import { BatchKVCache, isRowsCache } from "../../src/models/batch_cache.ts";
import { StandardKVCache } from "../../src/models/cache.ts";

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

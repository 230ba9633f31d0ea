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
import { kernelInfo, kernelKvCompose, setKernelsEnabled } from "../../src/mlx/kernels.ts";

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

const noKernels = !kernelInfo().enabled;

test.skipIf(noKernels)("kv_compose: each output row its source span at [idx - len, idx), zeros before, any source layout", () => {
  const a = kv(6, 3);
  // a transposed view (last axis strided) and a slice of a longer buffer (positions strided by capacity)
  const b = mx.transpose(mx.random.normal({ shape: [1, H, D, 5], key: mx.random.key(seed++) }), [0, 1, 3, 2]);
  const c = mx.slice(kv(9), [0, 0, 2, 0], [1, H, 7, D]);
  const plan = Int32Array.from([1, 0, 1, 4, 0, 2, 0, 6, 2, 0, 0, 5, 0, 0, 3, 2]);
  const out = kernelKvCompose([a, b, c], plan, 6, 11)!;
  expect(out).not.toBeNull();
  expect(out.shape).toEqual([4, H, 11, D]);
  const want = [
    [b, 0, 1, 4],
    [a, 2, 0, 6],
    [c, 0, 0, 5],
    [a, 0, 3, 2],
  ] as const;
  want.forEach(([src, row, first, len], r) => {
    const got = mx.slice(out, [r, 0, 6 - len, 0], [r + 1, H, 6, D]).toFloat32Array();
    expect(got).toEqual(mx.slice(src, [row, 0, first, 0], [row + 1, H, first + len, D]).toFloat32Array());
    if (len < 6) expect([...mx.slice(out, [r, 0, 0, 0], [r + 1, H, 6 - len, D]).toFloat32Array()].every((x) => x === 0)).toBe(true);
  });
  // a row outside its source is an error, not a read past the buffer
  expect(() => kernelKvCompose([a], Int32Array.from([0, 3, 0, 1]), 1, 4)).toThrow();
  expect(() => kernelKvCompose([a], Int32Array.from([0, 0, 4, 3]), 3, 4)).toThrow();
});

test.skipIf(noKernels)("membership changes through kv_compose equal the MLX-op composition: same rows, positions, decode after", () => {
  const prevRows = [3, 9, 5, 1].map((L) => ({ keys: kv(L), values: kv(L) }));
  // a newcomer as it arrives: a view of its own cache's buffer (capacity past its length)
  const solo = new StandardKVCache();
  const [lk, lv] = solo.updateAndFetch(kv(7), kv(7));
  const late = { keys: lk!, values: lv! };
  expect(lk!.shape[2]).toBe(7);
  const cases: [number[], { keys: mx.Array; values: mx.Array }[]][] = [
    [[0, 2], []],
    [[3, 1], [late]],
    [[2], [late, prevRows[0]!]],
    [[], [prevRows[1]!, late]],
  ];
  const step = [kv(1, 4), kv(1, 4)];
  for (const [keep, add] of cases) {
    const build = (on: boolean) => {
      setKernelsEnabled(on);
      try {
        const prev = BatchKVCache.build(prevRows);
        prev.updateAndFetch(step[0]!, step[1]!);
        const c = BatchKVCache.compose(prev, keep, add);
        mx.eval(c.state());
        prev[Symbol.dispose]();
        return c;
      } finally {
        setKernelsEnabled(null);
      }
    };
    using k = build(true);
    using m = build(false);
    expect(k.rowOffsets).toEqual(m.rowOffsets);
    expect(k.rowStarts).toEqual(m.rowStarts);
    for (let r = 0; r < k.batch; r++) {
      expect(k.row(r).keys.toFloat32Array()).toEqual(m.row(r).keys.toFloat32Array());
      expect(k.row(r).values.toFloat32Array()).toEqual(m.row(r).values.toFloat32Array());
    }
    // the next decode step reads the same keys from both (the padding zero in both)
    const nk = kv(1, k.batch), nv = kv(1, k.batch);
    const [Kk, Vk] = k.updateAndFetch(nk, nv);
    const [Km, Vm] = m.updateAndFetch(nk, nv);
    expect(Kk.toFloat32Array()).toEqual(Km.toFloat32Array());
    expect(Vk.toFloat32Array()).toEqual(Vm.toFloat32Array());
  }
  solo[Symbol.dispose]();
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

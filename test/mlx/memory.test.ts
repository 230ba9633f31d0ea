import { expect, test } from "bun:test";
import * as mx from "../../src/mlx/index.ts";

const rssMiB = (): number => process.memoryUsage.rss() / 2 ** 20;

/** n cycles of create → op → free (every 10th evaluated, every 100th through a scope). */
function cycles(n: number, data: Float32Array): void {
  for (let i = 0; i < n; i++) {
    if (i % 100 === 0) {
      mx.scope(() => {
        mx.multiply(mx.array(data), 2).eval();
      });
      continue;
    }
    const a = mx.array(data, { shape: [4, 16] });
    const b = mx.add(a, 1);
    if (i % 10 === 0) b.eval();
    b.dispose();
    a.dispose();
  }
}

test("100 000 create/op/free cycles leave MLX active memory and RSS flat", () => {
  const data = new Float32Array(64).fill(0.5);
  cycles(20_000, data); // warm up allocator caches and the JIT
  Bun.gc(true);
  mx.synchronize(); // buffers of finished work are released on the stream thread
  const active0 = mx.memory.active();
  const rss0 = rssMiB();
  cycles(50_000, data);
  Bun.gc(true);
  const rss1 = rssMiB();
  cycles(50_000, data);
  Bun.gc(true);
  const rss2 = rssMiB();
  mx.synchronize();
  expect(mx.memory.active()).toBe(active0);
  // A leak of one 256-byte buffer (plus its MLX node) per cycle would add > 12 MiB per 50 000 cycles.
  expect(rss2 - rss1).toBeLessThan(8);
  expect(rss2 - rss0).toBeLessThan(24);
  mx.memory.clearCache();
  expect(mx.memory.cache()).toBe(0);
});

test("peak memory tracks a large temporary and can be reset", () => {
  mx.memory.resetPeak();
  const before = mx.memory.peak();
  mx.scope(() => {
    mx.zeros([1024, 1024]).eval(); // 4 MiB
  });
  expect(mx.memory.peak() - before).toBeGreaterThanOrEqual(4 * 2 ** 20);
  mx.memory.resetPeak();
  expect(mx.memory.peak()).toBeLessThan(4 * 2 ** 20);
});

test("cache and memory limits return the previous value", () => {
  const prev = mx.memory.setCacheLimit(1 << 20);
  expect(mx.memory.setCacheLimit(prev)).toBe(1 << 20);
  const lim = mx.memory.limit();
  expect(lim).toBeGreaterThan(0);
  expect(mx.memory.setMemoryLimit(lim)).toBe(lim);
});

test("streams: a second CPU stream computes the same result; eval / asyncEval / synchronize", () => {
  mx.scope(() => {
    expect(mx.defaultDevice()).toBe(mx.deviceAvailable("gpu") ? "gpu" : "cpu");
    const s2 = mx.newStream("cpu");
    const a = mx.reshape(mx.arange(12, undefined, 1, mx.Dtype.float32), [3, 4]);
    const w = mx.ones([4, 6]);
    // split the output columns across the default stream and s2, then join
    const [w1, w2] = mx.split(w, 2, 1) as [mx.Array, mx.Array];
    const y1 = mx.matmul(a, w1);
    const y2 = mx.withStream(s2, () => mx.matmul(a, w2));
    mx.asyncEval(y1, y2);
    mx.synchronize(s2);
    mx.eval([y1, y2]);
    const y = mx.concatenate([y1, y2], 1);
    expect(y.toList()).toEqual(mx.matmul(a, w).toList());
    expect(s2.index).toBeGreaterThan(0);
    expect(s2.device).toBe("cpu");
    s2.dispose();
  });
});

import { describe, expect, test } from "bun:test";
import { MlxkError } from "../../src/errors.ts";
import * as mx from "../../src/mlx/index.ts";

describe("availability and versions", () => {
  test("the shim loads and reports the pinned MLX version", () => {
    const av = mx.mlxAvailability();
    expect(av.reason).toBeUndefined();
    expect(av.available).toBe(true);
    expect(mx.mlxVersion()).toBe("0.32.4");
    expect(mx.shimVersion()).toBe("0.32.4");
  });
});

describe("creating and reading arrays", () => {
  test("nested JS arrays infer shape; float32 by default", () => {
    using a = mx.array([[1, 2, 3], [4, 5, 6]]);
    expect(a.shape).toEqual([2, 3]);
    expect(a.dtype).toBe(mx.Dtype.float32);
    expect(a.size).toBe(6);
    expect(a.ndim).toBe(2);
    expect(a.nbytes).toBe(24);
    expect(a.toList()).toEqual([[1, 2, 3], [4, 5, 6]]);
  });

  test("typed arrays keep their dtype and can be reshaped by option", () => {
    using a = mx.array(new Int32Array([1, -2, 3, 4]), { shape: [2, 2] });
    expect(a.dtype).toBe(mx.Dtype.int32);
    expect(a.toInt32Array()).toEqual(new Int32Array([1, -2, 3, 4]));
    using u = mx.array(new Uint32Array([4000000000]));
    expect(u.item()).toBe(4000000000);
    using b = mx.array(new BigInt64Array([2n ** 40n]));
    expect(b.dtype).toBe(mx.Dtype.int64);
    expect(b.item()).toBe(2 ** 40);
  });

  test("booleans and scalars", () => {
    using b = mx.array([true, false, true]);
    expect(b.dtype).toBe(mx.Dtype.bool);
    expect(b.toList()).toEqual([1, 0, 1]);
    using s = mx.scalar(2.5);
    expect(s.shape).toEqual([]);
    expect(s.item()).toBe(2.5);
    using i = mx.scalar(7, mx.Dtype.int32);
    expect(i.dtype).toBe(mx.Dtype.int32);
    expect(i.item()).toBe(7);
  });

  test("half types round-trip through astype; raw bytes are the 16-bit patterns", () => {
    using a = mx.array([1.5, -2, 0.25], { dtype: mx.Dtype.bfloat16 });
    expect(a.dtype).toBe(mx.Dtype.bfloat16);
    expect(a.itemsize).toBe(2);
    expect(Array.from(a.toFloat32Array())).toEqual([1.5, -2, 0.25]);
    // bf16 = upper half of the float32 bits: 1.5f = 0x3FC00000
    expect(new Uint16Array(a.toBytes().buffer)[0]).toBe(0x3fc0);
    using h = mx.array([0.1], { dtype: mx.Dtype.float16 });
    expect(h.toFloat32Array()[0]).toBeCloseTo(0.0999755859375, 10);
  });

  test("fromBytes copies the host buffer (later JS writes do not leak in)", () => {
    const buf = new Float32Array([1, 2, 3, 4]);
    using a = mx.fromBytes(new Uint8Array(buf.buffer), [4], mx.Dtype.float32);
    buf[0] = 99;
    expect(Array.from(a.toFloat32Array())).toEqual([1, 2, 3, 4]);
    expect(() => mx.fromBytes(new Uint8Array(3), [4], mx.Dtype.float32)).toThrow(/do not fill/);
  });

  test("empty arrays", () => {
    using z = mx.zeros([0, 3]);
    expect(z.size).toBe(0);
    expect(z.toFloat32Array().length).toBe(0);
  });

  test("non-contiguous results are read in row-major order", () => {
    using a = mx.array([[1, 2, 3], [4, 5, 6]]);
    using t = mx.transpose(a);
    expect(t.toList()).toEqual([[1, 4], [2, 5], [3, 6]]);
    using bc = mx.broadcastTo(mx.array([1, 2]), [2, 2]);
    expect(bc.toList()).toEqual([[1, 2], [1, 2]]);
  });

  test("retain gives an independent handle on the same array", () => {
    const a = mx.array([1, 2]);
    const b = a.retain();
    a.dispose();
    expect(b.toList()).toEqual([1, 2]);
    b.dispose();
  });
});

describe("errors", () => {
  test("an invalid reshape throws MlxError with MLX's message and the process carries on", () => {
    using a = mx.array([1, 2, 3, 4, 5, 6]);
    let err: unknown;
    try {
      mx.reshape(a, [4]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(mx.MlxError);
    expect(err).toBeInstanceOf(MlxkError);
    expect((err as mx.MlxError).type).toBe("execution_error");
    expect((err as mx.MlxError).op).toBe("reshape");
    expect((err as Error).message).toContain("Cannot reshape array of size 6 into shape (4)");
    using ok = mx.reshape(a, [2, 3]);
    expect(ok.shape).toEqual([2, 3]);
  });

  test("shape errors throw when the op is built; item() of a multi-element array throws", () => {
    using a = mx.array([1, 2, 3]);
    using m = mx.array([[1, 2]]);
    expect(() => mx.matmul(a, m)).toThrow(mx.MlxError);
    using b = mx.ones([2, 2]);
    expect(() => b.item()).toThrow(/item/);
  });

  test("using a disposed array throws a TypeError instead of crashing", () => {
    const a = mx.array([1]);
    a.dispose();
    a.dispose(); // idempotent
    expect(a.disposed).toBe(true);
    expect(() => mx.add(a, 1)).toThrow(TypeError);
  });
});

describe("scope", () => {
  test("frees temporaries, returns results to the caller", () => {
    const before = mx.memory.active();
    const temps: mx.Array[] = [];
    const r = mx.scope(() => {
      const a = mx.array([1, 2, 3]);
      const b = mx.multiply(a, 2);
      temps.push(a, b);
      return mx.sum(b);
    });
    expect(temps.every((t) => t.disposed)).toBe(true);
    expect(r.disposed).toBe(false);
    expect(r.item()).toBe(12);
    r.dispose();
    expect(mx.scopeDepth()).toBe(0);
    expect(mx.memory.active()).toBe(before);
  });

  test("nested results (objects, lists) survive; keep() detaches from every scope", () => {
    let kept: mx.Array | null = null;
    let inner: mx.Array | null = null;
    const out = mx.scope(() => {
      const res = mx.scope(() => {
        inner = mx.array([5]);
        return { logits: mx.array([1]), list: [mx.array([2])] };
      });
      expect(res.logits.disposed).toBe(false);
      kept = mx.keep(mx.array([3]));
      return res.list[0]!;
    });
    expect(inner!.disposed).toBe(true);
    expect(out.item()).toBe(2);
    expect(kept!.disposed).toBe(false);
    kept!.dispose();
    out.dispose();
  });

  test("a throwing scope frees everything and rethrows", () => {
    let a: mx.Array | null = null;
    expect(() =>
      mx.scope(() => {
        a = mx.array([1]);
        mx.reshape(a, [2]);
      }),
    ).toThrow(mx.MlxError);
    expect(a!.disposed).toBe(true);
    expect(mx.scopeDepth()).toBe(0);
  });

  test("async functions are rejected", () => {
    expect(() => mx.scope(async () => 1)).toThrow(/synchronous/);
  });

  test("arrays created outside a scope are not touched by it", () => {
    using outer = mx.array([1]);
    mx.scope(() => mx.add(outer, 1));
    expect(outer.disposed).toBe(false);
  });
});

describe("without the shim", () => {
  test("mlxAvailability explains, ops throw mlx_unavailable, nothing crashes", () => {
    const code = `
      import * as mx from "./src/mlx/index.ts";
      const av = mx.mlxAvailability();
      let type = "";
      try { mx.zeros([1]); } catch (e) { type = e.type; }
      console.log(JSON.stringify({ av, type }));`;
    const p = Bun.spawnSync([process.execPath, "-e", code], {
      cwd: `${import.meta.dir}/../..`,
      env: { ...process.env, MLXK_SHIM: "/nonexistent/libmlxk.so" },
    });
    expect(p.exitCode).toBe(0);
    const out = JSON.parse(p.stdout.toString());
    expect(out.av.available).toBe(false);
    expect(out.av.reason).toContain("/nonexistent/libmlxk.so");
    expect(out.type).toBe("mlx_unavailable");
  });
});

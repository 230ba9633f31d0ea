/** fastLinear (our float32 x·wᵀ kernel) against MLX's matmul on odd shapes, strided inputs, AVX2 and scalar paths. */
import { afterAll, expect, test } from "bun:test";
import { type Array, Dtype, matmul, reshape, scope, sliceAxis, swapaxes, transpose } from "../../src/mlx/index.ts";
import { fastLinear, forceScalarKernels, kernelInfo } from "../../src/mlx/kernels.ts";
import { seededNormal, worst } from "../support/tolerance.ts";

afterAll(() => forceScalarKernels(false));
const rnd = seededNormal(7);

const maxRel = (a: Array, b: Array): number => worst(a, b, 1e-4, 1e-4);

test.skipIf(kernelInfo().level === "none")("matches matmul(x, wᵀ) for every tile remainder, 3-D and strided x, both paths", () => {
  for (const scalar of [false, true]) {
    forceScalarKernels(scalar);
    scope(() => {
      // [130, 1100, 21]: x walked in several L2-sized row blocks
      for (const [M, K, N] of [[1, 37, 3], [5, 64, 65], [7, 768, 130], [8, 40, 16], [13, 129, 70], [100, 96, 200], [130, 1100, 21]] as const) {
        const x = rnd([M, K]);
        const w = rnd([N, K]);
        expect(maxRel(fastLinear(x, w), matmul(x, swapaxes(w, -1, -2)))).toBeLessThanOrEqual(1);
      }
      const x3 = rnd([3, 9, 48]);
      const w = rnd([33, 48]);
      expect(maxRel(fastLinear(x3, w), matmul(x3, swapaxes(w, -1, -2)))).toBeLessThanOrEqual(1);
      // a transposed (non row-major) x is copied by the kernel, not misread
      const xt = transpose(rnd([48, 10]));
      expect(maxRel(fastLinear(xt, w), matmul(xt, swapaxes(w, -1, -2)))).toBeLessThanOrEqual(1);
      const xs = sliceAxis(rnd([20, 48]), 0, 3, 17);
      expect(maxRel(fastLinear(xs, w), matmul(xs, swapaxes(w, -1, -2)))).toBeLessThanOrEqual(1);
    });
  }
});

test("other dtypes fall back to MLX's matmul", () => {
  scope(() => {
    const x = rnd([4, 16]).astype(Dtype.float16);
    const w = rnd([8, 16]).astype(Dtype.float16);
    const y = fastLinear(x, w);
    expect(y.dtype).toBe(Dtype.float16);
    expect(reshape(y, [-1]).shape).toEqual([32]);
  });
});

/** fastBiasAct (encoder.cpp: act(x + bias) in one pass) against MLX's own ops, AVX2 and scalar paths. */
import { afterAll, expect, test } from "bun:test";
import { add, type Array, array, gelu, geluApprox, random, relu, scope, silu, transpose } from "../../src/mlx/index.ts";
import { type BiasAct, fastBiasAct, forceScalarKernels, kernelInfo, setKernelsEnabled } from "../../src/mlx/kernels.ts";
import { seededNormal, worst } from "../support/tolerance.ts";

afterAll(() => {
  forceScalarKernels(false);
  setKernelsEnabled(null);
});
const rnd = seededNormal(300);


const MLX: Record<BiasAct, (x: Array) => Array> = { identity: (x) => x, gelu, gelu_tanh: geluApprox, relu, silu };

test.skipIf(kernelInfo().level === "none")("every activation, with and without bias, odd widths, extremes, a strided x, both paths", () => {
  for (const scalar of [false, true]) {
    forceScalarKernels(scalar);
    scope(() => {
      for (const act of Object.keys(MLX) as BiasAct[]) {
        for (const [rows, n] of [[1, 7], [3, 3072], [300, 101]] as const) {
          const x = rnd([rows, n], 3);
          const b = rnd([n]);
          expect(worst(fastBiasAct(x, b, act), MLX[act](add(x, b)), 2e-6, 2e-6)).toBeLessThanOrEqual(1);
          expect(worst(fastBiasAct(x, null, act), MLX[act](x), 2e-6, 2e-6)).toBeLessThanOrEqual(1);
        }
        const edge = array(Float32Array.from([-100, -12, -5, -1e-3, 0, 1e-3, 5, 12, 100, 88, -88, 3e-8]), { shape: [12] });
        expect(worst(fastBiasAct(edge, null, act), MLX[act](edge), 2e-6, 2e-6)).toBeLessThanOrEqual(1);
        const xt = transpose(rnd([40, 24]));
        expect(worst(fastBiasAct(xt, null, act), MLX[act](xt), 2e-6, 2e-6)).toBeLessThanOrEqual(1);
      }
    });
  }
});

test("MLXK_KERNELS off: MLX's ops, same values", () => {
  setKernelsEnabled(false);
  scope(() => {
    const x = rnd([4, 33]);
    const b = rnd([33]);
    expect(fastBiasAct(x, b, "gelu").toFloat32Array()).toEqual(gelu(add(x, b)).toFloat32Array());
  });
  setKernelsEnabled(null);
  expect(() => fastBiasAct(rnd([2]), null, "tanh" as BiasAct)).toThrow(/unknown activation/);
});

/**
 * The packed float32 kernel (packLinear + fastLinear(x, w, pack), gemm_packed.cpp) against MLX's matmul on odd
 * shapes, its three ISA paths against each other (bitwise), and Linear.packOnUse's ownership through WeightStore.
 */
import { afterAll, expect, test } from "bun:test";
import { type Array, disposeAll, Dtype, eval as evaluate, matmul, scope, sliceAxis, swapaxes } from "../../src/mlx/index.ts";
import { fastLinear, forceIsa, kernelInfo, packLinear } from "../../src/mlx/kernels.ts";
import { seededNormal, worst } from "../support/tolerance.ts";
import { WeightStore } from "../../src/models/base.ts";

afterAll(() => forceIsa(null));
const none = kernelInfo().level === "none";
const rnd = seededNormal(11);

const maxRel = (a: Array, b: Array): number => worst(a, b, 1e-4, 1e-4);
const bits = (a: Array) => [...new Uint32Array(a.toFloat32Array().buffer)];

// M ≥ 8 takes the packed path: M not a multiple of the 14-row tile, N of the 32-column panel, K of the 256 block
const SHAPES = [[8, 37, 3], [9, 64, 65], [15, 255, 31], [29, 256, 33], [43, 257, 100], [130, 1100, 21], [200, 513, 70]] as const;

test.skipIf(none)("packed matches matmul(x, wᵀ) on odd shapes, 3-D and strided x", () => {
  scope(() => {
    for (const [M, K, N] of SHAPES) {
      const x = rnd([M, K]);
      const w = rnd([N, K]);
      const pk = packLinear(w)!;
      expect(pk.shape).toEqual([Math.ceil(N / 32), K, 32]);
      expect(maxRel(fastLinear(x, w, pk), matmul(x, swapaxes(w, -1, -2)))).toBeLessThanOrEqual(1);
    }
    const w = rnd([40, 48]);
    const pk = packLinear(w)!;
    const x3 = rnd([3, 9, 48]);
    expect(maxRel(fastLinear(x3, w, pk), matmul(x3, swapaxes(w, -1, -2)))).toBeLessThanOrEqual(1);
    const xs = sliceAxis(rnd([40, 48]), 0, 3, 37);
    expect(maxRel(fastLinear(xs, w, pk), matmul(xs, swapaxes(w, -1, -2)))).toBeLessThanOrEqual(1);
  });
});

test.skipIf(none)("AVX-512, AVX2 and scalar paths give the same bits; a row's result does not depend on the others", () => {
  scope(() => {
    for (const [M, K, N] of SHAPES) {
      const x = rnd([M, K]);
      const w = rnd([N, K]);
      const pk = packLinear(w)!;
      evaluate([x, w, pk]);
      const isas = (["scalar", "avx2", "avx512"] as const).filter((_, i) => i < ["scalar", "avx2", "avx512"].indexOf(kernelInfo().level) + 1);
      const outs = isas.map((isa) => {
        forceIsa(isa);
        return bits(fastLinear(x, w, pk));
      });
      forceIsa(null);
      for (const o of outs.slice(1)) expect(o).toEqual(outs[0]!);
      // the first 8 rows alone (still the packed path) are the same bits as inside the whole batch
      const head = bits(fastLinear(sliceAxis(x, 0, 0, 8), w, pk));
      expect(head).toEqual(outs[0]!.slice(0, 8 * N));
    }
  });
});

test.skipIf(none)("few rows and a pack of another shape take the unpacked kernel, bit for bit", () => {
  scope(() => {
    const w = rnd([70, 96]);
    const pk = packLinear(w)!;
    const x = rnd([5, 96]);
    expect(bits(fastLinear(x, w, pk))).toEqual(bits(fastLinear(x, w)));
    const other = packLinear(rnd([33, 96]))!;
    const xm = rnd([40, 96]);
    expect(bits(fastLinear(xm, w, other))).toEqual(bits(fastLinear(xm, w)));
  });
});

test("packLinear declines what the kernel cannot read", () => {
  scope(() => {
    expect(packLinear(rnd([8, 16]).astype(Dtype.float16))).toBeNull();
    expect(packLinear(rnd([16]))).toBeNull();
  });
});

test.skipIf(none)("Linear.packOnUse: packed once on first use, owned by the WeightStore, freed with the model", () => {
  const w = rnd([64, 32]);
  evaluate([w]);
  const store = new WeightStore(new Map([["p.weight", w]]), null, undefined, { packLinears: true });
  const lin = store.linear("p");
  expect(store.all()).toHaveLength(1);
  const x = rnd([20, 32]);
  const y1 = lin.forward(x);
  expect(store.all()).toHaveLength(2);
  const pack = store.all()[1]!;
  expect(pack.shape).toEqual([2, 32, 32]);
  const y2 = lin.forward(x);
  // the bias-free view the encoder MLPs use reads the same pack
  const y3 = lin.withoutBias().forward(x);
  expect(store.all()).toHaveLength(2);
  expect(bits(y3)).toEqual(bits(y1));
  expect(maxRel(y1, matmul(x, swapaxes(w, -1, -2)))).toBeLessThanOrEqual(1);
  expect(bits(y2)).toEqual(bits(y1));
  disposeAll([x, y1, y2, y3]);
  disposeAll(store.all());
  expect(pack.disposed).toBe(true);
  // without the option a Linear never packs
  const plain = new WeightStore(new Map([["p.weight", rnd([64, 32])]]), null);
  scope(() => plain.linear("p").forward(rnd([20, 32])));
  expect(plain.all()).toHaveLength(1);
  disposeAll(plain.all());
});

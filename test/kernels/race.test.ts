/**
 * The kernel pool must be race-free: every output element is computed by exactly one task, so repeated
 * runs over both threads give bit-identical results (a data race would show as sporadic differences).
 */
import { expect, test } from "bun:test";
import { array, quantize, scope } from "../../src/mlx/index.ts";
import { fastQuantizedMatmul, kernelInfo, pinOthersLoad } from "../../src/mlx/kernels.ts";

function lcg(n: number, seed: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * scale;
  }
  return a;
}

test.skipIf(kernelInfo().level === "none")("200 repeated multi-threaded matmuls are bit-identical", () => {
  // as on an idle machine, so the thread policy splits the op whatever else runs here
  const prev = pinOthersLoad(0);
  scope(() => {
    const [M, K, N] = [3, 576, 1536];
    const x = array(lcg(M * K, 1, 2), { shape: [M, K] });
    const q = quantize(array(lcg(N * K, 2, 0.4), { shape: [N, K] }), { groupSize: 64, bits: 4 });
    const first = fastQuantizedMatmul(x, q.wq, q.scales, q.biases, { groupSize: 64, bits: 4 }).toFloat32Array();
    let mismatches = 0;
    for (let i = 0; i < 200; i++) {
      scope(() => {
        const got = fastQuantizedMatmul(x, q.wq, q.scales, q.biases, { groupSize: 64, bits: 4 }).toFloat32Array();
        if (Buffer.compare(Buffer.from(got.buffer), Buffer.from(first.buffer)) !== 0) mismatches++;
      });
    }
    expect(mismatches).toBe(0);
  });
  pinOthersLoad(prev < 0 ? null : prev);
});

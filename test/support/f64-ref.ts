/** f64 references for the matmul kernel tests (K-quant decode and GEMM paths). */

/** Largest |a[i] − b[i]|. */
export function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/**
 * x [M,K] · w [N,K]ᵀ in f64; `mags` is Σ|x·w| per output (the scale f32 rounding errors grow with), `mag` the
 * largest of them.
 */
export function f64Matmul(x: Float32Array, w: Float32Array, M: number, N: number, K: number): { y: Float64Array; mag: number; mags: Float64Array } {
  const y = new Float64Array(M * N);
  const mags = new Float64Array(M * N);
  let mag = 0;
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k]! * w[n * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      y[m * N + n] = s;
      mags[m * N + n] = a;
      mag = Math.max(mag, a);
    }
  return { y, mag, mags };
}

/**
 * Every ISA path of the quantized matmul (scalar, AVX2, AVX-512 where the CPU has it) against MLX's op and an
 * f64 reference on odd shapes; the opt-in int8-activation path (AVX-512 VNNI) against its stated accuracy;
 * MLXK_ISA / MLXK_INT8_ACT / MLXK_THREADS read by a fresh process; the thread policy.
 */
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, test } from "bun:test";
import { quantizedMatmul, scope } from "../../src/mlx/index.ts";
import {
  fastQuantizedMatmul,
  forceIsa,
  int8Available,
  type KernelIsa,
  kernelInfo,
  kernelThreadsFor,
  pinKernelThreads,
  pinOthersLoad,
  setInt8Activations,
} from "../../src/mlx/kernels.ts";
import { type Case, check, FORMATS, inputs, reference } from "../support/qmm-check.ts";

const info = kernelInfo();
const ORDER: KernelIsa[] = ["scalar", "avx2", "avx512"];
const isas = ORDER.slice(0, Math.max(0, ORDER.indexOf(info.level) + 1)) as Exclude<KernelIsa, "none">[];
afterAll(() => {
  forceIsa(null);
  setInt8Activations(false);
  pinKernelThreads(0);
});

describe.skipIf(info.level === "none")("quantized matmul on every ISA", () => {
  for (const isa of isas) {
    test(`${isa}: every format on odd shapes within f32 rounding of f64 (as MLX's op)`, () => {
      const prev = forceIsa(isa);
      try {
        expect(kernelInfo().isa).toBe(isa);
        for (const f of FORMATS) {
          // K an odd number of groups (and K % 128 ≠ 0), N odd, rows 1 (decode) to 17 (past a 16-row tile).
          for (const M of [1, 3, 17]) check({ ...f, M, K: f.gs * 5, N: 37 });
          check({ ...f, M: 2, K: 96 * Math.ceil(f.gs / 32), N: 1 });
        }
      } finally {
        forceIsa(prev === "none" ? null : prev);
      }
    });
  }

  test("an ISA above the CPU's is capped, never run", () => {
    const prev = forceIsa("avx512");
    try {
      expect(ORDER.indexOf(kernelInfo().isa)).toBeLessThanOrEqual(ORDER.indexOf(info.level));
    } finally {
      forceIsa(prev === "none" ? null : prev);
    }
  });
});

/** Relative RMS error and worst error over Σ|x·w| of the int8 path on one case. */
function int8Error(c: Case): { rms: number; worst: number; exactWhenOff: boolean } {
  return scope(() => {
    const { x, wq, scales, biases, wdq } = inputs(c);
    const o = { groupSize: c.gs, bits: c.bits };
    const { ref, mag } = reference(x.toFloat32Array(), wdq, c);
    setInt8Activations(true, { affineEverywhere: true });
    const got = fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array();
    setInt8Activations(false);
    const f32 = fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array();
    let num = 0;
    let den = 0;
    let worst = 0;
    for (let i = 0; i < got.length; i++) {
      num += (got[i]! - ref[i]!) ** 2;
      den += ref[i]! ** 2;
      worst = Math.max(worst, Math.abs(got[i]! - ref[i]!) / mag[i]!);
    }
    const mlx = quantizedMatmul(x, wq, scales, biases, o).toFloat32Array();
    const exactWhenOff = f32.every((v, i) => Math.abs(v - mlx[i]!) <= 1e-4 * (1 + Math.abs(mlx[i]!)));
    return { rms: Math.sqrt(num / den), worst, exactWhenOff };
  });
}

describe.skipIf(!int8Available())("int8 activations (opt-in, AVX-512 VNNI)", () => {
  test("affine 4-bit: relative RMS error under 1% of f32 (stated in README), and really int8 (not exact)", () => {
    for (const gs of [32, 64, 128]) {
      for (const [M, K, N] of [[1, 640, 96], [5, 384, 37], [13, 1536, 24]] as const) {
        const e = int8Error({ mode: "affine", bits: 4, gs, M, K, N });
        expect(e.rms).toBeLessThan(0.01);
        expect(e.rms).toBeGreaterThan(1e-4); // ~100× the f32 rounding: the int8 path did run
        expect(e.worst).toBeLessThan(0.02); // of Σ|x·w| per output
        expect(e.exactWhenOff).toBe(true);
      }
    }
  });

  test("prefill from the panel-GEMM threshold keeps f32 with int8 on (the same bits as int8 off)", () => {
    scope(() => {
      const c = { mode: "affine" as const, bits: 4, gs: 64, M: 40, K: 512, N: 48 };
      const { x, wq, scales, biases } = inputs(c);
      const o = { groupSize: 64, bits: 4 };
      const off = fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array();
      setInt8Activations(true, { affineEverywhere: true });
      try {
        expect(fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array()).toEqual(off);
        // and under the threshold the int8 tiles do run
        const few = { ...c, M: 3 };
        const s = inputs(few);
        const int8 = fastQuantizedMatmul(s.x, s.wq, s.scales, s.biases, o).toFloat32Array();
        setInt8Activations(false);
        expect(fastQuantizedMatmul(s.x, s.wq, s.scales, s.biases, o).toFloat32Array()).not.toEqual(int8);
      } finally {
        setInt8Activations(false);
      }
    });
  });

  const intel = (() => {
    try {
      return /vendor_id\s*:\s*GenuineIntel/.test(readFileSync("/proc/cpuinfo", "utf8"));
    } catch {
      return false;
    }
  })();
  test.skipIf(!intel)("Intel: the setting leaves affine 4-bit on the f32 tiles (same bits as off; needs an Intel CPU)", () => {
    scope(() => {
      const c = { mode: "affine" as const, bits: 4, gs: 32, M: 1, K: 640, N: 96 };
      const { x, wq, scales, biases } = inputs(c);
      const o = { groupSize: 32, bits: 4 };
      const off = fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array();
      setInt8Activations(true);
      try {
        expect(fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array()).toEqual(off);
        setInt8Activations(true, { affineEverywhere: true });
        expect(fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array()).not.toEqual(off);
      } finally {
        setInt8Activations(false);
      }
    });
  });

  test("other formats stay on the f32 path with int8 on", () => {
    setInt8Activations(true);
    try {
      for (const f of FORMATS.filter((x) => x.bits === 8 || x.mode === "mxfp4")) check({ ...f, M: 3, K: f.gs * 4, N: 21 });
    } finally {
      setInt8Activations(false);
    }
  });
});

describe.skipIf(info.level === "none")("thread policy", () => {
  test("small ops run inline, big ones on the whole pool; a pin overrides both", () => {
    // as on an idle machine (the policy also gives way to other processes: thread-policy.test.ts)
    pinOthersLoad(0);
    try {
      expect(kernelThreadsFor(10_000)).toBe(1);
      expect(kernelThreadsFor(1e9)).toBe(info.threads);
      pinKernelThreads(1);
      expect(kernelThreadsFor(1e9)).toBe(1);
    } finally {
      pinKernelThreads(0);
      pinOthersLoad(null);
    }
  });

  test("results are bit-identical on 1 thread and on the pool", () => {
    scope(() => {
      const c = { mode: "affine" as const, bits: 4, gs: 64, M: 9, K: 1024, N: 3000 };
      const { x, wq, scales, biases } = inputs(c);
      const o = { groupSize: 64, bits: 4 };
      const all = fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array();
      pinKernelThreads(1);
      try {
        expect(fastQuantizedMatmul(x, wq, scales, biases, o).toFloat32Array()).toEqual(all);
      } finally {
        pinKernelThreads(0);
      }
    });
  });
});

describe.skipIf(info.level === "none")("environment (fresh process)", () => {
  const probe = (env: Record<string, string>) => {
    const code = `const k = await import(${JSON.stringify(`${import.meta.dir}/../../src/mlx/kernels.ts`)}); const i = k.kernelInfo(); console.log(JSON.stringify({ ...i, big: k.kernelThreadsFor(1e9) }));`;
    const p = Bun.spawnSync([process.execPath, "-e", code], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
    expect(p.exitCode).toBe(0);
    return JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!) as ReturnType<typeof kernelInfo> & { big: number };
  };

  test("MLXK_ISA caps the ISA; an unknown value leaves the best", () => {
    expect(probe({ MLXK_ISA: "scalar" }).isa).toBe("scalar");
    expect(probe({ MLXK_ISA: "avx2" }).isa).toBe(info.level === "scalar" ? "scalar" : "avx2");
    expect(probe({ MLXK_ISA: "bogus" }).isa).toBe(info.level);
  });

  test("MLXK_THREADS pins the pool; MLXK_INT8_ACT=1 turns int8 on where VNNI exists", () => {
    const one = probe({ MLXK_THREADS: "1" });
    expect(one.threads).toBe(1);
    expect(one.big).toBe(1);
    expect(probe({ MLXK_THREADS: "2" }).threads).toBe(2);
    expect(probe({ MLXK_INT8_ACT: "1" }).int8).toBe(int8Available());
    expect(probe({ MLXK_INT8_ACT: "1", MLXK_ISA: "avx2" }).int8).toBe(false);
    expect(probe({}).int8).toBe(false);
  });
});

/**
 * The backend profile (src/mlx/backend.ts): the device / dtype / streams / kernel choice from injected device
 * facts (so the GPU branches run on this CPU-only machine), the dtype policy, and that model files leave
 * streams and kernels to it.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type DeviceFacts, describeBackend, deviceMemory, hostMallocPlan, kernelOps, makeBackend, memoryOf, mlxOps, planBackend, targetDtype } from "../../src/mlx/backend.ts";
import { keepHostMemory, type RawDeviceInfo } from "../../src/mlx/runtime.ts";
import { mlxAvailability } from "../../src/mlx/ffi.ts";
import { Dtype } from "../../src/mlx/array.ts";

const cpu: DeviceFacts = { gpu: false, platform: "linux", kernelsAvailable: true, kernelsEnabled: true };
const cuda: DeviceFacts = { gpu: true, platform: "linux", kernelsAvailable: true, kernelsEnabled: true };
const metal: DeviceFacts = { gpu: true, platform: "darwin", kernelsAvailable: false, kernelsEnabled: true };
const env = (e: Record<string, string> = {}) => ({ env: e });

describe("planBackend", () => {
  test("CPU: float32, our kernels, one stream (two without kernels or with them off)", () => {
    expect(planBackend(cpu, env())).toEqual({
      device: "cpu",
      dtype: "float32",
      streams: 1,
      kernels: "ours",
      cpuKernels: { isa: "avx2", int8: false, threads: 1 },
      reason: "the installed MLX has no GPU device",
    });
    expect(planBackend({ ...cpu, kernelsAvailable: false }, env())).toMatchObject({ kernels: "mlx", streams: 2 });
    expect(planBackend({ ...cpu, kernelsEnabled: false }, env())).toMatchObject({ kernels: "mlx", streams: 2 });
    expect(planBackend(cpu, env({ MLXK_STREAMS: "2" }))).toMatchObject({ streams: 2 });
    expect(planBackend(cpu, { env: { MLXK_STREAMS: "2" }, streams: 1 })).toMatchObject({ streams: 1 });
    expect(planBackend(cpu, env({ MLXK_STREAMS: "9" }))).toMatchObject({ streams: 2 });
  });

  test("our kernels' ISA, int8 activations and threads come from the facts (MLXK_ISA / MLXK_INT8_ACT / MLXK_THREADS)", () => {
    const facts = { ...cpu, kernelIsa: "avx512" as const, kernelInt8: true, kernelThreads: 2 };
    expect(planBackend(facts, env()).cpuKernels).toEqual({ isa: "avx512", int8: true, threads: 2 });
    expect(planBackend({ ...facts, kernelsEnabled: false }, env()).cpuKernels).toBeNull();
  });

  test("a CUDA or Metal GPU: half precision, MLX's own ops, no CPU streams", () => {
    expect(planBackend(cuda, env())).toEqual({ device: "cuda", dtype: "half", streams: 1, kernels: "mlx", cpuKernels: null, reason: "the installed MLX has a cuda GPU" });
    expect(planBackend(metal, env({ MLXK_STREAMS: "2" }))).toMatchObject({ device: "metal", dtype: "half", streams: 1, kernels: "mlx" });
    expect(planBackend(cuda, env({ MLXK_DTYPE: "float32" }))).toMatchObject({ device: "cuda", dtype: "float32" });
  });

  test("MLXK_BACKEND overrides the device; a GPU the build lacks is refused clearly", () => {
    expect(planBackend(cuda, env({ MLXK_BACKEND: "cpu" }))).toMatchObject({ device: "cpu", dtype: "float32", kernels: "ours", reason: "MLXK_BACKEND=cpu" });
    expect(planBackend(cuda, env({ MLXK_BACKEND: "CUDA" }))).toMatchObject({ device: "cuda", reason: "MLXK_BACKEND=cuda" });
    expect(() => planBackend(cpu, env({ MLXK_BACKEND: "cuda" }))).toThrow(/MLXK_BACKEND=cuda, but the installed MLX has no GPU device/);
    expect(() => planBackend(cuda, env({ MLXK_BACKEND: "metal" }))).toThrow(/has a cuda GPU/);
    expect(() => planBackend(cpu, env({ MLXK_BACKEND: "rocm" }))).toThrow(/MLXK_BACKEND must be cpu, cuda or metal \(got 'rocm'\)/);
    expect(() => planBackend(cpu, env({ MLXK_DTYPE: "int8" }))).toThrow(/MLXK_DTYPE must be/);
  });
});

test("dtype policy: the GPU default narrows float32 to bfloat16 and never widens a half checkpoint", () => {
  expect(targetDtype("half", Dtype.float32)).toBe(Dtype.bfloat16);
  expect(targetDtype("half", Dtype.bfloat16)).toBeNull();
  expect(targetDtype("half", Dtype.float16)).toBeNull();
  expect(targetDtype("float32", Dtype.bfloat16)).toBe(Dtype.float32);
  expect(targetDtype("auto", Dtype.float16)).toBeNull();
});

test("a GPU profile runs MLX's ops and computes in order; a CPU profile our kernels", () => {
  const gpu = makeBackend(planBackend(cuda, env()));
  expect(gpu.ops).toBe(mlxOps);
  expect(gpu.parallel).toBe(false);
  expect(gpu.target(Dtype.float32)).toBe(Dtype.bfloat16);
  const order: string[] = [];
  expect(gpu.pair(() => order.push("a"), () => order.push("b"))).toEqual([1, 2]);
  expect(mlxOps.gatherKernel).toBe(false);
  const c = makeBackend(planBackend(cpu, env()));
  expect(c.ops).toBe(kernelOps);
  expect(c.target(Dtype.bfloat16)).toBe(Dtype.float32);
});

test("model files leave CPU streams and kernels to the backend profile", () => {
  const dir = join(import.meta.dir, "../../src/models");
  const offenders = readdirSync(dir)
    .filter((f) => f.endsWith(".ts"))
    .filter((f) => /mlx\/kernels\.ts|withStream|newStream|\bStreams\b|\bstreams\.pair\b/.test(readFileSync(join(dir, f), "utf8")));
  expect(offenders).toEqual([]);
});

describe("device memory", () => {
  const GB = 1024 ** 3;
  const host = { total: 64 * GB, free: 40 * GB };
  const info = (o: Partial<RawDeviceInfo>): RawDeviceInfo => ({ name: null, architecture: null, totalBytes: null, freeBytes: null, recommendedBytes: null, count: 1, ...o });

  test("CUDA: the card's memory as NVML reports it, not the host's", () => {
    const m = memoryOf("cuda", info({ name: "NVIDIA H200", totalBytes: 140 * GB, freeBytes: 130 * GB }), host, 5 * GB);
    expect(m).toEqual({ device: "cuda", name: "NVIDIA H200", totalBytes: 140 * GB, freeBytes: 130 * GB });
    // no free figure: total less what MLX holds
    expect(memoryOf("cuda", info({ totalBytes: 80 * GB }), host, 10 * GB).freeBytes).toBe(70 * GB);
  });

  test("Metal: the recommended working set, less what MLX holds, bounded by free host RAM", () => {
    const m = memoryOf("metal", info({ name: "Apple M3 Max", totalBytes: 64 * GB, recommendedBytes: 48 * GB }), host, 20 * GB);
    expect(m).toEqual({ device: "metal", name: "Apple M3 Max", totalBytes: 48 * GB, freeBytes: 28 * GB });
    expect(memoryOf("metal", info({ recommendedBytes: 48 * GB }), { total: 64 * GB, free: 8 * GB }, 0).freeBytes).toBe(8 * GB);
  });

  test("CPU: host RAM; this machine reports its own", () => {
    expect(memoryOf("cpu", null, host, 0)).toEqual({ device: "cpu", name: null, totalBytes: 64 * GB, freeBytes: 40 * GB });
    const here = deviceMemory();
    expect(here.device).toBe("cpu");
    expect(here.totalBytes).toBeGreaterThan(0);
    expect(here.freeBytes).toBeLessThanOrEqual(here.totalBytes);
  });

  test("run --verbose line names device, dtype, kernels and memory", () => {
    const gpu = makeBackend(planBackend(cuda, env()));
    expect(describeBackend(gpu, { device: "cuda", name: "NVIDIA H200", totalBytes: 140 * GB, freeBytes: 130 * GB })).toBe("Device: cuda (NVIDIA H200), compute half; memory 130.0 GB free of 140.0 GB");
    const c = makeBackend(planBackend(cpu, env()));
    expect(describeBackend(c, { device: "cpu", name: "AMD EPYC", totalBytes: 24 * GB, freeBytes: 20 * GB })).toBe("Device: cpu (AMD EPYC), our kernels, 1 stream, compute float32; memory 20.0 GB free of 24.0 GB");
  });
});

describe("hostMallocPlan", () => {
  test("the CPU keeps freed host memory; a GPU, MLXK_MALLOC_KEEP=0 and the user's own glibc settings leave malloc alone", () => {
    expect(hostMallocPlan("cpu", {})).toEqual({ trimBytes: 512 * 2 ** 20, mmapBytes: 32 * 2 ** 20 });
    expect(hostMallocPlan("cuda", {})).toBeNull();
    expect(hostMallocPlan("metal", {})).toBeNull();
    expect(hostMallocPlan("cpu", { MLXK_MALLOC_KEEP: "0" })).toBeNull();
    expect(hostMallocPlan("cpu", { MLXK_MALLOC_KEEP: "1" })).not.toBeNull();
    expect(hostMallocPlan("cpu", { GLIBC_TUNABLES: "glibc.malloc.trim_threshold=0" })).toBeNull();
    expect(hostMallocPlan("cpu", { GLIBC_TUNABLES: "glibc.cpu.hwcaps=-AVX512F" })).not.toBeNull();
    expect(hostMallocPlan("cpu", { MALLOC_MMAP_THRESHOLD_: "131072" })).toBeNull();
  });

  const glibcLinux = process.platform === "linux" && (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } })?.header?.glibcVersionRuntime !== undefined;
  test.skipIf(!glibcLinux || !mlxAvailability().available)("the shim applies it on glibc (needs glibc Linux and the MLX runtime)", () => {
    expect(keepHostMemory(512 * 2 ** 20, 32 * 2 ** 20)).toBe(true);
  });
});

/**
 * The installer's wheel choice (src/mlx/wheel-select.ts) on fake hosts: nvidia-smi tables as drivers 535, 550,
 * 570 and 580 print them, a driver too old, libcuda without nvidia-smi, macOS, unsupported platforms and the
 * MLXK_BACKEND override.
 */
import { describe, expect, test } from "bun:test";
import { chooseWheel, cudaOfDriver, type HostFacts, parseNvidiaSmi, WheelChoiceError } from "../../src/mlx/wheel-select.ts";

/** The top of plain `nvidia-smi` as the driver prints it (driver and CUDA version in the first table row). */
function smi(driver: string, cuda: string, gpu = "NVIDIA H100 80GB HBM3"): string {
  return [
    "Tue Dec  1 10:00:00 2026       ",
    "+-----------------------------------------------------------------------------------------+",
    `| NVIDIA-SMI ${driver.padEnd(22)} Driver Version: ${driver.padEnd(14)} CUDA Version: ${cuda.padEnd(8)} |`,
    "|-----------------------------------------+------------------------+----------------------+",
    "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
    "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
    "|=========================================+========================+======================|",
    `|   0  ${gpu.padEnd(26)}     On  |   00000000:18:00.0 Off |                    0 |`,
    "| N/A   31C    P0             71W /  700W |       1MiB /  81559MiB |      0%      Default |",
    "+-----------------------------------------+------------------------+----------------------+",
  ].join("\n");
}

const linux = (over: Partial<HostFacts> = {}): HostFacts => ({ platform: "linux", arch: "x64", nvidiaSmi: null, libcuda: false, ...over });
const noEnv = {};

describe("parseNvidiaSmi", () => {
  test.each([
    ["535.183.01", "12.2"],
    ["550.127.05", "12.4"],
    ["570.86.15", "12.8"],
    ["580.65.06", "13.0"],
  ])("driver %s: CUDA %s", (driver, cuda) => {
    expect(parseNvidiaSmi(smi(driver, cuda))).toEqual({ version: driver, cuda });
  });

  test("a table without a CUDA version (N/A in some containers) keeps the driver; garbage gives null", () => {
    expect(parseNvidiaSmi(smi("550.54.15", "N/A"))).toEqual({ version: "550.54.15", cuda: null });
    expect(parseNvidiaSmi("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")).toBeNull();
  });

  test("cudaOfDriver follows the release branches", () => {
    expect(cudaOfDriver("535.104.05")).toBe("12.2");
    expect(cudaOfDriver("550.54.15")).toBe("12.4");
    expect(cudaOfDriver("570.124.06")).toBe("12.8");
    expect(cudaOfDriver("580.82.07")).toBe("13.0");
    expect(cudaOfDriver("470.256.02")).toBeNull();
  });
});

describe("chooseWheel", () => {
  test("no driver: mlx-cpu", () => {
    const c = chooseWheel(linux(), noEnv);
    expect(c).toMatchObject({ backend: "cpu", runtime: [], reason: "no NVIDIA driver found (no nvidia-smi, no libcuda.so.1)" });
    expect(c.pin.package).toBe("mlx-cpu");
    expect(chooseWheel(linux({ arch: "arm64" }), noEnv).pin.file).toBe("mlx_cpu-0.32.4-py3-none-manylinux_2_35_aarch64.whl");
  });

  test.each([
    ["535.183.01", "12.2", 12],
    ["550.127.05", "12.4", 12],
    ["570.86.15", "12.8", 12],
    ["580.65.06", "13.0", 13],
  ])("driver %s (CUDA %s): mlx-cuda-%d with its runtime wheels", (driver, cuda, major) => {
    const c = chooseWheel(linux({ nvidiaSmi: smi(driver, cuda), libcuda: true }), noEnv);
    expect(c.backend).toBe("cuda");
    expect(c.pin.package as string).toBe(`mlx-cuda-${major}`);
    expect(c.pin.file).toBe(`mlx_cuda_${major}-0.32.4-py3-none-manylinux_2_35_x86_64.whl`);
    expect(c.reason).toBe(`NVIDIA driver ${driver} supports CUDA ${cuda} → mlx-cuda-${major}`);
    expect(c.runtime.some((r) => r.startsWith("nvidia-cublas"))).toBe(true);
    expect(c.driver).toEqual({ version: driver, cuda });
  });

  test("aarch64 Linux with a driver gets the aarch64 CUDA wheel; the CUDA version falls back to the driver branch", () => {
    const c = chooseWheel(linux({ arch: "arm64", nvidiaSmi: smi("580.95.05", "N/A", "NVIDIA GH200 480GB") }), noEnv);
    expect(c.pin.file).toBe("mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_aarch64.whl");
  });

  test("libcuda without nvidia-smi: CUDA 12 (the older driver floor)", () => {
    const c = chooseWheel(linux({ libcuda: true }), noEnv);
    expect(c.pin.package).toBe("mlx-cuda-12");
    expect(c.reason).toContain("driver version unknown");
  });

  test("a driver older than CUDA 12: CPU with the reason; refused when CUDA was asked for", () => {
    const old = linux({ nvidiaSmi: smi("470.256.02", "11.4"), libcuda: true });
    expect(chooseWheel(old, noEnv)).toMatchObject({ backend: "cpu", reason: expect.stringContaining("supports only CUDA 11.4") });
    expect(() => chooseWheel(old, { MLXK_BACKEND: "cuda" })).toThrow(/MLXK_BACKEND=cuda, but NVIDIA driver 470.256.02 supports only CUDA 11.4/);
  });

  test("MLXK_BACKEND overrides", () => {
    const gpu = linux({ nvidiaSmi: smi("570.86.15", "12.8"), libcuda: true });
    expect(chooseWheel(gpu, { MLXK_BACKEND: "cpu" })).toMatchObject({ backend: "cpu", reason: "MLXK_BACKEND=cpu" });
    expect(chooseWheel(gpu, { MLXK_BACKEND: "cuda" }).reason).toBe("MLXK_BACKEND=cuda; NVIDIA driver 570.86.15 supports CUDA 12.8 → mlx-cuda-12");
    expect(() => chooseWheel(linux(), { MLXK_BACKEND: "cuda" })).toThrow(/no NVIDIA driver was found/);
    expect(() => chooseWheel(gpu, { MLXK_BACKEND: "metal" })).toThrow(/Metal exists only on macOS arm64/);
    expect(() => chooseWheel(gpu, { MLXK_BACKEND: "vulkan" })).toThrow(WheelChoiceError);
  });

  test("macOS arm64: mlx-metal by macOS version; Intel Macs and Windows have no wheel", () => {
    expect(chooseWheel({ platform: "darwin", arch: "arm64", macosMajor: 15, nvidiaSmi: null, libcuda: false }, noEnv)).toMatchObject({ backend: "metal", reason: "macOS arm64: Metal GPU" });
    expect(chooseWheel({ platform: "darwin", arch: "arm64", macosMajor: 26, nvidiaSmi: null, libcuda: false }, noEnv).pin.file).toBe("mlx_metal-0.32.4-py3-none-macosx_26_0_arm64.whl");
    expect(chooseWheel({ platform: "darwin", arch: "arm64", macosMajor: 14, nvidiaSmi: null, libcuda: false }, { MLXK_BACKEND: "cpu" }).backend).toBe("cpu");
    expect(() => chooseWheel({ platform: "darwin", arch: "arm64", nvidiaSmi: null, libcuda: false }, { MLXK_BACKEND: "cuda" })).toThrow(/no CUDA backend on macOS/);
    expect(() => chooseWheel({ platform: "darwin", arch: "x64", nvidiaSmi: null, libcuda: false }, noEnv)).toThrow(/no MLX wheel for darwin\/x64/);
    expect(() => chooseWheel({ platform: "win32", arch: "x64", nvidiaSmi: smi("580.65.06", "13.0"), libcuda: false }, noEnv)).toThrow(/no MLX wheel for win32\/x64/);
  });
});

/**
 * Which MLX wheel a machine gets: mlx-metal on macOS arm64; on Linux mlx-cuda-13 or mlx-cuda-12 when an
 * NVIDIA driver is there (by the CUDA version the driver supports), with the CUDA runtime wheels that MLX's
 * libmlx links against; mlx-cpu otherwise. MLXK_BACKEND=cpu|cuda|metal overrides. `chooseWheel` is pure
 * (the host facts are injected in tests); `probeHost` reads them from nvidia-smi and the loader paths.
 */
import { existsSync } from "node:fs";
import { type Env, backendOverride } from "../env.ts";
import { MLX_VERSION, WHEEL_PINS, type WheelPin } from "./paths.ts";

export type Backend = "cpu" | "cuda" | "metal";

export interface HostFacts {
  platform: string;
  arch: string;
  /** macOS major version (darwin only). */
  macosMajor?: number;
  /** Output of plain `nvidia-smi`, or null when it is missing or failed. */
  nvidiaSmi: string | null;
  /** libcuda.so.1 (the driver's user-mode library) was found. */
  libcuda: boolean;
}

export interface WheelChoice {
  backend: Backend;
  pin: WheelPin;
  /** pip requirements of the CUDA runtime libraries the wheel's libmlx needs (empty for cpu / metal). */
  runtime: string[];
  /** Why, in words (status.json, `mlxk --version --json`, doctor). */
  reason: string;
  /** The driver's CUDA version and driver version when nvidia-smi said them. */
  driver?: { version: string; cuda: string | null };
}

/**
 * The Requires-Dist of mlx-cuda-12 / mlx-cuda-13 0.32.4 (read from the wheels' METADATA): libmlx.so is
 * linked against these and finds them through its RPATH ($ORIGIN/../../nvidia/<lib>/lib), so they are
 * unpacked beside mlx/ as pip would put them in site-packages.
 */
export const CUDA_RUNTIME: Record<12 | 13, string[]> = {
  12: [
    "nvidia-cudnn-cu12==9.*", "nvidia-nccl-cu12", "nvidia-cublas-cu12==12.9.*", "nvidia-cufft-cu12==11.4.*",
    "nvidia-cuda-nvrtc-cu12==12.9.*", "nvidia-cusolver-cu12==11.7.*",
  ],
  13: [
    "nvidia-cudnn-cu13==9.*", "nvidia-nccl-cu13", "nvidia-cublas==13.*", "nvidia-cufft==12.*", "nvidia-cuda-nvrtc==13.*",
    "nvidia-cuda-runtime==13.*", "nvidia-cusolver==12.*",
  ],
};

/** Driver and CUDA version from nvidia-smi's header ("Driver Version: 570.86.15   CUDA Version: 12.8"). */
export function parseNvidiaSmi(out: string): { version: string; cuda: string | null } | null {
  const drv = /Driver Version:\s*([0-9][0-9.]*)/.exec(out);
  if (!drv) return null;
  const cuda = /CUDA Version:\s*([0-9]+\.[0-9]+)/.exec(out);
  return { version: drv[1]!, cuda: cuda ? cuda[1]! : null };
}

/**
 * The CUDA version a driver supports when nvidia-smi leaves it out (its table header says it; some
 * containers print "N/A"): the release branches' documented toolkits (R525 12.0 … R570 12.8, R575 12.9, R580 13.0).
 */
export function cudaOfDriver(version: string): string | null {
  const major = Number.parseInt(version, 10);
  const table: [number, string][] = [[580, "13.0"], [575, "12.9"], [570, "12.8"], [560, "12.6"], [555, "12.5"], [550, "12.4"], [545, "12.3"], [535, "12.2"], [530, "12.1"], [525, "12.0"]];
  for (const [d, c] of table) if (major >= d) return c;
  return null;
}

const pinOf = (pkg: string, platform: string): WheelPin | undefined => WHEEL_PINS.find((p) => p.package === pkg && p.platform === platform);

function linuxTag(arch: string): string | null {
  return arch === "x64" ? "manylinux_2_35_x86_64" : arch === "arm64" ? "manylinux_2_35_aarch64" : null;
}

function macTag(major: number | undefined): string {
  const m = major ?? 14;
  return m >= 26 ? "macosx_26_0_arm64" : m >= 15 ? "macosx_15_0_arm64" : "macosx_14_0_arm64";
}

export class WheelChoiceError extends Error {}

function need(pin: WheelPin | undefined, what: string): WheelPin {
  if (!pin) throw new WheelChoiceError(what);
  return pin;
}

/** The wheel for these host facts (pure). Throws WheelChoiceError when no wheel fits (or the override cannot be met). */
export function chooseWheel(h: HostFacts, env: Env = process.env): WheelChoice {
  const raw = backendOverride(env)?.trim().toLowerCase();
  const want = raw === undefined || raw === "" ? null : raw;
  if (want !== null && want !== "cpu" && want !== "cuda" && want !== "metal") {
    throw new WheelChoiceError(`MLXK_BACKEND must be cpu, cuda or metal (got '${raw}')`);
  }
  const noWheel = `no MLX wheel for ${h.platform}/${h.arch}: MLX ${MLX_VERSION} ships for Linux x86-64/aarch64 (glibc >= 2.35) and macOS arm64 ≥ 14. Set MLX_DIR to an MLX install (a dir with lib/ and include/) to use your own build.`;
  if (h.platform === "darwin") {
    if (h.arch !== "arm64") throw new WheelChoiceError(noWheel);
    if (want === "cuda") throw new WheelChoiceError("MLXK_BACKEND=cuda: MLX has no CUDA backend on macOS (Metal is used there)");
    // mlx-metal is MLX's macOS build: its CPU device serves MLXK_BACKEND=cpu at run time.
    const reason = want === "cpu" ? "MLXK_BACKEND=cpu (macOS gets the mlx-metal wheel; models run on its CPU device)" : "macOS arm64: Metal GPU";
    return { backend: want === "cpu" ? "cpu" : "metal", pin: need(pinOf("mlx-metal", macTag(h.macosMajor)), noWheel), runtime: [], reason };
  }
  const tag = h.platform === "linux" ? linuxTag(h.arch) : null;
  if (!tag) throw new WheelChoiceError(noWheel);
  const cpu = (reason: string): WheelChoice => ({ backend: "cpu", pin: need(pinOf("mlx-cpu", tag), noWheel), runtime: [], reason });
  if (want === "metal") throw new WheelChoiceError("MLXK_BACKEND=metal: Metal exists only on macOS arm64");
  if (want === "cpu") return cpu("MLXK_BACKEND=cpu");
  const smi = h.nvidiaSmi ? parseNvidiaSmi(h.nvidiaSmi) : null;
  if (!smi && !h.libcuda) {
    if (want === "cuda") throw new WheelChoiceError("MLXK_BACKEND=cuda, but no NVIDIA driver was found (nvidia-smi and libcuda.so.1 are missing)");
    return cpu("no NVIDIA driver found (no nvidia-smi, no libcuda.so.1)");
  }
  const cudaVersion = smi ? (smi.cuda ?? cudaOfDriver(smi.version)) : null;
  const major = cudaVersion ? Number.parseInt(cudaVersion, 10) : null;
  let cudaMajor: 12 | 13;
  let why: string;
  if (major === null) {
    // libcuda without a readable nvidia-smi: CUDA 12 needs the older driver of the two.
    cudaMajor = 12;
    why = "libcuda.so.1 found, driver version unknown (nvidia-smi missing): CUDA 12";
  } else if (major >= 13) {
    cudaMajor = 13;
    why = `NVIDIA driver ${smi!.version} supports CUDA ${cudaVersion}`;
  } else if (major === 12) {
    cudaMajor = 12;
    why = `NVIDIA driver ${smi!.version} supports CUDA ${cudaVersion}`;
  } else {
    const msg = `NVIDIA driver ${smi!.version} supports only CUDA ${cudaVersion}; MLX needs CUDA 12 or newer (driver ≥ 525)`;
    if (want === "cuda") throw new WheelChoiceError(`MLXK_BACKEND=cuda, but ${msg}`);
    return { ...cpu(`${msg}: CPU`), driver: smi! };
  }
  const pin = need(pinOf(`mlx-cuda-${cudaMajor}`, tag), noWheel);
  const reason = `${want === "cuda" ? "MLXK_BACKEND=cuda; " : ""}${why} → mlx-cuda-${cudaMajor}`;
  return { backend: "cuda", pin, runtime: CUDA_RUNTIME[cudaMajor], reason, ...(smi ? { driver: smi } : {}) };
}

const LIBCUDA_DIRS = [
  "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/cuda/lib64",
  "/usr/local/cuda/compat", "/usr/lib/wsl/lib",
];

/** The host facts of this machine (runs nvidia-smi / sw_vers; never throws). */
export function probeHost(env: Env = process.env): HostFacts {
  const sh = (cmd: string[]): string | null => {
    try {
      const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", env });
      return p.exitCode === 0 ? p.stdout.toString() : null;
    } catch {
      return null;
    }
  };
  const { platform, arch } = process;
  if (platform === "darwin") {
    const v = sh(["sw_vers", "-productVersion"]);
    const major = v ? Number.parseInt(v.trim().split(".")[0] ?? "", 10) : Number.NaN;
    return { platform, arch, macosMajor: Number.isFinite(major) ? major : undefined, nvidiaSmi: null, libcuda: false };
  }
  if (platform !== "linux") return { platform, arch, nvidiaSmi: null, libcuda: false };
  const extra = (env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean);
  const libcuda = [...extra, ...LIBCUDA_DIRS].some((d) => existsSync(`${d}/libcuda.so.1`));
  return { platform, arch, nvidiaSmi: sh(["nvidia-smi"]), libcuda };
}

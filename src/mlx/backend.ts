/**
 * The backend profile: which device a model runs on (cpu, cuda, metal), its compute dtype, the CPU streams
 * and which implementation of the layer ops runs (our CPU kernels, or MLX's own ops), chosen once at load
 * and handed to the model through its load context. Model files call layer functions (models/layers.ts)
 * and never name a device, a stream or a kernel.
 *
 * The choice itself (`planBackend`) is a pure function of the device facts and settings, so every branch is
 * testable on a CPU-only machine with injected facts; `loadBackend` reads the facts from MLX and makes it real.
 */
import { freemem, totalmem } from "node:os";
import { type Env, backendOverride, computeDtype, engineStreams, mallocKeepEnabled } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { type Array, Dtype } from "./array.ts";
import * as mxfast from "./fast.ts";
import {
  type BiasAct,
  fastBiasAct,
  fastLinear,
  packLinear,
  fastQuantizedMatmul,
  fastRmsNorm,
  fastRope,
  fastScaledDotProductAttention,
  fastRopeRows,
  fastSdpaKeys,
  fastSdpaRows,
  fastSwiglu,
  mlxRopeRows,
  mlxSdpaKeys,
  mlxSdpaRows,
  kernelConvSilu,
  kernelGatedDelta,
  type KernelIsa,
  kernelInfo,
  kernelKvCompose,
  kernelsEnabled,
  mlxBiasAct,
} from "./kernels.ts";
import { blockAttn, blockAttnMlp, blockQkv } from "./block.ts";
import { type GatherQuant, type KQuantMode, kernelGatherQmm, kquantMatmul } from "./kquant.ts";
import { kernelMoeGlu } from "./moe.ts";
import { matmul, multiply, silu } from "./ops.ts";
import { type QuantOptions, quantizedMatmul } from "./quant.ts";
import { swapaxes } from "./shape.ts";
import { mlxAvailability } from "./ffi.ts";
import { deviceInfo, keepHostMemory, memory, type RawDeviceInfo } from "./runtime.ts";
import { deviceAvailable, deviceCount, newStream, setDefaultDevice, type Stream, withStream } from "./stream.ts";

export type { BiasAct };
export type DeviceKind = "cpu" | "cuda" | "metal";
export type KernelChoice = "ours" | "mlx";
/** A fixed dtype, "auto" (keep the checkpoint's) or "half" (GPU default: float32 tensors → bfloat16, half ones kept). */
export type DtypePolicy = "float32" | "float16" | "bfloat16" | "auto" | "half";

/** The ops the layer functions run; one table per implementation. */
export interface LayerOps {
  readonly name: KernelChoice;
  /** x [..., K] · wᵀ for a float weight w [N, K]; `pack` (from packLinear, may be null) is a faster layout of w. */
  linear(x: Array, w: Array, pack?: Array | null): Array;
  /** w's pack for `linear` (the caller owns it), or null where this implementation has none. */
  packLinear(w: Array): Array | null;
  quantizedMatmul(x: Array, wq: Array, scales: Array, biases: Array | null, o: QuantOptions & { transpose?: boolean }): Array;
  rmsNorm(x: Array, weight: Array | null, eps: number): Array;
  rope(x: Array, o: mxfast.RopeOptions): Array;
  sdpa(q: Array, k: Array, v: Array, o: mxfast.SdpaOptions): Array;
  /** A decode batch: rope with one position per row, attention where row b sees keys [starts[b], Lk). */
  ropeRows(x: Array, o: Omit<mxfast.RopeOptions, "offset">, offsets: readonly number[]): Array;
  sdpaRows(q: Array, k: Array, v: Array, scale: number, starts: readonly number[]): Array;
  /** A right-padded encoder batch: attention where entry b sees keys [0, lens[b]). */
  sdpaKeys(q: Array, k: Array, v: Array, scale: number, lens: readonly number[]): Array;
  /** silu(gate) · up. */
  swiglu(gate: Array, up: Array): Array;
  /** act(x + bias) (an encoder MLP's epilogue; bias null = none). */
  biasAct(x: Array, bias: Array | null, act: BiasAct): Array;
  /** The gated delta rule in one primitive, or null where this implementation has none (the model composes it). */
  gatedDelta(q: Array, k: Array, v: Array, g: Array, beta: Array, state: Array): [Array, Array] | null;
  /** silu(depthwise causal conv), or null (the model composes it). */
  convSilu(x: Array, w: Array): Array | null;
  /** x · dequant(w)ᵀ for GGUF K-quant blocks w (uint8 rows, kquant.ts); CPU only (elsewhere the loader widens them). */
  kquantMatmul(x: Array, w: Array, mode: KQuantMode): Array;
  /** Quantized MoE experts through our gather kernel → [T, k, N], or null (the caller keeps MLX's gather_qmm). */
  gatherQmm(x: Array, w: Array, scales: Array | null, biases: Array | null, indices: Array, q: GatherQuant): Array | null;
  /** Whether quantized MoE layers take the gatherQmm path (our kernels, switched on). */
  readonly gatherKernel: boolean;
  /** One decode token's softmax-top-k SwiGLU MoE with K-quant experts in one primitive (moe.ts), or null: the graph. */
  moeGlu: typeof kernelMoeGlu;
  /** The dense decoder block's two fused halves (block.ts), or null: the model builds the block op by op. */
  blockQkv: typeof blockQkv;
  blockAttnMlp: typeof blockAttnMlp;
  blockAttn: typeof blockAttn;
  /** A decode batch's KV buffer from its rows' live spans (kernelKvCompose), or null: the cache composes it from MLX ops. */
  kvCompose(srcs: readonly Array[], plan: Int32Array, idx: number, cap: number): Array | null;
}

/** MLX's own ops: the GPU profile, and the CPU one when our kernels are off or unavailable. */
export const mlxOps: LayerOps = {
  name: "mlx",
  linear: (x, w) => matmul(x, swapaxes(w, -1, -2)),
  packLinear: () => null,
  quantizedMatmul: (x, wq, s, b, o) => quantizedMatmul(x, wq, s, b, o),
  rmsNorm: (x, w, eps) => mxfast.rmsNorm(x, w, eps),
  rope: (x, o) => mxfast.rope(x, o),
  sdpa: (q, k, v, o) => mxfast.scaledDotProductAttention(q, k, v, o),
  ropeRows: mlxRopeRows,
  sdpaRows: mlxSdpaRows,
  sdpaKeys: mlxSdpaKeys,
  swiglu: (g, u) => multiply(silu(g), u),
  biasAct: mlxBiasAct,
  gatedDelta: () => null,
  convSilu: () => null,
  kquantMatmul: (x, w, mode) => kquantMatmul(x, w, mode, false),
  gatherQmm: () => null,
  gatherKernel: false,
  moeGlu: () => null,
  blockQkv: () => null,
  blockAttnMlp: () => null,
  blockAttn: () => null,
  kvCompose: () => null,
};

/** Our CPU kernels (kernels.ts); each falls back to MLX's op itself when the in-process switch turns them off. */
export const kernelOps: LayerOps = {
  name: "ours",
  linear: fastLinear,
  packLinear,
  quantizedMatmul: fastQuantizedMatmul,
  rmsNorm: fastRmsNorm,
  rope: fastRope,
  sdpa: fastScaledDotProductAttention,
  ropeRows: fastRopeRows,
  sdpaRows: fastSdpaRows,
  sdpaKeys: fastSdpaKeys,
  swiglu: fastSwiglu,
  biasAct: fastBiasAct,
  gatedDelta: kernelGatedDelta,
  convSilu: kernelConvSilu,
  kquantMatmul: (x, w, mode) => kquantMatmul(x, w, mode),
  gatherQmm: kernelGatherQmm,
  get gatherKernel() {
    return kernelsEnabled();
  },
  moeGlu: kernelMoeGlu,
  blockQkv,
  blockAttnMlp,
  blockAttn,
  kvCompose: kernelKvCompose,
};

/** What the choice depends on, read from MLX and the process (injected in tests). */
export interface DeviceFacts {
  /** The installed MLX build has a usable GPU device. */
  gpu: boolean;
  platform: string;
  /** Our CPU kernels can run here (the shim has them, the CPU supports them). */
  kernelsAvailable: boolean;
  /** MLXK_KERNELS (or the in-process switch) leaves them on. */
  kernelsEnabled: boolean;
  /** The kernels' ISA in use (the CPU's best, capped by MLXK_ISA), the opt-in int8 activations
   * (MLXK_INT8_ACT=1) and the pool's threads (MLXK_THREADS, else the usable cores); absent: unknown. */
  kernelIsa?: KernelIsa;
  kernelInt8?: boolean;
  kernelThreads?: number;
}

/** How our CPU kernels run under a plan: ISA, int8 activations, threads (the pool; each op picks 1..threads). */
export interface CpuKernelPlan {
  isa: KernelIsa;
  int8: boolean;
  threads: number;
}

export interface BackendSettings {
  env?: Env;
  /** Overrides MLXK_DTYPE. */
  dtype?: DtypePolicy;
  /** CPU streams (1 or 2); overrides MLXK_STREAMS. */
  streams?: number;
}

export interface BackendPlan {
  device: DeviceKind;
  dtype: DtypePolicy;
  /** CPU streams big projections are split over (always 1 on a GPU). */
  streams: number;
  kernels: KernelChoice;
  /** With our kernels: their ISA, int8 activations and threads (null with MLX's ops). */
  cpuKernels: CpuKernelPlan | null;
  /** Why this device, in words (doctor, --version --json). */
  reason: string;
}

const DTYPES: readonly DtypePolicy[] = ["float32", "float16", "bfloat16", "auto", "half"];

function parseDtypePolicy(name: string): DtypePolicy {
  if (!(DTYPES as readonly string[]).includes(name)) {
    throw new MlxkError("InvalidArgumentError", `MLXK_DTYPE must be float32, float16, bfloat16, auto or half (got '${name}')`);
  }
  return name as DtypePolicy;
}

/** The GPU kind MLX's GPU device is on this platform (Metal on macOS, CUDA elsewhere). */
export const gpuKind = (platform: string): DeviceKind => (platform === "darwin" ? "metal" : "cuda");

/** Pick the device, dtype, streams and kernels (pure). */
export function planBackend(facts: DeviceFacts, s: BackendSettings = {}): BackendPlan {
  const env = s.env ?? process.env;
  const want = backendOverride(env)?.trim().toLowerCase();
  if (want !== undefined && want !== "" && want !== "cpu" && want !== "cuda" && want !== "metal") {
    throw new MlxkError("InvalidArgumentError", `MLXK_BACKEND must be cpu, cuda or metal (got '${want}')`);
  }
  let device: DeviceKind;
  let reason: string;
  if (want === "cpu") {
    device = "cpu";
    reason = "MLXK_BACKEND=cpu";
  } else if (want === "cuda" || want === "metal") {
    if (!facts.gpu || gpuKind(facts.platform) !== want) {
      const have = facts.gpu ? `a ${gpuKind(facts.platform)} GPU` : "no GPU device (CPU build of MLX, or no device present)";
      throw new MlxkError("mlx_unavailable", `MLXK_BACKEND=${want}, but the installed MLX has ${have}; reinstall with \`MLXK_BACKEND=${want} bun scripts/install-mlx.ts\` or unset MLXK_BACKEND`);
    }
    device = want;
    reason = `MLXK_BACKEND=${want}`;
  } else if (facts.gpu) {
    device = gpuKind(facts.platform);
    reason = `the installed MLX has a ${device} GPU`;
  } else {
    device = "cpu";
    reason = "the installed MLX has no GPU device";
  }
  const dtypeName = s.dtype ?? computeDtype(env);
  const dtype = dtypeName !== undefined ? parseDtypePolicy(dtypeName) : device === "cpu" ? "float32" : "half";
  const kernels: KernelChoice = device === "cpu" && facts.kernelsAvailable && facts.kernelsEnabled ? "ours" : "mlx";
  let streams = 1;
  if (device === "cpu") {
    // Our kernels already spread each matmul over the cores, so a second stream only competes with them.
    const fallback = kernels === "ours" ? 1 : 2;
    const raw = s.streams ?? Number(engineStreams(env) ?? fallback);
    streams = Number.isInteger(raw) && raw >= 1 ? Math.min(raw, 2) : fallback;
  }
  const cpuKernels: CpuKernelPlan | null =
    kernels === "ours" ? { isa: facts.kernelIsa ?? "avx2", int8: facts.kernelInt8 ?? false, threads: facts.kernelThreads ?? 1 } : null;
  return { device, dtype, streams, kernels, cpuKernels, reason };
}

/** The dtype a float tensor stored as `stored` is computed in (null: keep it). */
export function targetDtype(policy: DtypePolicy, stored: Dtype): Dtype | null {
  if (policy === "auto") return null;
  if (policy === "half") return stored === Dtype.float32 ? Dtype.bfloat16 : null;
  return Dtype[policy];
}

export interface BackendProfile extends BackendPlan {
  readonly ops: LayerOps;
  /** Whether `pair` runs its two halves at the same time (two CPU streams). */
  readonly parallel: boolean;
  /** Build `a` and `b`, at the same time where the device gains from it. */
  pair<A, B>(a: () => A, b: () => B): [A, B];
  /** Compute dtype of a float tensor stored as `stored` (null: keep). */
  target(stored: Dtype): Dtype | null;
}

/** A profile from a plan; `streams` are the CPU streams to pair over (plan.streams of them, or none). */
export function makeBackend(plan: BackendPlan, streams: readonly Stream[] = []): BackendProfile {
  const two = streams.length > 1 ? ([streams[0]!, streams[1]!] as const) : null;
  return {
    ...plan,
    ops: plan.kernels === "ours" ? kernelOps : mlxOps,
    parallel: two !== null,
    pair: two ? (a, b) => [withStream(two[0], a), withStream(two[1], b)] : (a, b) => [a(), b()],
    target: (stored) => targetDtype(plan.dtype, stored),
  };
}

/** The facts of this process's MLX. */
export function deviceFacts(env: Env = process.env): DeviceFacts {
  const k = kernelInfo(env);
  // a CUDA build says "available" even with no visible device: count them
  return {
    gpu: deviceAvailable("gpu") && deviceCount("gpu") > 0,
    platform: process.platform,
    kernelsAvailable: k.level !== "none",
    kernelsEnabled: k.enabled,
    kernelIsa: k.isa,
    kernelInt8: k.int8,
    kernelThreads: k.threads,
  };
}

// MLX CPU streams are worker threads that live as long as the process: make them once and reuse them.
let streamPool: Stream[] = [];
function cpuStreams(n: number): Stream[] {
  while (streamPool.length < n) streamPool = [...streamPool, newStream("cpu")];
  return streamPool.slice(0, n);
}

let active: BackendProfile | null = null;

/** Bytes of freed host memory a malloc arena keeps, and the size from which an allocation gets its own mapping. */
export interface HostMallocPlan {
  trimBytes: number;
  mmapBytes: number;
}

/**
 * Whether (and how) the CPU backend keeps freed host memory for reuse (pure). MLX's CPU allocator is plain
 * malloc: a prefill's activations (a few MB each) are freed and made again per layer, and glibc's defaults hand
 * them back to the kernel, which zeroes every page on the next touch. Kept: up to 512 MiB of free memory per
 * arena, and allocations below 32 MiB (glibc's cap) from the heap. Null on a GPU, with MLXK_MALLOC_KEEP=0, or
 * when the user set glibc's own malloc settings (theirs win).
 */
export function hostMallocPlan(device: DeviceKind, env: Env = process.env): HostMallocPlan | null {
  if (device !== "cpu" || !mallocKeepEnabled(env)) return null;
  if (env.GLIBC_TUNABLES?.includes("glibc.malloc.") || env.MALLOC_TRIM_THRESHOLD_ !== undefined || env.MALLOC_MMAP_THRESHOLD_ !== undefined) return null;
  return { trimBytes: 512 * 2 ** 20, mmapBytes: 32 * 2 ** 20 };
}

/** Choose the profile for a load and make it the process's (MLX's default device is process-wide too). */
export function loadBackend(s: BackendSettings = {}): BackendProfile {
  const plan = planBackend(deviceFacts(s.env), s);
  setDefaultDevice(plan.device === "cpu" ? "cpu" : "gpu");
  const keep = hostMallocPlan(plan.device, s.env);
  if (keep) keepHostMemory(keep.trimBytes, keep.mmapBytes);
  active = makeBackend(plan, plan.streams > 1 ? cpuStreams(plan.streams) : []);
  return active;
}

/** The last loaded profile, else the CPU default (our kernels, one stream) without touching MLX's device. */
export function defaultBackend(): BackendProfile {
  return active ?? makeBackend({ device: "cpu", dtype: "float32", streams: 1, kernels: "ours", cpuKernels: null, reason: "default" });
}

/** The profile of the last load in this process, or null before any. */
export function activeBackend(): BackendProfile | null {
  return active;
}

/** The layer ops of the last loaded profile (our CPU kernels before any load, as the CPU default). */
export function layerOps(): LayerOps {
  return active?.ops ?? kernelOps;
}

/** The memory models on a device can use, in bytes. */
export interface DeviceMemory {
  device: DeviceKind;
  name: string | null;
  totalBytes: number;
  freeBytes: number;
}

/**
 * Device memory from MLX's device facts (pure): CUDA reports the card's total and free memory (NVML, all
 * processes); Metal shares host RAM, bounded by the GPU's recommended working set less what MLX holds; the
 * CPU has the host's RAM.
 */
export function memoryOf(device: DeviceKind, info: RawDeviceInfo | null, host: { total: number; free: number }, mlxActive: number): DeviceMemory {
  const name = info?.name ?? null;
  if (device === "cuda" && info?.totalBytes) {
    return { device, name, totalBytes: info.totalBytes, freeBytes: info.freeBytes ?? Math.max(0, info.totalBytes - mlxActive) };
  }
  if (device === "metal" && info) {
    const total = info.recommendedBytes ?? info.totalBytes ?? host.total;
    return { device, name, totalBytes: total, freeBytes: Math.max(0, Math.min(host.free, total - mlxActive)) };
  }
  return { device, name, totalBytes: host.total, freeBytes: host.free };
}

/** The device models run on here: the loaded profile's, else what a load would pick (cpu when MLX is missing). */
export function currentDevice(env: Env = process.env): DeviceKind {
  if (active) return active.device;
  try {
    return mlxAvailability(env).available ? planBackend(deviceFacts(env), { env }).device : "cpu";
  } catch {
    return "cpu";
  }
}

/** Memory of the device models run on (host RAM when MLX cannot be loaded). */
export function deviceMemory(env: Env = process.env): DeviceMemory {
  const host = { total: totalmem(), free: freemem() };
  const device = currentDevice(env);
  if (device === "cpu") {
    let name: string | null = null;
    try {
      if (mlxAvailability(env).available) name = deviceInfo("cpu").name;
    } catch {}
    return { ...memoryOf("cpu", null, host, 0), name };
  }
  return memoryOf(device, deviceInfo("gpu"), host, memory.active());
}

/** Free bytes on the device models run on (the server's memory checks, the prompt cache budget). */
export function deviceFreeMemory(env: Env = process.env): number {
  return deviceMemory(env).freeBytes;
}

/** One line for `run --verbose`: device, dtype, kernels and memory. */
export function describeBackend(p: BackendProfile, m: DeviceMemory): string {
  const gb = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GB`;
  const what = p.device === "cpu" ? `cpu${m.name ? ` (${m.name})` : ""}, ${p.kernels === "ours" ? "our kernels" : "MLX ops"}, ${p.streams} stream${p.streams > 1 ? "s" : ""}` : `${p.device}${m.name ? ` (${m.name})` : ""}`;
  return `Device: ${what}, compute ${p.dtype}; memory ${gb(m.freeBytes)} free of ${gb(m.totalBytes)}`;
}

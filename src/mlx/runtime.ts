/** Evaluation, memory accounting and versions. */
import type { Array } from "./array.ts";
import { FFIType } from "bun:ffi";
import { cstr, fail, handles, laterSymbols, lib, readCString } from "./ffi.ts";

function flatArrays(xs: readonly (Array | readonly Array[])[]): number[] {
  const hs: number[] = [];
  for (const x of xs) {
    if (globalThis.Array.isArray(x)) for (const a of x as readonly Array[]) hs.push(a.handle);
    else hs.push((x as Array).handle);
  }
  return hs;
}

/** Evaluate the arrays (and everything they depend on) in one graph run; blocks. */
export function evaluate(...arrays: (Array | readonly Array[])[]): void {
  const hs = flatArrays(arrays);
  if (lib().mlxk_eval(handles(hs) as never, hs.length) !== 0) fail("eval");
}
export { evaluate as eval, evaluate as evalArrays };

/** Schedule evaluation and return at once; a later eval/item/toFloat32Array waits for it. */
export function asyncEval(...arrays: (Array | readonly Array[])[]): void {
  const hs = flatArrays(arrays);
  if (lib().mlxk_async_eval(handles(hs) as never, hs.length) !== 0) fail("async_eval");
}

/** Version of the loaded libmlx (e.g. "0.32.4"). */
export function mlxVersion(): string {
  return readCString(lib().mlxk_mlx_version() as number | null) ?? "";
}
/** Version the shim was built for (mlx-c/VERSION). */
export function shimVersion(): string {
  return readCString(lib().mlxk_version() as number | null) ?? "";
}

/** MLX allocator statistics and limits, in bytes. */
export const memory = {
  active: (): number => lib().mlxk_get_active_memory(),
  peak: (): number => lib().mlxk_get_peak_memory(),
  resetPeak: (): void => lib().mlxk_reset_peak_memory(),
  cache: (): number => lib().mlxk_get_cache_memory(),
  /** Returns the previous limit. */
  setCacheLimit: (bytes: number): number => lib().mlxk_set_cache_limit(bytes),
  /** Returns the previous limit. */
  setMemoryLimit: (bytes: number): number => lib().mlxk_set_memory_limit(bytes),
  limit: (): number => lib().mlxk_get_memory_limit(),
  /** Metal only; returns the previous limit (-1 where unsupported). */
  setWiredLimit: (bytes: number): number => lib().mlxk_set_wired_limit(bytes),
  clearCache: (): void => lib().mlxk_clear_cache(),
};

/** What MLX's device_info says about device 0 of a kind (null = the backend does not report it). */
export interface RawDeviceInfo {
  name: string | null;
  architecture: string | null;
  /** total_memory (CUDA) or memory_size (Metal, CPU). */
  totalBytes: number | null;
  /** CUDA only: read fresh from NVML on every call. */
  freeBytes: number | null;
  /** Metal only: the GPU's recommended working set. */
  recommendedBytes: number | null;
  count: number;
}

export function deviceInfo(kind: "cpu" | "gpu"): RawDeviceInfo {
  const t = kind === "gpu" ? 1 : 0;
  const s = lib();
  const num = (k: string) => {
    const v = s.mlxk_device_info_number(t, cstr(k) as never);
    return v >= 0 ? v : null;
  };
  const str = (k: string) => readCString(s.mlxk_device_info_string(t, cstr(k) as never) as number | null);
  return {
    name: str("device_name"),
    architecture: str("architecture"),
    totalBytes: num("total_memory") ?? num("memory_size"),
    freeBytes: num("free_memory"),
    recommendedBytes: num("max_recommended_working_set_size"),
    count: s.mlxk_device_count(t),
  };
}

const mallocSymbols = laterSymbols({ mlxk_host_malloc_keep: { args: [FFIType.f64, FFIType.f64], returns: FFIType.i32 } });

/**
 * Keep freed host memory for reuse (glibc's trim and mmap thresholds; backend.ts's hostMallocPlan decides);
 * false where the C library or the shim has no such setting.
 */
export function keepHostMemory(trimBytes: number, mmapBytes: number): boolean {
  return mallocSymbols()?.mlxk_host_malloc_keep(trimBytes, mmapBytes) === 1;
}

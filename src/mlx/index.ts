/**
 * MLX for TypeScript — the only module family that touches native pointers.
 *
 * Loading: nothing native happens at import time. The shim (mlx-c/build/libmlxk.*, built by
 * `npm install` from scripts/install-mlx.ts) is dlopened on the first MLX call. Search order:
 * $MLXK_SHIM, mlx-c/build/ in the repo, lib/ beside a `bun build --compile` executable.
 * `mlxAvailability()` says {available, reason} without throwing (reason from .mlx/status.json or
 * the dlopen error); any other call throws MlxkError("mlx_unavailable") when MLX is missing.
 *
 * Arrays: `Array` wraps a lazy MLX graph node. Create with `array([[1, 2], [3, 4]])`,
 * `array(float32Array, {shape, dtype})`, `fromBytes(bytes, shape, dtype)`, `zeros/ones/full/arange`;
 * read with `item()`, `toFloat32Array()`, `toInt32Array()`, `toList()`, `toBytes()` (these evaluate).
 * `shape`, `dtype` (a `Dtype` code; `dtypeName()`), `size`, `ndim`, `nbytes`.
 *
 * Lifetimes (MLX memory is invisible to the GC, so nothing is freed by GC):
 *   - `a.dispose()` or `using a = ...` frees one array;
 *   - `scope(fn)` frees every array created inside `fn` except what `fn` returns (adopted by the
 *     enclosing scope) and what was passed to `keep()` (owned by the caller from then on).
 *   A decode step: `const logits = scope(() => { ...; cache.k = keep(sliceUpdate(...)); return logits; })`.
 *   KV caches: build `next = sliceUpdate(old, kv, …)`, then `old.dispose()` BEFORE evaluating, so MLX
 *   can update the buffer in place (measured 4× faster for a 2 MiB cache; otherwise it copies).
 *   Disposing intermediates early likewise lets MLX reuse their buffers during eval.
 *
 * Ops are plain functions named like MLX Python in camelCase: add, multiply, matmul, reshape,
 * transpose, softmax, take, sliceUpdate, quantizedMatmul, gatherQmm, … ; `fast.rmsNorm`,
 * `fast.rope`, `fast.scaledDotProductAttention`; `random.categorical`; `loadSafetensors`,
 * `loadGguf`, `saveSafetensors`; `eval`/`asyncEval`; `memory.*`. Binary ops take JS numbers too.
 *
 * Errors: a failing MLX call throws `MlxError` (an MlxkError of type "execution_error", HTTP 500)
 * carrying MLX's own message; the process carries on.
 *
 * Threads: all MLX work must happen on ONE JS thread (MLX streams and CPU encoders are
 * thread-local, and bun:ffi must never be re-entered from MLX threads). Streams: ops run on the
 * current stream — `withStream(newStream("cpu"), fn)` puts a block on a second CPU worker thread
 * (splitting a big projection's output columns over two streams ≈ halves it when a core is free).
 *
 * CPU performance notes (x86, see BENCHMARKS.md): keep activations and quantization scales in
 * float32 — bf16 runs 7–9× slower in MLX's CPU kernels; FFI overhead is ~0.1 µs per op.
 */
export { Array, array, Dtype, type DtypeName, dtypeName, fromBytes, isFloating, isInteger, itemsize, parseDtype, scalar, type TypedArray } from "./array.ts";
export { type MlxAvailability, MlxError, mlxAvailability } from "./ffi.ts";
export * as fast from "./fast.ts";
export * as distributed from "./distributed.ts";
export type { RopeOptions, SdpaOptions } from "./fast.ts";
export { type GgufFile, type GgufValue, loadGguf, loadSafetensors, type SafetensorsFile, saveSafetensors } from "./io.ts";
export * from "./ops.ts";
export * from "./quant.ts";
export { asyncEval, deviceInfo, eval, evalArrays, evaluate, memory, mlxVersion, type RawDeviceInfo, shimVersion } from "./runtime.ts";
export { disposeAll, keep, scope, scopeDepth, tidy } from "./scope.ts";
export * from "./shape.ts";
export { type DeviceType, defaultDevice, defaultStream, deviceAvailable, deviceCount, newStream, setDefaultDevice, Stream, synchronize, withStream } from "./stream.ts";

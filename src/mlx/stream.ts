/**
 * Devices and streams. Ops run on the "current stream" (default: the default stream of the default
 * device); `withStream(s, fn)` switches it for a block, e.g. to split a matmul across two CPU
 * streams (one stream = one worker thread on CPU). Streams are thread-affine: create and use them
 * on the thread that builds the graphs.
 */
import { fail, lib, OUT_PTR, outPtr } from "./ffi.ts";

export type DeviceType = "cpu" | "gpu";
const DEV = { cpu: 0, gpu: 1 } as const;

/** Handle of the stream ops are built on; 0 = default stream (the shim's NULL). */
let current = 0;
export const currentStream = (): number => current;

export class Stream {
  #h: number;
  readonly #owned: boolean;
  constructor(handle: number, owned: boolean) {
    this.#h = handle;
    this.#owned = owned;
  }
  get handle(): number {
    if (this.#h === 0) throw new TypeError("Stream used after dispose()");
    return this.#h;
  }
  get index(): number {
    return lib().mlxk_stream_index(this.handle as never);
  }
  get device(): DeviceType {
    return lib().mlxk_stream_device_type(this.handle as never) === 1 ? "gpu" : "cpu";
  }
  /** Block until everything queued on this stream has run. */
  synchronize(): void {
    if (lib().mlxk_synchronize(this.handle as never) !== 0) fail("synchronize");
  }
  /** Frees the handle only (MLX streams live for the whole process). */
  dispose(): void {
    if (this.#h !== 0 && this.#owned) lib().mlxk_stream_free(this.#h as never);
    this.#h = 0;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A new stream on `device` (on CPU: a new worker thread). */
export function newStream(device: DeviceType = defaultDevice()): Stream {
  if (lib().mlxk_stream_new(OUT_PTR, DEV[device]) !== 0) fail("new_stream");
  return new Stream(outPtr(), true);
}

/** The default stream of `device` on the calling thread. */
export function defaultStream(device: DeviceType = defaultDevice()): Stream {
  if (lib().mlxk_stream_default(OUT_PTR, DEV[device]) !== 0) fail("default_stream");
  return new Stream(outPtr(), true);
}

/** Run `fn` with ops placed on `s` (restored afterwards, also on throw). */
export function withStream<T>(s: Stream, fn: () => T): T {
  const prev = current;
  current = s.handle;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

/** Wait for `s` (default: the default stream) to finish its queued work. */
export function synchronize(s?: Stream): void {
  if (lib().mlxk_synchronize((s ? s.handle : 0) as never) !== 0) fail("synchronize");
}

export function defaultDevice(): DeviceType {
  return lib().mlxk_default_device_type() === 1 ? "gpu" : "cpu";
}

export function setDefaultDevice(d: DeviceType): void {
  if (lib().mlxk_set_default_device(DEV[d]) !== 0) fail("set_default_device");
}

export function deviceAvailable(d: DeviceType): boolean {
  return lib().mlxk_device_available(DEV[d]) === 1;
}

/** Devices of a kind MLX can use (a CUDA build reports 0 GPUs when no device is visible). */
export function deviceCount(d: DeviceType): number {
  return Math.max(0, lib().mlxk_device_count(DEV[d]));
}

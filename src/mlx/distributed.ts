/**
 * mlx::core::distributed through the shim: which backends libmlx has, a process group (`init`), and the
 * collectives (all_sum, all_gather, all_max, send, recv, recv_like). Collectives are lazy ops like any other:
 * they communicate when evaluated. The ring backend (TCP) reads MLX_RANK and MLX_HOSTFILE (a JSON list, one
 * list of "ip:port" per rank) and sends/receives only between ring neighbours (rank ± 1 mod size).
 */
import type { Array, Dtype } from "./array.ts";
import { cstr, fail, ints, lib, OUT_PTR, outPtr } from "./ffi.ts";
import { result } from "./ops.ts";
import { currentStream as S } from "./stream.ts";

export type Backend = "any" | "ring" | "mpi" | "nccl" | "jaccl";
export const BACKENDS: readonly Backend[] = ["ring", "mpi", "nccl", "jaccl"];

/** Whether libmlx can start `backend` here ("any": at least one); never throws for a missing backend. */
export function isAvailable(backend: Backend = "any"): boolean {
  return lib().mlxk_distributed_is_available(cstr(backend) as never) === 1;
}

/** A group of processes that communicate. Size 1 = not distributed (collectives are no-ops). */
export class Group implements Disposable {
  #h: number;
  readonly rank: number;
  readonly size: number;
  constructor(handle: number) {
    this.#h = handle;
    this.rank = lib().mlxk_group_rank(handle as never);
    this.size = lib().mlxk_group_size(handle as never);
  }
  get handle(): number {
    if (this.#h === 0) throw new Error("distributed group used after dispose");
    return this.#h;
  }
  /** Ring neighbour to the right / left (the only peers the ring backend sends to). */
  get right(): number {
    return (this.rank + 1) % this.size;
  }
  get left(): number {
    return (this.rank + this.size - 1) % this.size;
  }
  [Symbol.dispose](): void {
    if (this.#h !== 0) lib().mlxk_group_free(this.#h as never);
    this.#h = 0;
  }
}

/**
 * Start `backend` and return the group of all processes. strict: an error (MlxError with MLX's message) when
 * it cannot start — e.g. ring without MLX_RANK/MLX_HOSTFILE; otherwise a size-1 group. Blocks until the ring
 * neighbours have connected.
 */
export function init(backend: Backend = "any", strict = true): Group {
  if (lib().mlxk_distributed_init(OUT_PTR as never, cstr(backend) as never, strict) !== 0) fail("distributed_init");
  return new Group(outPtr());
}

const g = (group: Group) => group.handle as never;

export function allSum(x: Array, group: Group): Array {
  return result(lib().mlxk_all_sum(OUT_PTR as never, x.handle as never, g(group), S() as never), "all_sum");
}
/** Concatenation of every rank's `x` along axis 0, in rank order. */
export function allGather(x: Array, group: Group): Array {
  return result(lib().mlxk_all_gather(OUT_PTR as never, x.handle as never, g(group), S() as never), "all_gather");
}
export function allMax(x: Array, group: Group): Array {
  return result(lib().mlxk_all_max(OUT_PTR as never, x.handle as never, g(group), S() as never), "all_max");
}
/** Sends `x` to rank `dst` when evaluated; the result is `x` (depend on it to order later work after the send). */
export function send(x: Array, dst: number, group: Group): Array {
  return result(lib().mlxk_send(OUT_PTR as never, x.handle as never, dst, g(group), S() as never), "send");
}
export function recv(shape: readonly number[], dtype: Dtype, src: number, group: Group): Array {
  return result(lib().mlxk_recv(OUT_PTR as never, ints(shape) as never, shape.length, dtype, src, g(group), S() as never), "recv");
}
/** recv of an array shaped and typed like `x` (x itself is not read). */
export function recvLike(x: Array, src: number, group: Group): Array {
  return result(lib().mlxk_recv_like(OUT_PTR as never, x.handle as never, src, g(group), S() as never), "recv_like");
}


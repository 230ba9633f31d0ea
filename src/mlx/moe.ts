/**
 * A softmax-top-k SwiGLU mixture-of-experts layer (one decode token, or a prefill's tokens) as one CPU primitive
 * (mlx-c/src/kernels/moe.cpp): top k of the router probabilities as MLX's argpartition picks them, their weights
 * (optionally renormalised), the k K-quant experts' gate/up/down with silu(gate)·up, and the weighted sum. The
 * same arithmetic in the same order as the op-by-op graph (switch_layers.ts), in one node instead of ~15.
 * `kernelMoeGlu` returns null where it cannot run (kernels or fused blocks off, a shim without it, a case the
 * kernel declines) and the caller builds the graph.
 */
import { FFIType } from "bun:ffi";
import { Array } from "./array.ts";
import { fusedBlocks } from "./block.ts";
import { fail, laterSymbols, OUT_PTR, outPtr } from "./ffi.ts";
import type { KQuantMode } from "./kquant.ts";
import { currentStream as S } from "./stream.ts";

const KTYPES: Record<KQuantMode, number> = { q4_k: 0, q5_k: 1, q6_k: 2 };
const P = FFIType.ptr;
const I = FFIType.i32;
// bound apart, so a shim built before it (bench/llama.ts --baseline-shim) still loads: it builds the graph
const DEFS = { mlxk_kernel_moe_glu: { args: [P, P, P, P, P, P, I, I, I, I, I, P], returns: I } } as const;
const symbols = laterSymbols(DEFS);
let override: boolean | null = null;
let built = 0;

/** Whether the fused MoE runs: with the fused decoder blocks (MLXK_FUSED_BLOCKS), unless setFusedMoe overrode it. */
export function fusedMoe(): boolean {
  return fusedBlocks() && override !== false;
}

/** Tests and benchmarks: switch the fused MoE alone in process (null: follow the fused blocks). */
export function setFusedMoe(on: boolean | null): void {
  override = on;
}

/** Fused MoE nodes built so far (tests check the fused path really ran). */
export function fusedMoeBuilt(): number {
  return built;
}

export interface MoeExperts {
  gate: Array;
  up: Array;
  down: Array;
  modes: [KQuantMode, KQuantMode, KQuantMode];
}

/** x [..., H] (T rows of one sequence) and router probabilities p [..., E] → [..., H], or null (build the graph). */
export function kernelMoeGlu(x: Array, p: Array, e: MoeExperts, k: number, normTopK: boolean): Array | null {
  const s = fusedMoe() ? symbols() : null;
  if (!s) return null;
  const [g, u, d] = e.modes.map((m) => KTYPES[m]) as [number, number, number];
  const rc = s.mlxk_kernel_moe_glu(OUT_PTR as never, x.handle as never, p.handle as never, e.gate.handle as never,
    e.up.handle as never, e.down.handle as never, k, normTopK ? 1 : 0, g, u, d, S() as never);
  if (rc !== 0) fail("moe_glu");
  const h = outPtr();
  if (!h) return null;
  built++;
  return new Array(h);
}

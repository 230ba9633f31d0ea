/**
 * Mixture-of-experts pieces shared by gpt_oss, qwen3_moe (and qwen3_5_moe): expert weights stacked as
 * [E, out, in] applied per token to its chosen experts (our gather kernel, else MLX's gather_mm / gather_qmm), the SwitchGLU of
 * mlx-lm 0.32.2 models/switch_layers.py, and the two routers (softmax-then-top-k as Qwen/Mixtral write
 * it, top-k-then-softmax as gpt-oss does). Also the checkpoint renames every MoE family needs.
 */
import * as mx from "../mlx/index.ts";
import type { WeightStore } from "./base.ts";
import { layerOps } from "../mlx/backend.ts";
import { isKQuantMode, type KQuantMode, kquantDequantize } from "../mlx/kquant.ts";
import { type Linear, type MlxQuantMode, swiglu } from "./layers.ts";

/** Expert weights [E, out, in] (float, quantized or K-quant blocks), optional per-expert bias [E, out]: a Linear per expert. */
export class SwitchLinear {
  readonly l: Linear;
  constructor(w: WeightStore, prefix: string) {
    this.l = w.linear(prefix);
  }

  /** x [..., 1|k, 1, in] with indices [..., k] → [..., k, 1, out]; `sorted`: indices ascending (one row per index). */
  forward(x: mx.Array, indices: mx.Array, sorted = false): mx.Array {
    const { weight, scales, biases, bias, q } = this.l;
    let y: mx.Array;
    if (q && isKQuantMode(q.mode)) {
      // kernels off: the experts' exact float weights each call, then MLX's gather_mm (correct, not fast)
      y = mx.gatherMm(x, mx.swapaxes(kquantDequantize(weight, q.mode), -1, -2), { rhsIndices: indices, sortedIndices: sorted });
    } else if (q) {
      y = mx.gatherQmm(x, weight, scales!, biases, { ...q, mode: q.mode as MlxQuantMode, transpose: true, rhsIndices: indices, sortedIndices: sorted });
    } else {
      y = mx.gatherMm(x, mx.swapaxes(weight, -1, -2), { rhsIndices: indices, sortedIndices: sorted });
    }
    return bias ? mx.add(y, mx.expandDims(mx.take(bias, indices, 0), -2)) : y;
  }

  /**
   * x [R, in] (R = tokens, or tokens·k with one row per slot), indices [T, k] → [T, k, out]: our gather kernel
   * where it runs (the routing is read inside the kernel, each used expert's rows read once), else forward().
   */
  rows(x: mx.Array, indices: mx.Array): mx.Array {
    const { weight, scales, biases, bias, q } = this.l;
    let y = q ? layerOps().gatherQmm(x, weight, scales, biases, indices, q) : null;
    if (!y) {
      const [T, k] = indices.shape as [number, number];
      const xe = x.shape[0] === T ? mx.reshape(x, [T, 1, 1, -1]) : mx.reshape(x, [T, k, 1, -1]);
      return mx.squeeze(this.forward(xe, indices), -2);
    }
    if (bias) y = mx.add(y, mx.take(bias, indices, 0));
    return y;
  }
}

/** gate/up/down experts with a GLU activation: x [..., in], indices [..., k] → [..., k, in]. */
export class SwitchGLU {
  readonly gate_proj: SwitchLinear;
  readonly up_proj: SwitchLinear;
  readonly down_proj: SwitchLinear;
  constructor(
    w: WeightStore,
    prefix: string,
    readonly activation: (gate: mx.Array, up: mx.Array) => mx.Array,
  ) {
    this.gate_proj = new SwitchLinear(w, `${prefix}.gate_proj`);
    this.up_proj = new SwitchLinear(w, `${prefix}.up_proj`);
    this.down_proj = new SwitchLinear(w, `${prefix}.down_proj`);
  }

  forward(x: mx.Array, indices: mx.Array): mx.Array {
    // x [B, L, H] with B > 1 is a decode batch (src/engine/batch.ts): each sequence through the experts on its
    // own, so a row meets exactly the kernels (one row per expert) and the ordering it meets alone. Two rows on
    // one expert in one call would take the multi-row matmul, whose sums round differently.
    const B = x.ndim >= 3 ? x.shape[0]! : 1;
    if (B > 1) {
      const rows = Array.from({ length: B }, (_, b) => this.#one(mx.sliceAxis(x, 0, b, b + 1), mx.sliceAxis(indices, 0, b, b + 1)));
      return mx.concatenate(rows, 0);
    }
    return this.#one(x, indices);
  }

  #one(x: mx.Array, indices: mx.Array): mx.Array {
    if (this.gate_proj.l.q && layerOps().gatherKernel) return this.#kernels(x, indices);
    let xe = mx.expandDims(x, [-2, -3]);
    // Many tokens (prefill): visit the experts in order, as mlx-lm does, so each expert's weights are read once.
    const sort = indices.size >= 64;
    let idx = indices;
    let inv: mx.Array | null = null;
    if (sort) {
      const k = indices.shape.at(-1)!;
      const flat = mx.flatten(indices);
      const order = mx.argsort(flat, 0);
      inv = mx.argsort(order, 0);
      xe = mx.take(mx.flatten(xe, 0, -3), mx.floorDivide(order, k), 0);
      idx = mx.take(flat, order, 0);
    }
    const up = this.up_proj.forward(xe, idx, sort);
    const gate = this.gate_proj.forward(xe, idx, sort);
    let y = this.down_proj.forward(this.activation(gate, up), idx, sort);
    if (inv) y = mx.reshape(mx.take(y, inv, 0), [...indices.shape, 1, y.shape.at(-1)!]);
    return mx.squeeze(y, -2);
  }

  /**
   * The softmax-top-k router's choice, these experts and the weighted sum in one primitive per sequence
   * (mlx/moe.ts; decode and prefill), or null (the graph). Only SwiGLU over bias-free K-quant experts.
   */
  fusedTopK(x: mx.Array, probs: mx.Array, k: number, normTopK: boolean): mx.Array | null {
    const ls = [this.gate_proj.l, this.up_proj.l, this.down_proj.l];
    if (this.activation !== swiglu || !layerOps().gatherKernel || ls.some((l) => l.bias || !isKQuantMode(l.q?.mode))) return null;
    if (x.ndim < 1) return null;
    const experts = { gate: ls[0]!.weight, up: ls[1]!.weight, down: ls[2]!.weight, modes: ls.map((l) => l.q!.mode) as [KQuantMode, KQuantMode, KQuantMode] };
    // one sequence (a decode token, or a prefill's tokens grouped by expert inside the kernel as the gather kernel does)
    const B = x.ndim >= 3 ? x.shape[0]! : 1;
    if (B === 1) return layerOps().moeGlu(x, probs, experts, k, normTopK);
    // a batch [B, L, H] (a decode batch: L = 1): each sequence on its own, as it runs alone (as forward())
    const out: mx.Array[] = [];
    for (let b = 0; b < B; b++) {
      const y = layerOps().moeGlu(mx.sliceAxis(x, 0, b, b + 1), mx.sliceAxis(probs, 0, b, b + 1), experts, k, normTopK);
      if (!y) return null;
      out.push(y);
    }
    return mx.concatenate(out, 0);
  }

  /**
   * Quantized experts through our gather kernel (mlx-c/src/kernels/gather.cpp): tokens grouped by expert inside
   * the kernel, so there is no host read of the routing and no per-expert graph nodes. Same math as the MLX path.
   */
  #kernels(x: mx.Array, indices: mx.Array): mx.Array {
    const H = x.shape.at(-1)!;
    const k = indices.shape.at(-1)!;
    const x2 = mx.reshape(x, [-1, H]);
    const idx = mx.reshape(indices, [-1, k]);
    const gate = this.gate_proj.rows(x2, idx);
    const up = this.up_proj.rows(x2, idx);
    const act = this.activation(gate, up);
    const y = this.down_proj.rows(mx.reshape(act, [-1, act.shape.at(-1)!]), idx);
    return mx.reshape(y, [...indices.shape, y.shape.at(-1)!]);
  }
}

/** Indices of the k largest entries along the last axis (order unspecified, as argpartition gives them). */
export function topK(scores: mx.Array, k: number): mx.Array {
  const E = scores.shape.at(-1)!;
  return mx.sliceAxis(mx.argpartition(scores, E - k, -1), -1, E - k, E);
}

/** Qwen / Mixtral router: softmax over all experts, top k, optionally renormalised. */
export function softmaxTopK(logits: mx.Array, k: number, normTopK: boolean): { indices: mx.Array; weights: mx.Array } {
  return probsTopK(mx.softmax(logits, -1, true), k, normTopK);
}

/** The Qwen / Mixtral MoE layer: softmaxTopK routing of x through the experts, combined (fused when it can be). */
export function softmaxTopKMoe(experts: SwitchGLU, x: mx.Array, logits: mx.Array, k: number, normTopK: boolean): mx.Array {
  const p = mx.softmax(logits, -1, true);
  const fused = experts.fusedTopK(x, p, k, normTopK);
  if (fused) return fused;
  const { indices, weights } = probsTopK(p, k, normTopK);
  return combine(experts.forward(x, indices), weights);
}

function probsTopK(p: mx.Array, k: number, normTopK: boolean): { indices: mx.Array; weights: mx.Array } {
  const indices = topK(p, k);
  let weights = mx.takeAlongAxis(p, indices, -1);
  if (normTopK) weights = mx.divide(weights, mx.sum(weights, -1, true));
  return { indices, weights };
}

/** gpt-oss router: top k logits, softmax over those. */
export function topKSoftmax(logits: mx.Array, k: number): { indices: mx.Array; weights: mx.Array } {
  const indices = topK(logits, k);
  return { indices, weights: mx.softmax(mx.takeAlongAxis(logits, indices, -1), -1, true) };
}

/** Expert outputs [..., k, H] weighted by router weights [..., k] and summed → [..., H]. */
export function combine(y: mx.Array, weights: mx.Array): mx.Array {
  return mx.sum(mx.multiply(y, mx.expandDims(weights.astype(y.dtype), -1)), -2);
}

function take(w: Map<string, mx.Array>, k: string): mx.Array {
  const a = w.get(k)!;
  w.delete(k);
  return a;
}

/**
 * Per-expert checkpoints (`<p>.experts.<e>.<name>.weight`, as transformers 4 and most Hub repos store
 * them) → one stacked `<to>.<name>.weight` [E, out, in] per projection; quantized experts stack their
 * scales/biases too.
 */
export function stackExperts(w: Map<string, mx.Array>, layerPrefix: string, to: string, names: readonly string[]): void {
  for (const n of names) {
    for (const part of ["weight", "scales", "biases", "bias"]) {
      const keys: string[] = [];
      for (let e = 0; w.has(`${layerPrefix}.experts.${e}.${n}.${part}`); e++) keys.push(`${layerPrefix}.experts.${e}.${n}.${part}`);
      if (keys.length === 0) continue;
      const parts = keys.map((k) => take(w, k));
      w.set(`${to}.${n}.${part}`, mx.keep(mx.stack(parts, 0)));
      mx.disposeAll(parts);
    }
  }
}

/** Rows [start, stop) of axis `axis` (every `step`-th), as its own contiguous array. */
export function sliceRows(a: mx.Array, axis: number, start: number, stop: number, step = 1): mx.Array {
  const ax = axis < 0 ? axis + a.ndim : axis;
  const lo = a.shape.map(() => 0);
  const hi = [...a.shape];
  const st = a.shape.map(() => 1);
  lo[ax] = start;
  hi[ax] = stop;
  st[ax] = step;
  return mx.keep(mx.contiguous(mx.slice(a, lo, hi, st)));
}

/**
 * transformers 5's fused experts (`<p>.experts.gate_up_proj` [E, 2I, H] + `<p>.experts.down_proj` [E, H, I],
 * gate half first) → `<to>.gate_proj/up_proj/down_proj.weight`.
 */
export function splitFusedExperts(w: Map<string, mx.Array>, layerPrefix: string, to: string): void {
  const gu = w.get(`${layerPrefix}.experts.gate_up_proj`);
  if (!gu) return;
  w.delete(`${layerPrefix}.experts.gate_up_proj`);
  const n = gu.shape[1]! / 2;
  w.set(`${to}.gate_proj.weight`, sliceRows(gu, 1, 0, n));
  w.set(`${to}.up_proj.weight`, sliceRows(gu, 1, n, 2 * n));
  gu.dispose();
  const down = w.get(`${layerPrefix}.experts.down_proj`);
  if (down) {
    w.delete(`${layerPrefix}.experts.down_proj`);
    w.set(`${to}.down_proj.weight`, down);
  }
}

// The gated delta rule of Gated DeltaNet layers; must agree with mlx-lm 0.32.2 models/gated_delta.py
// (normalize_qk, compute_g, gated_delta_ops, gated_delta_update). The CPU path of mlx-lm is the
// sequential op loop below; the depthwise causal conv the layers run before it lives here too. Both run
// as one fused op each where the backend profile has one (our CPU kernels; MLXK_KERNELS=0 keeps the ops).
import * as mx from "../mlx/index.ts";
import { fusedConvSilu, fusedGatedDelta, rmsNorm } from "./layers.ts";

/** L2-normalise q/k (eps added to Σx²) and fold the Dk^-0.5 readout scale into q, as mlx-lm does with rms_norm. */
export function normalizeQk(q: mx.Array, k: mx.Array, invScale: number, eps: number): [mx.Array, mx.Array] {
  const rmsEps = eps * invScale ** 2;
  return [mx.multiply(rmsNorm(q, null, rmsEps), invScale ** 2), mx.multiply(rmsNorm(k, null, rmsEps), invScale)];
}

/** Per-head decay g = exp(-exp(A_log) · softplus(a + dt_bias)), float32. */
export function computeG(aLog: mx.Array, a: mx.Array, dtBias: mx.Array): mx.Array {
  const A = mx.exp(aLog.astype(mx.Dtype.float32));
  return mx.exp(mx.multiply(mx.negative(A), mx.softplus(mx.add(a, dtBias))));
}

/**
 * One recurrent step: q, k [B, H, Dk], v [B, H, Dv], g, beta [B, H], state [B, H, Dv, Dk] →
 * y [B, H, Dv] and the new state (mlx-lm's _gated_delta_step_ops with scalar gating, no mask).
 */
function step(q: mx.Array, k: mx.Array, v: mx.Array, g: mx.Array, beta: mx.Array, state: mx.Array): [mx.Array, mx.Array] {
  const [B, H] = g.shape as [number, number];
  const k4 = mx.expandDims(k, -2);
  let s = mx.multiply(state, mx.reshape(g, [B, H, 1, 1]));
  const kvMem = mx.sum(mx.multiply(s, k4), -1);
  const delta = mx.multiply(mx.subtract(v, kvMem), mx.expandDims(beta, -1));
  s = mx.add(s, mx.multiply(k4, mx.expandDims(delta, -1)));
  const y = mx.sum(mx.multiply(s, mx.expandDims(q, -2)), -1);
  return [y.astype(q.dtype), s];
}

/**
 * The recurrence over T tokens with MLX ops: q, k [B, T, Hk, Dk], v [B, T, Hv, Dv], g, beta [B, T, Hv],
 * state [B, Hv, Dv, Dk] (float32) → y [B, T, Hv, Dv] and the final state.
 */
export function gatedDeltaOps(q0: mx.Array, k0: mx.Array, v: mx.Array, g: mx.Array, beta: mx.Array, state0: mx.Array): [mx.Array, mx.Array] {
  const T = q0.shape[1]!;
  const Hk = q0.shape[2]!;
  const Hv = v.shape[2]!;
  let q = q0;
  let k = k0;
  if (Hv / Hk > 1) {
    q = mx.repeat(q, Hv / Hk, -2);
    k = mx.repeat(k, Hv / Hk, -2);
  }
  const at = (a: mx.Array, t: number) => mx.squeeze(mx.sliceAxis(a, 1, t, t + 1), 1);
  let state = state0;
  const ys: mx.Array[] = [];
  for (let t = 0; t < T; t++) {
    const [y, s] = step(at(q, t), at(k, t), at(v, t), at(g, t), at(beta, t), state);
    ys.push(y);
    state = s;
  }
  return [T === 1 ? mx.expandDims(ys[0]!, 1) : mx.stack(ys, 1), state];
}

/**
 * mlx-lm's gated_delta_update: beta = sigmoid(b), g from A_log/a/dt_bias, zero state when none, then the
 * recurrence. q/k must already be normalised (normalizeQk).
 */
export function gatedDeltaUpdate(o: {
  q: mx.Array;
  k: mx.Array;
  v: mx.Array;
  a: mx.Array;
  b: mx.Array;
  aLog: mx.Array;
  dtBias: mx.Array;
  state: mx.Array | null;
}): [mx.Array, mx.Array] {
  const beta = mx.sigmoid(o.b);
  const g = computeG(o.aLog, o.a, o.dtBias);
  const [B, , , Dk] = o.q.shape as [number, number, number, number];
  const [, , Hv, Dv] = o.v.shape as [number, number, number, number];
  const state = o.state ?? mx.zeros([B, Hv, Dv, Dk], mx.Dtype.float32);
  return fusedGatedDelta(o.q, o.k, o.v, g, beta, state) ?? gatedDeltaOps(o.q, o.k, o.v, g, beta, state);
}

/**
 * Depthwise causal conv over the time axis without padding (nn.Conv1d with groups = channels, as the
 * layers call it on [conv state; new inputs]): x [B, T+K-1, C], weight [C, K, 1] → [B, T, C].
 */
export function depthwiseConv1d(x: mx.Array, weight: mx.Array): mx.Array {
  const [C, K] = weight.shape as [number, number];
  const T = x.shape[1]! - K + 1;
  const w = mx.transpose(mx.reshape(weight, [C, K]));
  let out: mx.Array | null = null;
  for (let j = 0; j < K; j++) {
    const term = mx.multiply(mx.sliceAxis(x, 1, j, j + T), mx.sliceAxis(w, 0, j, j + 1));
    out = out ? mx.add(out, term) : term;
  }
  return out!;
}

/** silu(depthwiseConv1d(x, weight)): the kernel when it can run, else MLX's ops. */
export function convSilu(x: mx.Array, weight: mx.Array): mx.Array {
  return fusedConvSilu(x, weight) ?? mx.silu(depthwiseConv1d(x, weight));
}

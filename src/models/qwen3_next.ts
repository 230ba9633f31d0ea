// Qwen3-Next building blocks; must agree with mlx-lm 0.32.2 models/qwen3_next.py. Qwen3.5 (qwen3_5.ts)
// reuses them as mlx-lm does: the gated full attention (q_proj yields queries and a sigmoid output gate
// per head, q/k RMSNorm, partial rotary), the SwiGLU MLP, the gated RMSNorm after the delta rule, and the
// sparse MoE block with a gated shared expert (qwen3_5_moe).
import * as mx from "../mlx/index.ts";
import type { WeightStore } from "./base.ts";
import type { KVCache } from "./cache.ts";
import { attend, type Linear, rmsNorm, type Streams, swiglu } from "./layers.ts";
import type { RopeLayer as Rope } from "./rope.ts";
import { combine, softmaxTopK, SwitchGLU } from "./switch_layers.ts";

export interface AttentionShape {
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
}

/** Qwen3NextRMSNormGated: rms_norm(x)·silu(gate), the product in float32 (precise_swiglu). */
export function rmsNormGated(x: mx.Array, weight: mx.Array, gate: mx.Array, eps: number): mx.Array {
  const n = rmsNorm(x, weight, eps);
  if (x.dtype === mx.Dtype.float32 && gate.dtype === mx.Dtype.float32) return swiglu(gate, n);
  const g = mx.silu(gate.astype(mx.Dtype.float32));
  return mx.multiply(g, n.astype(mx.Dtype.float32)).astype(x.dtype);
}

export class Qwen3NextAttention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  readonly q_norm: mx.Array;
  readonly k_norm: mx.Array;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: AttentionShape,
    readonly rope: Rope,
  ) {
    this.q_proj = w.linear(`${p}.q_proj`);
    this.k_proj = w.linear(`${p}.k_proj`);
    this.v_proj = w.linear(`${p}.v_proj`);
    this.o_proj = w.linear(`${p}.o_proj`);
    this.q_norm = w.get(`${p}.q_norm.weight`);
    this.k_norm = w.get(`${p}.k_norm.weight`);
  }

  forward(x: mx.Array, cache: KVCache, streams: Streams): mx.Array {
    const { num_attention_heads: H, num_key_value_heads: Hkv, head_dim: D, rms_norm_eps: eps } = this.c;
    const [B, L] = x.shape as [number, number];
    const [qg, [k0, v0]] = streams.pair(
      () => this.q_proj.forward(x),
      () => [this.k_proj.forward(x), this.v_proj.forward(x)] as const,
    );
    // Each head's q_proj rows are [queries (D) | gate (D)].
    const [queries, gate] = mx.split(mx.reshape(qg, [B, L, H, 2 * D]), 2, -1) as [mx.Array, mx.Array];
    const offset = cache.offset;
    const q = this.rope.forward(mx.transpose(rmsNorm(queries, this.q_norm, eps), [0, 2, 1, 3]), offset);
    const k = this.rope.forward(mx.transpose(rmsNorm(mx.reshape(k0, [B, L, Hkv, D]), this.k_norm, eps), [0, 2, 1, 3]), offset);
    const v = mx.transpose(mx.reshape(v0, [B, L, Hkv, D]), [0, 2, 1, 3]);
    const o = attend({ q, k, v, cache, scale: D ** -0.5 });
    return this.o_proj.forward(mx.multiply(o, mx.sigmoid(mx.reshape(gate, [B, L, H * D]))));
  }
}

export class Qwen3NextMLP {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  constructor(w: WeightStore, p: string) {
    this.gate_proj = w.linear(`${p}.gate_proj`);
    this.up_proj = w.linear(`${p}.up_proj`);
    this.down_proj = w.linear(`${p}.down_proj`);
  }
  forward(x: mx.Array, streams: Streams): mx.Array {
    const [g, u] = streams.pair(
      () => this.gate_proj.forward(x),
      () => this.up_proj.forward(x),
    );
    return this.down_proj.forward(swiglu(g, u));
  }
}

export interface MoeShape {
  num_experts: number;
  num_experts_per_tok: number;
  norm_topk_prob: boolean;
}

/**
 * Qwen3NextSparseMoeBlock: softmax router, top-k (renormalised), SwiGLU experts, plus a shared expert
 * scaled by a sigmoid gate.
 */
export class Qwen3NextSparseMoeBlock {
  readonly gate: Linear;
  readonly switch_mlp: SwitchGLU;
  readonly shared_expert: Qwen3NextMLP;
  readonly shared_expert_gate: Linear;

  constructor(
    w: WeightStore,
    p: string,
    readonly c: MoeShape,
  ) {
    this.gate = w.linear(`${p}.gate`);
    this.switch_mlp = new SwitchGLU(w, `${p}.switch_mlp`, swiglu);
    this.shared_expert = new Qwen3NextMLP(w, `${p}.shared_expert`);
    this.shared_expert_gate = w.linear(`${p}.shared_expert_gate`);
  }

  forward(x: mx.Array, streams: Streams): mx.Array {
    const { indices, weights } = softmaxTopK(this.gate.forward(x), this.c.num_experts_per_tok, this.c.norm_topk_prob);
    const y = combine(this.switch_mlp.forward(x, indices), weights);
    const shared = mx.multiply(mx.sigmoid(this.shared_expert_gate.forward(x)), this.shared_expert.forward(x, streams));
    return mx.add(y, shared);
  }
}

/**
 * Tensor parallel over a launched ring, as mlx-lm shards llama/qwen2/qwen3/qwen3_moe: in every layer q/k/v and
 * gate/up (and the experts' gate/up) are split by output rows, o_proj and down_proj (and the experts' down) by input
 * columns, so each rank holds 1/N of every layer and computes 1/N of the heads and of the MLP; the attention and MLP
 * outputs are summed over the ranks (all_sum). The embedding, norms, router and head stay whole on every rank.
 * Rank 0 drives the same control messages as the pipeline (pipeline.ts); every rank runs the whole forward.
 */
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import type { Group } from "../mlx/distributed.ts";
import type { LanguageModel } from "../models/base.ts";
import { layerIndex, type RankPlan, type StepState } from "./pipeline.ts";
import { currentWorld, launchInfo } from "./world.ts";

export const TENSOR_PARALLEL_TYPES: ReadonlySet<string> = new Set(["llama", "qwen2", "qwen3", "qwen3_moe"]);

const COLUMN = /\.(self_attn\.(q|k|v)_proj|mlp\.(gate|up)_proj|mlp\.switch_mlp\.(gate|up)_proj)\.(weight|scales|biases|bias)$/;
const ROW = /\.(self_attn\.o_proj|mlp\.down_proj|mlp\.switch_mlp\.down_proj)\.(weight|scales|biases|bias)$/;

export interface TensorPlan {
  plan: RankPlan;
  /** The config the sharded model is built from (heads per rank). */
  config(parsed: Record<string, unknown>): Record<string, unknown>;
  /** This rank's part of every sharded tensor (contiguous copies: the whole tensor is not kept). */
  shard(w: Map<string, mx.Array>): Map<string, mx.Array>;
}

function part(a: mx.Array, axis: number, rank: number, n: number, key: string): mx.Array {
  const len = a.shape.at(axis)!;
  if (len % n !== 0) throw new MlxkError("unsupported_model", `tensor parallel: ${key} (${len} along axis ${axis}) does not split over ${n} ranks`);
  const step = len / n;
  const ax = axis < 0 ? a.ndim + axis : axis;
  return mx.contiguous(mx.sliceAxis(a, ax, rank * step, (rank + 1) * step));
}

/** The tensor-parallel plan of this launched process for `config`, or null (not launched / pipeline mode). */
export function tensorPlanFor(config: Record<string, unknown>): TensorPlan | null {
  const group = currentWorld();
  const info = launchInfo();
  if (!group || !info || info.mode !== "tensor") return null;
  const type = String(config.model_type);
  if (!TENSOR_PARALLEL_TYPES.has(type)) {
    throw new MlxkError("unsupported_model", `--tensor-parallel shards llama, qwen2, qwen3 and qwen3_moe (this model is '${type}'); the default pipeline parallel runs every architecture`);
  }
  const n = group.size;
  const r = group.rank;
  const layers = Number(config.num_hidden_layers);
  const plan: RankPlan = { group, info, slices: [{ start: 0, end: layers }], slice: { start: 0, end: layers }, modelType: type, keep: () => true };
  return {
    plan,
    config(parsed) {
      const heads = Number(parsed.num_attention_heads);
      const kv = Number(parsed.num_key_value_heads ?? heads);
      if (heads % n !== 0 || kv % n !== 0) {
        throw new MlxkError("unsupported_model", `tensor parallel over ${n} ranks needs the attention heads (${heads}) and KV heads (${kv}) to divide by ${n}`);
      }
      return { ...parsed, num_attention_heads: heads / n, num_key_value_heads: kv / n };
    },
    shard(w) {
      for (const [k, a] of [...w]) {
        if (layerIndex(k) === null) continue;
        let s: mx.Array | null = null;
        if (COLUMN.test(k)) s = part(a, k.endsWith(".bias") ? -1 : -2, r, n, k);
        else if (ROW.test(k)) {
          // a row-split bias is added by every rank before the sum: each adds 1/N of it
          s = k.endsWith(".bias") ? mx.divide(a, n) : part(a, -1, r, n, k);
        }
        if (s) {
          w.set(k, mx.keep(s));
          a.dispose();
        }
      }
      return w;
    },
  };
}

interface Sublayer {
  forward: (...args: unknown[]) => mx.Array;
}

/** Sum the attention and MLP outputs of every layer over the ranks; followers' step result is the hidden state. */
export function attachTensorParallel(model: LanguageModel, group: Group): StepState {
  const layers = (model as unknown as { layers?: { self_attn?: Sublayer; mlp?: Sublayer }[] }).layers ?? [];
  for (const l of layers) {
    for (const sub of [l.self_attn, l.mlp]) {
      if (!sub) throw new MlxkError("unsupported_model", "tensor parallel: a layer without self_attn/mlp");
      const f = sub.forward.bind(sub);
      sub.forward = (...args: unknown[]) => mx.distributed.allSum(f(...args), group);
    }
  }
  const step: StepState = { pending: null, noWait: true };
  const hidden = model.hidden.bind(model);
  model.hidden = (inputs, cache) => {
    const h = hidden(inputs, cache);
    step.pending = h;
    return h;
  };
  return step;
}

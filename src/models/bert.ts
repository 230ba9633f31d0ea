// BERT encoder (transformers BertModel; bge, e5, mxbai, MiniLM sentence-transformers checkpoints): embeddings
// (word + position + token type, LayerNorm) → post-norm blocks (self-attention, GELU MLP). Also the body of
// xlm_roberta.ts, which differs only in how positions are numbered.
import * as v from "valibot";
import * as mx from "../mlx/index.ts";
import { int, num, type WeightStore } from "./base.ts";
import { type EncoderModel, activation, denseAct, encoderAttention, layerNorm, paddingMask, stripPrefixes } from "./encoder.ts";
import type { BiasAct, Embedding, Linear } from "./layers.ts";
import { heads } from "./layers.ts";

export const configSchema = v.looseObject({
  hidden_size: int(),
  num_hidden_layers: int(),
  num_attention_heads: int(),
  intermediate_size: int(),
  vocab_size: int(),
  max_position_embeddings: int(512),
  type_vocab_size: int(2),
  layer_norm_eps: num(1e-12),
  hidden_act: v.optional(v.string(), "gelu"),
  pad_token_id: v.optional(v.nullable(v.number()), 0),
  position_embedding_type: v.optional(v.string(), "absolute"),
});
export type BertConfig = v.InferOutput<typeof configSchema>;

const PREFIXES = ["bert.", "roberta.", "model."];

export function sanitize(w: Map<string, mx.Array>): Map<string, mx.Array> {
  return stripPrefixes(w, PREFIXES, (k) => k.startsWith("embeddings.") || k.startsWith("encoder."));
}

export function maxPositions(c: Record<string, unknown>): number {
  return (c as BertConfig).max_position_embeddings;
}

class Layer {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly attnOut: Linear;
  readonly attnNorm: [mx.Array, mx.Array];
  readonly inter: Linear;
  readonly out: Linear;
  readonly outNorm: [mx.Array, mx.Array];

  constructor(w: WeightStore, p: string) {
    this.query = w.linear(`${p}.attention.self.query`);
    this.key = w.linear(`${p}.attention.self.key`);
    this.value = w.linear(`${p}.attention.self.value`);
    this.attnOut = w.linear(`${p}.attention.output.dense`);
    this.attnNorm = [w.get(`${p}.attention.output.LayerNorm.weight`), w.get(`${p}.attention.output.LayerNorm.bias`)];
    this.inter = w.linear(`${p}.intermediate.dense`);
    this.out = w.linear(`${p}.output.dense`);
    this.outNorm = [w.get(`${p}.output.LayerNorm.weight`), w.get(`${p}.output.LayerNorm.bias`)];
  }
}

/** Positions: BERT counts 0, 1, …; RoBERTa/XLM-R count real tokens from padding_idx + 1 and give pads padding_idx. */
export type PositionMode = "absolute" | "roberta";

export class BertEncoder implements EncoderModel {
  readonly word: Embedding;
  readonly position: Embedding;
  readonly tokenType: mx.Array | null;
  readonly embNorm: [mx.Array, mx.Array];
  readonly layers: Layer[];
  readonly act: BiasAct;

  constructor(
    readonly c: BertConfig,
    w: WeightStore,
    readonly positions: PositionMode = "absolute",
  ) {
    if (c.position_embedding_type !== "absolute") throw new Error(`position_embedding_type '${c.position_embedding_type}' is not supported (absolute only)`);
    this.word = w.embedding("embeddings.word_embeddings");
    this.position = w.embedding("embeddings.position_embeddings");
    this.tokenType = w.opt("embeddings.token_type_embeddings.weight");
    this.embNorm = [w.get("embeddings.LayerNorm.weight"), w.get("embeddings.LayerNorm.bias")];
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => new Layer(w, `encoder.layer.${i}`));
    this.act = activation(c.hidden_act);
  }

  private positionIds(ids: mx.Array, mask: mx.Array | null): mx.Array {
    const L = ids.shape[1]!;
    if (this.positions === "absolute") return mx.arange(0, L, 1, mx.Dtype.int32);
    const pad = this.c.pad_token_id ?? 1;
    if (!mask) return mx.arange(pad + 1, pad + 1 + L, 1, mx.Dtype.int32);
    return mx.add(mx.multiply(mx.cumsum(mask, 1), mask), pad).astype(mx.Dtype.int32);
  }

  forward(ids: mx.Array, mask: mx.Array | null): mx.Array {
    const c = this.c;
    let x = mx.add(this.word.forward(ids), this.position.forward(this.positionIds(ids, mask)));
    // single-segment input: token type 0 everywhere
    if (this.tokenType) x = mx.add(x, mx.sliceAxis(this.tokenType, 0, 0, 1));
    x = layerNorm(x, this.embNorm[0], this.embNorm[1], c.layer_norm_eps);
    const m = paddingMask(mask, x.dtype);
    const nh = c.num_attention_heads;
    const scale = (c.hidden_size / nh) ** -0.5;
    for (const l of this.layers) {
      const q = heads(l.query.forward(x), nh);
      const k = heads(l.key.forward(x), nh);
      const vv = heads(l.value.forward(x), nh);
      const o = encoderAttention(q, k, vv, scale, m);
      const h = layerNorm(mx.add(l.attnOut.forward(o), x), l.attnNorm[0], l.attnNorm[1], c.layer_norm_eps);
      const f = l.out.forward(denseAct(l.inter, h, this.act));
      x = layerNorm(mx.add(f, h), l.outNorm[0], l.outNorm[1], c.layer_norm_eps);
    }
    return x;
  }
}

export function createEncoder(config: Record<string, unknown>, w: WeightStore): EncoderModel {
  return new BertEncoder(config as BertConfig, w, "absolute");
}

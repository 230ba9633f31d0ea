// XLM-RoBERTa (model_type "xlm-roberta"; multilingual-e5, bge-m3, paraphrase-multilingual): BERT's encoder with
// RoBERTa position numbering — real tokens count from padding_idx + 1, pads sit at padding_idx.
import type { WeightStore } from "./base.ts";
import { type BertConfig, BertEncoder, configSchema, sanitize } from "./bert.ts";
import type { EncoderModel } from "./encoder.ts";

export { configSchema, sanitize };

export function maxPositions(c: Record<string, unknown>): number {
  const b = c as BertConfig;
  return b.max_position_embeddings - ((b.pad_token_id ?? 1) + 1);
}

export function createEncoder(config: Record<string, unknown>, w: WeightStore): EncoderModel {
  return new BertEncoder(config as BertConfig, w, "roberta");
}

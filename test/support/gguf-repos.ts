/**
 * Small GGUF files for cache tests (headers that parse, zero-filled tensor data of the right size), and the
 * broken variants a real cache holds: truncated, bad magic, split sets with a part missing.
 *
 * Exports: ggufFile({ arch?, type?, chatTemplate?, context?, tensors?, split? }), truncate(bytes, keep)
 */
import { encodeGguf, type GgmlType, type GgufMeta } from "./gguf-writer.ts";

const BLOCK: Record<GgmlType, [number, number]> = { F32: [1, 4], F16: [1, 2], Q4_0: [32, 18], Q4_1: [32, 20], Q8_0: [32, 34], Q4_K: [256, 144], Q6_K: [256, 210], Q5_0: [32, 22], Q5_1: [32, 24], Q3_K: [256, 110], Q5_K: [256, 176], IQ4_NL: [32, 18], IQ4_XS: [256, 136], BF16: [1, 2] };

export interface GgufFileOpts {
  arch?: string;
  type?: GgmlType;
  chatTemplate?: string | null;
  context?: number;
  /** Extra metadata keys. */
  meta?: Record<string, GgufMeta>;
  /** `split.*` keys of part `no` (0-based) of `count`. */
  split?: { no: number; count: number };
}

/** A 2-layer llama-shaped header (hidden 64) whose tensors are zeros of `type`. */
export function ggufFile(o: GgufFileOpts = {}): Uint8Array {
  const arch = o.arch ?? "llama";
  const type = o.type ?? "Q4_0";
  const u = (value: number): GgufMeta => ({ type: "u32", value });
  const meta: Record<string, GgufMeta> = {
    "general.architecture": arch,
    "general.name": "tiny",
    [`${arch}.block_count`]: u(2),
    [`${arch}.context_length`]: u(o.context ?? 4096),
    [`${arch}.embedding_length`]: u(64),
    [`${arch}.feed_forward_length`]: u(128),
    [`${arch}.attention.head_count`]: u(4),
    [`${arch}.attention.head_count_kv`]: u(2),
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.tokens": ["a", "b", "c", "d"],
    "tokenizer.ggml.merges": [],
    ...(o.chatTemplate === null ? {} : { "tokenizer.chat_template": o.chatTemplate ?? "{% for m in messages %}{{ m.content }}{% endfor %}" }),
    ...o.meta,
  };
  if (o.split) {
    meta["split.no"] = { type: "u16", value: o.split.no };
    meta["split.count"] = { type: "u16", value: o.split.count };
  }
  const shapes: [string, number[], GgmlType][] = [
    ["token_embd.weight", [4, 256], type],
    ["output_norm.weight", [64], "F32"],
    ["blk.0.attn_q.weight", [64, 256], type],
    ["blk.1.attn_q.weight", [64, 256], type],
  ];
  const tensors = shapes.map(([name, shape, t]) => {
    const [bs, ts] = BLOCK[t];
    const n = shape.reduce((a, b) => a * b, 1);
    return { name, shape, type: t, data: new Uint8Array((n / bs) * ts) };
  });
  return encodeGguf(meta, tensors);
}

/** The first `keep` bytes (an interrupted copy). */
export function truncate(bytes: Uint8Array, keep: number): Uint8Array {
  return bytes.slice(0, keep);
}

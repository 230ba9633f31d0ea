// NomicBERT encoder (nomic-ai/nomic-embed-text-v1 / v1.5, modernised BERT): word + token-type embeddings and
// LayerNorm, then post-norm blocks of rotary self-attention (fused Wqkv, no biases) and a SwiGLU MLP
// (fc2(fc11(x) · silu(fc12(x)))). Two spellings of the same checkpoint, both read:
//   trust_remote_code (the Hub repos): GPT-2 config names (n_embd, n_head, n_layer, n_inner, rotary_emb_*),
//     keys encoder.layers.N.attn.Wqkv / attn.out_proj / mlp.fc11, fc12, fc2 / norm1, norm2, emb_ln;
//   transformers 5 (NomicBertModel): BERT config names + rope_parameters, keys layers.N.self_attn.{q,k,v,o}_proj /
//     mlp.{up,gate,down}_proj / post_attention_layernorm, post_mlp_layernorm, embeddings.LayerNorm.
// The transformers 5 names are mapped onto the remote-code ones (q, k, v concatenated into Wqkv: one matmul).
import * as v from "valibot";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { type WeightStore } from "./base.ts";
import type { NormalizeOptions } from "./config.ts";
import { type EncoderModel, encoderAttention, layerNorm, paddingMask, stripPrefixes } from "./encoder.ts";
import { type Embedding, type Linear, rope, swiglu } from "./layers.ts";

const n = (d?: number) => v.optional(v.nullable(v.number()), d ?? null);

export const configSchema = v.pipe(
  v.looseObject({
    hidden_size: n(),
    n_embd: n(),
    num_hidden_layers: n(),
    n_layer: n(),
    num_attention_heads: n(),
    n_head: n(),
    intermediate_size: n(),
    n_inner: n(),
    vocab_size: v.pipe(v.number(), v.integer()),
    type_vocab_size: n(2),
    max_position_embeddings: n(),
    n_positions: n(),
    layer_norm_eps: n(),
    layer_norm_epsilon: n(),
    rope_theta: n(),
    rotary_emb_base: n(),
    rotary_emb_fraction: n(1),
    rotary_emb_interleaved: v.optional(v.nullable(v.boolean()), false),
    rotary_scaling_factor: n(),
    rope_scaling: v.optional(v.nullable(v.unknown()), null),
    activation_function: v.optional(v.nullable(v.string()), null),
    hidden_act: v.optional(v.nullable(v.string()), null),
    prenorm: v.optional(v.nullable(v.boolean()), false),
    moe_every_n_layers: n(0),
    head_dim: n(),
  }),
  v.transform((c) => {
    const pick = (key: string, ...vals: Array<number | null | undefined>): number => {
      const x = vals.find((y) => typeof y === "number");
      if (x === undefined) throw new MlxkError("execution_error", `Invalid config.json for nomic_bert: ${key} is missing`);
      return x;
    };
    const hidden = pick("hidden_size / n_embd", c.hidden_size, c.n_embd);
    const heads = pick("num_attention_heads / n_head", c.num_attention_heads, c.n_head);
    return {
      ...c,
      hidden_size: hidden,
      num_hidden_layers: pick("num_hidden_layers / n_layer", c.num_hidden_layers, c.n_layer),
      num_attention_heads: heads,
      head_dim: c.head_dim ?? hidden / heads,
      intermediate_size: pick("intermediate_size / n_inner", c.intermediate_size, c.n_inner, 4 * hidden),
      positions: pick("max_position_embeddings / n_positions", c.max_position_embeddings, c.n_positions, 2048),
      eps: pick("layer_norm_eps", c.layer_norm_eps, c.layer_norm_epsilon, 1e-12),
      theta: pick("rope_theta / rotary_emb_base", c.rope_theta, c.rotary_emb_base, 1000),
      act: c.activation_function ?? c.hidden_act ?? "swiglu",
    };
  }),
);
type Config = v.InferOutput<typeof configSchema>;

export const configOptions: NormalizeOptions = { ropeTypes: ["default"], activations: ["silu", "swish", "swiglu"] };

/** What this file does not implement is refused by name: nomic's MoE (v2), dynamic NTK scaling, pre-norm. */
function check(c: Config): void {
  const no = (what: string) => {
    throw new MlxkError("unsupported_model", `nomic_bert: ${what} is not supported`);
  };
  if ((c.moe_every_n_layers ?? 0) > 0) no(`moe_every_n_layers ${c.moe_every_n_layers} (nomic-embed-text-v2-moe)`);
  if (c.rotary_scaling_factor !== null && c.rotary_scaling_factor !== undefined) no(`rotary_scaling_factor ${c.rotary_scaling_factor} (dynamic NTK rope)`);
  if (c.rope_scaling !== null) no("rope_scaling");
  if (c.prenorm) no("prenorm: true");
  if (!["swiglu", "silu", "swish"].includes(c.act)) no(`activation '${c.act}' (SwiGLU only)`);
  const dims = c.head_dim * (c.rotary_emb_fraction ?? 1);
  if (!Number.isInteger(dims) || dims % 2 !== 0 || dims <= 0) no(`rotary_emb_fraction ${c.rotary_emb_fraction} of head_dim ${c.head_dim}`);
}

/** transformers 5 key names → the remote-code names this file reads. */
const RENAMES: Array<[RegExp, string]> = [
  [/^layers\./, "encoder.layers."],
  [/^embeddings\.LayerNorm\./, "emb_ln."],
  [/\.self_attn\.o_proj\./, ".attn.out_proj."],
  [/\.mlp\.up_proj\./, ".mlp.fc11."],
  [/\.mlp\.gate_proj\./, ".mlp.fc12."],
  [/\.mlp\.down_proj\./, ".mlp.fc2."],
  [/\.post_attention_layernorm\./, ".norm1."],
  [/\.post_mlp_layernorm\./, ".norm2."],
];

export function sanitize(w: Map<string, mx.Array>): Map<string, mx.Array> {
  const kept = stripPrefixes(w, ["nomic_bert.", "bert.", "model."], (k) => /^(embeddings\.|emb_ln\.|encoder\.layers\.|layers\.)/.test(k));
  const out = new Map<string, mx.Array>();
  const qkv = new Map<string, Partial<Record<"q" | "k" | "v", mx.Array>>>();
  for (const [k0, a] of kept) {
    let k = k0;
    for (const [re, to] of RENAMES) k = k.replace(re, to);
    const m = /^(encoder\.layers\.\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/.exec(k);
    if (m) {
      const key = `${m[1]}.attn.Wqkv.${m[3]}`;
      qkv.set(key, { ...qkv.get(key), [m[2]!]: a });
    } else out.set(k, a);
  }
  for (const [key, p] of qkv) {
    if (!p.q || !p.k || !p.v) throw new MlxkError("unsupported_model", `nomic_bert: ${key.replace(".attn.Wqkv", ".self_attn.{q,k,v}_proj")} is incomplete`);
    out.set(key, mx.keep(mx.concatenate([p.q, p.k, p.v], 0)));
    for (const a of [p.q, p.k, p.v]) a.dispose();
  }
  return out;
}

export function maxPositions(c: Record<string, unknown>): number {
  return (c as Config).positions;
}

class Layer {
  readonly wqkv: Linear;
  readonly out: Linear;
  readonly up: Linear;
  readonly gate: Linear;
  readonly down: Linear;
  readonly norm1: [mx.Array, mx.Array | null];
  readonly norm2: [mx.Array, mx.Array | null];
  constructor(w: WeightStore, p: string) {
    this.wqkv = w.linear(`${p}.attn.Wqkv`);
    this.out = w.linear(`${p}.attn.out_proj`);
    this.up = w.linear(`${p}.mlp.fc11`);
    this.gate = w.linear(`${p}.mlp.fc12`);
    this.down = w.linear(`${p}.mlp.fc2`);
    this.norm1 = [w.get(`${p}.norm1.weight`), w.opt(`${p}.norm1.bias`)];
    this.norm2 = [w.get(`${p}.norm2.weight`), w.opt(`${p}.norm2.bias`)];
  }
}

export class NomicBertEncoder implements EncoderModel {
  readonly word: Embedding;
  readonly tokenType: mx.Array | null;
  readonly embNorm: [mx.Array, mx.Array | null];
  readonly layers: Layer[];
  readonly ropeDims: number;

  constructor(
    readonly c: Config,
    w: WeightStore,
  ) {
    check(c);
    this.word = w.embedding("embeddings.word_embeddings");
    this.tokenType = w.opt("embeddings.token_type_embeddings.weight");
    this.embNorm = [w.get("emb_ln.weight"), w.opt("emb_ln.bias")];
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => new Layer(w, `encoder.layers.${i}`));
    this.ropeDims = c.head_dim * (c.rotary_emb_fraction ?? 1);
  }

  forward(ids: mx.Array, mask: mx.Array | null): mx.Array {
    const c = this.c;
    const [B, L] = ids.shape as [number, number];
    const nh = c.num_attention_heads;
    const hd = c.head_dim;
    let x = this.word.forward(ids);
    // single-segment input: token type 0 everywhere
    if (this.tokenType) x = mx.add(x, mx.sliceAxis(this.tokenType, 0, 0, 1));
    x = layerNorm(x, this.embNorm[0], this.embNorm[1], c.eps);
    const m = paddingMask(mask, x.dtype);
    const ro = { dims: this.ropeDims, traditional: c.rotary_emb_interleaved === true, base: c.theta };
    for (const l of this.layers) {
      const qkv = mx.transpose(mx.reshape(l.wqkv.forward(x), [B, L, 3, nh, hd]), [2, 0, 3, 1, 4]);
      const [q0, k0, vv] = mx.split(qkv, 3, 0).map((t) => mx.squeeze(t, 0)) as [mx.Array, mx.Array, mx.Array];
      const o = encoderAttention(rope(q0, ro), rope(k0, ro), vv, hd ** -0.5, m);
      const h = layerNorm(mx.add(x, l.out.forward(o)), l.norm1[0], l.norm1[1], c.eps);
      const f = l.down.forward(swiglu(l.gate.forward(h), l.up.forward(h)));
      x = layerNorm(mx.add(h, f), l.norm2[0], l.norm2[1], c.eps);
    }
    return x;
  }
}

export function createEncoder(config: Record<string, unknown>, w: WeightStore): EncoderModel {
  return new NomicBertEncoder(config as Config, w);
}

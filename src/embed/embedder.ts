/**
 * Embeddings core: load an encoder (BERT family, src/models/) or a decoder embedder (Qwen3-Embedding: the qwen3
 * language model's final hidden states), tokenize, run padded batches with a padding mask, pool as the model's
 * sentence-transformers recipe says, L2-normalise. Returns data only.
 *
 * Decoders are batched with right padding: under the causal mask a real token never sees a pad, so each row equals
 * its unbatched run, and the last real token is gathered per row. (Qwen3-Embedding's reference pads left and pools
 * position −1; RoPE scores depend only on relative positions, so both give the same vectors — the goldens check it.)
 * They run without a KV cache: nothing is decoded after the one forward pass.
 *
 * Inputs are sorted by length and cut into forward passes by planBatches: padded tokens cost compute, every pass
 * costs a fixed overhead, so short inputs of one length share a pass with no padding (and no attention mask) at all.
 *
 * Exports: Embedder.load(dir, { name, env }), Embedder#embed(inputs, opts) → EmbedResult, EmbedInput,
 *          planBatches(lengths, maxRows, maxTokens, passCost)
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Env } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { build, weightFiles } from "../engine/load.ts";
import type { LoadedModel } from "../engine/load.ts";
import { TextTokenizer } from "../generate/tokenizer.ts";
import { loadBackend } from "../mlx/backend.ts";
import * as mx from "../mlx/index.ts";
import { parseConfig, QuantConfig, WeightStore } from "../models/base.ts";
import type { KVCache, Mask } from "../models/cache.ts";
import type { EncoderModel } from "../models/encoder.ts";
import { isEmbeddingModelType, loadEncoderModule } from "../models/registry.ts";
import { EmbedHead, l2Normalize, loadHead } from "./head.ts";
import { type EmbedRecipe, readEmbedRecipe } from "./st-config.ts";

/**
 * Task prefixes a model family documents but its sentence-transformers files may not carry (nomic-embed-text:
 * `search_query: ` / `search_document: `; sentence-transformers writes empty query/document prompts by default).
 */
const FAMILY_PROMPTS: Record<string, Record<string, string>> = {
  nomic_bert: { query: "search_query: ", document: "search_document: " },
};

function withModelPrompts(r: EmbedRecipe, modelType: string): EmbedRecipe {
  const fam = FAMILY_PROMPTS[modelType];
  if (!fam) return r;
  const prompts = { ...r.prompts };
  for (const [k, p] of Object.entries(fam)) if (!prompts[k]) prompts[k] = p;
  return { ...r, prompts };
}

/** A text, or token ids of this model's own tokenizer (used as given: no special tokens added). */
export type EmbedInput = string | number[];

export interface EmbedOptions {
  /** Prepended to every text (retrieval queries: the model's `query` prompt or an instruction). */
  prompt?: string | null;
  /** Cut over-long inputs to the model's limit instead of refusing them. */
  truncate?: boolean;
  /** Matryoshka truncation to this many dimensions (re-normalised when the model normalises). */
  dimensions?: number | null;
  /** Sequences per forward pass (default 32). */
  batchSize?: number;
  /**
   * A forward pass's fixed cost in padded-token equivalents for planBatches (default 8). Tests set it to force
   * one padded pass (large) or passes of one length each (0).
   */
  passCostTokens?: number;
}

export interface EmbedResult {
  vectors: Float32Array[];
  /** Tokens the model read (prompt and special tokens included). */
  promptTokens: number;
}

const BATCH = 32;
/** Padded tokens per forward pass: keeps the attention scores of long batches within a few hundred MB. */
const MAX_BATCH_TOKENS = 16_384;
/** A forward pass's fixed cost (graph, weight reads, per-op dispatch) in padded-token equivalents. */
const PASS_COST_TOKENS = 8;

/**
 * Cut lengths sorted longest first into runs [start, end) — each padded to its first length, at most maxRows rows
 * and maxTokens padded tokens — minimising padded tokens plus passCost per run (exact, O(n·maxRows)).
 */
export function planBatches(lengths: number[], maxRows: number, maxTokens: number, passCost = PASS_COST_TOKENS): Array<[number, number]> {
  const n = lengths.length;
  const best = new Float64Array(n + 1).fill(Infinity);
  const from = new Int32Array(n + 1);
  best[0] = 0;
  for (let i = 1; i <= n; i++) {
    for (let j = i - 1; j >= 0 && i - j <= maxRows; j--) {
      const padded = (i - j) * lengths[j]!;
      if (padded > maxTokens && i - j > 1) break;
      const c = best[j]! + passCost + padded;
      // on a tie the longer run wins: fewer passes
      if (c <= best[i]!) {
        best[i] = c;
        from[i] = j;
      }
    }
  }
  const runs: Array<[number, number]> = [];
  for (let i = n; i > 0; i = from[i]!) runs.push([from[i]!, i]);
  return runs.reverse();
}

/** Decoders embed in one forward pass: keys and values are attended as computed, never stored. */
class PassThroughCache implements KVCache {
  readonly offset = 0;
  makeMask(L: number): Mask {
    return L > 1 ? "causal" : undefined;
  }
  updateAndFetch(k: mx.Array, v: mx.Array): [mx.Array, mx.Array] {
    return [k, v];
  }
  state(): mx.Array[] {
    return [];
  }
  [Symbol.dispose](): void {}
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new MlxkError("execution_error", `Cannot read ${path}: ${(e as Error).message}`);
  }
}

/** How many special tokens the tokenizer's post-processor puts before and after a single sequence. */
function templateSpecials(tokJson: Record<string, unknown>): { before: number; after: number } {
  const pp = tokJson.post_processor as Record<string, unknown> | null | undefined;
  const of = (p: Record<string, unknown> | null | undefined): { before: number; after: number } => {
    if (!p) return { before: 0, after: 0 };
    if (p.type === "BertProcessing" || p.type === "RobertaProcessing") return { before: 1, after: 1 };
    if (p.type === "TemplateProcessing" && Array.isArray(p.single)) {
      const i = p.single.findIndex((e: Record<string, unknown>) => "Sequence" in e);
      return { before: Math.max(0, i), after: i < 0 ? 0 : p.single.length - i - 1 };
    }
    if (p.type === "Sequence" && Array.isArray(p.processors)) {
      return p.processors.map(of).reduce((a, b) => ({ before: a.before + b.before, after: a.after + b.after }), { before: 0, after: 0 });
    }
    return { before: 0, after: 0 };
  };
  return of(pp);
}

export class Embedder implements Disposable {
  readonly dims: number;
  /** Longest input in tokens. */
  readonly maxTokens: number;

  private constructor(
    readonly modelType: string,
    readonly kind: "encoder" | "decoder",
    readonly recipe: EmbedRecipe,
    private readonly tokenizer: TextTokenizer,
    private readonly specials: { before: number; after: number },
    private readonly forwardFn: (ids: mx.Array, mask: mx.Array | null) => mx.Array,
    private readonly owned: () => void,
    private readonly head: EmbedHead,
    positions: number,
    private readonly padId: number,
  ) {
    this.dims = head.dims;
    this.maxTokens = Math.min(positions, recipe.maxSeqLength ?? positions);
  }

  /** `name` (org/name or the dir) decides, with the files, whether a decoder is an embedder at all. */
  static async load(dir: string, opts: { name: string; env?: Env }): Promise<Embedder> {
    const config = readJson(join(dir, "config.json"));
    const mt = typeof config.model_type === "string" ? config.model_type : "";
    const encoder = isEmbeddingModelType(mt, "encoder");
    const decoder = !encoder && isEmbeddingModelType(mt, "decoder") && (existsSync(join(dir, "modules.json")) || /embed/i.test(opts.name));
    if (!encoder && !decoder) {
      throw new MlxkError("capability_mismatch", `'${opts.name}' is not an embedding model (model_type '${mt || "?"}'); use a sentence-transformers encoder (bert, xlm-roberta, modernbert) or a Qwen3-Embedding model`);
    }
    const recipe = withModelPrompts(readEmbedRecipe(dir, { decoder }), mt);
    if (!existsSync(join(dir, "tokenizer.json"))) throw new MlxkError("unsupported_model", `${dir} has no tokenizer.json`);
    const tokJson = readJson(join(dir, "tokenizer.json"));
    const tokCfg = existsSync(join(dir, "tokenizer_config.json")) ? readJson(join(dir, "tokenizer_config.json")) : {};
    const tokenizer = new TextTokenizer(tokJson, tokCfg);
    const padId = tokenizer.specialTokenId("pad_token") ?? tokenizer.specialTokenId("eos_token") ?? 0;
    const tensors = new Map<string, mx.Array>();
    try {
      for (const f of weightFiles(dir)) for (const [k, a] of mx.loadSafetensors(f).weights) tensors.set(k, mx.keep(a));
    } catch (e) {
      mx.disposeAll(tensors);
      throw e;
    }
    const specials = templateSpecials(tokJson);
    if (encoder) {
      const mod = await loadEncoderModule(mt);
      try {
        const parsed = parseConfig(mod.configSchema, config, mt, mod.configOptions);
        const w0 = mod.sanitize ? mod.sanitize(tensors, parsed) : tensors;
        for (const [k, a] of w0) {
          if (mx.isFloating(a.dtype) && a.dtype !== mx.Dtype.float32) {
            w0.set(k, mx.keep(a.astype(mx.Dtype.float32)));
            a.dispose();
          }
        }
        // every call embeds whole texts (many rows): float Linears pack their weights for the packed GEMM
        const store = new WeightStore(w0, QuantConfig.from(config), loadBackend({ env: opts.env, dtype: "float32" }), { packLinears: true });
        const enc: EncoderModel = mx.scope(() => mod.createEncoder(parsed, store));
        store.disposeUnused();
        mx.eval(store.all());
        let head: EmbedHead;
        try {
          head = loadHead(recipe, Number(parsed.hidden_size));
        } catch (e) {
          mx.disposeAll(store.all());
          throw e;
        }
        const owned = () => {
          mx.disposeAll(store.all());
          head[Symbol.dispose]();
        };
        return new Embedder(mt, "encoder", recipe, tokenizer, specials, (ids, mask) => enc.forward(ids, mask), owned, head, mod.maxPositions(parsed), padId);
      } catch (e) {
        mx.disposeAll(tensors);
        throw e;
      }
    }
    // Qwen3-Embedding repos hold the bare Qwen3Model (no `model.` prefix, no lm_head): name the keys as the LM file reads them
    const bare = ![...tensors.keys()].some((k) => k.startsWith("model."));
    const named = bare ? new Map([...tensors].map(([k, a]) => [`model.${k}`, a])) : tensors;
    const lm: LoadedModel = await build({ ...config, tie_word_embeddings: bare ? true : config.tie_word_embeddings }, named, { env: opts.env, dtype: "float32", packLinears: true });
    const caches = Array.from({ length: lm.model.numLayers }, () => new PassThroughCache());
    const fwd = (ids: mx.Array) => lm.model.hidden(ids, caches);
    let head: EmbedHead;
    try {
      head = loadHead(recipe, Number(lm.config.hidden_size));
    } catch (e) {
      lm[Symbol.dispose]();
      throw e;
    }
    const owned = () => {
      lm[Symbol.dispose]();
      head[Symbol.dispose]();
    };
    return new Embedder(mt, "decoder", recipe, tokenizer, specials, fwd, owned, head, lm.contextLength, padId);
  }

  /** Token ids of one text (with the tokenizer's special tokens), cut or refused when too long. */
  tokenize(text: string, truncate: boolean): number[] {
    const ids = this.tokenizer.encode(text);
    if (ids.length <= this.maxTokens) return ids;
    if (!truncate) {
      throw new MlxkError("validation_error", `input is ${ids.length} tokens; this model reads at most ${this.maxTokens} (truncate it, or ask for truncation)`, { extra: { param: "input" } });
    }
    const tail = this.specials.after > 0 ? ids.slice(ids.length - this.specials.after) : [];
    return [...ids.slice(0, this.maxTokens - tail.length), ...tail];
  }

  /** Tokens of the prompt that pooling leaves out when include_prompt is false (as sentence-transformers counts them). */
  private promptLength(prompt: string): number {
    const ids = this.tokenizer.encode(prompt);
    return this.specials.after > 0 ? ids.length - this.specials.after : ids.length;
  }

  embed(inputs: EmbedInput[], opts: EmbedOptions = {}): EmbedResult {
    const prompt = opts.prompt ?? "";
    const seqs = inputs.map((x, i) => {
      if (typeof x === "string") return this.tokenize(prompt + x, opts.truncate === true);
      if (x.length === 0) throw new MlxkError("validation_error", `input[${i}] is an empty token list`, { extra: { param: "input" } });
      const bad = x.find((t) => !Number.isInteger(t) || t < 0 || t >= this.tokenizer.vocabSize);
      if (bad !== undefined) throw new MlxkError("validation_error", `input[${i}] has token id ${bad} outside this model's vocabulary (0..${this.tokenizer.vocabSize - 1})`, { extra: { param: "input" } });
      if (x.length > this.maxTokens) throw new MlxkError("validation_error", `input[${i}] is ${x.length} tokens; this model reads at most ${this.maxTokens}`, { extra: { param: "input" } });
      return x;
    });
    const skip = prompt !== "" && !this.recipe.includePrompt ? this.promptLength(prompt) : 0;
    const d = opts.dimensions ?? null;
    if (d !== null && (!Number.isInteger(d) || d < 1 || d > this.dims)) {
      throw new MlxkError("validation_error", `dimensions must be an integer between 1 and ${this.dims}`, { extra: { param: "dimensions" } });
    }
    const order = seqs.map((_, i) => i).sort((a, b) => seqs[b]!.length - seqs[a]!.length);
    const vectors: Float32Array[] = new Array(seqs.length);
    const batch = Math.max(1, opts.batchSize ?? BATCH);
    for (const [s, e] of planBatches(order.map((i) => seqs[i]!.length), batch, MAX_BATCH_TOKENS, opts.passCostTokens)) {
      const idx = order.slice(s, e);
      const out = this.runBatch(idx.map((i) => seqs[i]!), seqs[idx[0]!]!.length, skip, d);
      idx.forEach((i, j) => {
        vectors[i] = out[j]!;
      });
    }
    return { vectors, promptTokens: seqs.reduce((a, q) => a + q.length, 0) };
  }

  private runBatch(rows: number[][], L: number, skip: number, dims: number | null): Float32Array[] {
    const B = rows.length;
    const ids = new Int32Array(B * L).fill(this.padId);
    const mask = new Int32Array(B * L);
    const lens = new Int32Array(B);
    rows.forEach((r, b) => {
      ids.set(r, b * L);
      mask.fill(1, b * L, b * L + r.length);
      lens[b] = r.length;
    });
    return mx.scope(() => {
      const idsA = mx.array(ids, { shape: [B, L] });
      const maskA = mx.array(mask, { shape: [B, L] });
      const padded = rows.some((r) => r.length < L);
      const h = this.forwardFn(idsA, padded ? maskA : null).astype(mx.Dtype.float32);
      let pooled = this.head.apply(this.pool(h, maskA, mx.array(lens, { shape: [B] }), skip));
      // Matryoshka: cut, and normalise again what the model normalises
      if (dims !== null && dims < this.dims) {
        pooled = mx.sliceAxis(pooled, 1, 0, dims);
        if (this.recipe.normalize) pooled = l2Normalize(pooled);
      }
      const flat = pooled.eval().toFloat32Array();
      const D = pooled.shape[1]!;
      return Array.from({ length: B }, (_, b) => flat.slice(b * D, (b + 1) * D));
    });
  }

  private pool(h: mx.Array, mask: mx.Array, lens: mx.Array, skip: number): mx.Array {
    const [B, L, H] = h.shape as [number, number, number];
    let m = mask.astype(mx.Dtype.float32);
    if (skip > 0) m = mx.multiply(m, mx.greaterEqual(mx.arange(0, L, 1, mx.Dtype.int32), skip).astype(mx.Dtype.float32));
    const m3 = mx.expandDims(m, -1);
    switch (this.recipe.pooling) {
      case "cls":
        return mx.reshape(mx.sliceAxis(h, 1, 0, 1), [B, H]);
      case "lasttoken": {
        const last = mx.reshape(mx.subtract(lens, 1), [B, 1, 1]);
        return mx.reshape(mx.takeAlongAxis(h, mx.broadcastTo(last, [B, 1, H]), 1), [B, H]);
      }
      case "max":
        return mx.max(mx.add(h, mx.multiply(mx.subtract(m3, 1), 1e9)), 1);
      case "mean":
      case "mean_sqrt_len_tokens": {
        const sum = mx.sum(mx.multiply(h, m3), 1);
        const n = mx.maximum(mx.sum(m3, 1), 1e-9);
        return mx.divide(sum, this.recipe.pooling === "mean" ? n : mx.sqrt(n));
      }
    }
  }

  [Symbol.dispose](): void {
    this.owned();
  }
}

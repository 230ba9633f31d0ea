/**
 * Tokenizer over `@huggingface/tokenizers` (pure JS, loads HF tokenizer.json: byte-level BPE,
 * SentencePiece BPE with byte fallback, Unigram, WordPiece; added/special tokens).
 *
 * Known gaps of the library that are patched here before construction (measured against llama.cpp /
 * HF `tokenizers` reference tokenizations):
 * - `Digits` splits on JS `\d` (ASCII only) where Rust uses `char::is_numeric` (Unicode `\p{N}`,
 *   e.g. "½"); rewritten into an equivalent `Split` on `\p{N}`.
 * - `decode([])` throws; it returns "" here.
 * - decode applies `clean_up_tokenization_spaces` when the config does not say otherwise; generation
 *   output must be the raw decode (mlx-lm does the same), so it is always off here.
 */
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { MlxkError } from "../errors.ts";

/** A parsed tokenizer.json (any object; the library validates the parts it needs). */
export type TokenizerJsonLike = object;
export type TokenizerConfig = Record<string, unknown>;

/** How token pieces map to text, derived from tokenizer.json `decoder` (picks the streaming detokenizer). */
export type DecoderKind = "bytelevel" | "spm" | "other";

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

/** A special token in tokenizer_config.json is either a string or an AddedToken-like object. */
export function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return null;
}

/** Rewrite tokenizer.json parts the JS library gets wrong (see file comment); returns a patched copy. */
export function patchTokenizerJson(input: TokenizerJsonLike): Record<string, unknown> {
  const json = input as Record<string, unknown>;
  const fix = (node: unknown): unknown => {
    if (!node || typeof node !== "object") return node;
    if (Array.isArray(node)) return node.map(fix);
    const n = node as Record<string, unknown>;
    if (n.type === "Digits") {
      const regex = n.individual_digits ? "\\p{N}" : "\\p{N}+";
      return { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false };
    }
    if (n.type === "Sequence" && Array.isArray(n.pretokenizers)) return { ...n, pretokenizers: n.pretokenizers.map(fix) };
    return n;
  };
  return { ...json, pre_tokenizer: fix(json.pre_tokenizer) };
}

/** True when the decoder strips one leading space (SentencePiece `Strip{content:" ", start:1}`). */
function stripsLeadingSpace(decoder: unknown): boolean {
  const steps = (decoder as { decoders?: unknown[] } | null)?.decoders ?? [decoder];
  return steps.some((d) => {
    const o = d as Record<string, unknown> | null;
    if (o?.type === "Strip") return o.content === " " && Number(o.start) > 0;
    if (o?.type === "Metaspace") return o.prepend_scheme !== "never" && o.add_prefix_space !== false;
    return false;
  });
}

function decoderKind(decoder: unknown): DecoderKind {
  const types = new Set<string>();
  const walk = (d: unknown) => {
    if (!d || typeof d !== "object") return;
    const o = d as Record<string, unknown>;
    if (typeof o.type === "string") types.add(o.type);
    if (Array.isArray(o.decoders)) o.decoders.forEach(walk);
  };
  walk(decoder);
  if (types.has("ByteLevel")) return "bytelevel";
  if (types.has("ByteFallback") || types.has("Metaspace")) return "spm";
  if (types.has("Replace") && types.has("Fuse")) return "spm";
  return "other";
}

export interface EncodeOptions {
  /** Apply the post-processor (BOS/EOS per tokenizer.json). @default true */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** @default false */
  skipSpecialTokens?: boolean;
}

/** A loaded HF tokenizer: encode/decode plus the vocabulary facts the generator needs. */
export class TextTokenizer {
  readonly decoderKind: DecoderKind;
  /** The decoder drops the space SentencePiece prepended to the first word. */
  readonly stripsLeadingSpace: boolean;
  readonly config: TokenizerConfig;
  readonly addedTokens: AddedToken[];
  readonly specialIds: ReadonlySet<number>;
  /** Vocabulary size including added tokens (max id + 1). */
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  private readonly tok: HfTokenizer;
  private readonly vocab: (string | undefined)[];

  constructor(tokenizerJson: TokenizerJsonLike, tokenizerConfig: TokenizerConfig = {}) {
    try {
      this.tok = new HfTokenizer(patchTokenizerJson(tokenizerJson), { ...tokenizerConfig });
    } catch (e) {
      throw new MlxkError("unsupported_model", `Cannot load tokenizer.json: ${(e as Error).message}`, { cause: e });
    }
    this.config = tokenizerConfig;
    const raw = tokenizerJson as Record<string, unknown>;
    this.decoderKind = decoderKind(raw.decoder);
    this.stripsLeadingSpace = stripsLeadingSpace(raw.decoder);
    const added = Array.isArray(raw.added_tokens) ? (raw.added_tokens as AddedToken[]) : [];
    this.addedTokens = added.map((t) => ({ id: t.id, content: t.content, special: t.special === true }));
    this.specialIds = new Set(this.addedTokens.filter((t) => t.special).map((t) => t.id));
    const vocab = this.tok.model?.vocab as (string | undefined)[] | undefined;
    this.vocab = vocab ?? [];
    this.vocabSize = this.vocab.length;
    this.bosToken = tokenString(tokenizerConfig.bos_token);
    this.eosToken = tokenString(tokenizerConfig.eos_token);
    this.padToken = tokenString(tokenizerConfig.pad_token);
    this.unkToken = tokenString(tokenizerConfig.unk_token);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    if (ids.length === 0) return "";
    return this.tok.decode([...ids], {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The raw vocabulary piece of an id (e.g. "Ġhello", "▁the", "<0x0A>"), undefined when out of range. */
  idToToken(id: number): string | undefined {
    return this.vocab[id];
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** Id of a special-token field of tokenizer_config (bos_token, eos_token, ...), or null. */
  specialTokenId(field: "bos_token" | "eos_token" | "pad_token" | "unk_token"): number | null {
    const s = tokenString(this.config[field]);
    return s === null ? null : (this.tokenToId(s) ?? null);
  }
}

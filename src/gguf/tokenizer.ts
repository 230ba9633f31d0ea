/**
 * GGUF tokenizer metadata → an in-memory HF `tokenizer.json` + `tokenizer_config.json`, so a GGUF
 * file runs with no other files.
 *
 * - `tokenizer.ggml.model = "gpt2"`: byte-level BPE from `tokens` + `merges`; the pre-tokenizer
 *   regex is chosen by `tokenizer.ggml.pre` (llama.cpp's pre-tokenizer names).
 * - `tokenizer.ggml.model = "llama"`: SentencePiece BPE. GGUF stores `scores`, not merges; merges are
 *   derived by ranking every split of every piece by the merged piece's score, which reproduces
 *   SentencePiece's "merge the best-scoring adjacent pair" loop. Byte fallback via `<0xNN>` pieces.
 * Token types (llama.cpp `llama_token_type`): 1 normal, 2 unknown, 3 control, 4 user-defined,
 * 5 unused, 6 byte. Control and user-defined pieces become added tokens.
 */
import { MlxkError } from "../errors.ts";
import { type GgufFile, metaBool, metaNumber, metaNumbers, metaString, metaStrings } from "./reader.ts";

export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** The subset of the HF tokenizer.json shape that we produce. */
export interface TokenizerJson {
  version: "1.0";
  truncation: null;
  padding: null;
  added_tokens: AddedTokenJson[];
  normalizer: unknown;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: {
    type: "BPE";
    dropout: null;
    unk_token: string | null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    vocab: Record<string, number>;
    merges: [string, string][];
  };
}

export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface GgufTokenizer {
  tokenizerJson: TokenizerJson;
  /** tokenizer_config.json equivalent: chat_template, bos/eos/unk/pad token strings, add_bos_token, ... */
  tokenizerConfig: Record<string, unknown>;
  /** Non-fatal conversion notes (e.g. an unknown pre-tokenizer name that fell back to GPT-2 rules). */
  warnings: string[];
}

// Pre-tokenizer regexes as llama.cpp uses them per `tokenizer.ggml.pre` (same strings as the HF tokenizer.json files).
const LLAMA3_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const O200K_REGEX = [
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
  "\\p{N}{1,3}",
  " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
  "\\s*[\\r\\n]+",
  "\\s+(?!\\S)",
  "\\s+",
].join("|");

const byteLevel = (useRegex: boolean) => ({ type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const splitThenBytes = (regex: string) => ({
  type: "Sequence",
  pretokenizers: [
    { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false },
    byteLevel(false),
  ],
});

const digitsThenBytes = () => ({
  type: "Sequence",
  pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel(true)],
});

/** llama.cpp pre-tokenizers that skip merges when a pre-token is already a vocab entry (Llama 3). */
const IGNORE_MERGES = new Set(["llama-bpe", "llama3", "llama-v3", "falcon3"]);

/** Byte-level pre-tokenizers keyed by llama.cpp `tokenizer.ggml.pre` names. */
const BPE_PRE_TOKENIZERS: Record<string, () => unknown> = {
  default: () => byteLevel(true),
  "gpt-2": () => byteLevel(true),
  gpt2: () => byteLevel(true),
  // StarCoder lineage (SmolLM too): every digit (Unicode numeric, e.g. "½") is its own pre-token.
  starcoder: () => digitsThenBytes(),
  refact: () => digitsThenBytes(),
  smollm: () => digitsThenBytes(),
  "command-r": () => digitsThenBytes(),
  "llama-bpe": () => splitThenBytes(LLAMA3_REGEX),
  llama3: () => splitThenBytes(LLAMA3_REGEX),
  "llama-v3": () => splitThenBytes(LLAMA3_REGEX),
  "falcon3": () => splitThenBytes(LLAMA3_REGEX),
  qwen2: () => splitThenBytes(QWEN2_REGEX),
  qwen35: () => splitThenBytes(QWEN2_REGEX),
  "deepseek-r1-qwen": () => splitThenBytes(QWEN2_REGEX),
  "gpt-4o": () => splitThenBytes(O200K_REGEX),
};

function required<T>(v: T | undefined, key: string, path: string): T {
  if (v === undefined) throw new MlxkError("unsupported_model", `GGUF ${path} has no ${key}; cannot build its tokenizer`);
  return v;
}

/** Build tokenizer.json + tokenizer_config from the `tokenizer.*` metadata of a GGUF file. */
export function ggufTokenizer(f: GgufFile, path = "file"): GgufTokenizer {
  const model = required(metaString(f, "tokenizer.ggml.model"), "tokenizer.ggml.model", path);
  const tokens = required(metaStrings(f, "tokenizer.ggml.tokens"), "tokenizer.ggml.tokens", path);
  const types = metaNumbers(f, "tokenizer.ggml.token_type");
  const warnings: string[] = [];
  const typeOf = (i: number) => types?.[i] ?? TokenType.NORMAL;

  const vocab: Record<string, number> = {};
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as string;
    // Duplicate pieces exist in some vocabs: the first id wins, as in HF conversion.
    if (!(t in vocab)) vocab[t] = i;
  }
  const added: AddedTokenJson[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const ty = typeOf(i);
    if (ty === TokenType.CONTROL || ty === TokenType.USER_DEFINED || (ty === TokenType.UNKNOWN && model === "gpt2")) {
      added.push({
        id: i,
        content: tokens[i] as string,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: ty !== TokenType.USER_DEFINED,
      });
    }
  }

  const tokenAt = (key: string): string | null => {
    const id = metaNumber(f, key);
    return id !== undefined && id >= 0 && id < tokens.length ? (tokens[id] as string) : null;
  };
  const bos = tokenAt("tokenizer.ggml.bos_token_id");
  const eos = tokenAt("tokenizer.ggml.eos_token_id");
  const unk = tokenAt("tokenizer.ggml.unknown_token_id");
  const pad = tokenAt("tokenizer.ggml.padding_token_id");
  const isSpm = model === "llama";
  const addBos = metaBool(f, "tokenizer.ggml.add_bos_token") ?? isSpm;
  const addEos = metaBool(f, "tokenizer.ggml.add_eos_token") ?? false;

  let normalizer: unknown = null;
  let preTokenizer: unknown;
  let decoder: unknown;
  let merges: [string, string][];
  const pre = metaString(f, "tokenizer.ggml.pre") ?? "default";
  if (model === "gpt2") {
    const make = BPE_PRE_TOKENIZERS[pre];
    if (!make) warnings.push(`unknown GGUF pre-tokenizer '${pre}': using GPT-2 rules, tokenization may differ`);
    preTokenizer = (make ?? BPE_PRE_TOKENIZERS.default!)();
    decoder = { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true };
    const raw = required(metaStrings(f, "tokenizer.ggml.merges"), "tokenizer.ggml.merges", path);
    merges = raw.map(splitMerge);
  } else if (isSpm) {
    const addSpacePrefix = metaBool(f, "tokenizer.ggml.add_space_prefix") ?? true;
    const replace = { type: "Replace", pattern: { String: " " }, content: "▁" };
    normalizer = addSpacePrefix
      ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, replace] }
      : replace;
    preTokenizer = null;
    const steps: unknown[] = [
      { type: "Replace", pattern: { String: "▁" }, content: " " },
      { type: "ByteFallback" },
      { type: "Fuse" },
    ];
    if (addSpacePrefix) steps.push({ type: "Strip", content: " ", start: 1, stop: 0 });
    decoder = { type: "Sequence", decoders: steps };
    const scores = metaNumbers(f, "tokenizer.ggml.scores");
    merges = spmMerges(tokens, scores, typeOf);
  } else {
    throw new MlxkError("unsupported_model", `GGUF tokenizer model '${model}' is not supported (only gpt2 and llama)`);
  }

  const tokenizerJson: TokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer,
    pre_tokenizer: preTokenizer,
    post_processor: postProcessor({ bos: addBos ? bos : null, eos: addEos ? eos : null, vocab }),
    decoder,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: isSpm ? unk : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: isSpm,
      byte_fallback: isSpm,
      ignore_merges: model === "gpt2" && IGNORE_MERGES.has(pre),
      vocab,
      merges,
    },
  };
  const tokenizerConfig: Record<string, unknown> = {
    bos_token: bos,
    eos_token: eos,
    unk_token: unk,
    pad_token: pad,
    add_bos_token: addBos,
    add_eos_token: addEos,
    clean_up_tokenization_spaces: false,
    model_max_length: metaNumber(f, `${metaString(f, "general.architecture") ?? "llama"}.context_length`) ?? null,
  };
  const template = metaString(f, "tokenizer.chat_template");
  if (template !== undefined) tokenizerConfig.chat_template = template;
  return { tokenizerJson, tokenizerConfig, warnings };
}

function splitMerge(m: string): [string, string] {
  const i = m.indexOf(" ", 1); // a leading space would belong to the left piece
  return i < 0 ? [m, ""] : [m.slice(0, i), m.slice(i + 1)];
}

function postProcessor(o: { bos: string | null; eos: string | null; vocab: Record<string, number> }): unknown {
  if (o.bos === null && o.eos === null) return null;
  const single: unknown[] = [];
  const pair: unknown[] = [];
  const special: Record<string, unknown> = {};
  const sp = (t: string) => ({ SpecialToken: { id: t, type_id: 0 } });
  if (o.bos !== null) {
    single.push(sp(o.bos));
    pair.push(sp(o.bos));
    special[o.bos] = { id: o.bos, ids: [o.vocab[o.bos]], tokens: [o.bos] };
  }
  single.push({ Sequence: { id: "A", type_id: 0 } });
  pair.push({ Sequence: { id: "A", type_id: 0 } });
  if (o.eos !== null) {
    single.push(sp(o.eos));
    pair.push(sp(o.eos));
    special[o.eos] = { id: o.eos, ids: [o.vocab[o.eos]], tokens: [o.eos] };
  }
  pair.push({ Sequence: { id: "B", type_id: 1 } });
  return { type: "TemplateProcessing", single, pair, special_tokens: special };
}

/**
 * SentencePiece BPE merges from scores: every split (left, right) of a normal piece whose halves are
 * both normal pieces is a merge; a higher merged-piece score means an earlier merge (ties: lower id).
 */
export function spmMerges(
  tokens: readonly string[],
  scores: ArrayLike<number> | undefined,
  typeOf: (id: number) => number,
): [string, string][] {
  const normal = new Map<string, number>();
  for (let i = 0; i < tokens.length; i++) {
    const ty = typeOf(i);
    if (ty === TokenType.NORMAL || ty === TokenType.USER_DEFINED || ty === TokenType.UNUSED) {
      const t = tokens[i] as string;
      if (!normal.has(t)) normal.set(t, i);
    }
  }
  const found: { l: string; r: string; score: number; id: number; split: number }[] = [];
  for (const [piece, id] of normal) {
    const chars = Array.from(piece);
    if (chars.length < 2) continue;
    let prefix = "";
    for (let k = 1; k < chars.length; k++) {
      prefix += chars[k - 1];
      const rest = piece.slice(prefix.length);
      if (normal.has(prefix) && normal.has(rest)) {
        found.push({ l: prefix, r: rest, score: scores ? (scores[id] ?? 0) : -id, id, split: k });
      }
    }
  }
  found.sort((a, b) => b.score - a.score || a.id - b.id || a.split - b.split);
  return found.map((m) => [m.l, m.r]);
}

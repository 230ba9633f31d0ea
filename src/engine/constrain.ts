/**
 * Constrained decoding over XGrammar's WASM build (@mlc-ai/web-xgrammar; chosen over a hand-written
 * automaton, see BENCHMARKS.md): a JSON Schema compiles to a grammar whose matcher gives, per step, a
 * bitmask over the tokenizer's vocabulary. The tokenizer side (decoded vocabulary, token classes) is
 * built once per tokenizer, compiled grammars are cached per schema, and the mask is computed between
 * steps while nothing else runs, then applied to the host logits (-inf outside the allowed set) before
 * the sampler draws, so temperature/top_p still apply inside it.
 */
import * as xg from "@mlc-ai/web-xgrammar";
import { MlxkError } from "../errors.ts";
import { normalizeSchema } from "../generate/json-schema-check.ts";
import type { TextPipeline } from "../generate/text.ts";
import type { GrammarSpec } from "./tools.ts";

export interface TokenConstraint extends Disposable {
  /** Compute the mask for the next token (call before the step that samples it). */
  prepareNext(): Promise<void>;
  /** Disallowed tokens' logits → -inf (in place). */
  mask(logits: Float32Array): void;
  /** The same mask as an additive bias over `vocab` logits (0 allowed, -inf not), for the device. */
  bias(vocab: number): Float32Array;
  accept(token: number): void;
  /** The matcher took a stop token (the engine normally ends at the end token first). */
  readonly done: boolean;
}

interface TokenizerGrammar {
  compiler: xg.GrammarCompiler;
  vocabSize: number;
  compiled: Map<string, xg.CompiledGrammar>;
}

const perTokenizer = new WeakMap<TextPipeline, Promise<TokenizerGrammar>>();
const MAX_CACHED = 32;

/**
 * Special tokens a model writes as part of its text, which free-text grammars (tool_choice auto) must let
 * through when a checkpoint marks them special (Hermes-3's `<tool_call>`, some `<think>` tokens).
 */
const TEXT_MARKERS = new Set(["<tool_call>", "</tool_call>", "<think>", "</think>", "[TOOL_CALLS]", "[ARGS]"]);

/** The vocabulary as XGrammar reads it: raw pieces, other special tokens empty (never produced under a grammar). */
async function tokenizerGrammar(text: TextPipeline): Promise<TokenizerGrammar> {
  let p = perTokenizer.get(text);
  if (!p) {
    p = (async () => {
      const tok = text.tokenizer;
      const vocab: string[] = [];
      for (let i = 0; i < tok.vocabSize; i++) {
        const piece = tok.idToToken(i) ?? "";
        vocab.push(tok.specialIds.has(i) && !TEXT_MARKERS.has(piece) ? "" : piece);
      }
      const kind = tok.decoderKind === "bytelevel" ? "byte_level" : tok.decoderKind === "spm" ? "byte_fallback" : "raw";
      const info = await xg.TokenizerInfo.createTokenizerInfo(vocab, kind, false, undefined, [...text.eosTokenIds]);
      return { compiler: await xg.GrammarCompiler.createGrammarCompiler(info), vocabSize: tok.vocabSize, compiled: new Map() };
    })();
    perTokenizer.set(text, p);
  }
  return p;
}

function keyOf(spec: GrammarSpec): string {
  if (spec.kind === "json_object") return "json_object";
  if (spec.kind === "schema") return JSON.stringify(normalizeSchema(spec.schema, spec.param));
  return JSON.stringify({ ...spec, tags: spec.tags.map((t) => ({ ...t, schema: normalizeSchema(t.schema, spec.param) })) });
}

// One line, json.dumps separators: a small model cannot wander off into endless whitespace.
const LAYOUT = [false, -1, [", ", ": "] as [string, string], false] as const;

/** Calls in the family's syntax as an XGrammar structural tag, each arguments object in the compact layout. */
async function structuralTag(spec: Extract<GrammarSpec, { kind: "tags" }>): Promise<Record<string, unknown>> {
  const tags = await Promise.all(
    spec.tags.map(async (t) => ({
      type: "tag",
      begin: t.begin,
      content: { type: "grammar", grammar: await xg.Testings._jsonSchemaToEBNF(JSON.stringify(normalizeSchema(t.schema, spec.param)), ...LAYOUT) },
      end: t.end,
    })),
  );
  const format =
    spec.mode === "one"
      ? tags[0]
      : spec.mode === "any"
        ? { type: "tags_with_separator", tags, separator: spec.separator, at_least_one: true, stop_after_first: spec.stopAfterFirst }
        : { type: "triggered_tags", triggers: [spec.trigger], tags, at_least_one: false, stop_after_first: spec.stopAfterFirst };
  return { type: "structural_tag", format };
}

/** Compile (or reuse) the grammar of a spec. A schema XGrammar rejects is a 400 naming where it sits. */
export async function compileGrammar(text: TextPipeline, spec: GrammarSpec): Promise<{ grammar: xg.CompiledGrammar; vocabSize: number }> {
  const tg = await tokenizerGrammar(text);
  const key = keyOf(spec);
  let g = tg.compiled.get(key);
  if (!g) {
    try {
      if (spec.kind === "tags") g = await tg.compiler.compileStructuralTag((await structuralTag(spec)) as xg.StructuralTagLike);
      else g = await tg.compiler.compileJSONSchema(spec.kind === "json_object" ? '{"type":"object"}' : key, ...LAYOUT);
    } catch (e) {
      const param = spec.kind === "json_object" ? "response_format" : spec.param;
      throw new MlxkError("validation_error", `The schema at ${param} cannot be enforced: ${e instanceof Error ? e.message : String(e)}`, {
        extra: { param, code: "unsupported_schema" },
      });
    }
    if (tg.compiled.size >= MAX_CACHED) {
      const oldest = tg.compiled.keys().next().value as string;
      tg.compiled.get(oldest)?.dispose();
      tg.compiled.delete(oldest);
    }
    tg.compiled.set(key, g);
  }
  return { grammar: g, vocabSize: tg.vocabSize };
}

export async function createConstraint(text: TextPipeline, spec: GrammarSpec): Promise<TokenConstraint> {
  const { grammar, vocabSize } = await compileGrammar(text, spec);
  const matcher = await xg.GrammarMatcher.createGrammarMatcher(grammar);
  let bits: Int32Array | null = null;
  let biasBuf: Float32Array | null = null;
  const mask = (logits: Float32Array): void => {
    const b = bits;
    if (!b) throw new MlxkError("InternalError", "constraint mask used before prepareNext()");
    const n = Math.min(logits.length, vocabSize);
    for (let w = 0; w * 32 < n; w++) {
      const word = b[w]!;
      if (word === -1) continue; // all 32 allowed
      const end = Math.min(n, w * 32 + 32);
      for (let i = w * 32; i < end; i++) if (((word >>> (i & 31)) & 1) === 0) logits[i] = -Infinity;
    }
    // Ids past the tokenizer (padded embedding rows) are never text.
    for (let i = n; i < logits.length; i++) logits[i] = -Infinity;
  };
  return {
    async prepareNext() {
      bits = await matcher.getNextTokenBitmask();
    },
    mask,
    bias(vocab) {
      if (!biasBuf || biasBuf.length !== vocab) biasBuf = new Float32Array(vocab);
      biasBuf.fill(0);
      mask(biasBuf);
      return biasBuf;
    },
    accept(token) {
      if (!matcher.acceptToken(token)) throw new MlxkError("InternalError", `constrained decoding sampled a token outside the grammar (${token})`);
    },
    get done() {
      return matcher.isTerminated();
    },
    [Symbol.dispose]() {
      matcher.dispose();
    },
  };
}

/**
 * End-of-generation token ids (mlx-knife `stop_tokens.py` rules, contract §6.1, ADR-009 multi-EOS):
 * config.json / generation_config.json `eos_token_id` (int or list), tokenizer_config `eos_token`,
 * `pad_token` when it differs from eos, `additional_special_tokens` naming an end/stop/eot, special
 * added tokens naming stop/eot/return/finish/done/im_end or an `end` word, plus the well-known
 * `</s>`, `<|endoftext|>`, `<|im_end|>`, `<|eot_id|>`, `<end_of_turn>` when each is exactly one token
 * that round-trips. Reasoning formats drop their reasoning-end marker; gpt-oss adds `<|return|>`.
 */
import { type TextTokenizer, tokenString } from "./tokenizer.ts";
import type { ReasoningFormat } from "./reasoning.ts";

export interface StopToken {
  id: number;
  content: string;
  /** Which rule put it in the set (for `--verbose` and debugging). */
  source: string;
}

export interface StopTokenOptions {
  tokenizer: TextTokenizer;
  config?: Record<string, unknown>;
  generationConfig?: Record<string, unknown>;
  /** The model's reasoning format, if any (its end-of-reasoning marker must not stop generation). */
  reasoning?: ReasoningFormat | null;
}

const WELL_KNOWN = ["</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>"];
const ADDITIONAL_RE = /end|stop|eot/i;
const ADDED_RE = /stop|eot|return|finish|done|im_end/i;
// "end" as its own word (`<|end|>`, `<end_of_turn>`, `<|end_of_text|>`), but not turn-structure tokens.
const END_WORD_RE = /(^|[^a-z])end([^a-z]|$)/i;
const NOT_A_STOP_RE = /header|start|think|tool|image|audio|video|box|ref|quad|vision|object/i;

const REASONING_END: Record<ReasoningFormat, string[]> = {
  think: ["</think>"],
  thinking: ["</thinking>"],
  harmony: ["<|end|>"],
};

function ids(v: unknown): number[] {
  if (typeof v === "number" && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number" && Number.isInteger(x));
  return [];
}

/** Resolve the stop-token set; `ids` is what the decode loop checks after every token. */
export function resolveStopTokens(opts: StopTokenOptions): { ids: Set<number>; tokens: StopToken[] } {
  const tok = opts.tokenizer;
  const found = new Map<number, StopToken>();
  const add = (id: number | undefined | null, source: string) => {
    if (id === undefined || id === null || id < 0 || found.has(id)) return;
    found.set(id, { id, content: tok.idToToken(id) ?? "", source });
  };
  const addToken = (content: string | null, source: string) => {
    if (content !== null) add(tok.tokenToId(content), source);
  };

  for (const id of ids(opts.config?.eos_token_id)) add(id, "config.json eos_token_id");
  for (const id of ids(opts.generationConfig?.eos_token_id)) add(id, "generation_config.json eos_token_id");
  const cfg = tok.config;
  addToken(tok.eosToken, "eos_token");
  if (tok.padToken !== null && tok.padToken !== tok.eosToken && tok.padToken !== tok.bosToken) {
    addToken(tok.padToken, "pad_token");
  }
  const additional = Array.isArray(cfg.additional_special_tokens) ? cfg.additional_special_tokens : [];
  for (const t of additional) {
    const s = tokenString(t);
    if (s !== null && ADDITIONAL_RE.test(s) && !NOT_A_STOP_RE.test(s)) addToken(s, "additional_special_tokens");
  }
  for (const t of tok.addedTokens) {
    if (!t.special || NOT_A_STOP_RE.test(t.content)) continue;
    if (ADDED_RE.test(t.content) || END_WORD_RE.test(t.content)) add(t.id, "added special token");
  }
  for (const s of WELL_KNOWN) {
    const enc = tok.encode(s, { addSpecialTokens: false });
    if (enc.length === 1 && tok.decode(enc) === s) add(enc[0], "well-known end token");
  }
  // Never stop on BOS (some configs list it as pad) .
  const bos = tok.bosToken === null ? undefined : tok.tokenToId(tok.bosToken);
  if (bos !== undefined && tok.bosToken !== tok.eosToken) found.delete(bos);

  if (opts.reasoning) {
    for (const marker of REASONING_END[opts.reasoning]) {
      const id = tok.tokenToId(marker);
      if (id !== undefined) found.delete(id);
    }
    if (opts.reasoning === "harmony") addToken("<|return|>", "gpt-oss <|return|>");
  }
  const tokens = [...found.values()];
  return { ids: new Set(tokens.map((t) => t.id)), tokens };
}

/**
 * How a model turns token states into one vector, read from its sentence-transformers files: `modules.json`
 * (which modules, in order), `1_Pooling/config.json` (mode; both the classic `pooling_mode_*_tokens` booleans and the
 * sentence-transformers 5+ `pooling_mode` string), a Normalize module, `sentence_bert_config.json` /
 * `tokenizer_config.json` (max length) and `config_sentence_transformers.json` (prompts). Without those files we do
 * what sentence-transformers does with a plain transformers model (mean pooling, no normalisation) for encoders and
 * what Qwen3-Embedding documents (last token, L2-normalised) for decoders. A module we cannot run (Dense, a second
 * Transformer, …) is refused by name rather than skipped.
 *
 * Exports: EmbedRecipe, Pooling, readEmbedRecipe(dir, { decoder })
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MlxkError } from "../errors.ts";

export type Pooling = "cls" | "mean" | "max" | "lasttoken" | "mean_sqrt_len_tokens";

export interface EmbedRecipe {
  pooling: Pooling;
  normalize: boolean;
  /** Longest tokenized input (specials included); null = the position table decides. */
  maxSeqLength: number | null;
  prompts: Record<string, string>;
  defaultPromptName: string | null;
  /** false: prompt tokens are left out of the pooling (INSTRUCTOR-style). */
  includePrompt: boolean;
  /** Where the recipe came from. */
  source: "sentence-transformers" | "default";
  /** The model card says the vectors may be truncated (Matryoshka / MRL), so `dimensions` is honoured. */
  matryoshka: boolean;
}

function readJson(path: string): Record<string, unknown> | null {
  if (!existsSync(path)) return null;
  try {
    const v: unknown = JSON.parse(readFileSync(path, "utf8"));
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    throw new MlxkError("unsupported_model", `${path} is not valid JSON`);
  }
}

const CLASSIC: Record<string, Pooling> = {
  pooling_mode_cls_token: "cls",
  pooling_mode_mean_tokens: "mean",
  pooling_mode_max_tokens: "max",
  pooling_mode_mean_sqrt_len_tokens: "mean_sqrt_len_tokens",
  pooling_mode_lasttoken: "lasttoken",
};
const MODES = new Set<string>(["cls", "mean", "max", "lasttoken", "mean_sqrt_len_tokens"]);

function poolingOf(cfg: Record<string, unknown>, where: string): { pooling: Pooling; includePrompt: boolean } {
  const includePrompt = cfg.include_prompt !== false;
  if (typeof cfg.pooling_mode === "string") {
    const m = cfg.pooling_mode === "mean_tokens" ? "mean" : cfg.pooling_mode === "cls_token" ? "cls" : cfg.pooling_mode;
    if (!MODES.has(m)) throw new MlxkError("unsupported_model", `${where}: pooling_mode '${cfg.pooling_mode}' is not supported (cls, mean, max, lasttoken, mean_sqrt_len_tokens)`);
    return { pooling: m as Pooling, includePrompt };
  }
  const on = Object.entries(cfg).filter(([k, v]) => k.startsWith("pooling_mode_") && v === true).map(([k]) => k);
  if (on.length !== 1) throw new MlxkError("unsupported_model", `${where}: ${on.length === 0 ? "no pooling mode is set" : `several pooling modes are set (${on.join(", ")}); concatenated pooling is not supported`}`);
  const p = CLASSIC[on[0]!];
  if (!p) throw new MlxkError("unsupported_model", `${where}: ${on[0]} is not supported`);
  return { pooling: p, includePrompt };
}

function moduleKind(type: string): "transformer" | "pooling" | "normalize" | null {
  const last = type.slice(type.lastIndexOf(".") + 1);
  if (last === "Transformer") return "transformer";
  if (last === "Pooling") return "pooling";
  if (last === "Normalize") return "normalize";
  return null;
}

/** README mentions Matryoshka / MRL, or the ST config pins a truncate_dim: the vectors are meant to be cut. */
function saysMatryoshka(dir: string, st: Record<string, unknown> | null): boolean {
  if (typeof st?.truncate_dim === "number") return true;
  for (const f of ["README.md", "readme.md"]) {
    const p = join(dir, f);
    if (existsSync(p) && /matryoshka|\bMRL\b/i.test(readFileSync(p, "utf8").slice(0, 200_000))) return true;
  }
  return false;
}

export function readEmbedRecipe(dir: string, opts: { decoder: boolean }): EmbedRecipe {
  const st = readJson(join(dir, "config_sentence_transformers.json"));
  const sbert = readJson(join(dir, "sentence_bert_config.json"));
  const tokCfg = readJson(join(dir, "tokenizer_config.json"));
  const prompts: Record<string, string> = {};
  if (st?.prompts && typeof st.prompts === "object") for (const [k, v] of Object.entries(st.prompts)) if (typeof v === "string") prompts[k] = v;
  const mml = typeof tokCfg?.model_max_length === "number" && tokCfg.model_max_length < 1e7 ? tokCfg.model_max_length : null;
  const maxSeqLength = typeof sbert?.max_seq_length === "number" ? sbert.max_seq_length : mml;
  const base = {
    maxSeqLength,
    prompts,
    defaultPromptName: typeof st?.default_prompt_name === "string" ? st.default_prompt_name : null,
    matryoshka: saysMatryoshka(dir, st),
  };
  const modules = existsSync(join(dir, "modules.json")) ? JSON.parse(readFileSync(join(dir, "modules.json"), "utf8")) : null;
  if (!Array.isArray(modules)) {
    return { ...base, pooling: opts.decoder ? "lasttoken" : "mean", normalize: opts.decoder, includePrompt: true, source: "default" };
  }
  let pooling: { pooling: Pooling; includePrompt: boolean } | null = null;
  let normalize = false;
  modules.forEach((m: Record<string, unknown>, i: number) => {
    const type = String(m.type ?? "");
    const kind = moduleKind(type);
    if (kind === null || (kind === "transformer" && i !== 0) || (kind !== "transformer" && i === 0)) {
      throw new MlxkError("unsupported_model", `modules.json: module ${i} (${type}) is not supported; mlxk runs Transformer → Pooling → [Normalize]`);
    }
    if (kind === "pooling") {
      const path = join(dir, String(m.path ?? ""), "config.json");
      const cfg = readJson(path);
      if (!cfg) throw new MlxkError("unsupported_model", `modules.json names a Pooling module but ${path} is missing`);
      pooling = poolingOf(cfg, path);
    }
    if (kind === "normalize") normalize = true;
  });
  if (!pooling) throw new MlxkError("unsupported_model", "modules.json has no Pooling module");
  const p = pooling as { pooling: Pooling; includePrompt: boolean };
  return { ...base, pooling: p.pooling, includePrompt: p.includePrompt, normalize, source: "sentence-transformers" };
}

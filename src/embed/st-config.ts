/**
 * How a model turns token states into one vector, read from its sentence-transformers files: `modules.json`
 * (which modules, in order), `1_Pooling/config.json` (mode; both the classic `pooling_mode_*_tokens` booleans and the
 * sentence-transformers 5+ `pooling_mode` string), a Normalize module, `sentence_bert_config.json` /
 * `tokenizer_config.json` (max length) and `config_sentence_transformers.json` (prompts). Without those files we do
 * what sentence-transformers does with a plain transformers model (mean pooling, no normalisation) for encoders and
 * what Qwen3-Embedding documents (last token, L2-normalised) for decoders. After pooling, `Dense` projections
 * (`N_Dense/config.json` + safetensors: in/out features, bias, a torch activation) and `Normalize` run in the order
 * modules.json lists them. A module we cannot run (a second Transformer, LayerNorm, CNN, …) is refused by name
 * rather than skipped.
 *
 * Exports: EmbedRecipe, Pooling, PostStep, DenseActivation, readEmbedRecipe(dir, { decoder })
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MlxkError } from "../errors.ts";

export type Pooling = "cls" | "mean" | "max" | "lasttoken" | "mean_sqrt_len_tokens";

/** The torch activations a sentence-transformers Dense module names (class path) that we run. */
export type DenseActivation = "identity" | "tanh" | "relu" | "sigmoid" | "gelu" | "silu";
const DENSE_ACTS: Record<string, DenseActivation> = {
  "torch.nn.modules.linear.Identity": "identity",
  "torch.nn.modules.activation.Tanh": "tanh",
  "torch.nn.modules.activation.ReLU": "relu",
  "torch.nn.modules.activation.Sigmoid": "sigmoid",
  "torch.nn.modules.activation.GELU": "gelu",
  "torch.nn.modules.activation.SiLU": "silu",
};

/** What runs on the pooled vector, in modules.json order. */
export type PostStep =
  | { kind: "dense"; dir: string; inFeatures: number; outFeatures: number; bias: boolean; activation: DenseActivation }
  | { kind: "normalize" };

export interface EmbedRecipe {
  pooling: Pooling;
  /** The output is L2-normalised (a Normalize module, or the decoder default). */
  normalize: boolean;
  /** Dense / Normalize modules after pooling, in order. */
  post: PostStep[];
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

function moduleKind(type: string): "transformer" | "pooling" | "normalize" | "dense" | null {
  const last = type.slice(type.lastIndexOf(".") + 1);
  if (last === "Transformer") return "transformer";
  if (last === "Pooling") return "pooling";
  if (last === "Normalize") return "normalize";
  if (last === "Dense") return "dense";
  return null;
}

function denseStep(dir: string, m: Record<string, unknown>, i: number): PostStep {
  const where = join(dir, String(m.path ?? ""));
  const cfg = readJson(join(where, "config.json"));
  if (!cfg) throw new MlxkError("unsupported_model", `modules.json: module ${i} (Dense) has no ${join(where, "config.json")}`);
  const { in_features: inF, out_features: outF } = cfg;
  if (!Number.isInteger(inF) || !Number.isInteger(outF)) throw new MlxkError("unsupported_model", `${join(where, "config.json")}: in_features / out_features missing`);
  const actName = typeof cfg.activation_function === "string" ? cfg.activation_function : "torch.nn.modules.activation.Tanh";
  const activation = DENSE_ACTS[actName];
  if (!activation) throw new MlxkError("unsupported_model", `modules.json: module ${i} (Dense) uses activation ${actName}; supported: ${Object.keys(DENSE_ACTS).join(", ")}`);
  if (!existsSync(join(where, "model.safetensors"))) {
    throw new MlxkError("unsupported_model", `modules.json: module ${i} (Dense) has no ${join(where, "model.safetensors")}${existsSync(join(where, "pytorch_model.bin")) ? " (only pytorch_model.bin, a pickle mlxk does not read; re-save it with safe_serialization=True)" : ""}`);
  }
  return { kind: "dense", dir: where, inFeatures: inF as number, outFeatures: outF as number, bias: cfg.bias !== false, activation };
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
    return { ...base, pooling: opts.decoder ? "lasttoken" : "mean", normalize: opts.decoder, post: opts.decoder ? [{ kind: "normalize" }] : [], includePrompt: true, source: "default" };
  }
  let pooling: { pooling: Pooling; includePrompt: boolean } | null = null;
  const post: PostStep[] = [];
  modules.forEach((m: Record<string, unknown>, i: number) => {
    const type = String(m.type ?? "");
    const kind = moduleKind(type);
    const misplaced = (kind === "transformer") !== (i === 0) || (kind === "pooling" && pooling !== null) || ((kind === "dense" || kind === "normalize") && pooling === null);
    if (kind === null || misplaced) {
      throw new MlxkError("unsupported_model", `modules.json: module ${i} (${type}) is not supported${misplaced ? " there" : ""}; mlxk runs Transformer → Pooling → [Dense | Normalize]…`);
    }
    if (kind === "pooling") {
      const path = join(dir, String(m.path ?? ""), "config.json");
      const cfg = readJson(path);
      if (!cfg) throw new MlxkError("unsupported_model", `modules.json names a Pooling module but ${path} is missing`);
      pooling = poolingOf(cfg, path);
    }
    if (kind === "normalize") post.push({ kind: "normalize" });
    if (kind === "dense") post.push(denseStep(dir, m, i));
  });
  if (!pooling) throw new MlxkError("unsupported_model", "modules.json has no Pooling module");
  const p = pooling as { pooling: Pooling; includePrompt: boolean };
  // a Dense after the last Normalize leaves the output unnormalised
  const normalize = post.length > 0 && post.at(-1)!.kind === "normalize";
  return { ...base, pooling: p.pooling, includePrompt: p.includePrompt, normalize, post, source: "sentence-transformers" };
}

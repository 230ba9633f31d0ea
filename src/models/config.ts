/**
 * The one config.json normaliser every architecture's schema runs behind: it reads both spellings that
 * transformers 4 and 5 write and hands the schema one canonical form.
 *
 *   rope        v4 `rope_theta` + `rope_scaling{type|rope_type}` / v5 `rope_parameters{rope_type, rope_theta, …}`
 *               → `rope_theta`, `rope_scaling` (canonical `rope_type`, or null for default), `partial_rotary_factor`
 *   per layer   v5 `rope_parameters{sliding_attention:{…}, full_attention:{…}}` / v4 gemma3 `rope_local_base_freq`
 *               → `rope_by_layer_type{<layer type>: {rope_theta, rope_scaling}}` (architectures that ask for it)
 *   layers      `layer_types` / `sliding_window_pattern` → `layer_types` (values checked)
 *   experts     `num_experts` / `num_local_experts` → both
 *   wrappers    multimodal configs: `text_config` over the top level
 *
 * A value it does not understand is an `unsupported_model` error naming the key and the value; a key of
 * the wrong type is left to the schema, whose error keeps its key path (no nested parse here).
 */
import { MlxkError } from "../errors.ts";

// "proportional" (gemma4's full layers): only the first partial_rotary_factor of the head's frequencies rotate.
export const ROPE_TYPES = ["default", "linear", "dynamic", "yarn", "llama3", "longrope", "proportional"] as const;
export type RopeType = (typeof ROPE_TYPES)[number];

/** A rope scaling block with its canonical `rope_type`; other keys as the config wrote them. */
export interface RopeScaling {
  rope_type: Exclude<RopeType, "default">;
  factor?: number;
  original_max_position_embeddings?: number;
  [key: string]: unknown;
}

export interface LayerRope {
  rope_theta?: number;
  rope_scaling: RopeScaling | null;
  partial_rotary_factor?: number;
}

export interface NormalizeOptions {
  /** Layer types the architecture implements; others are refused. @default ["full_attention", "sliding_attention"] */
  layerTypes?: readonly string[];
  /** Derive `layer_types` from `sliding_window_pattern` (gemma3: every Nth layer is global). */
  slidingWindowPattern?: boolean;
  /** Build `rope_by_layer_type` (gemma3: local and global layers rope differently). */
  perLayerRope?: boolean;
  /** A multimodal wrapper: the text model's keys sit under `text_config`. */
  textConfig?: boolean;
  /** Accepted `hidden_act` / `hidden_activation` values; others are refused. */
  activations?: readonly string[];
  /** Rope types the architecture implements. @default every one in ROPE_TYPES */
  ropeTypes?: readonly RopeType[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function unsupported(key: string, value: unknown, supported?: readonly string[]): MlxkError {
  const also = supported ? ` (supported: ${supported.join(", ")})` : "";
  return new MlxkError("unsupported_model", `config.json ${key}: ${JSON.stringify(value)} is not supported${also}`);
}

function invalid(key: string, what: string): MlxkError {
  return new MlxkError("execution_error", `Invalid config.json: ${key}: ${what}`);
}

/** Keys of a v5 `rope_parameters` that are blocks per layer type (values that are objects). */
function nestedLayerKeys(rp: Obj): string[] {
  return Object.keys(rp).filter((k) => isObj(rp[k]));
}

/** One rope block (either spelling) → theta, canonical scaling, partial rotary factor. */
function ropeBlock(block: Obj | null, key: string, top: Obj, allowed: readonly RopeType[]): LayerRope {
  if (block === null) return { rope_scaling: null };
  const raw = block.rope_type ?? block.type ?? "default";
  const typeKey = block.rope_type !== undefined ? `${key}.rope_type` : `${key}.type`;
  // "su" is longrope's old name (Phi-3 configs of 2024).
  const type = raw === "su" ? "longrope" : raw;
  if (typeof type !== "string" || !(ROPE_TYPES as readonly string[]).includes(type) || !allowed.includes(type as RopeType)) {
    throw unsupported(typeKey, raw, allowed);
  }
  const out: LayerRope = { rope_scaling: null };
  if (block.rope_theta !== undefined) {
    if (typeof block.rope_theta !== "number") throw invalid(`${key}.rope_theta`, "expected a number");
    out.rope_theta = block.rope_theta;
  }
  if (block.partial_rotary_factor !== undefined) {
    if (typeof block.partial_rotary_factor !== "number") throw invalid(`${key}.partial_rotary_factor`, "expected a number");
    out.partial_rotary_factor = block.partial_rotary_factor;
  }
  if (type === "default") return out;
  const s: RopeScaling = { ...block, rope_type: type as RopeScaling["rope_type"] };
  delete s.type;
  delete s.rope_theta;
  delete s.partial_rotary_factor;
  const need = (k: string, check: (v: unknown) => boolean, what: string) => {
    if (!check(s[k])) throw invalid(`${key}.${k}`, `${what} (rope_type ${type})`);
  };
  const isNum = (v: unknown) => typeof v === "number";
  if (type !== "longrope" && type !== "proportional") need("factor", isNum, "expected a number");
  if (type === "longrope") {
    const arr = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "number");
    need("short_factor", arr, "expected a list of numbers");
    need("long_factor", arr, "expected a list of numbers");
  }
  if (type === "llama3" || type === "yarn" || type === "longrope") {
    // transformers: a top-level original_max_position_embeddings (Phi-3) wins over the block's
    const orig = top.original_max_position_embeddings ?? s.original_max_position_embeddings ?? top.max_position_embeddings;
    if (orig !== undefined) s.original_max_position_embeddings = orig as number;
  }
  out.rope_scaling = s;
  return out;
}

function normalizeRope(c: Obj, opts: NormalizeOptions): void {
  const allowed = opts.ropeTypes ?? ROPE_TYPES;
  const rp = c.rope_parameters;
  const rs = c.rope_scaling;
  if (rp !== undefined && rp !== null && !isObj(rp)) throw invalid("rope_parameters", "expected an object");
  if (rs !== undefined && rs !== null && !isObj(rs)) throw invalid("rope_scaling", "expected an object");
  const nested = isObj(rp) ? nestedLayerKeys(rp) : [];
  const topTheta = c.rope_theta;
  if (nested.length > 0) {
    if (!opts.perLayerRope) throw unsupported("rope_parameters", `per-layer-type blocks (${nested.join(", ")})`);
    const byType: Record<string, LayerRope> = {};
    for (const t of nested) {
      const b = ropeBlock((rp as Obj)[t] as Obj, `rope_parameters.${t}`, c, allowed);
      byType[t] = { ...b, rope_theta: b.rope_theta ?? (topTheta as number | undefined) };
    }
    c.rope_by_layer_type = byType;
    const full = byType.full_attention;
    if (full?.rope_theta !== undefined) c.rope_theta = full.rope_theta;
    c.rope_scaling = full?.rope_scaling ?? null;
    return;
  }
  // A flat v5 block, else the v4 rope_scaling (both present: rope_parameters wins, as transformers 5 reads it).
  const block = isObj(rp) ? { ...(isObj(rs) ? rs : {}), ...rp } : isObj(rs) ? rs : null;
  const key = isObj(rp) ? "rope_parameters" : "rope_scaling";
  const b = ropeBlock(block, key, c, allowed);
  if (b.rope_theta !== undefined) c.rope_theta = b.rope_theta;
  if (b.partial_rotary_factor !== undefined) c.partial_rotary_factor = b.partial_rotary_factor;
  // No rope block at all: left absent, so an architecture whose transformers default is a scaled rope (gpt-oss) applies it.
  if (block === null) delete c.rope_scaling;
  else c.rope_scaling = b.rope_scaling;
  if (opts.perLayerRope) {
    // v4 gemma3: the scaling is the global layers'; local layers use rope_local_base_freq unscaled.
    c.rope_by_layer_type = {
      full_attention: { rope_theta: c.rope_theta as number | undefined, rope_scaling: b.rope_scaling },
      sliding_attention: { rope_theta: (c.rope_local_base_freq as number | undefined) ?? undefined, rope_scaling: null },
    };
  }
}

function normalizeLayers(c: Obj, opts: NormalizeOptions): void {
  const allowed = opts.layerTypes ?? ["full_attention", "sliding_attention"];
  const n = c.num_hidden_layers;
  if (c.layer_types !== undefined && c.layer_types !== null) {
    if (!Array.isArray(c.layer_types)) throw invalid("layer_types", "expected a list");
    c.layer_types.forEach((t, i) => {
      if (!allowed.includes(t as string)) throw unsupported(`layer_types[${i}]`, t, allowed);
    });
    if (typeof n === "number" && c.layer_types.length !== n) throw invalid("layer_types", `${c.layer_types.length} entries for ${n} layers`);
    return;
  }
  const p = c.sliding_window_pattern;
  if (opts.slidingWindowPattern && typeof n === "number" && p !== undefined && p !== null) {
    if (typeof p !== "number" || !Number.isInteger(p) || p < 1) throw invalid("sliding_window_pattern", "expected a positive integer");
    c.layer_types = Array.from({ length: n }, (_, i) => ((i + 1) % p === 0 ? "full_attention" : "sliding_attention"));
  }
}

function normalizeExperts(c: Obj): void {
  const a = c.num_experts;
  const b = c.num_local_experts;
  if (a !== undefined && b !== undefined && a !== b) throw invalid("num_experts", `${String(a)} differs from num_local_experts ${String(b)}`);
  const n = a ?? b;
  if (n !== undefined) {
    c.num_experts = n;
    c.num_local_experts = n;
  }
}

function checkActivation(c: Obj, opts: NormalizeOptions): void {
  if (!opts.activations) return;
  for (const k of ["hidden_act", "hidden_activation"]) {
    const a = c[k];
    if (a !== undefined && a !== null && !opts.activations.includes(a as string)) throw unsupported(k, a, opts.activations);
  }
}

/** The text part of a multimodal wrapper: `text_config` over the top level (its vocab_size etc. win). */
export function textConfigOf(raw: Obj): Obj {
  const tc = raw.text_config;
  if (tc === undefined || tc === null) return raw;
  if (!isObj(tc)) throw invalid("text_config", "expected an object");
  const { text_config: _t, vision_config: _v, audio_config: _a, ...top } = raw;
  return { ...top, ...tc };
}

/** Canonical config for the schema (a copy; `raw` is not changed). */
export function normalizeConfig(raw: Obj, opts: NormalizeOptions = {}): Obj {
  const c: Obj = opts.textConfig ? textConfigOf(raw) : { ...raw };
  normalizeRope(c, opts);
  normalizeLayers(c, opts);
  normalizeExperts(c);
  checkActivation(c, opts);
  if (c.head_dim === null) delete c.head_dim;
  if (c.num_key_value_heads === null) delete c.num_key_value_heads;
  return c;
}

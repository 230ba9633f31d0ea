/**
 * What every architecture file exports (a ModelModule) and the shared loading pieces: config parsing
 * with valibot (errors name the key), quantization config, and the weight store modules read from.
 */
import * as v from "valibot";
import { MlxkError } from "../errors.ts";
import { type BackendProfile, defaultBackend } from "../mlx/backend.ts";
import * as mx from "../mlx/index.ts";
import { isKQuantMode } from "../mlx/kquant.ts";
import { type NormalizeOptions, normalizeConfig } from "./config.ts";
import { Embedding, Fanout, Linear, type Projection, projection, type QuantParams } from "./layers.ts";

/**
 * What the token loop needs of any layer's cache, whatever its kind (a KV cache for attention, a
 * recurrent-state cache for linear-attention layers): the arrays to materialise after a prefill chunk.
 */
export interface LayerCache extends Disposable {
  /** Tokens seen so far. */
  readonly offset: number;
  state(): mx.Array[];
}

/** A loaded language model: hidden states from token ids, then logits from hidden states. */
export interface LanguageModel extends Disposable {
  readonly numLayers: number;
  /** One cache per layer (rotating caches for sliding-window layers, recurrent state for linear attention). */
  makeCache(): LayerCache[];
  /** Token ids [1, L] → final-normed hidden states [1, L, H]; updates `cache` (the ones makeCache made). */
  hidden(inputs: mx.Array, cache: LayerCache[]): mx.Array;
  /** Hidden states [..., H] → logits [..., V] (f32). */
  logits(h: mx.Array): mx.Array;
  /**
   * Continuous batching (src/engine/batch.ts): a decode batch [B, 1] over batch caches (src/models/batch_layers.ts)
   * runs through this model with every row computed exactly as alone. Absent: one sequence at a time only.
   */
  readonly rowBatched?: boolean;
}

export interface ModelModule {
  /** What the config normaliser (config.ts) accepts for this architecture; it runs before the schema. */
  configOptions?: NormalizeOptions;
  /** valibot schema of the normalised config.json for this architecture (a looseObject with defaults). */
  configSchema: v.GenericSchema<unknown, Record<string, unknown>>;
  /** Rename / drop checkpoint tensors into the names the model reads (HF key names). */
  sanitize?(weights: Map<string, mx.Array>, config: Record<string, unknown>): Map<string, mx.Array>;
  /** mlx-lm's cast_predicate: false keeps a float tensor in its checkpoint dtype instead of the compute dtype. */
  castPredicate?(key: string): boolean;
  createModel(config: Record<string, unknown>, weights: WeightStore, ctx: ModelContext): LanguageModel;
  /** Context length the model was trained for (bounds max tokens). */
  contextLength(config: Record<string, unknown>): number;
}

export interface ModelContext {
  /** Device, dtype, streams and kernels chosen at load (src/mlx/backend.ts); the weight store builds layers from it. */
  backend: BackendProfile;
}

/**
 * Normalise config.json (both transformers spellings, config.ts), then parse it with a model's schema;
 * the error names the failing key path.
 */
export function parseConfig<T>(schema: v.GenericSchema<unknown, T>, raw: unknown, modelType: string, opts: NormalizeOptions = {}): T {
  const norm = typeof raw === "object" && raw !== null && !Array.isArray(raw) ? normalizeConfig(raw as Record<string, unknown>, opts) : raw;
  const r = v.safeParse(schema, norm);
  if (r.success) return r.output;
  const issue = r.issues[0];
  const path = issue ? v.getDotPath(issue) : null;
  throw new MlxkError("execution_error", `Invalid config.json for ${modelType}: ${path ?? "(root)"}: ${issue?.message ?? "invalid"}`);
}

/** Shorthands for config schemas. */
export const num = (d?: number) => (d === undefined ? v.number() : v.optional(v.number(), d));
export const int = (d?: number) => (d === undefined ? v.pipe(v.number(), v.integer()) : v.optional(v.pipe(v.number(), v.integer()), d));
export const bool = (d: boolean) => v.optional(v.boolean(), d);
/** A rope scaling block as config.ts leaves it (canonical rope_type, required keys checked), or null. */
export const ropeScaling = v.optional(v.nullable(v.looseObject({ rope_type: v.string() })), null);

const QuantEntry = v.looseObject({ group_size: v.optional(v.number()), bits: v.optional(v.number()), mode: v.optional(v.string()) });
type QuantEntry = v.InferOutput<typeof QuantEntry>;

/** The MLX `quantization` block: defaults plus per-module overrides (`{…}` or `false`). */
export class QuantConfig {
  constructor(
    readonly defaults: QuantParams,
    private readonly overrides: Map<string, QuantParams | false>,
  ) {}

  /** From config.json: `quantization` (MLX) or legacy `quantization_config` with quant_method mxfp4. */
  static from(config: Record<string, unknown>): QuantConfig | null {
    const q = config.quantization ?? config.quantization_config;
    if (q === undefined || q === null || typeof q !== "object") return null;
    const rec = q as Record<string, unknown>;
    if (rec.quant_method === "mxfp4") return new QuantConfig({ groupSize: 32, bits: 4, mode: "mxfp4" }, new Map());
    const top = v.safeParse(QuantEntry, rec);
    if (!top.success) throw new MlxkError("execution_error", "Invalid config.json: quantization");
    const defaults = toParams(top.output, { groupSize: 64, bits: 4, mode: "affine" });
    const overrides = new Map<string, QuantParams | false>();
    for (const [k0, val] of Object.entries(rec)) {
      // multimodal wrappers key their overrides by the checkpoint name; most models read them without the wrapper
      // prefix, qwen3_5 / gemma4 keep mlx-lm's `language_model.model.` names: both keys are set.
      const k = k0.replace(/^model\.language_model\./, "model.").replace(/^language_model\./, "");
      if (val === false) overrides.set(k, false).set(k0, false);
      else if (typeof val === "object" && val !== null) {
        const e = v.safeParse(QuantEntry, val);
        if (e.success) overrides.set(k, toParams(e.output, defaults)).set(k0, toParams(e.output, defaults));
      }
    }
    return new QuantConfig(defaults, overrides);
  }

  /** The K-quant override of the module at `path` (GGUF blocks kept packed: a weight and no scales), or null. */
  kquant(path: string): QuantParams | null {
    const o = this.overrides.get(path);
    return o && isKQuantMode(o.mode) ? o : null;
  }

  /** Params for the module at `path`, inferred from the packed shapes where the config is silent. */
  paramsFor(path: string, weight: mx.Array, scales: mx.Array): QuantParams {
    const o = this.overrides.get(path);
    if (o) return o;
    const fp = scales.dtype === mx.Dtype.uint8;
    const bits = fp ? 4 : this.defaults.bits;
    const inDims = (weight.shape.at(-1)! * 32) / bits;
    const groupSize = inDims / scales.shape.at(-1)!;
    const mode = fp ? (groupSize === 16 ? "nvfp4" : "mxfp4") : "affine";
    return { bits, groupSize, mode };
  }
}

function toParams(e: QuantEntry, d: QuantParams): QuantParams {
  const mode = (e.mode ?? d.mode) as QuantParams["mode"];
  return { groupSize: e.group_size ?? d.groupSize, bits: e.bits ?? d.bits, mode };
}

/**
 * Checkpoint tensors by HF key name. Modules take what they need; a missing tensor is an error
 * naming the key. Float tensors are already in the compute dtype.
 */
export class WeightStore {
  readonly #map: Map<string, mx.Array>;
  readonly #quant: QuantConfig | null;
  readonly #used = new Set<string>();
  readonly #packs: mx.Array[] = [];
  readonly #packLinears: boolean;

  /** `packLinears`: float Linears pack their weight on first use (Linear.packOnUse), the packs held here. */
  constructor(
    map: Map<string, mx.Array>,
    quant: QuantConfig | null,
    readonly backend: BackendProfile = defaultBackend(),
    opts: { packLinears?: boolean } = {},
  ) {
    this.#map = map;
    this.#quant = quant;
    this.#packLinears = opts.packLinears ?? false;
  }

  has(key: string): boolean {
    return this.#map.has(key);
  }

  get(key: string): mx.Array {
    const a = this.#map.get(key);
    if (!a) throw new MlxkError("execution_error", `Missing weight '${key}' in the checkpoint`);
    this.#used.add(key);
    return a;
  }

  opt(key: string): mx.Array | null {
    return this.has(key) ? this.get(key) : null;
  }

  #quantized(prefix: string): { weight: mx.Array; scales: mx.Array | null; biases: mx.Array | null; q: QuantParams } | null {
    if (!this.has(`${prefix}.scales`)) {
      const kq = this.has(`${prefix}.weight`) ? (this.#quant?.kquant(prefix) ?? null) : null;
      return kq ? { weight: this.get(`${prefix}.weight`), scales: null, biases: null, q: kq } : null;
    }
    const weight = this.get(`${prefix}.weight`);
    const scales = this.get(`${prefix}.scales`);
    const q = (this.#quant ?? new QuantConfig({ groupSize: 64, bits: 4, mode: "affine" }, new Map())).paramsFor(prefix, weight, scales);
    return { weight, scales, biases: this.opt(`${prefix}.biases`), q };
  }

  /** A Linear at `prefix` (quantized iff `<prefix>.scales` exists); bias taken when present. */
  linear(prefix: string): Linear {
    const bias = this.opt(`${prefix}.bias`);
    const qz = this.#quantized(prefix);
    if (qz) return new Linear({ weight: qz.weight, scales: qz.scales, biases: qz.biases, q: qz.q, bias });
    const l = new Linear({ weight: this.get(`${prefix}.weight`), bias });
    if (this.#packLinears) l.packOnUse = (p) => this.#packs.push(p);
    return l;
  }

  /** Linears of one input the backend may run side by side (q/k/v, gate/up); outputs in this order. */
  fanout(linears: readonly Linear[]): Fanout {
    return new Fanout(linears, this.backend);
  }

  /** A big projection (the output head) as the backend runs it. */
  projection(l: Linear): Projection {
    return projection(l, this.backend);
  }

  embedding(prefix: string): Embedding {
    const qz = this.#quantized(prefix);
    if (qz) return new Embedding({ weight: qz.weight, scales: qz.scales, biases: qz.biases, q: qz.q });
    return new Embedding({ weight: this.get(`${prefix}.weight`) });
  }

  /** Keys never taken by the model (extra tensors are tolerated, as in mlx-lm's sanitize + strict=False). */
  unused(): string[] {
    return [...this.#map.keys()].filter((k) => !this.#used.has(k));
  }

  /** Free tensors the model did not take. */
  disposeUnused(): void {
    for (const k of this.unused()) {
      this.#map.get(k)?.dispose();
      this.#map.delete(k);
    }
  }

  /** Every tensor held, with its key. */
  entries(): [string, mx.Array][] {
    return [...this.#map];
  }

  /** Every tensor held, and the Linears' packs made so far (to dispose the model). */
  all(): mx.Array[] {
    return [...this.#map.values(), ...this.#packs];
  }
}

/**
 * `show`: a model object plus metadata (config + safetensors headers), its file list, or its config.
 *
 * Exports: showModel(resolved, { hubDir, mode }) → ShowData, modelMetadata(view), fileType(rel),
 *          countParameters(tensors, quantization)
 */
import { MlxkError } from "../errors.ts";
import { ggufModelConfig } from "../gguf/config.ts";
import type { ModelObject, ShowData, ShowFile, ShowMetadata } from "../schemas/cli-output.ts";
import { chooseVariant, inspectGguf, variantContextLength } from "./gguf.ts";
import { ggufShowBlock, ggufShowMetadata } from "./gguf-show.ts";
import { contextLength } from "./detect.ts";
import type { Resolved } from "./resolve.ts";
import { type TensorInfo, readSafetensorsHeader } from "./safetensors.ts";
import { cacheModel } from "./scan.ts";
import { workspaceModel } from "./workspace.ts";
import { formatSize } from "./units.ts";
import { type SnapshotView, isObject } from "./snapshot.ts";

export function fileType(rel: string): ShowFile["type"] {
  const b = rel.slice(rel.lastIndexOf("/") + 1).toLowerCase();
  if (b.includes("tokenizer")) return "tokenizer";
  if (b.endsWith(".json")) return "config";
  if (/\.(safetensors|bin|gguf)$/.test(b)) return "weights";
  if (b.startsWith("readme")) return "readme";
  return "other";
}

type Quant = { bits: number; group_size: number };

function quantOf(q: unknown): Quant | null {
  if (!isObject(q) || typeof q.bits !== "number") return null;
  return { bits: q.bits, group_size: typeof q.group_size === "number" ? q.group_size : 64 };
}

/**
 * Logical parameter count. MLX quantized linears store `W` as uint32 words holding 32/bits values, plus
 * `scales`/`biases` (overhead, not parameters): count `W` as cols*32/bits, with per-layer bits from the
 * config when present, else derived from the scales' shape (in_features = scale cols * group_size).
 */
export function countParameters(tensors: Record<string, TensorInfo>, quantization: Record<string, unknown> | null): number {
  const global = quantOf(quantization);
  let total = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const prefix = name.endsWith(".weight") ? name.slice(0, -".weight".length) : null;
    const scales = prefix !== null ? tensors[`${prefix}.scales`] : undefined;
    if ((name.endsWith(".scales") || name.endsWith(".biases")) && tensors[name.replace(/\.(scales|biases)$/, ".weight")]?.dtype === "U32") continue;
    if (scales && (t.dtype === "U32" || t.dtype === "U8") && t.shape.length >= 1) {
      const wordBits = t.dtype === "U32" ? 32 : 8;
      const rows = t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      const q = quantOf(quantization?.[prefix!]) ?? global;
      const cols = t.shape[t.shape.length - 1]!;
      const inFeatures = q ? scales.shape[scales.shape.length - 1]! * q.group_size : cols * (wordBits / 4);
      total += rows * inFeatures;
      continue;
    }
    total += n;
  }
  return total;
}

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** Config facts + safetensors header facts; headers only, never tensor data. */
export function modelMetadata(view: SnapshotView): ShowMetadata | null {
  const config = view.readObject("config.json");
  if (!config) return null;
  const text = isObject(config.text_config) ? config.text_config : {};
  const pick = (k: string): number | null => num(config[k]) ?? num(text[k]);
  const q = isObject(config.quantization) ? config.quantization : isObject(config.quantization_config) ? config.quantization_config : null;
  const bits = num(q?.bits);
  let parameters: number | null = null;
  const dtypes = new Set<string>();
  const shards = view.files.filter((f) => f.rel.endsWith(".safetensors") && f.size > 8);
  if (shards.length > 0) {
    const tensors: Record<string, TensorInfo> = {};
    try {
      for (const f of shards) Object.assign(tensors, readSafetensorsHeader(f.path).tensors);
      for (const t of Object.values(tensors)) dtypes.add(t.dtype);
      parameters = countParameters(tensors, isObject(config.quantization) ? config.quantization : null);
    } catch {
      parameters = null;
    }
  }
  return {
    model_type: typeof config.model_type === "string" ? config.model_type : null,
    architecture: Array.isArray(config.architectures) && typeof config.architectures[0] === "string" ? config.architectures[0] : null,
    quantization: bits !== null ? `${bits}bit` : null,
    quantization_bits: bits,
    quantization_group_size: num(q?.group_size),
    quantization_mode: q ? (typeof q.mode === "string" ? q.mode : typeof q.quant_method === "string" ? q.quant_method : "affine") : null,
    context_length: contextLength(config),
    vocab_size: pick("vocab_size"),
    hidden_size: pick("hidden_size"),
    num_attention_heads: pick("num_attention_heads"),
    num_hidden_layers: pick("num_hidden_layers"),
    parameters,
    dtypes: [...dtypes].sort(),
  };
}

export type ShowMode = "metadata" | "files" | "config";

function fileList(view: SnapshotView): ShowFile[] {
  return view.files
    .map((f) => ({ name: f.rel, size: formatSize(Math.max(0, f.size)), size_bytes: Math.max(0, f.size), type: fileType(f.rel) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A GGUF repo: metadata and config from the header of the selected quant (`name:QUANT`, else the default). */
function showGguf(resolved: Resolved, model: ModelObject, view: SnapshotView, mode: ShowMode): ShowData {
  const ins = inspectGguf(view);
  const chosen = chooseVariant(ins, resolved.quant ?? null, resolved.name);
  const header = chosen.parts[0]?.header ?? null;
  const m: ModelObject = { ...model, context_length: variantContextLength(chosen) ?? model.context_length, quantization: null };
  const data: ShowData = { model: m, workspace_metadata: null, gguf: ggufShowBlock(ins, chosen) };
  if (mode === "files") {
    data.files = fileList(view);
    data.metadata = null;
  } else if (mode === "config") {
    data.config = header ? ggufModelConfig(header) : null;
    data.metadata = null;
  } else {
    data.metadata = ggufShowMetadata(chosen);
  }
  return data;
}

export function showModel(resolved: Resolved, opts: { hubDir: string; mode: ShowMode }): ShowData {
  const { model, report, sentinel } =
    resolved.kind === "path" ? workspaceModel(resolved.dir) : { ...cacheModel(opts.hubDir, resolved.name, { hash: resolved.hash }), sentinel: null };
  if (resolved.kind === "cache" && report.view === null) {
    throw new MlxkError("snapshots_not_found", `${resolved.name}: ${report.reason}`);
  }
  const view = report.view!;
  if (report.detection?.framework === "GGUF") return showGguf(resolved, model, view, opts.mode);
  if (resolved.quant) throw new MlxkError("ValidationError", `':${resolved.quant}' selects a GGUF quant, but '${resolved.name}' is not a GGUF repo`);
  const config = view.readObject("config.json");
  const quantization = config && isObject(config.quantization) ? config.quantization : null;
  const data: ShowData = { model: { ...model, quantization }, workspace_metadata: sentinel };
  if (opts.mode === "files") {
    data.files = fileList(view);
    data.metadata = null;
  } else if (opts.mode === "config") {
    data.config = config;
    data.metadata = null;
  } else {
    data.metadata = modelMetadata(view);
  }
  return data;
}

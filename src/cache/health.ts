/**
 * Health = integrity of the files (contract §4.1, first failure wins) + runtime compatibility (§4.2, only
 * when the files are fine). Offline and read-only.
 *
 * Exports:
 *   checkIntegrity(view, { vision, incompleteBlobs }) → { healthy, reason }
 *   checkRuntime(view, detection) → { runtime_compatible, reason }
 *   incompleteBlobs(repoDir) → names of blobs/*.incomplete
 *   repoHealth(repoDir, { name, hash?, healthOnly? }) → HealthReport  (what pull calls after a download)
 *   dirHealth(dir, { name }) → HealthReport                (a local model dir, e.g. an explicit path)
 *   HealthReport { healthy, reason, runtime_compatible, runtime_reason, hash, snapshotDir, view, detection }
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { SUPPORTED_MODEL_TYPES, isSupportedModelType } from "../models/supported.ts";
import { type Detection, detectModel } from "./detect.ts";
import { defaultVariant, ggufIntegrity, inspectGguf, variantRuntime } from "./gguf.ts";
import { readSafetensorsHeader } from "./safetensors.ts";
import { isCommitHash, selectSnapshot } from "./layout.ts";
import { type SnapshotView, isLfsPointer, isObject, openSnapshot } from "./snapshot.ts";

export interface IntegrityResult {
  healthy: boolean;
  reason: string;
}

export interface RuntimeResult {
  runtime_compatible: boolean;
  reason: string | null;
}

const SHARD_RE = /^model-(\d{5})-of-(\d{5})\.safetensors$/;
const WEIGHT_RE = /\.(safetensors|bin|gguf)$/i;
const PARTIAL_RE = /\.(partial|tmp|incomplete)$/i;
/** Tokenizer files that can stand in for tokenizer.json (SentencePiece, BPE vocab, tiktoken). */
const TOKENIZER_ALTERNATIVES = ["tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tekken.json", "spiece.model"];

function base(rel: string): string {
  return rel.slice(rel.lastIndexOf("/") + 1);
}

function list(items: string[], max = 5): string {
  const shown = items.slice(0, max).join(", ");
  return items.length > max ? `${shown} (+${items.length - max} more)` : shown;
}

/** `blobs/*.incomplete` of a repo: huggingface_hub's in-progress or interrupted downloads. */
export function incompleteBlobs(repoDir: string): string[] {
  try {
    return readdirSync(join(repoDir, "blobs")).filter((n) => n.endsWith(".incomplete"));
  } catch {
    return [];
  }
}

function checkConfig(view: SnapshotView): string | null {
  const r = view.readJson("config.json");
  if (!r.ok) {
    if (r.error === "missing") return "config.json missing";
    if (r.error === "unreadable") return "config.json could not be read";
    return "config.json contains invalid JSON";
  }
  if (!isObject(r.value) || Object.keys(r.value).length === 0) return "config.json is empty or invalid";
  return null;
}

/** Weights listed by an index: every referenced file must be present, non-empty and not an LFS pointer. */
function checkIndex(view: SnapshotView, indexRel: string, ext: string): string | null {
  const r = view.readJson(indexRel);
  if (!r.ok) return r.error === "unreadable" ? `${indexRel} could not be read` : "Invalid index file";
  const wm = isObject(r.value) ? r.value.weight_map : undefined;
  if (!isObject(wm) || Object.keys(wm).length === 0) return "Empty or invalid weight_map in index";
  const dir = indexRel.includes("/") ? indexRel.slice(0, indexRel.lastIndexOf("/") + 1) : "";
  const referenced = [...new Set(Object.values(wm).map(String))].sort();
  const missing = referenced.filter((s) => !view.has(dir + s));
  if (missing.length > 0) {
    // mlx-vlm #624: shards present under other names than the index says → the index is stale, not the download
    const refSet = new Set(referenced);
    const strays = view.files.filter((f) => !f.rel.includes("/") && f.rel.endsWith(ext) && !refSet.has(f.rel));
    if (strays.length > 0 && ext === ".safetensors") {
      return `Index/shard mismatch (mlx-vlm #624). Index references ${referenced.length} shards but found ${strays.length} different files. Fix: mlxk convert <model> <output> --repair-index`;
    }
    return `Missing weight shards: ${list(missing)}`;
  }
  const empty = referenced.filter((s) => view.byRel.get(dir + s)!.size === 0);
  if (empty.length > 0) return `Empty weight shards: ${list(empty)}`;
  const pointers = referenced.filter((s) => isLfsPointer(view, view.byRel.get(dir + s)!));
  if (pointers.length > 0) return `LFS pointers instead of files: ${list(pointers)}`;
  return null;
}

/** Weights without an index: a `model-NNNNN-of-TTTTT` set must be complete and must come with its index. */
function checkUnindexed(view: SnapshotView): string | null {
  const top = view.files.filter((f) => !f.rel.includes("/") && WEIGHT_RE.test(f.rel));
  const weights = top.length > 0 ? top : view.files.filter((f) => WEIGHT_RE.test(f.rel));
  if (weights.length === 0) return "No model weights found";
  const shards = weights.map((f) => SHARD_RE.exec(base(f.rel))).filter((m) => m !== null);
  if (shards.length > 0) {
    const totals = new Set(shards.map((m) => Number(m[2])));
    if (totals.size > 1) return "Inconsistent shard totals detected";
    const total = [...totals][0]!;
    const present = new Set(shards.map((m) => Number(m[1])));
    let have = 0;
    for (let i = 1; i <= total; i++) if (present.has(i)) have++;
    if (have < total) return `Missing shards by pattern: ${have}/${total} present`;
  }
  const empty = weights.filter((f) => f.size === 0).map((f) => f.rel);
  if (empty.length > 0) return `Empty weight files: ${list(empty)}`;
  if (shards.length > 1) return "Safetensors index missing for sharded model";
  return null;
}

function checkAuxiliary(view: SnapshotView, vision: boolean): string | null {
  if (vision) {
    const pre = ["preprocessor_config.json", "processor_config.json"].find((f) => view.has(f));
    if (!pre) return "Vision model missing preprocessor_config.json or processor_config.json";
    const r = view.readJson(pre);
    if (!r.ok) return `${pre} invalid JSON`;
    if (!isObject(r.value)) return `${pre} invalid`;
  }
  if (view.byRel.has("tokenizer_config.json")) {
    const r = view.readJson("tokenizer_config.json");
    if (!r.ok && r.error !== "missing") return "tokenizer_config.json contains invalid JSON";
    if (!TOKENIZER_ALTERNATIVES.some((f) => view.has(f)) && !view.files.some((f) => f.rel.endsWith(".tiktoken"))) {
      return "tokenizer_config.json present but tokenizer.json missing";
    }
  }
  return null;
}

/** Integrity of one snapshot/model dir. `incompleteBlobs` are the repo's `blobs/*.incomplete` (cache only). */
export function checkIntegrity(view: SnapshotView, opts: { vision: boolean; incompleteBlobs?: string[]; gguf?: boolean }): IntegrityResult {
  const fail = (reason: string): IntegrityResult => ({ healthy: false, reason });
  // Interrupted downloads first: they explain the missing/empty files the later rules would report.
  const inc = opts.incompleteBlobs ?? [];
  if (inc.length > 0) {
    return fail(`Download incomplete: ${inc.length} unfinished file(s) in blobs/ (.incomplete). Run 'mlxk pull' again to resume`);
  }
  const markers = view.files.filter((f) => PARTIAL_RE.test(f.rel)).map((f) => f.rel);
  if (markers.length > 0) return fail(`Partial download marker detected: ${list(markers)}`);
  // A GGUF file carries its config and tokenizer: its own rules replace the config/index/tokenizer ones.
  if (opts.gguf) return checkGgufRepo(view);
  const cfg = checkConfig(view);
  if (cfg) return fail(cfg);
  const dangling = view.files.filter((f) => f.size < 0).map((f) => f.rel);
  let indexed = false;
  for (const [idx, ext] of [
    ["model.safetensors.index.json", ".safetensors"],
    ["pytorch_model.bin.index.json", ".bin"],
  ] as const) {
    if (!view.byRel.has(idx)) continue;
    indexed = true;
    const r = checkIndex(view, idx, ext);
    if (r) return fail(r);
    break;
  }
  if (!indexed) {
    const r = checkUnindexed(view);
    if (r) return fail(r);
  }
  if (dangling.length > 0) return fail(`Files point to missing blobs: ${list(dangling)}`);
  const emptyJson = view.files.filter((f) => f.size === 0 && (f.rel.endsWith(".json") || f.rel.endsWith(".model"))).map((f) => f.rel);
  if (emptyJson.length > 0) return fail(`Empty files: ${list(emptyJson)}`);
  const pointers = view.files.filter((f) => isLfsPointer(view, f)).map((f) => f.rel);
  if (pointers.length > 0) return fail(`LFS pointers instead of files: ${list(pointers)}`);
  const aux = checkAuxiliary(view, opts.vision);
  if (aux) return fail(aux);
  return { healthy: true, reason: indexed ? "Multi-file model complete" : "Model is healthy" };
}

function checkGgufRepo(view: SnapshotView): IntegrityResult {
  const r = ggufIntegrity(view);
  if (r) return { healthy: false, reason: r };
  const dangling = view.files.filter((f) => f.size < 0).map((f) => f.rel);
  if (dangling.length > 0) return { healthy: false, reason: `Files point to missing blobs: ${list(dangling)}` };
  const pointers = view.files.filter((f) => isLfsPointer(view, f)).map((f) => f.rel);
  if (pointers.length > 0) return { healthy: false, reason: `LFS pointers instead of files: ${list(pointers)}` };
  return { healthy: true, reason: "Model is healthy" };
}

const LEGACY_RE = /^(weights\.\d+\.safetensors|pytorch_model-\d{5}(-of-\d{5})?\.safetensors)$/;
const MODERN_RE = /^(model\.safetensors|model-\d{5}-of-\d{5}\.safetensors)$/;

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16"]);

/**
 * A transformers-saved checkpoint (`save_pretrained`: float safetensors at the top level) mlxk loads as
 * mlx-lm does, renaming weights in the architecture's sanitize; null when it can, else why not. mlx-knife
 * refuses every PyTorch-framework repo; mlxk refuses only what it cannot load: .bin-only weights, quantized
 * transformers formats (GPTQ/AWQ/bitsandbytes/FP8…, except gpt-oss's MXFP4) and non-float tensors.
 */
function transformersCheckpointProblem(view: SnapshotView): string | null {
  const shards = view.files.filter((f) => !f.rel.includes("/") && f.rel.endsWith(".safetensors"));
  if (shards.length === 0) return "PyTorch .bin weights are not supported (mlxk needs safetensors; convert with mlx_lm.convert)";
  const qc = view.readObject("config.json")?.quantization_config;
  const method = isObject(qc) && typeof qc.quant_method === "string" ? qc.quant_method : qc ? "unknown" : null;
  if (method !== null && method !== "mxfp4") return `transformers quantization '${method}' is not supported (convert with mlx_lm.convert)`;
  try {
    const h = readSafetensorsHeader(shards[0]!.path);
    const bad = Object.entries(h.tensors).find(([, t]) => !FLOAT_DTYPES.has(t.dtype) && !(method === "mxfp4" && t.dtype === "U8"));
    if (bad) return `tensor '${bad[0]}' has dtype ${bad[1].dtype}; mlxk loads float (F32/F16/BF16) transformers checkpoints`;
  } catch (e) {
    return `unreadable safetensors header: ${e instanceof Error ? e.message : String(e)}`;
  }
  return null;
}

/** Can mlxk's own runtime load it? Gates in order; the first failing one is the reason. */
export function checkRuntime(view: SnapshotView, d: Detection): RuntimeResult {
  const no = (reason: string): RuntimeResult => ({ runtime_compatible: false, reason });
  if (d.framework === "GGUF") {
    // the variant a bare name opens; `name:QUANT` is checked again for that variant when it is opened
    const v = defaultVariant(inspectGguf(view));
    const why = v ? variantRuntime(v) : "No GGUF model file found";
    return why ? no(why) : { runtime_compatible: true, reason: null };
  }
  if (d.framework === "PyTorch") {
    const problem = transformersCheckpointProblem(view);
    if (problem) return no(`Incompatible framework: PyTorch (${problem})`);
  } else if (d.framework !== "MLX") return no(`Incompatible framework: ${d.framework}`);
  const names = view.files.filter((f) => !f.rel.includes("/")).map((f) => f.rel);
  if (names.some((n) => LEGACY_RE.test(n)) && !names.some((n) => MODERN_RE.test(n))) {
    return no("Legacy weight format (weights.NN.safetensors) is not supported; convert the model with a current mlx-lm");
  }
  if (!d.configModelType) return no("config.json missing model_type field");
  if (d.kind === "embedding") return no("Embedding models are not supported by mlxk (text generation only)");
  if (d.kind === "audio") return no("Audio models are not supported by mlxk (text generation only)");
  if (!isSupportedModelType(d.configModelType)) {
    return no(`model_type '${d.configModelType}' is not supported by mlxk (supported: ${[...SUPPORTED_MODEL_TYPES].sort().join(", ")})`);
  }
  return { runtime_compatible: true, reason: null };
}

export interface HealthReport {
  healthy: boolean;
  /** Integrity reason: why it is unhealthy, or "Model is healthy" / "Multi-file model complete". */
  reason: string;
  runtime_compatible: boolean;
  /** First failing runtime gate; null when runnable or when integrity already failed. */
  runtime_reason: string | null;
  /** Selected snapshot dir name when it is a 40-char commit, else null. */
  hash: string | null;
  snapshotDir: string | null;
  /** mtime of the selected snapshot (or model dir); null when there is none. */
  mtimeMs: number | null;
  view: SnapshotView | null;
  detection: Detection | null;
}

function fromView(
  view: SnapshotView,
  o: { name: string; incomplete: string[]; hash: string | null; mtimeMs: number | null; healthOnly?: boolean },
): HealthReport {
  const { name, incomplete, hash, mtimeMs } = o;
  // chat vs base never changes integrity or runtime gates, so health alone skips the chat-template files
  const detection = detectModel(view, name, { chatTemplate: !o.healthOnly });
  const integrity = checkIntegrity(view, {
    vision: detection.capabilities.includes("vision"),
    incompleteBlobs: incomplete,
    gguf: detection.framework === "GGUF",
  });
  const runtime = integrity.healthy ? checkRuntime(view, detection) : { runtime_compatible: false, reason: null };
  return {
    healthy: integrity.healthy,
    reason: integrity.reason,
    runtime_compatible: runtime.runtime_compatible,
    runtime_reason: runtime.reason,
    hash,
    snapshotDir: view.dir,
    mtimeMs,
    view,
    detection,
  };
}

/**
 * Health of a cached repo dir (`<hub>/models--org--name`): the snapshot `hash` (full dir name) if given,
 * else the one refs/main names, else the newest. `name` (org/name) feeds the name-based detection rules.
 */
/**
 * `healthOnly`: the caller uses only healthy/reason/runtime fields; `detection.kind` may then say "base" for a
 * model that only its chat template makes "chat".
 */
export function repoHealth(repoDir: string, opts: { name: string; hash?: string | null; healthOnly?: boolean }): HealthReport {
  const sel = selectSnapshot(repoDir, { hash: opts.hash });
  if (!sel.ok) {
    const none = { runtime_compatible: false, runtime_reason: null, hash: null, snapshotDir: null, mtimeMs: null, view: null, detection: null };
    return { healthy: false, reason: sel.reason, ...none };
  }
  const s = sel.snapshot;
  const hash = isCommitHash(s.hash) ? s.hash : null;
  return fromView(openSnapshot(s.dir), { name: opts.name, incomplete: incompleteBlobs(repoDir), hash, mtimeMs: s.mtimeMs, healthOnly: opts.healthOnly });
}

/** Health of a plain model dir (workspace or explicit path). */
export function dirHealth(dir: string, opts: { name: string }): HealthReport {
  let mtimeMs: number | null = null;
  try {
    mtimeMs = statSync(dir).mtimeMs;
  } catch {
    mtimeMs = null;
  }
  return fromView(openSnapshot(dir), { name: opts.name, incomplete: [], hash: null, mtimeMs });
}

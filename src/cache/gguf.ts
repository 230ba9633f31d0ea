/**
 * GGUF repos in the cache (`org/name-GGUF`): the model files of a snapshot grouped into variants (one per
 * quant; split files `-00001-of-0000N` are one variant), their integrity (magic, version, readable header,
 * every tensor's data inside its file, split sets complete), what mlxk can run, and the choice of a variant
 * by quant. Headers only: tensor data is never read. Each view is inspected once (memoized).
 *
 * Default variant when a name gives no `:QUANT`: the only one; else the first runnable one in
 * QUANT_PREFERENCE (Q4_K_M first, as Ollama and LM Studio default to it), else the first in that order.
 *
 * Exports: GgufVariant, GgufInspection, inspectGguf(view), quantOfFile(name), splitOf(name), chooseVariant(ins, quant, name),
 *          defaultVariant(ins), variantIntegrity(v), variantRuntime(v), variantModelType(v), variantContextLength(v),
 *          variantHasChatTemplate(v), variantLoadedBytes(v), ggufIntegrity(view), splitSiblings(path), isGgufModelFile(rel),
 *          QUANT_PREFERENCE
 */
import { existsSync } from "node:fs";
import { MlxkError } from "../errors.ts";
import { ggufModelType, ggufRuntimeProblem } from "../gguf/config.ts";
import { type GgufFile, metaNumber, metaString, readGguf } from "../gguf/reader.ts";
import type { FileEntry } from "./layout.ts";
import { type SnapshotView, isLfsPointer } from "./snapshot.ts";

export const QUANT_PREFERENCE = [
  "Q4_K_M",
  "Q4_K_S",
  "Q4_1",
  "Q4_0",
  "IQ4_XS",
  "IQ4_NL",
  "Q5_K_M",
  "Q5_K_S",
  "Q5_1",
  "Q5_0",
  "Q6_K",
  "Q8_0",
  "F16",
  "BF16",
  "F32",
];

const SPLIT_RE = /-(\d{5})-of-(\d{5})$/;
const QUANT_RE = /(?:^|[-_.])((?:UD-)?(?:I?Q\d(?:_[0-9A-Z]+)*|BF16|FP16|FP32|F16|F32))(?=$|[-_.])/gi;

function base(rel: string): string {
  return rel.slice(rel.lastIndexOf("/") + 1);
}

/** A `.gguf` that is a model: vision projectors (`mmproj-*`) and imatrix files are not. */
export function isGgufModelFile(rel: string): boolean {
  const b = base(rel).toLowerCase();
  return b.endsWith(".gguf") && !b.startsWith("mmproj") && !b.includes("imatrix");
}

/** `model-00002-of-00003.gguf` → { part: 2, total: 3, stem: "model" }; null for a single file. */
export function splitOf(name: string): { part: number; total: number; stem: string } | null {
  const stem = base(name).replace(/\.gguf$/i, "");
  const m = SPLIT_RE.exec(stem);
  return m ? { part: Number(m[1]), total: Number(m[2]), stem: stem.slice(0, m.index) } : null;
}

/** The quant a file name states (`…Q4_K_M.gguf` → "Q4_K_M", `…-f16.gguf` → "F16"), upper-cased; null when none. */
export function quantOfFile(name: string): string | null {
  const stem = (splitOf(name)?.stem ?? base(name).replace(/\.gguf$/i, "")).toUpperCase();
  let last: string | null = null;
  for (const m of stem.matchAll(QUANT_RE)) last = m[1]!;
  if (last === null) return null;
  return last.replace(/^FP/, "F");
}

export interface GgufPart {
  file: FileEntry;
  /** Parsed header, or null when it could not be read (then `error` says why). */
  header: GgufFile | null;
  error: string | null;
}

export interface GgufVariant {
  /** What `:QUANT` selects: the quant from the file name, else the file stem. */
  label: string;
  /** Path of the first part relative to the snapshot (what `show` and errors name). */
  rel: string;
  /** Parts present, in order (one for a single file). */
  parts: GgufPart[];
  /** Declared number of parts (1 for a single file). */
  total: number;
  bytes: number;
}

export interface GgufInspection {
  variants: GgufVariant[];
}

const inspected = new WeakMap<SnapshotView, GgufInspection>();

function readPart(view: SnapshotView, f: FileEntry): GgufPart {
  if (f.size < 0) return { file: f, header: null, error: "file points to a missing blob" };
  if (f.size === 0) return { file: f, header: null, error: "empty file" };
  if (isLfsPointer(view, f)) return { file: f, header: null, error: "Git LFS pointer instead of the file" };
  try {
    return { file: f, header: readGguf(f.path, { skipArrays: true }), error: null };
  } catch (e) {
    const why = e instanceof MlxkError && e.detail ? e.detail : e instanceof Error ? e.message : String(e);
    return { file: f, header: null, error: why };
  }
}

/** Variants of a view's GGUF model files (none when it has no `.gguf`). Memoized per view. */
export function inspectGguf(view: SnapshotView): GgufInspection {
  const hit = inspected.get(view);
  if (hit) return hit;
  const groups = new Map<string, { files: FileEntry[]; total: number }>();
  for (const f of view.files) {
    if (!isGgufModelFile(f.rel)) continue;
    const sp = splitOf(f.rel);
    const dir = f.rel.includes("/") ? f.rel.slice(0, f.rel.lastIndexOf("/") + 1) : "";
    const key = sp ? `${dir}${sp.stem}\u0000${sp.total}` : f.rel;
    const g = groups.get(key) ?? { files: [], total: sp?.total ?? 1 };
    g.files.push(f);
    groups.set(key, g);
  }
  const variants: GgufVariant[] = [];
  for (const g of groups.values()) {
    g.files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
    const first = g.files[0]!;
    const parts = g.files.map((f) => readPart(view, f));
    const stem = splitOf(first.rel)?.stem ?? base(first.rel).replace(/\.gguf$/i, "");
    variants.push({
      label: quantOfFile(first.rel) ?? stem,
      rel: first.rel,
      parts,
      total: g.total,
      bytes: g.files.reduce((s, f) => s + Math.max(0, f.size), 0),
    });
  }
  // two files with the same quant (e.g. in two folders): label them by path so each stays selectable
  const counts = new Map<string, number>();
  for (const v of variants) counts.set(v.label, (counts.get(v.label) ?? 0) + 1);
  for (const v of variants) if (counts.get(v.label)! > 1) v.label = v.rel.replace(SPLIT_RE_FILE, "").replace(/\.gguf$/i, "");
  variants.sort((a, b) => rank(a.label) - rank(b.label) || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  const out = { variants };
  inspected.set(view, out);
  return out;
}

function rank(label: string): number {
  const i = QUANT_PREFERENCE.indexOf(label.replace(/^UD-/, ""));
  return i < 0 ? QUANT_PREFERENCE.length : i;
}

/** Why a variant's files are broken, or null when complete (first failure wins). */
export function variantIntegrity(v: GgufVariant): string | null {
  if (v.total > 1) {
    const present = new Set(v.parts.map((p) => splitOf(p.file.rel)!.part));
    const missing: number[] = [];
    for (let i = 1; i <= v.total; i++) if (!present.has(i)) missing.push(i);
    if (missing.length > 0) {
      return `Split GGUF ${v.rel.replace(SPLIT_RE_FILE, "")} incomplete: ${v.total - missing.length}/${v.total} parts present (missing part ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""})`;
    }
  }
  for (const p of v.parts) {
    if (p.error !== null) return `GGUF file ${p.file.rel}: ${p.error}`;
    const h = p.header!;
    let end = h.dataOffset;
    let beyond: string | null = null;
    for (const t of h.tensors) {
      if (t.byteSize === null) continue;
      const e = t.fileOffset + t.byteSize;
      if (e > end) end = e;
      if (e > p.file.size && beyond === null) beyond = t.name;
    }
    if (beyond !== null) {
      return `GGUF file ${p.file.rel} is truncated: tensor data ends at byte ${end}, the file has ${p.file.size} (tensor ${beyond}). Run 'mlxk pull' again`;
    }
  }
  return null;
}

const SPLIT_RE_FILE = /-\d{5}-of-\d{5}\.gguf$/i;

/** Why mlxk cannot run a (healthy) variant, or null when it can. */
export function variantRuntime(v: GgufVariant): string | null {
  const types = new Set<string>();
  for (const p of v.parts) for (const t of p.header?.tensors ?? []) types.add(t.typeName);
  const first = v.parts[0]?.header;
  if (!first) return "GGUF header unreadable";
  return ggufRuntimeProblem(first, types);
}

/** The variant a name without `:QUANT` opens (see module doc); null when there is none. */
export function defaultVariant(ins: GgufInspection): GgufVariant | null {
  if (ins.variants.length <= 1) return ins.variants[0] ?? null;
  return ins.variants.find((v) => variantIntegrity(v) === null && variantRuntime(v) === null) ?? ins.variants[0]!;
}

/**
 * The variant `quant` names (case-insensitive; `Q4_K_M` also matches `UD-Q4_K_M`), or the default when
 * `quant` is null. Throws model_not_found listing the quants when there is no such variant or none at all.
 */
export function chooseVariant(ins: GgufInspection, quant: string | null, name: string): GgufVariant {
  const labels = ins.variants.map((v) => v.label);
  if (ins.variants.length === 0) throw new MlxkError("model_not_found", `'${name}' has no GGUF model file`);
  if (quant === null) return defaultVariant(ins)!;
  const q = quant.toUpperCase();
  const exact = ins.variants.filter((v) => v.label.toUpperCase() === q);
  // a quant named by several files (in two folders) is ambiguous; `Q4_K_XL` also finds `UD-Q4_K_XL`
  const byFile = ins.variants.filter((v) => (quantOfFile(v.rel) ?? "").toUpperCase() === q);
  const hits = exact.length === 1 ? exact : byFile.length > 0 ? byFile : exact;
  const loose = hits.length > 0 ? hits : ins.variants.filter((v) => v.label.toUpperCase().replace(/^UD-/, "") === q);
  if (loose.length === 1) return loose[0]!;
  if (loose.length > 1) {
    throw new MlxkError("ambiguous_match", `'${name}:${quant}' matches several GGUF files: ${loose.map((v) => v.rel).join(", ")}`, {
      extra: { matches: loose.map((v) => `${name}:${v.label}`) },
    });
  }
  throw new MlxkError("model_not_found", `'${name}' has no GGUF quant '${quant}' (available: ${labels.join(", ")})`, {
    extra: { available_quants: labels },
  });
}

/** HF `model_type` of a variant's architecture (general.architecture mapped), null when unreadable. */
export function variantModelType(v: GgufVariant): string | null {
  const h = v.parts[0]?.header;
  return h ? ggufModelType(h) : null;
}

/** `<arch>.context_length` of a variant, null when absent. */
export function variantContextLength(v: GgufVariant | null): number | null {
  const h = v?.parts[0]?.header;
  const arch = h ? metaString(h, "general.architecture") : undefined;
  const n = h && arch ? metaNumber(h, `${arch}.context_length`) : undefined;
  return n !== undefined && Number.isInteger(n) && n > 0 ? n : null;
}

/** The variant's metadata carries a chat template. */
export function variantHasChatTemplate(v: GgufVariant | null): boolean {
  const h = v?.parts[0]?.header;
  const t = h ? metaString(h, "tokenizer.chat_template") : undefined;
  return t !== undefined && t.trim() !== "";
}

/** Integrity of every GGUF variant of a view: the first broken one wins; null when all are complete. */
export function ggufIntegrity(view: SnapshotView): string | null {
  const ins = inspectGguf(view);
  if (ins.variants.length === 0) return "No GGUF model file found";
  for (const v of ins.variants) {
    const r = variantIntegrity(v);
    if (r) return r;
  }
  return null;
}

/**
 * All parts of the split set a GGUF file belongs to (`x-00002-of-00003.gguf` → parts 1..3 next to it), in
 * order; the file alone when it is not split. A missing part is a model_not_found error naming it.
 */
export function splitSiblings(path: string): string[] {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash + 1);
  const sp = splitOf(path);
  if (!sp) return [path];
  const ext = path.slice(path.lastIndexOf("."));
  const out: string[] = [];
  for (let i = 1; i <= sp.total; i++) {
    const p = `${dir}${sp.stem}-${String(i).padStart(5, "0")}-of-${String(sp.total).padStart(5, "0")}${ext}`;
    if (!existsSync(p)) throw new MlxkError("model_not_found", `Split GGUF incomplete: part ${i} of ${sp.total} missing (${p})`);
    out.push(p);
  }
  return out;
}

/**
 * Bytes a variant occupies once loaded (the server's memory check): 4-bit affine types 0.75 B per weight (codes +
 * f32 scale and bias per 32), 8-bit codes 1.25 B, and float types at 4 B (the default float32 compute dtype).
 */
export function variantLoadedBytes(v: GgufVariant): number {
  const per: Record<string, number> = { Q4_0: 0.75, Q4_1: 0.75, Q4_K: 0.75, Q5_0: 1.25, Q5_1: 1.25, Q5_K: 1.25, Q8_0: 1.25, IQ4_NL: 1.25, IQ4_XS: 1.25 };
  let total = 0;
  for (const p of v.parts) {
    for (const t of p.header?.tensors ?? []) total += t.dims.reduce((a, b) => a * b, 1) * (per[t.typeName] ?? 4);
  }
  return Math.round(total) || v.bytes;
}

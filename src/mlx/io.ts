/** Loading safetensors / GGUF files into lazy MLX arrays, and saving safetensors. */
import { Array, type TypedArray } from "./array.ts";
import { cstr, fail, handles, lib, OUT_PTR, outPtr, readCString } from "./ffi.ts";
import { currentStream as S } from "./stream.ts";

export interface SafetensorsFile {
  /** Lazy arrays (data is read on first eval), sorted by name. Dispose them (or load inside a scope). */
  weights: Map<string, Array>;
  /** The header's __metadata__ (e.g. {"format": "mlx"}). */
  metadata: Record<string, string>;
}

/** GGUF metadata values: numbers (scalars), typed arrays (numeric lists), strings, string lists. */
export type GgufValue = number | TypedArray | string | string[] | null;

export interface GgufFile {
  /**
   * Lazy arrays. Q4_0/Q4_1/Q8_0 tensors come back from MLX as affine-quantized triples:
   * `<base>.weight` (uint32 packed), `<base>.scales`, `<base>.biases` (group size 32; 4 or 8 bits),
   * where `<base>` is the tensor name without a trailing ".weight". (MLX 0.32.4 derives the companions'
   * names by cutting 7 characters, so a quantized tensor NOT named "*.weight" gets mangled companion names.)
   */
  weights: Map<string, Array>;
  metadata: Map<string, GgufValue>;
}

function readMap(op: string, path: string, loader: "mlxk_load_safetensors" | "mlxk_load_gguf"): number {
  const L = lib();
  if (L[loader](OUT_PTR as never, cstr(path) as never, S() as never) !== 0) fail(op);
  return outPtr();
}

function mapArrays(m: number): Map<string, Array> {
  const L = lib();
  const out = new Map<string, Array>();
  const n = L.mlxk_map_size(m as never);
  try {
    for (let i = 0; i < n; i++) {
      const key = readCString(L.mlxk_map_key(m as never, i) as number | null) ?? "";
      if (L.mlxk_map_array(OUT_PTR as never, m as never, i) !== 0) fail("load");
      out.set(key, new Array(outPtr()));
    }
  } catch (e) {
    for (const a of out.values()) a.dispose();
    throw e;
  }
  return out;
}

export function loadSafetensors(path: string): SafetensorsFile {
  const L = lib();
  const m = readMap("load_safetensors", path, "mlxk_load_safetensors");
  try {
    const weights = mapArrays(m);
    const metadata: Record<string, string> = {};
    const nm = L.mlxk_map_meta_size(m as never);
    for (let i = 0; i < nm; i++) {
      const k = readCString(L.mlxk_map_meta_key(m as never, i) as number | null);
      if (k !== null) metadata[k] = readCString(L.mlxk_map_meta_string(m as never, i) as number | null) ?? "";
    }
    return { weights, metadata };
  } finally {
    L.mlxk_map_free(m as never);
  }
}

export function loadGguf(path: string): GgufFile {
  const L = lib();
  const m = readMap("load_gguf", path, "mlxk_load_gguf");
  try {
    const weights = mapArrays(m);
    const metadata = new Map<string, GgufValue>();
    const nm = L.mlxk_map_meta_size(m as never);
    for (let i = 0; i < nm; i++) {
      const k = readCString(L.mlxk_map_meta_key(m as never, i) as number | null) ?? "";
      const kind = L.mlxk_map_meta_kind(m as never, i);
      if (kind === 2) metadata.set(k, readCString(L.mlxk_map_meta_string(m as never, i) as number | null));
      else if (kind === 3) {
        const n = L.mlxk_map_meta_strings_size(m as never, i);
        const list: string[] = [];
        for (let j = 0; j < n; j++) list.push(readCString(L.mlxk_map_meta_strings_at(m as never, i, j) as number | null) ?? "");
        metadata.set(k, list);
      } else if (kind === 1) {
        if (L.mlxk_map_meta_array(OUT_PTR as never, m as never, i) !== 0) fail("load_gguf");
        using a = new Array(outPtr());
        a.owner = null;
        metadata.set(k, a.ndim === 0 ? a.item() : a.toTypedArray());
      } else metadata.set(k, null);
    }
    return { weights, metadata };
  } finally {
    L.mlxk_map_free(m as never);
  }
}

/** Write arrays (evaluating them) and string metadata to a .safetensors file. */
export function saveSafetensors(path: string, arrays: Map<string, Array> | Record<string, Array>, metadata: Record<string, string> = {}): void {
  const entries = arrays instanceof Map ? [...arrays.entries()] : Object.entries(arrays);
  const keys = Buffer.from(entries.map(([k]) => `${k}\0`).join(""), "utf8");
  const meta = Object.entries(metadata);
  const metaBuf = Buffer.from(meta.map(([k, v]) => `${k}\0${v}\0`).join(""), "utf8");
  const hs = entries.map(([, a]) => a.handle);
  const rc = lib().mlxk_save_safetensors(cstr(path) as never, handles(hs) as never, (keys.length ? keys : Buffer.alloc(1)) as never,
    hs.length, (metaBuf.length ? metaBuf : Buffer.alloc(1)) as never, meta.length);
  if (rc !== 0) fail("save_safetensors");
}

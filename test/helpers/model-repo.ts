/** Fixture repos for the loopback Hub: a small healthy MLX model with real (pseudo-random) weight bytes. */
import { type FileContent, mlxModelFiles, safetensorsBytes } from "../support/hf-cache.ts";
import type { HubFile } from "./loopback-hub.ts";

/** Deterministic bytes (xorshift), so content is not trivially compressible or all zeros. */
export function pseudoRandomBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A safetensors file of about `bytes` bytes whose tensor data is pseudo-random. */
export function weightsBytes(bytes: number, seed = 1): Uint8Array {
  const n = Math.max(4, Math.floor(bytes / 4));
  const st = safetensorsBytes({ "model.embed_tokens.weight": { dtype: "F32", shape: [n] } });
  const data = pseudoRandomBytes(st.length - 8 - Number(new DataView(st.buffer).getBigUint64(0, true)), seed);
  st.set(data, st.length - data.length);
  return st;
}

function toBytes(c: FileContent): Uint8Array | string {
  if (typeof c === "string" || c instanceof Uint8Array) return c;
  if ("json" in c) return JSON.stringify(c.json, null, 2);
  throw new Error("unsupported fixture content");
}

/** config/tokenizer of the cache fixture model, weights of `weightBytes`, plus a README and a nested file. */
export function modelRepoFiles(opts: { weightBytes?: number; seed?: number; extra?: HubFile[] } = {}): HubFile[] {
  const base = mlxModelFiles();
  const files: HubFile[] = Object.entries(base).map(([path, c]) => ({ path, content: toBytes(c) }));
  const w = files.find((f) => f.path === "model.safetensors")!;
  w.content = weightsBytes(opts.weightBytes ?? 300_000, opts.seed ?? 1);
  files.push({ path: "README.md", content: "---\nlibrary_name: mlx\ntags: [mlx]\n---\n# test model\n" });
  files.push({ path: "extra/notes.txt", content: "nested file\n" });
  return [...files, ...(opts.extra ?? [])];
}

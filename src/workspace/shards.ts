/**
 * Safetensors shard sets as mlx-lm writes them: `model.safetensors`, or `model-0000i-of-0000N.safetensors` when
 * the tensors exceed one shard, plus `model.safetensors.index.json` (sorted weight_map, total_size) — and the
 * index rebuilt from the shards' own headers (`convert --repair-index`).
 *
 * Exports: planShards(entries, maxBytes) → names, rebuildIndex(dir) → index, writeIndex(dir, index)
 */
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensorsHeaderBytes } from "../cache/safetensors.ts";
import { MlxkError } from "../errors.ts";

export interface SafetensorsIndex {
  metadata: { total_size: number; [k: string]: unknown };
  weight_map: Record<string, string>;
}

/** Greedy in order, like mlx-lm's make_shards: a new shard starts when the next tensor would overflow this one. */
export function planShards(entries: { key: string; nbytes: number }[], maxBytes: number): { name: string; keys: string[] }[] {
  const groups: string[][] = [];
  let size = 0;
  for (const e of entries) {
    if (groups.length === 0 || size + e.nbytes > maxBytes) {
      groups.push([]);
      size = 0;
    }
    groups.at(-1)!.push(e.key);
    size += e.nbytes;
  }
  const n = groups.length;
  const pad = (i: number) => String(i).padStart(5, "0");
  return groups.map((keys, i) => ({ name: n > 1 ? `model-${pad(i + 1)}-of-${pad(n)}.safetensors` : "model.safetensors", keys }));
}

export function indexFor(shards: { name: string; keys: string[] }[], totalSize: number): SafetensorsIndex {
  const map: Record<string, string> = {};
  for (const s of shards) for (const k of s.keys) map[k] = s.name;
  const weight_map: Record<string, string> = {};
  for (const k of Object.keys(map).sort()) weight_map[k] = map[k]!;
  return { metadata: { total_size: totalSize }, weight_map };
}

export function writeIndex(dir: string, index: SafetensorsIndex): void {
  writeFileSync(join(dir, "model.safetensors.index.json"), `${JSON.stringify(index, null, 4)}\n`);
}

/**
 * The index the shards on disk actually describe: every top-level `model*.safetensors` file's tensors (from its
 * header, no tensor data read). A tensor in two shards is a conflict we cannot settle for the user.
 */
export function rebuildIndex(dir: string): SafetensorsIndex {
  const files = readdirSync(dir).filter((f) => /^model.*\.safetensors$/.test(f)).sort();
  if (files.length === 0) throw new MlxkError("InvalidArgumentError", `--repair-index: no model*.safetensors shards in ${dir}`);
  const map: Record<string, string> = {};
  let total = 0;
  for (const f of files) {
    const header = JSON.parse(readSafetensorsHeaderBytes(join(dir, f)).toString("utf8")) as Record<string, { data_offsets?: [number, number] }>;
    for (const [k, t] of Object.entries(header)) {
      if (k === "__metadata__") continue;
      if (map[k]) throw new MlxkError("CommandError", `--repair-index: tensor '${k}' is in both ${map[k]} and ${f}; remove the stray shard first`);
      map[k] = f;
      if (t.data_offsets) total += t.data_offsets[1] - t.data_offsets[0];
    }
  }
  const weight_map: Record<string, string> = {};
  for (const k of Object.keys(map).sort()) weight_map[k] = map[k]!;
  return { metadata: { total_size: total }, weight_map };
}

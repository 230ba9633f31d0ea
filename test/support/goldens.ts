/** The committed references of the tiny models (test/fixtures/goldens, made by scripts/gen-goldens*.{ts,py}). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TinyName } from "./tiny-models.ts";

export type Golden = { logits: number[][]; greedy: number[] } | { error: string };
export type Goldens = { prompt: number[]; models: Record<string, Golden> };
const read = (f: string) => JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/goldens", f), "utf8")) as Goldens;
/** mlx-lm 0.32.2's logits and greedy tokens. */
export const mlxLm = read("tiny-models.json");
/** transformers' (torch f32), where it ran. */
export const hf = read("transformers.json");

/** The reference of a model: transformers where it ran (every float model), else mlx-lm. */
export function reference(name: TinyName): { logits: number[][]; greedy: number[] } {
  const g = hf.models[name] ?? mlxLm.models[name];
  if (!g || "error" in g) throw new Error(`no golden for ${name}`);
  return g;
}

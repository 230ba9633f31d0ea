/**
 * What /v1/models reports for a model that is not a cache entry (a GGUF file or a directory given by path):
 * `created` from the file's mtime and the context length from the GGUF header, read once per file version.
 */
import { statSync } from "node:fs";
import { contextLength } from "../cache/detect.ts";
import { ggufModelConfig } from "../gguf/config.ts";
import { readGguf } from "../gguf/reader.ts";
import type { ModelTarget } from "./model-manager.ts";

const memo = new Map<string, { mtimeMs: number; facts: { created: number; contextLength: number | null } }>();

export function targetFacts(t: ModelTarget): { created: number; contextLength: number | null } {
  let mtimeMs = 0;
  try {
    mtimeMs = statSync(t.path).mtimeMs;
  } catch {
    return { created: 0, contextLength: t.contextLength };
  }
  const hit = memo.get(t.path);
  if (hit && hit.mtimeMs === mtimeMs) return hit.facts;
  let ctx = t.contextLength;
  if (ctx === null && t.path.toLowerCase().endsWith(".gguf")) {
    try {
      ctx = contextLength(ggufModelConfig(readGguf(t.path)));
    } catch {
      ctx = null; // an unreadable header fails the load with its own error; the listing stays up
    }
  }
  const facts = { created: Math.floor(mtimeMs / 1000), contextLength: ctx };
  memo.set(t.path, { mtimeMs, facts });
  return facts;
}

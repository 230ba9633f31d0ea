/**
 * Resolve a model spec for embedding (the CLI's resolver: cache names, workspaces, paths), refuse non-embedders
 * with `capability_mismatch`, load it, and stamp its portable identity: `org/name` (a workspace's sentinel
 * `source_repo`, else its dir name — never a path) and the content hash (snapshot commit or workspace `sha256:`).
 *
 * Exports: openEmbedder(spec, { env, cwd }) → OpenedEmbedder, queryPrompt(embedder, { query, instruct })
 */
import { basename } from "node:path";
import { readSentinel } from "../cache/workspace.ts";
import { locateModel } from "../engine/open.ts";
import type { Env } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { Embedder } from "./embedder.ts";

export interface OpenedEmbedder {
  embedder: Embedder;
  /** Resolved id (org/name or absolute path), as other commands report it. */
  id: string;
  dir: string;
  /** Portable name for output records. */
  model: string;
  contentHash: string | null;
}

export async function openEmbedder(spec: string, opts: { env?: Env; cwd?: string } = {}): Promise<OpenedEmbedder> {
  const src = locateModel(spec, { ...opts, purpose: "embed" });
  if (src.kind !== "dir") throw new MlxkError("capability_mismatch", `'${spec}' is a GGUF file; embeddings need a model dir with safetensors`, { extra: { param: "model" } });
  const { mlxAvailability } = await import("../mlx/ffi.ts");
  const avail = mlxAvailability(opts.env ?? process.env);
  if (!avail.available) throw new MlxkError("mlx_unavailable", `MLX is not available on this machine: ${avail.reason}`);
  const cached = !src.id.startsWith("/");
  const sentinel = cached ? null : readSentinel(src.path);
  const model = cached ? src.id : typeof sentinel?.source_repo === "string" && sentinel.source_repo ? sentinel.source_repo : basename(src.path);
  const contentHash = cached ? src.hash : typeof sentinel?.content_hash === "string" ? sentinel.content_hash : null;
  const embedder = await Embedder.load(src.path, { name: src.id, env: opts.env });
  return { embedder, id: src.id, dir: src.path, model, contentHash };
}

/**
 * The prompt for retrieval queries: `instruct` becomes Qwen3-Embedding's `Instruct: …\nQuery:` (decoders only);
 * `query` takes the model's own `query` prompt from config_sentence_transformers.json; `document` its `document`
 * prompt where it has a non-empty one (nomic-embed-text: `search_document: `), else none.
 */
export function queryPrompt(e: Embedder, o: { query?: boolean; document?: boolean; instruct?: string | null }): string | null {
  if (o.instruct !== undefined && o.instruct !== null) {
    if (e.kind !== "decoder") throw new MlxkError("InvalidArgumentError", "--instruct / instruct needs a decoder embedder (Qwen3-Embedding style); encoders take their own query prompt via --query / input_type", { extra: { param: "instruct" } });
    return `Instruct: ${o.instruct}\nQuery:`;
  }
  if (o.document && !o.query) return e.recipe.prompts.document || null;
  if (!o.query) return null;
  const p = e.recipe.prompts.query;
  if (p !== undefined) return p;
  if (e.kind === "decoder") return "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:";
  throw new MlxkError("InvalidArgumentError", "this model defines no query prompt (config_sentence_transformers.json prompts.query); embed the text as is", { extra: { param: "input_type" } });
}

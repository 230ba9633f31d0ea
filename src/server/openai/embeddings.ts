/**
 * POST /v1/embeddings, the pure part: request schema (OpenAI's fields plus mlxk's `input_type`, `instruct`,
 * `truncate`; anything else is a 400 naming it), input normalisation, and the response shape. Vectors go out as
 * float arrays or base64 of little-endian float32 (what the OpenAI SDKs decode).
 *
 * Exports: EmbeddingRequestSchema, EmbeddingRequest, embeddingInputs(body), toEmbeddingResponse(vectors, o)
 */
import * as v from "valibot";
import { badRequest } from "../errors.ts";

const tokenId = v.pipe(v.number(), v.integer(), v.minValue(0));
export const MAX_INPUTS = 2048;

export const EmbeddingRequestSchema = v.strictObject({
  model: v.pipe(v.string(), v.minLength(1)),
  input: v.union([v.string(), v.array(v.string()), v.array(tokenId), v.array(v.array(tokenId))]),
  encoding_format: v.optional(v.picklist(["float", "base64"]), "float"),
  dimensions: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  user: v.optional(v.string()),
  /** mlxk: `query` prepends the model's query prompt (retrieval); `document` (default) embeds as is. */
  input_type: v.optional(v.picklist(["query", "document"])),
  /** mlxk: a task instruction for decoder embedders (Qwen3-Embedding `Instruct: …\nQuery:`). */
  instruct: v.optional(v.string()),
  /** mlxk: cut over-long inputs to the model's limit instead of a 400. */
  truncate: v.optional(v.boolean()),
});
export type EmbeddingRequest = v.InferOutput<typeof EmbeddingRequestSchema>;

/** The inputs as texts or token-id lists; empty inputs are refused (OpenAI does too). */
export function embeddingInputs(body: EmbeddingRequest): (string | number[])[] {
  const inp = body.input;
  let list: (string | number[])[];
  if (typeof inp === "string") list = [inp];
  else if (inp.length === 0) throw badRequest("'input' must not be an empty array", "input", "invalid_value");
  else if (typeof inp[0] === "number") list = [inp as number[]];
  else list = inp as (string | number[])[];
  if (list.length > MAX_INPUTS) throw badRequest(`'input' has ${list.length} items; at most ${MAX_INPUTS} per request`, "input", "invalid_value");
  list.forEach((x, i) => {
    if (x.length === 0) throw badRequest(`'input[${i}]' is empty`, "input", "invalid_value");
  });
  return list;
}

function base64(vec: Float32Array): string {
  const le = new Uint8Array(vec.length * 4);
  const dv = new DataView(le.buffer);
  vec.forEach((x, i) => dv.setFloat32(i * 4, x, true));
  return Buffer.from(le).toString("base64");
}

export function toEmbeddingResponse(vectors: Float32Array[], o: { model: string; format: "float" | "base64"; promptTokens: number }) {
  return {
    object: "list" as const,
    data: vectors.map((vec, index) => ({ object: "embedding" as const, index, embedding: o.format === "base64" ? base64(vec) : Array.from(vec) })),
    model: o.model,
    usage: { prompt_tokens: o.promptTokens, total_tokens: o.promptTokens },
  };
}

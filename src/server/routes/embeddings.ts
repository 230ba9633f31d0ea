/**
 * POST /v1/embeddings (also without /v1): one resident embedder, loaded on first use and swapped when a request
 * names another. Work runs in the generation queue's turn, so MLX never runs two requests at once.
 */
import { Elysia } from "elysia";
import { MlxkError } from "../../errors.ts";
import type { OpenedEmbedder } from "../../embed/open.ts";
import { queryPrompt } from "../../embed/open.ts";
import { type RouteContext, readJson } from "../context.ts";
import { badRequest, parseBody } from "../errors.ts";
import { EmbeddingRequestSchema, embeddingInputs, toEmbeddingResponse } from "../openai/embeddings.ts";

export type EmbedderOpener = (spec: string) => Promise<OpenedEmbedder>;

/** Keeps the last embedder used (by model spec) and frees the previous one on a switch. */
export class ResidentEmbedder {
  private current: { spec: string; opened: OpenedEmbedder } | null = null;
  constructor(private readonly open: EmbedderOpener) {}

  async get(spec: string): Promise<OpenedEmbedder> {
    if (this.current?.spec === spec) return this.current.opened;
    this.dispose();
    const opened = await this.open(spec);
    this.current = { spec, opened };
    return opened;
  }

  dispose(): void {
    this.current?.opened.embedder[Symbol.dispose]();
    this.current = null;
  }
}

export function embeddingRoutes(ctx: RouteContext, resident: ResidentEmbedder) {
  const handler = async ({ request }: { request: Request }) => {
    const body = parseBody(EmbeddingRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const inputs = embeddingInputs(body);
    const release = await ctx.manager.queue.acquire(request.signal);
    try {
      const opened = await resident.get(body.model);
      const e = opened.embedder;
      if (body.dimensions !== undefined && body.dimensions !== e.dims && !e.recipe.matryoshka) {
        throw badRequest(`'dimensions': '${opened.model}' is not a Matryoshka model; it only outputs ${e.dims} dimensions`, "dimensions", "invalid_value");
      }
      if (body.instruct !== undefined && body.input_type === "document") throw badRequest("'instruct' applies to queries; drop it or set input_type to 'query'", "instruct", "invalid_value");
      const prompt = queryPrompt(e, { query: body.input_type === "query", document: body.input_type === "document", instruct: body.instruct ?? null });
      const { vectors, promptTokens } = e.embed(inputs, { prompt, truncate: body.truncate === true, dimensions: body.dimensions ?? null });
      return Response.json(toEmbeddingResponse(vectors, { model: body.model, format: body.encoding_format, promptTokens }));
    } catch (err) {
      // an unknown flag value from queryPrompt is a bad request, not a usage error of a CLI
      if (err instanceof MlxkError && err.type === "InvalidArgumentError") throw badRequest(err.message, typeof err.extra.param === "string" ? err.extra.param : null, "invalid_value");
      throw err;
    } finally {
      release();
    }
  };
  return new Elysia({ name: "embeddings" }).post("/v1/embeddings", handler, { parse: "none" }).post("/embeddings", handler, { parse: "none" });
}

/** POST /v1/completions: raw prompt, no chat template (legacy text completions). */
import { Elysia } from "elysia";
import { CompletionRequestSchema } from "../../schemas/openai.ts";
import { type RouteContext, readJson } from "../context.ts";
import { parseBody } from "../errors.ts";
import { fromCompletionRequest } from "../openai/convert.ts";
import { generateResponse } from "./generate.ts";

export function completionRoutes(ctx: RouteContext) {
  const handler = async ({ request }: { request: Request }) => {
    const body = parseBody(CompletionRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const { input, plan } = fromCompletionRequest(body);
    return generateResponse(ctx, request, { model: body.model, input, plan, shape: "text" });
  };
  return new Elysia({ name: "completions" }).post("/v1/completions", handler, { parse: "none" }).post("/completions", handler, { parse: "none" });
}

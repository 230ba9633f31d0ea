/** POST /v1/chat/completions (also without the /v1 prefix, as some clients call it). */
import { Elysia } from "elysia";
import { ChatCompletionRequestSchema } from "../../schemas/openai.ts";
import { type RouteContext, readJson } from "../context.ts";
import { parseBody } from "../errors.ts";
import { fromChatRequest } from "../openai/convert.ts";
import { generateResponse } from "./generate.ts";

export function chatRoutes(ctx: RouteContext) {
  const handler = async ({ request }: { request: Request }) => {
    const body = parseBody(ChatCompletionRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const { input, plan } = fromChatRequest(body);
    return generateResponse(ctx, request, { model: body.model, input, plan, shape: "chat" });
  };
  return new Elysia({ name: "chat" }).post("/v1/chat/completions", handler, { parse: "none" }).post("/chat/completions", handler, { parse: "none" });
}

/** POST /v1/messages and /v1/messages/count_tokens (Anthropic Messages API) over the shared run core. */
import { Elysia } from "elysia";
import { type RouteContext, readJson } from "../context.ts";
import { parseBody } from "../errors.ts";
import { logDone, machineEvents, openRun, respond } from "../run.ts";
import { namedEventFrame, streamResponse } from "../stream.ts";
import { CountTokensRequestSchema, fromMessagesRequest, MessageEvents, MessagesRequestSchema, newMessageId, toMessage, toMessages, toolFields } from "./convert.ts";
import { toAnthropicError } from "./errors.ts";

export function anthropicRoutes(ctx: RouteContext) {
  const messages = async ({ request }: { request: Request }) => {
    const body = parseBody(MessagesRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const plan = fromMessagesRequest(body);
    const run = await openRun(ctx, request, { model: body.model, ...plan.run, promptParam: "messages" });
    const id = newMessageId();
    return respond(run, {
      stream: plan.stream,
      whole: (out) => {
        logDone(ctx, run, out.done, { id, surface: "messages", stream: false });
        return Response.json(toMessage(id, run.lease.name, out));
      },
      streamed: () =>
        streamResponse(
          machineEvents(ctx, run, new MessageEvents(id, run.lease.name, run.promptTokens, run.cachedTokens), { id, surface: "messages" }),
          { contentType: "text/event-stream; charset=utf-8", frame: namedEventFrame, error: (e) => namedEventFrame(toAnthropicError(e).body) },
          { onCancel: run.abort, onClose: () => run.close() },
        ),
    });
  };

  // Counting needs the model's tokenizer and chat template, so it takes its turn like a generation (no tokens generated).
  const countTokens = async ({ request }: { request: Request }) => {
    const body = parseBody(CountTokensRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const input = toMessages(body);
    const tools = toolFields(body).tools;
    const lease = await ctx.manager.lease(ctx.manager.resolve(body.model), request.signal);
    try {
      return Response.json({ input_tokens: lease.engine.countPromptTokens(input, tools) });
    } finally {
      lease.release();
    }
  };

  return new Elysia({ name: "anthropic" })
    .post("/v1/messages", messages, { parse: "none" })
    .post("/v1/messages/count_tokens", countTokens, { parse: "none" });
}

/** POST /v1/responses (stateless OpenAI Responses API) over the shared run core. */
import { Elysia } from "elysia";
import { MlxkError } from "../../errors.ts";
import { type RouteContext, readJson } from "../context.ts";
import { parseBody, toHttpError } from "../errors.ts";
import { logDone, machineEvents, openRun, respond } from "../run.ts";
import { namedEventFrame, streamResponse } from "../stream.ts";
import { fromResponsesRequest, newResponseMeta, ResponseEvents, ResponsesRequestSchema, toLogprob, toResponse, type Logprob } from "./convert.ts";

export function responsesRoutes(ctx: RouteContext) {
  const handler = async ({ request }: { request: Request }) => {
    const body = parseBody(ResponsesRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const plan = fromResponsesRequest(body);
    const run = await openRun(ctx, request, { model: body.model, ...plan.run, promptParam: "input", maxTokensParam: "max_output_tokens" });
    const meta = newResponseMeta(run.lease.name, plan.echo);
    return respond(run, {
      stream: plan.stream,
      whole: (out) => {
        logDone(ctx, run, out.done, { id: meta.id, surface: "responses", stream: false });
        const logprobs = plan.run.topLogprobs !== undefined ? out.chunks.filter((c) => c.text !== "").map(toLogprob).filter((x): x is Logprob => x !== null) : [];
        return Response.json(toResponse(meta, { ...out, logprobs }));
      },
      streamed: () => {
        const ev = new ResponseEvents(meta);
        const error = (e: unknown) => {
          const err = toHttpError(e).body.error;
          return namedEventFrame(ev.error({ message: err.message, code: err.code, param: err.param }));
        };
        return streamResponse(
          machineEvents(ctx, run, ev, { id: meta.id, surface: "responses" }),
          { contentType: "text/event-stream; charset=utf-8", frame: namedEventFrame, error },
          { onCancel: run.abort, onClose: () => run.close() },
        );
      },
    });
  };
  // retrieving, cancelling or deleting a stored response: there is none to find
  const stored = ({ params }: { params: Record<string, string> }) => {
    throw new MlxkError("model_not_found", `Response '${params["*"]?.split("/")[0] ?? ""}' does not exist: this server is stateless and stores no responses`, {
      extra: { code: "response_not_stored" },
    });
  };
  return new Elysia({ name: "responses" })
    .post("/v1/responses", handler, { parse: "none" })
    .post("/responses", handler, { parse: "none" })
    .get("/v1/responses/*", stored)
    .delete("/v1/responses/*", stored)
    .post("/v1/responses/*", stored, { parse: "none" });
}

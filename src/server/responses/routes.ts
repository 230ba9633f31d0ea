/** POST /v1/responses (stateless OpenAI Responses API) over the shared run core. */
import { Elysia } from "elysia";
import { type RouteContext, readJson } from "../context.ts";
import { parseBody, toHttpError } from "../errors.ts";
import { collectRun, logDone, openRun, type Run } from "../run.ts";
import { namedEventFrame, streamResponse } from "../stream.ts";
import { fromResponsesRequest, newResponseMeta, ResponseEvents, type ResponseMeta, ResponsesRequestSchema, toLogprob, toResponse, type Logprob } from "./convert.ts";

async function* events(ctx: RouteContext, run: Run, meta: ResponseMeta, ev: ResponseEvents): AsyncGenerator<unknown, void, undefined> {
  yield* ev.start();
  for await (const e of run.events()) {
    if (e.type === "done") {
      logDone(ctx, run, e, { id: meta.id, surface: "responses", stream: true });
      if (e.finishReason === "cancelled") return;
      yield* ev.finish(e);
      return;
    }
    yield* ev.chunk(e);
  }
}

export function responsesRoutes(ctx: RouteContext) {
  const handler = async ({ request }: { request: Request }) => {
    const body = parseBody(ResponsesRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const plan = fromResponsesRequest(body);
    const run = await openRun(ctx, request, {
      model: body.model,
      input: plan.input,
      maxTokens: plan.maxTokens,
      sampling: plan.sampling,
      stop: [],
      topLogprobs: plan.topLogprobs,
      tools: plan.tools,
      promptParam: "input",
    });
    try {
      const meta = newResponseMeta(run.lease.name, plan.echo);
      if (!plan.stream) {
        try {
          const out = await collectRun(run);
          logDone(ctx, run, out.done, { id: meta.id, surface: "responses", stream: false });
          const logprobs = plan.topLogprobs !== undefined ? out.chunks.filter((c) => c.text !== "").map(toLogprob).filter((x): x is Logprob => x !== null) : [];
          return Response.json(toResponse(meta, { ...out, logprobs }));
        } finally {
          run.close();
        }
      }
      const ev = new ResponseEvents(meta);
      return streamResponse(
        events(ctx, run, meta, ev),
        {
          contentType: "text/event-stream; charset=utf-8",
          frame: namedEventFrame,
          error: (e) => {
            const err = toHttpError(e).body.error;
            return namedEventFrame(ev.error({ message: err.message, code: err.code, param: err.param }));
          },
        },
        { onCancel: run.abort, onClose: () => run.close() },
      );
    } catch (e) {
      run.close();
      throw e;
    }
  };
  return new Elysia({ name: "responses" }).post("/v1/responses", handler, { parse: "none" }).post("/responses", handler, { parse: "none" });
}

/**
 * The OpenAI side of generation (chat and text completions) over the shared run core (src/server/run.ts):
 * collect the answer or stream it as OpenAI chunks.
 */
import type { GenerateChunk, GenerateDone, GenerateRequest } from "../../engine/types.ts";
import type { RouteContext } from "../context.ts";
import {
  chatChunk,
  chatDelta,
  chatUsageChunk,
  newMeta,
  type Plan,
  type ResponseMeta,
  type TokenLp,
  textUsageChunk,
  toChatCompletion,
  toFinishReason,
  toTextCompletion,
  toUsage,
} from "../openai/convert.ts";
import { sseResponse } from "../openai/sse.ts";
import { type Collected, logDone, openRun, respond, type Run } from "../run.ts";

export type Shape = "chat" | "text";

/** Entry point of both completion routes. Errors before the first byte become proper HTTP errors. */
export async function generateResponse(
  ctx: RouteContext,
  request: Request,
  opts: { model: string | null | undefined; input: GenerateRequest["input"]; plan: Plan; shape: Shape },
): Promise<Response> {
  const { plan } = opts;
  const run = await openRun(ctx, request, {
    model: opts.model,
    input: opts.input,
    maxTokens: plan.maxTokens,
    sampling: plan.sampling,
    stop: plan.stop,
    topLogprobs: plan.topLogprobs,
    ...(plan.tools ? { tools: plan.tools } : {}),
    promptParam: opts.shape === "chat" ? "messages" : "prompt",
  });
  const meta = newMeta(opts.shape === "chat" ? "chatcmpl" : "cmpl", run.lease.name, ctx.fingerprint);
  return respond(run, {
    stream: plan.stream,
    whole: (out) => whole(ctx, run, meta, opts.shape, out),
    streamed: () => sseResponse(opts.shape === "chat" ? chatStream(ctx, run, meta, plan) : textStream(ctx, run, meta, plan), { onCancel: run.abort, onClose: () => run.close() }),
  });
}

/** Raw completions take no tools, so never end in tool_calls. */
function textFinish(r: GenerateDone["finishReason"]): "stop" | "length" {
  return r === "length" ? "length" : "stop";
}

function tokenLp(c: GenerateChunk): TokenLp | null {
  return c.logprob ? { token: c.logprob.token, logprob: c.logprob.logprob, top: c.logprob.top } : null;
}

function whole(ctx: RouteContext, run: Run, meta: ResponseMeta, shape: Shape, out: Collected): Response {
  const done = out.done;
  logDone(ctx, run, done, { id: meta.id, surface: shape, stream: false });
  const usage = toUsage(done.usage);
  const logprobs = run.req.req.topLogprobs !== undefined ? out.logprobs : null;
  // Raw completions have no reasoning field: the text stays as the model wrote it.
  const body =
    shape === "chat"
      ? toChatCompletion(meta, { text: out.text, reasoning: out.reasoning, toolCalls: out.toolCalls, finishReason: toFinishReason(done.finishReason), usage, logprobs })
      : toTextCompletion(meta, { text: out.rawText, finishReason: textFinish(done.finishReason), usage, logprobs });
  return Response.json(body);
}

async function* chatStream(ctx: RouteContext, run: Run, meta: ResponseMeta, plan: Plan): AsyncGenerator<unknown, void, undefined> {
  const includeUsage = plan.includeUsage;
  const wantLp = run.req.req.topLogprobs !== undefined;
  yield chatChunk(meta, { delta: { role: "assistant", content: "" }, includeUsage });
  for await (const ev of run.events()) {
    if (ev.type === "done") {
      logDone(ctx, run, ev, { id: meta.id, surface: "chat", stream: true });
      if (ev.finishReason === "cancelled") return;
      yield chatChunk(meta, { delta: {}, finishReason: toFinishReason(ev.finishReason), includeUsage });
      if (includeUsage) yield chatUsageChunk(meta, toUsage(ev.usage));
      return;
    }
    const lp = wantLp ? tokenLp(ev) : null;
    const delta = chatDelta(ev);
    if (delta || lp) yield chatChunk(meta, { delta: delta ?? { content: "" }, logprobs: lp ? [lp] : null, includeUsage });
  }
}

async function* textStream(ctx: RouteContext, run: Run, meta: ResponseMeta, plan: Plan): AsyncGenerator<unknown, void, undefined> {
  const includeUsage = plan.includeUsage;
  const wantLp = run.req.req.topLogprobs !== undefined;
  let offset = 0;
  for await (const ev of run.events()) {
    if (ev.type === "done") {
      logDone(ctx, run, ev, { id: meta.id, surface: "text", stream: true });
      if (ev.finishReason === "cancelled") return;
      yield toTextCompletion(meta, { text: "", finishReason: textFinish(ev.finishReason), usage: null, logprobs: null }, { chunk: true, includeUsage });
      if (includeUsage) yield textUsageChunk(meta, toUsage(ev.usage));
      return;
    }
    const lp = wantLp ? tokenLp(ev) : null;
    const text = ev.reasoning + ev.text;
    if (text !== "" || lp) {
      yield toTextCompletion(meta, { text, finishReason: null, usage: null, logprobs: lp ? [lp] : null, offset }, { chunk: true, includeUsage });
      offset += text.length;
    }
  }
}

/**
 * The part chat and text completions share: lease the model, check the prompt fits, run the engine and
 * either collect the answer or stream it. The lease is held until the last token is out (or the client left).
 */
import { Answer, chunksOf, collect as collectAnswer } from "../../engine/collect.ts";
import type { GenerateChunk, GenerateDone, GenerateRequest, PreparedRequest } from "../../engine/types.ts";
import { MlxkError } from "../../errors.ts";
import { type RouteContext, tick } from "../context.ts";
import type { Lease } from "../model-manager.ts";
import {
  chatChunk,
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
  chatDelta,
} from "../openai/convert.ts";
import { sseResponse } from "../openai/sse.ts";

export type Shape = "chat" | "text";

interface Run {
  lease: Lease;
  req: PreparedRequest;
  abort: AbortController;
  meta: ResponseMeta;
  started: number;
  /** Runs once: frees the queue slot and stops generation. */
  close: () => void;
  /** The error for a generation stopped from outside (timeout, shutdown, client gone). */
  stopped: () => MlxkError;
  reason: () => StopReason;
}

/** Why generation was stopped from outside the engine; null while nobody stopped it. */
type StopReason = "client" | "timeout" | "shutdown" | null;

function timeoutError(ms: number): MlxkError {
  return new MlxkError("gateway_timeout", `The request ran longer than the server's limit of ${ms / 1000} s (--request-timeout)`, {
    extra: { code: "request_timeout" },
  });
}

/** The error a stopped request ends with (the client-gone case is never seen by anyone but the log). */
function stoppedError(reason: StopReason, ctx: RouteContext): MlxkError {
  if (reason === "timeout") return timeoutError(ctx.requestTimeoutMs ?? 0);
  if (reason === "shutdown") return new MlxkError("server_shutdown", "Server is shutting down: the answer was cut off", { extra: { code: "server_shutdown" } });
  return cancelledByClient();
}

/**
 * The default max_tokens under --max-tokens-cap (the server default, else half the context, capped); asking past
 * the cap is a 400 naming the field, never silently shortened.
 */
function defaultMaxTokens(ctx: RouteContext, asked: number | null, contextLength: number): number {
  const cap = ctx.maxTokensCap;
  if (asked !== null && cap !== undefined && asked > cap) {
    throw new MlxkError("validation_error", `max_tokens ${asked} exceeds this server's limit of ${cap} (--max-tokens-cap)`, {
      extra: { param: "max_tokens", code: "invalid_value" },
    });
  }
  const fallback = ctx.maxTokens ?? (contextLength > 0 ? Math.floor(contextLength / 2) : 2048);
  return cap !== undefined ? Math.min(cap, fallback) : fallback;
}

/** Entry point of both completion routes. Errors before the first byte become proper HTTP errors. */
export async function generateResponse(
  ctx: RouteContext,
  request: Request,
  opts: { model: string; input: GenerateRequest["input"]; plan: Plan; shape: Shape },
): Promise<Response> {
  const target = ctx.manager.resolve(opts.model);
  const abort = new AbortController();
  let reason: StopReason = null;
  const stopFor = (r: Exclude<StopReason, null>) => {
    reason ??= r;
    abort.abort();
  };
  const onClientGone = () => stopFor("client");
  const onShutdown = () => stopFor("shutdown");
  request.signal.addEventListener("abort", onClientGone, { once: true });
  ctx.shutdown?.addEventListener("abort", onShutdown, { once: true });
  const timer = ctx.requestTimeoutMs ? setTimeout(() => stopFor("timeout"), ctx.requestTimeoutMs) : null;
  const detach = () => {
    if (timer) clearTimeout(timer);
    request.signal.removeEventListener("abort", onClientGone);
    ctx.shutdown?.removeEventListener("abort", onShutdown);
  };
  const started = performance.now();
  let lease: Lease;
  try {
    // the wait in the queue counts against --request-timeout too
    lease = await ctx.manager.lease(target, abort.signal);
  } catch (e) {
    detach();
    throw reason === "timeout" || reason === "shutdown" ? stoppedError(reason, ctx) : e;
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    detach();
    abort.abort();
    lease.release();
  };
  try {
    const engine = lease.engine;
    const contextLength = engine.info.contextLength;
    const req = engine.prepare(
      {
        input: opts.input,
        ...(opts.plan.maxTokens !== null ? { maxTokens: opts.plan.maxTokens } : {}),
        sampling: opts.plan.sampling,
        ...(opts.plan.stop.length > 0 ? { stop: opts.plan.stop } : {}),
        ...(opts.plan.topLogprobs !== undefined ? { topLogprobs: opts.plan.topLogprobs } : {}),
        ...opts.plan.tools,
        signal: abort.signal,
      },
      { defaultMaxTokens: defaultMaxTokens(ctx, opts.plan.maxTokens, contextLength) },
    );
    await engine.warm?.(req);
    const meta = newMeta(opts.shape === "chat" ? "chatcmpl" : "cmpl", lease.target.id, ctx.fingerprint);
    const run: Run = { lease, req, abort, meta, started, close, stopped: () => stoppedError(reason, ctx), reason: () => reason };
    if (!opts.plan.stream) {
      try {
        return await collect(ctx, run, opts.shape);
      } finally {
        close();
      }
    }
    const gen = opts.shape === "chat" ? chatStream(ctx, run, opts.plan) : textStream(ctx, run, opts.plan);
    return sseResponse(gen, { onCancel: () => stopFor("client"), onClose: close });
  } catch (e) {
    close();
    throw e;
  }
}

/** Raw completions take no tools, so never end in tool_calls. */
function textFinish(r: GenerateDone["finishReason"]): "stop" | "length" {
  return r === "length" ? "length" : "stop";
}

function tokenLp(c: GenerateChunk): TokenLp | null {
  return c.logprob ? { token: c.logprob.token, logprob: c.logprob.logprob, top: c.logprob.top } : null;
}

function logDone(ctx: RouteContext, run: Run, done: GenerateDone, stream: boolean): void {
  ctx.log("info", "completion", {
    model: run.lease.target.id,
    id: run.meta.id,
    stream,
    finish_reason: done.finishReason,
    prompt_tokens: done.usage.promptTokens,
    completion_tokens: done.usage.completionTokens,
    generation_tps: Math.round(done.timings.generationTps * 10) / 10,
    ms: Math.round(performance.now() - run.started),
  });
}

function cancelledByClient(): MlxkError {
  return new MlxkError("client_closed_request", "Request cancelled by the client", { extra: { code: "client_closed_request" } });
}

async function collect(ctx: RouteContext, run: Run, shape: Shape): Promise<Response> {
  const a = await collectAnswer(run.lease.engine.generate(run.req), { between: tick });
  const done = a.done;
  logDone(ctx, run, done, false);
  if (done.finishReason === "cancelled") throw run.stopped();
  const usage = toUsage(done.usage);
  const finishReason = toFinishReason(done.finishReason);
  const logprobs = run.req.req.topLogprobs !== undefined ? a.logprobs : null;
  const body =
    shape === "chat"
      ? toChatCompletion(run.meta, { text: a.text, reasoning: a.reasoning, toolCalls: a.toolCalls, finishReason, usage, logprobs })
      : // Raw completions have no reasoning field: the text stays as the model wrote it.
        toTextCompletion(run.meta, { text: a.reasoning + a.text, finishReason: textFinish(done.finishReason), usage, logprobs });
  return Response.json(body);
}

async function* chatStream(ctx: RouteContext, run: Run, plan: Plan): AsyncGenerator<unknown, void, undefined> {
  const includeUsage = plan.includeUsage;
  const wantLp = run.req.req.topLogprobs !== undefined;
  yield chatChunk(run.meta, { delta: { role: "assistant", content: "" }, includeUsage });
  // let the headers and the role chunk go out before prefill occupies the thread
  await tick();
  const a = new Answer();
  for await (const ev of chunksOf(run.lease.engine.generate(run.req), a, tick)) {
    const lp = wantLp ? tokenLp(ev) : null;
    const delta = chatDelta(ev);
    if (delta || lp) yield chatChunk(run.meta, { delta: delta ?? { content: "" }, logprobs: lp ? [lp] : null, includeUsage });
  }
  logDone(ctx, run, a.done, true);
  // the client is gone: nothing to send; a timeout or shutdown still tells the client why it ends
  if (a.done.finishReason === "cancelled") {
    if (run.reason() === "client" || run.reason() === null) return;
    throw run.stopped();
  }
  yield chatChunk(run.meta, { delta: {}, finishReason: toFinishReason(a.done.finishReason), includeUsage });
  if (includeUsage) yield chatUsageChunk(run.meta, toUsage(a.done.usage));
}

async function* textStream(ctx: RouteContext, run: Run, plan: Plan): AsyncGenerator<unknown, void, undefined> {
  const includeUsage = plan.includeUsage;
  const wantLp = run.req.req.topLogprobs !== undefined;
  let offset = 0;
  await tick(); // headers out before prefill occupies the thread
  const a = new Answer();
  for await (const ev of chunksOf(run.lease.engine.generate(run.req), a, tick)) {
    const lp = wantLp ? tokenLp(ev) : null;
    const text = ev.reasoning + ev.text;
    if (text !== "" || lp) {
      yield toTextCompletion(run.meta, { text, finishReason: null, usage: null, logprobs: lp ? [lp] : null, offset }, { chunk: true, includeUsage });
      offset += text.length;
    }
  }
  logDone(ctx, run, a.done, true);
  // the client is gone: nothing to send; a timeout or shutdown still tells the client why it ends
  if (a.done.finishReason === "cancelled") {
    if (run.reason() === "client" || run.reason() === null) return;
    throw run.stopped();
  }
  yield toTextCompletion(run.meta, { text: "", finishReason: textFinish(a.done.finishReason), usage: null, logprobs: null }, { chunk: true, includeUsage });
  if (includeUsage) yield textUsageChunk(run.meta, toUsage(a.done.usage));
}

/**
 * The part chat and text completions share: lease the model, check the prompt fits, run the engine and
 * either collect the answer or stream it. The lease is held until the last token is out (or the client left).
 */
import type { GenerateChunk, GenerateDone, GenerateRequest } from "../../engine/types.ts";
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
} from "../openai/convert.ts";
import { sseResponse } from "../openai/sse.ts";

export type Shape = "chat" | "text";

interface Run {
  lease: Lease;
  req: GenerateRequest;
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

/** max_tokens after the server's defaults and --max-tokens-cap; asking past the cap is a 400 naming the field. */
function effectiveMaxTokens(ctx: RouteContext, asked: number | null, contextLength: number): number {
  const cap = ctx.maxTokensCap;
  if (asked !== null && cap !== undefined && asked > cap) {
    throw new MlxkError("validation_error", `max_tokens ${asked} exceeds this server's limit of ${cap} (--max-tokens-cap)`, {
      extra: { param: "max_tokens", code: "invalid_value" },
    });
  }
  const fallback = ctx.maxTokens ?? (contextLength > 0 ? Math.floor(contextLength / 2) : 2048);
  return asked ?? (cap !== undefined ? Math.min(cap, fallback) : fallback);
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
    const promptTokens = engine.countPromptTokens(opts.input);
    if (contextLength > 0 && promptTokens >= contextLength) {
      throw new MlxkError("validation_error", `The prompt is ${promptTokens} tokens; the model's context is ${contextLength} tokens`, {
        extra: { param: opts.shape === "chat" ? "messages" : "prompt", code: "context_length_exceeded" },
      });
    }
    const maxTokens = effectiveMaxTokens(ctx, opts.plan.maxTokens, contextLength);
    const req: GenerateRequest = {
      input: opts.input,
      maxTokens,
      sampling: opts.plan.sampling,
      ...(opts.plan.stop.length > 0 ? { stop: opts.plan.stop } : {}),
      ...(opts.plan.topLogprobs !== undefined ? { topLogprobs: opts.plan.topLogprobs } : {}),
      signal: abort.signal,
    };
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
  let text = "";
  let reasoning = "";
  const lps: TokenLp[] = [];
  let done: GenerateDone | null = null;
  for await (const ev of run.lease.engine.generate(run.req)) {
    if (ev.type === "done") {
      done = ev;
      break;
    }
    // Raw completions have no reasoning field: the text stays as the model wrote it.
    if (shape === "text") text += ev.reasoning + ev.text;
    else {
      text += ev.text;
      reasoning += ev.reasoning;
    }
    const lp = tokenLp(ev);
    if (lp) lps.push(lp);
    await tick();
  }
  if (!done) throw new MlxkError("execution_error", "Generation ended without a result");
  logDone(ctx, run, done, false);
  if (done.finishReason === "cancelled") throw run.stopped();
  const usage = toUsage(done.usage);
  const finishReason = toFinishReason(done.finishReason);
  const logprobs = run.req.topLogprobs !== undefined ? lps : null;
  const body =
    shape === "chat"
      ? toChatCompletion(run.meta, { text, reasoning, finishReason, usage, logprobs })
      : toTextCompletion(run.meta, { text, finishReason, usage, logprobs });
  return Response.json(body);
}

async function* chatStream(ctx: RouteContext, run: Run, plan: Plan): AsyncGenerator<unknown, void, undefined> {
  const includeUsage = plan.includeUsage;
  const wantLp = run.req.topLogprobs !== undefined;
  yield chatChunk(run.meta, { delta: { role: "assistant", content: "" }, includeUsage });
  // let the headers and the role chunk go out before prefill occupies the thread
  await tick();
  for await (const ev of run.lease.engine.generate(run.req)) {
    if (ev.type === "done") {
      logDone(ctx, run, ev, true);
      // the client is gone: nothing to send; a timeout or shutdown still tells the client why it ends
      if (ev.finishReason === "cancelled") {
        if (run.reason() === "client" || run.reason() === null) return;
        throw run.stopped();
      }
      yield chatChunk(run.meta, { delta: {}, finishReason: toFinishReason(ev.finishReason), includeUsage });
      if (includeUsage) yield chatUsageChunk(run.meta, toUsage(ev.usage));
      return;
    }
    const lp = wantLp ? tokenLp(ev) : null;
    if (ev.text !== "" || ev.reasoning !== "" || lp) {
      const delta = { ...(ev.reasoning !== "" ? { reasoning_content: ev.reasoning } : {}), ...(ev.text !== "" || !ev.reasoning ? { content: ev.text } : {}) };
      yield chatChunk(run.meta, { delta, logprobs: lp ? [lp] : null, includeUsage });
    }
    await tick();
  }
  throw new MlxkError("execution_error", "Generation ended without a result");
}

async function* textStream(ctx: RouteContext, run: Run, plan: Plan): AsyncGenerator<unknown, void, undefined> {
  const includeUsage = plan.includeUsage;
  const wantLp = run.req.topLogprobs !== undefined;
  let offset = 0;
  await tick(); // headers out before prefill occupies the thread
  for await (const ev of run.lease.engine.generate(run.req)) {
    if (ev.type === "done") {
      logDone(ctx, run, ev, true);
      // the client is gone: nothing to send; a timeout or shutdown still tells the client why it ends
      if (ev.finishReason === "cancelled") {
        if (run.reason() === "client" || run.reason() === null) return;
        throw run.stopped();
      }
      yield toTextCompletion(run.meta, { text: "", finishReason: toFinishReason(ev.finishReason), usage: null, logprobs: null }, { chunk: true, includeUsage });
      if (includeUsage) yield textUsageChunk(run.meta, toUsage(ev.usage));
      return;
    }
    const lp = wantLp ? tokenLp(ev) : null;
    const text = ev.reasoning + ev.text;
    if (text !== "" || lp) {
      yield toTextCompletion(run.meta, { text, finishReason: null, usage: null, logprobs: lp ? [lp] : null, offset }, { chunk: true, includeUsage });
      offset += text.length;
    }
    await tick();
  }
  throw new MlxkError("execution_error", "Generation ended without a result");
}

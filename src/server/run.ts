/**
 * The part every generating surface shares (OpenAI chat/completions, Responses, Anthropic Messages, Ollama):
 * resolve the served model, lease it, check the prompt fits, pick the token limit, and run the engine with
 * cancellation and failure reporting. Surfaces only convert their request into a RunSpec and the events
 * into their wire format. The lease is held until the last token is out (or the client left).
 */
import { Answer, chunksOf, type TokenLp } from "../engine/collect.ts";
import type { GenerateChunk, GenerateDone, GenerateEvent, GenerateRequest, PreparedRequest, SamplingParams, ToolCall } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import { type RouteContext, tick } from "./context.ts";
import type { Lease, ReleaseOptions } from "./model-manager.ts";

export interface RunSpec {
  /** The request's model name; null/undefined/"" = the served model. */
  model: string | null | undefined;
  input: GenerateRequest["input"];
  /** Null = the server default (--max-tokens, else half the context). */
  maxTokens: number | null;
  sampling: SamplingParams;
  stop: string[];
  topLogprobs?: number;
  /** Idle time of the model after this request (Ollama's keep_alive); undefined = server default. */
  keepAliveMs?: number | null;
  /** Caps the context below the model's (Ollama's num_ctx); never reloads. */
  contextLimit?: number;
  /** The request field holding the prompt, for the context-length error. */
  promptParam: string;
  /** The request field holding the token limit, for the --max-tokens-cap error. @default "max_tokens" */
  maxTokensParam?: string;
  /** Tool calling and enforced output (tools, toolChoice, parallelToolCalls, constraint). */
  tools?: Pick<GenerateRequest, "tools" | "toolChoice" | "parallelToolCalls" | "constraint">;
}

export interface Run {
  lease: Lease;
  /** Prompt rendered once, context checked, token limit settled (engine.prepare). */
  req: PreparedRequest;
  promptTokens: number;
  /** Prompt tokens the prompt cache holds for this request as it starts (undefined: cache off); the done event has the exact count. */
  cachedTokens?: number;
  started: number;
  /** The engine's events; a failure is reported to the manager (poisoned-backend rule). */
  events: () => AsyncGenerator<GenerateEvent, void, undefined>;
  /** Stop generation now (client gone). */
  abort: () => void;
  /** Runs once: stops generation and frees the queue slot. */
  close: (opts?: ReleaseOptions) => void;
}

export function cancelledByClient(): MlxkError {
  return new MlxkError("client_closed_request", "Request cancelled by the client", { extra: { code: "client_closed_request" } });
}

/** Why generation was stopped from outside the engine; null while nobody stopped it. */
type StopReason = "client" | "timeout" | "shutdown" | null;

function stoppedError(reason: StopReason, ctx: RouteContext): MlxkError {
  if (reason === "timeout") {
    return new MlxkError("gateway_timeout", `The request ran longer than the server's limit of ${(ctx.requestTimeoutMs ?? 0) / 1000} s (--request-timeout)`, {
      extra: { code: "request_timeout" },
    });
  }
  if (reason === "shutdown") return new MlxkError("server_shutdown", "Server is shutting down: the answer was cut off", { extra: { code: "server_shutdown" } });
  return cancelledByClient();
}

/** Lease the model and prepare the engine request. Errors here come before the first byte (proper HTTP errors). */
export async function openRun(ctx: RouteContext, request: Request, spec: RunSpec): Promise<Run> {
  const resolved = ctx.manager.resolve(spec.model);
  const cap = ctx.maxTokensCap;
  if (spec.maxTokens !== null && cap !== undefined && spec.maxTokens > cap) {
    const param = spec.maxTokensParam ?? "max_tokens";
    throw new MlxkError("validation_error", `${param} ${spec.maxTokens} exceeds this server's limit of ${cap} (--max-tokens-cap)`, { extra: { param, code: "invalid_value" } });
  }
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
    lease = await ctx.manager.lease(resolved, abort.signal);
  } catch (e) {
    detach();
    throw reason === "timeout" || reason === "shutdown" ? stoppedError(reason, ctx) : e;
  }
  let closed = false;
  let failure: unknown;
  let unreserve: (() => void) | null = null;
  const close = (opts: ReleaseOptions = {}) => {
    if (closed) return;
    closed = true;
    detach();
    abort.abort();
    unreserve?.();
    lease.release({ keepAliveMs: spec.keepAliveMs, ...opts, ...(failure !== undefined ? { error: failure } : {}) });
  };
  try {
    const engine = lease.engine;
    const modelContext = engine.info.contextLength;
    const serverDefault = ctx.maxTokens ?? (modelContext > 0 ? Math.floor(modelContext / 2) : 2048);
    const fallback = cap !== undefined ? Math.min(cap, serverDefault) : serverDefault;
    const req = engine.prepare(
      {
        input: spec.input,
        ...(spec.maxTokens !== null ? { maxTokens: spec.maxTokens } : {}),
        sampling: spec.sampling,
        ...(spec.stop.length > 0 ? { stop: spec.stop } : {}),
        ...(spec.topLogprobs !== undefined ? { topLogprobs: spec.topLogprobs } : {}),
        ...spec.tools,
        signal: abort.signal,
      },
      { defaultMaxTokens: fallback },
    );
    // compile what the decoder must enforce before the first byte: a schema it rejects stays a 400, never a broken stream
    await engine.warm?.(req);
    const promptTokens = req.ids.length;
    // A smaller context for this request (Ollama's num_ctx) bounds prompt and answer without reloading the model.
    if (spec.contextLimit !== undefined && spec.contextLimit < modelContext) {
      if (promptTokens >= spec.contextLimit) {
        throw new MlxkError("context_length_exceeded", `The prompt is ${promptTokens} tokens; the requested context (num_ctx) is ${spec.contextLimit} tokens`, {
          extra: { param: spec.promptParam, prompt_tokens: promptTokens, context_length: spec.contextLimit },
        });
      }
      req.maxTokens = Math.max(1, Math.min(req.maxTokens, spec.contextLimit - promptTokens));
    }
    // the KV memory this request needs beside the running ones, or a 503 now (never an out-of-memory crash later)
    unreserve = engine.reserve?.(req) ?? null;
    async function* events(): AsyncGenerator<GenerateEvent, void, undefined> {
      await tick(); // headers and any first frame go out before prefill occupies the thread
      let end: GenerateDone | null = null;
      try {
        for await (const ev of engine.generate(req)) {
          if (ev.type === "done") {
            end = ev;
            break;
          }
          yield ev;
          await tick();
        }
      } catch (e) {
        failure = e;
        throw e;
      }
      if (!end) throw new MlxkError("execution_error", "Generation ended without a result");
      // stopped by a timeout or shutdown: the client is still there and is told why (an error, or an error frame)
      if (end.finishReason === "cancelled" && (reason === "timeout" || reason === "shutdown")) throw stoppedError(reason, ctx);
      yield end;
    }
    const cachedTokens = engine.cachedPrefix?.(req);
    return { lease, req, promptTokens, ...(cachedTokens !== undefined ? { cachedTokens } : {}), started, events, abort: () => stopFor("client"), close };
  } catch (e) {
    close();
    throw e;
  }
}

/** The one completion log line of every surface. */
export function logDone(ctx: RouteContext, run: Run, done: GenerateDone, fields: { id: string; surface: string; stream: boolean }): void {
  ctx.log("info", "completion", {
    model: run.lease.target.id,
    ...fields,
    finish_reason: done.finishReason,
    prompt_tokens: done.usage.promptTokens,
    completion_tokens: done.usage.completionTokens,
    generation_tps: Math.round(done.timings.generationTps * 10) / 10,
    ms: Math.round(performance.now() - run.started),
  });
}

/** Collected answer of a non-streamed request (the engine's one collecting loop, plus what surfaces report). */
export interface Collected {
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  logprobs: TokenLp[];
  /** Reasoning and answer as the model wrote them (raw completions). */
  rawText: string;
  /** Chunks with reasoning text (one per token): an honest reasoning-token count. */
  reasoningTokens: number;
  done: GenerateDone;
  chunks: GenerateChunk[];
}

/** Run to the end and gather the answer; a cancelled run is a client_closed_request error. */
export async function collectRun(run: Run): Promise<Collected> {
  const answer = new Answer();
  let rawText = "";
  let reasoningTokens = 0;
  const chunks: GenerateChunk[] = [];
  for await (const c of chunksOf(run.events(), answer)) {
    rawText += c.reasoning + c.text;
    if (c.reasoning !== "") reasoningTokens++;
    chunks.push(c);
  }
  const done = answer.done;
  if (done.finishReason === "cancelled") throw cancelledByClient();
  return { text: answer.text, reasoning: answer.reasoning, toolCalls: answer.toolCalls, logprobs: answer.logprobs, rawText, reasoningTokens, done, chunks };
}

/** A surface's streamed-event state machine: opening events, events per engine chunk, closing events. */
export interface EventMachine {
  start(): unknown[];
  chunk(c: GenerateChunk): unknown[];
  finish(done: GenerateDone): unknown[];
}

/** Drive a surface's event machine over the run (named-event SSE surfaces); a cancelled run just ends. */
export async function* machineEvents(ctx: RouteContext, run: Run, m: EventMachine, log: { id: string; surface: string }): AsyncGenerator<unknown, void, undefined> {
  yield* m.start();
  for await (const e of run.events()) {
    if (e.type === "done") {
      logDone(ctx, run, e, { ...log, stream: true });
      if (e.finishReason === "cancelled") return;
      yield* m.finish(e);
      return;
    }
    yield* m.chunk(e);
  }
}

/**
 * The tail every route shares: a whole answer (collected, then `whole` shapes it; the lease is freed here) or a
 * stream (`stream` builds the response; the stream frees the lease when it ends). Errors before the first byte
 * free the lease and propagate as HTTP errors.
 */
export async function respond(run: Run, opts: { stream: boolean; whole: (out: Collected) => Response; streamed: () => Response }): Promise<Response> {
  try {
    if (opts.stream) return opts.streamed();
    try {
      return opts.whole(await collectRun(run));
    } finally {
      run.close();
    }
  } catch (e) {
    run.close();
    throw e;
  }
}

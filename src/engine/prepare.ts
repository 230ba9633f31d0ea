/**
 * The shared tail of every Engine's prepare(): the one context-length check (error type
 * `context_length_exceeded`, naming both sizes) and the one max-tokens policy of run and server.
 */
import { MlxkError } from "../errors.ts";
import { checkSchema } from "../generate/json-schema-check.ts";
import { checkToolRequest, grammarFor } from "./tools.ts";
import type { GenerateRequest, PreparedRequest, PrepareOptions } from "./types.ts";

/** Tools and constraints a request carries: a 400 naming the field for anything that cannot be honoured. */
export function checkRequest(req: GenerateRequest): void {
  checkToolRequest(req);
  const grammar = grammarFor(req);
  if (grammar?.kind === "schema") checkSchema(grammar.schema, grammar.param);
  if (grammar && (req.stop?.length ?? 0) > 0) {
    // A stop string would cut the enforced JSON short: the guarantee could not be kept.
    throw new MlxkError("validation_error", "'stop' cannot be combined with enforced output (response_format json, or a forced tool call): it could cut the JSON short", {
      extra: { param: "stop", code: "unsupported_parameter" },
    });
  }
}

/**
 * Checks the request (checkRequest), then: max tokens = the request's limit, else the caller's default (server: --max-tokens or context/2),
 * else the whole remaining context; never more than the context leaves, never less than 1.
 */
export function settle(req: GenerateRequest, prompt: string, ids: number[], contextLength: number, opts: PrepareOptions = {}): PreparedRequest {
  checkRequest(req);
  if (contextLength > 0 && ids.length >= contextLength) {
    throw new MlxkError(
      "context_length_exceeded",
      `The prompt is ${ids.length} tokens; the model's context is ${contextLength} tokens. Shorten the prompt or the chat history.`,
      { extra: { param: "prompt" in req.input ? "prompt" : "messages", prompt_tokens: ids.length, context_length: contextLength } },
    );
  }
  const remaining = contextLength > 0 ? contextLength - ids.length : Number.MAX_SAFE_INTEGER;
  const maxTokens = Math.max(1, Math.min(req.maxTokens ?? opts.defaultMaxTokens ?? remaining, remaining));
  return { prepared: true, req, prompt, ids, maxTokens };
}

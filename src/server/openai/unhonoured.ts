/**
 * Chat request fields this server cannot honour. The request schema is loose (clients send many harmless
 * extras such as `user` or `metadata`), so fields that would change the answer are refused here by name.
 */
import { badRequest } from "../errors.ts";

function present(v: unknown): boolean {
  return v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0);
}

/** Throws a 400 naming the first field that asks for something the server cannot do. */
export function rejectUnhonoured(body: Record<string, unknown>): void {
  if (present(body.functions)) throw badRequest("Parameter 'functions' (legacy function calling) is not supported: send 'tools' instead", "functions");
  if (present(body.function_call) && body.function_call !== "none") {
    throw badRequest("Parameter 'function_call' (legacy function calling) is not supported: send 'tool_choice' instead", "function_call");
  }
  if (present(body.audio)) throw badRequest("Parameter 'audio' is not supported: this server answers with text only", "audio");
  const modalities = body.modalities;
  if (present(modalities) && !(Array.isArray(modalities) && modalities.every((m) => m === "text"))) {
    throw badRequest("Parameter 'modalities' may only be [\"text\"]: this server answers with text only", "modalities");
  }
  if (present(body.prediction)) throw badRequest("Parameter 'prediction' (predicted outputs) is not supported by this server", "prediction");
  if (present(body.reasoning_effort)) {
    throw badRequest(
      "Parameter 'reasoning_effort' is not supported; for models whose template has a thinking switch send chat_template_kwargs: {\"enable_thinking\": false}",
      "reasoning_effort",
    );
  }
  if (present(body.web_search_options)) throw badRequest("Parameter 'web_search_options' is not supported: this server has no web search", "web_search_options");
}

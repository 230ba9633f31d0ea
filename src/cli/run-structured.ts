/**
 * `mlxk run --tools FILE [--tool-choice C]` and `--json-schema FILE`: the same tool calling and
 * constrained output as the server's chat API. The tools file holds the OpenAI `tools` array; the
 * schema file a JSON Schema (enforced token by token, like response_format json_schema).
 */
import { readFileSync } from "node:fs";
import type { GenerateRequest } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import { parseToolChoice, parseTools } from "../server/openai/tools.ts";

export const structuredArgs = {
  tools: { type: "string", description: "JSON file with OpenAI-style tools (needs --json; calls come back as tool_calls)" },
  "tool-choice": { type: "string", description: "With --tools: auto (default), none, required, or a function name" },
  "json-schema": { type: "string", description: "JSON Schema file: the answer is guaranteed to be JSON that validates" },
} as const;

export type StructuredFields = Pick<GenerateRequest, "tools" | "toolChoice" | "constraint">;

function readJsonFile(flag: string, path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new MlxkError("InvalidArgumentError", `--${flag}: cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MlxkError("InvalidArgumentError", `--${flag}: ${path} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Read and check the flags; errors are usage errors (exit 2) that name the flag. */
export function structuredFields(a: { tools?: string; toolChoice?: string; jsonSchema?: string; json: boolean; chatTemplate: boolean }): StructuredFields {
  const out: StructuredFields = {};
  if (a.toolChoice !== undefined && a.tools === undefined) throw new MlxkError("InvalidArgumentError", "--tool-choice needs --tools FILE");
  if (a.tools !== undefined) {
    if (!a.json) throw new MlxkError("InvalidArgumentError", "--tools needs --json: tool calls are returned as JSON (data.tool_calls)");
    if (!a.chatTemplate) throw new MlxkError("InvalidArgumentError", "--tools needs the chat template (drop --no-chat-template)");
    const raw = readJsonFile("tools", a.tools);
    const list = Array.isArray(raw) ? raw : (raw as { tools?: unknown })?.tools;
    if (!Array.isArray(list)) throw new MlxkError("InvalidArgumentError", `--tools: ${a.tools} must hold a JSON array of tools ([{"type": "function", "function": {...}}])`);
    try {
      out.tools = parseTools(list);
      const c = a.toolChoice;
      out.toolChoice = c === undefined ? "auto" : c === "auto" || c === "none" || c === "required" ? c : parseToolChoice({ type: "function", function: { name: c } });
    } catch (e) {
      throw new MlxkError("InvalidArgumentError", `--tools: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  if (a.jsonSchema !== undefined) {
    const schema = readJsonFile("json-schema", a.jsonSchema);
    if (schema === null || typeof schema !== "object" || Array.isArray(schema)) throw new MlxkError("InvalidArgumentError", `--json-schema: ${a.jsonSchema} must hold a JSON Schema object`);
    out.constraint = { type: "json_schema", schema: schema as Record<string, unknown> };
  }
  return out;
}

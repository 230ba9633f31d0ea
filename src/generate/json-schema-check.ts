/**
 * Which JSON Schema keywords the constrained decoder enforces. A schema using anything else is refused
 * with a 400 naming the keyword and where it is: mlxk never returns output it only hoped would validate.
 */
import { MlxkError } from "../errors.ts";

/** Keywords that only describe (nothing to enforce). */
const ANNOTATIONS = new Set(["title", "description", "examples", "default", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$anchor", "strict"]);
/** Keywords the grammar enforces. */
const ENFORCED = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "prefixItems",
  "minItems",
  "maxItems",
  "enum",
  "const",
  "anyOf",
  "oneOf",
  "$defs",
  "definitions",
  "$ref",
  "pattern",
  "format",
  "minLength",
  "maxLength",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
]);
/** String formats the grammar covers with a regular language. */
export const FORMATS = new Set(["date", "time", "date-time", "duration", "email", "ipv4", "ipv6", "hostname", "uuid", "uri"]);
const TYPES = new Set(["object", "array", "string", "number", "integer", "boolean", "null"]);

function refuse(message: string, param: string): MlxkError {
  return new MlxkError("validation_error", message, { extra: { param, code: "unsupported_schema" } });
}

/** Throws a 400 naming the first keyword that cannot be enforced; `param` is where the schema sits in the request. */
export function checkSchema(schema: unknown, param: string): void {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    throw new MlxkError("validation_error", `${param} must be a JSON Schema object`, { extra: { param, code: "invalid_value" } });
  }
  walk(schema, param, schema as Record<string, unknown>);
}

function walk(node: unknown, path: string, root: Record<string, unknown>): void {
  if (typeof node === "boolean") return;
  if (typeof node !== "object" || node === null || Array.isArray(node)) throw refuse(`${path} must be a schema object`, path);
  const s = node as Record<string, unknown>;
  for (const [k, v] of Object.entries(s)) {
    const at = `${path}.${k}`;
    if (ANNOTATIONS.has(k)) continue;
    if (k === "uniqueItems" && v === false) continue;
    if (!ENFORCED.has(k)) throw refuse(`JSON Schema keyword '${k}' (at ${at}) cannot be enforced by constrained decoding`, at);
    switch (k) {
      case "type": {
        const types = Array.isArray(v) ? v : [v];
        for (const t of types) if (typeof t !== "string" || !TYPES.has(t)) throw refuse(`${at}: unknown type ${JSON.stringify(t)}`, at);
        break;
      }
      case "properties":
      case "$defs":
      case "definitions":
        if (typeof v !== "object" || v === null) throw refuse(`${at} must be an object`, at);
        for (const [name, sub] of Object.entries(v)) walk(sub, `${at}.${name}`, root);
        break;
      case "additionalProperties":
      case "items":
        walk(v, at, root);
        break;
      case "prefixItems":
      case "anyOf":
      case "oneOf":
        if (!Array.isArray(v) || v.length === 0) throw refuse(`${at} must be a non-empty array`, at);
        v.forEach((sub, i) => walk(sub, `${at}[${i}]`, root));
        break;
      case "required":
        if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw refuse(`${at} must be an array of names`, at);
        break;
      case "enum":
        if (!Array.isArray(v) || v.length === 0) throw refuse(`${at} must be a non-empty array`, at);
        break;
      case "$ref":
        if (typeof v !== "string" || !(v === "#" || v.startsWith("#/$defs/") || v.startsWith("#/definitions/"))) {
          throw refuse(`${at}: only local references (#/$defs/…) can be enforced, not ${JSON.stringify(v)}`, at);
        }
        if (v !== "#" && resolveRef(root, v) === undefined) throw refuse(`${at}: ${v} is not defined`, at);
        break;
      case "format":
        if (typeof v !== "string" || !FORMATS.has(v)) throw refuse(`JSON Schema format ${JSON.stringify(v)} (at ${at}) cannot be enforced; supported: ${[...FORMATS].join(", ")}`, at);
        break;
      case "pattern":
        if (typeof v !== "string") throw refuse(`${at} must be a string`, at);
        if (/\(\?[=!<]|\\[1-9]|\\k</.test(v)) throw refuse(`${at}: look-arounds and back-references are not regular and cannot be enforced`, at);
        try {
          new RegExp(v, "u");
        } catch {
          throw refuse(`${at}: invalid regular expression`, at);
        }
        break;
      case "minItems":
      case "maxItems":
      case "minLength":
      case "maxLength":
        if (!Number.isInteger(v) || (v as number) < 0) throw refuse(`${at} must be a non-negative integer`, at);
        break;
      case "minimum":
      case "maximum":
      case "exclusiveMinimum":
      case "exclusiveMaximum":
        if (typeof v !== "number") throw refuse(`${at} must be a number`, at);
        break;
    }
  }
}

function resolveRef(root: Record<string, unknown>, ref: string): unknown {
  let cur: unknown = root;
  for (const part of ref.slice(2).split("/")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part.replaceAll("~1", "/").replaceAll("~0", "~")];
  }
  return cur;
}

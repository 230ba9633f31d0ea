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
// Checked against ajv-formats in test/engine/constrain.test.ts. XGrammar's own date, ipv4 and hostname
// grammars accept values the formats forbid (2025-09-31, 026.1.1.1, 64-char labels), so only formats
// shown exact are enforced (ipv4 through our own pattern); the rest are refused, not half-enforced.
export const FORMATS = new Set(["uuid", "ipv4"]);
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
  normalizeSchema(schema as Record<string, unknown>, param);
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
        // The grammar's regex reader cannot take these (Unicode classes abort it; word boundaries are not characters).
        if (/\\[pPbB]/.test(v)) throw refuse(`${at}: Unicode property classes (\\p{…}) and word boundaries (\\b) cannot be enforced`, at);
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

const BY_TYPE: [string, string[]][] = [
  ["object", ["properties", "required", "additionalProperties"]],
  ["array", ["items", "prefixItems", "minItems", "maxItems"]],
  ["string", ["minLength", "maxLength", "pattern", "format"]],
  ["number", ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]],
];
const COMBINATORS = ["anyOf", "oneOf"];

/** JSON types a (checked) schema node can match, or null when it does not say. */
function typesOf(s: unknown, root: Record<string, unknown>, seen = new Set<unknown>()): Set<string> | null {
  if (typeof s !== "object" || s === null || seen.has(s)) return null;
  seen.add(s);
  const n = s as Record<string, unknown>;
  if (typeof n.$ref === "string") return n.$ref === "#" ? typesOf(root, root, seen) : typesOf(resolveRef(root, n.$ref), root, seen);
  if (n.type !== undefined) {
    const t = new Set((Array.isArray(n.type) ? n.type : [n.type]) as string[]);
    if (t.has("number")) t.add("integer");
    return t;
  }
  const c = "const" in n ? [n.const] : Array.isArray(n.enum) ? n.enum : null;
  if (c) return new Set(c.map((v) => (v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v)));
  return null;
}

function constsOf(s: unknown): unknown[] | null {
  if (typeof s !== "object" || s === null) return null;
  const n = s as Record<string, unknown>;
  return "const" in n ? [n.const] : Array.isArray(n.enum) ? n.enum : null;
}

/** Two oneOf branches can never both match: different JSON types, or a required property with disjoint constants. */
function disjoint(a: unknown, b: unknown, root: Record<string, unknown>): boolean {
  const ta = typesOf(a, root);
  const tb = typesOf(b, root);
  if (ta && tb && ![...ta].some((t) => tb.has(t))) return true;
  const pa = (a as { properties?: Record<string, unknown>; required?: string[] }) ?? {};
  const pb = (b as { properties?: Record<string, unknown>; required?: string[] }) ?? {};
  for (const key of pa.required ?? []) {
    if (!(pb.required ?? []).includes(key)) continue;
    const ca = constsOf(pa.properties?.[key]);
    const cb = constsOf(pb.properties?.[key]);
    if (ca && cb && !ca.some((x) => cb.some((y) => JSON.stringify(x) === JSON.stringify(y)))) return true;
  }
  return false;
}

/**
 * The schema as the grammar must see it so that everything it accepts validates: a node without `type`
 * gets the type its keywords imply (JSON Schema applies `minLength` only to strings; the grammar would
 * ignore it), sibling keywords of anyOf/oneOf move into each branch, and a oneOf whose branches could
 * overlap is refused (the grammar cannot enforce "exactly one"). Narrower than JSON Schema, never wider.
 */
export function normalizeSchema(schema: Record<string, unknown>, param: string): Record<string, unknown> {
  const root = schema;
  const norm = (node: unknown, path: string): unknown => {
    if (typeof node !== "object" || node === null || Array.isArray(node)) return node;
    const n = { ...(node as Record<string, unknown>) };
    for (const k of ["properties", "$defs", "definitions"]) {
      if (n[k] && typeof n[k] === "object") n[k] = Object.fromEntries(Object.entries(n[k] as object).map(([name, sub]) => [name, norm(sub, `${path}.${k}.${name}`)]));
    }
    for (const k of ["items", "additionalProperties"]) if (typeof n[k] === "object") n[k] = norm(n[k], `${path}.${k}`);
    for (const k of ["prefixItems", ...COMBINATORS]) if (Array.isArray(n[k])) n[k] = (n[k] as unknown[]).map((b, i) => norm(b, `${path}.${k}[${i}]`));
    const comb = COMBINATORS.find((k) => Array.isArray(n[k]));
    if (comb) {
      if (COMBINATORS.every((k) => Array.isArray(n[k]))) throw refuse(`${path}: anyOf together with oneOf cannot be enforced`, `${path}.oneOf`);
      const branches = n[comb] as Record<string, unknown>[];
      if (comb === "oneOf") {
        for (let i = 0; i < branches.length; i++)
          for (let j = i + 1; j < branches.length; j++)
            if (!disjoint(branches[i], branches[j], root)) {
              throw refuse(`${path}.oneOf: branches ${i} and ${j} can both match, so "exactly one" cannot be enforced; use anyOf or give each branch a distinct type or const`, `${path}.oneOf`);
            }
      }
      const siblings = Object.fromEntries(Object.entries(n).filter(([k]) => k !== comb && !ANNOTATIONS.has(k) && k !== "$defs" && k !== "definitions"));
      if (Object.keys(siblings).length > 0) {
        for (const b of branches) {
          const clash = Object.keys(siblings).find((k) => k in b && JSON.stringify(b[k]) !== JSON.stringify(siblings[k]));
          if (clash) throw refuse(`${path}: '${clash}' both beside ${comb} and inside a branch cannot be enforced`, `${path}.${comb}`);
        }
        n[comb] = branches.map((b) => norm({ ...siblings, ...b }, path));
        for (const k of Object.keys(siblings)) delete n[k];
      }
      return n;
    }
    if (n.type === undefined && n.$ref === undefined && !("const" in n) && n.enum === undefined) {
      const implied = BY_TYPE.filter(([, keys]) => keys.some((k) => k in n)).map(([t]) => t);
      if (implied.length === 1) n.type = implied[0];
      else if (implied.length > 1) n.type = implied;
    }
    const types = new Set(Array.isArray(n.type) ? (n.type as string[]) : n.type !== undefined ? [n.type as string] : []);
    if (types.has("object") && n.properties && Object.keys(n.properties).length > 0) {
      // XGrammar lets an extra key repeat a declared name with any value: only a closed object is sound.
      if (n.additionalProperties === undefined) n.additionalProperties = false;
      else if (n.additionalProperties !== false) {
        throw refuse(`${path}.additionalProperties: extra keys beside declared properties cannot be enforced; set additionalProperties to false`, `${path}.additionalProperties`);
      }
    }
    const bound = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"].find((k) => k in n);
    if (bound && types.has("number")) throw refuse(`${path}.${bound}: bounds are enforced on integers only, not on type number`, `${path}.${bound}`);
    if (n.format === "ipv4") {
      // XGrammar's ipv4 accepts leading zeros ("026.1.1.1"), which the format forbids: a pattern is exact.
      delete n.format;
      const octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
      n.pattern = `^${octet}(\\.${octet}){3}$`;
    }
    return n;
  };
  return norm(schema, param) as Record<string, unknown>;
}

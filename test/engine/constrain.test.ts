/**
 * Constrained decoding: the schema grammar against the JSON Schema Test Suite (draft 4, every group whose
 * schema mlxk accepts: valid instances must be accepted, invalid ones refused), the keyword check (what
 * cannot be enforced is refused, naming the keyword), and a property test: random walks through the
 * token mask over SmolLM2's real vocabulary always end in JSON that validates (ajv).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as xg from "@mlc-ai/web-xgrammar";
import Ajv from "ajv";
import addFormats from "ajv-formats";
import { createConstraint } from "../../src/engine/constrain.ts";
import { MlxkError } from "../../src/errors.ts";
import { checkSchema, normalizeSchema } from "../../src/generate/json-schema-check.ts";
import { Rng, sampleToken } from "../../src/generate/sample.ts";
import { loadTextPipeline } from "../../src/generate/text.ts";
import { smollm2Gguf } from "../support/smollm2.ts";

const SUITE = join(import.meta.dir, "..", "..", "node_modules", "json-schema-test-suite", "tests", "draft4");
const FILES = ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength", "enum", "anyOf", "oneOf", "pattern", "definitions", "ref", "minimum", "maximum"];

/** Python json.dumps layout (", " and ": "): the layout the grammar enforces. */
function dumps(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(dumps).join(", ")}]`;
  if (v !== null && typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${dumps(x)}`).join(", ")}}`;
  return JSON.stringify(v);
}

function accepted(schema: unknown): boolean {
  try {
    checkSchema(schema, "schema");
    return true;
  } catch (e) {
    if (!(e instanceof MlxkError)) throw e;
    return false;
  }
}

interface Group {
  description: string;
  schema: unknown;
  tests: { description: string; data: unknown; valid: boolean }[];
}

describe("JSON Schema Test Suite (draft 4) against the grammar", () => {
  for (const f of FILES) {
    const groups = JSON.parse(readFileSync(join(SUITE, `${f}.json`), "utf8")) as Group[];
    for (const g of groups) {
      // Remote refs and schemas using keywords mlxk refuses are out of scope here (the refusal is tested below).
      if (!accepted(g.schema) || JSON.stringify(g.schema).includes("http")) continue;
      test(`${f}: ${g.description}`, async () => {
        const schema = normalizeSchema(g.schema as Record<string, unknown>, "schema");
        // Normalising narrows a type-less schema (never widens it): then only soundness is owed.
        const narrowed = JSON.stringify(schema) !== JSON.stringify(g.schema);
        const grammar = await xg.Grammar.fromJSONSchema(JSON.stringify(schema), false, -1, [", ", ": "], false);
        for (const t of g.tests) {
          const ok = await xg.Testings.isGrammarAcceptString(grammar, dumps(t.data));
          if (!t.valid || !narrowed) expect({ test: t.description, accepted: ok }).toEqual({ test: t.description, accepted: t.valid });
        }
        grammar.dispose();
      });
    }
  }
});

describe("keywords that cannot be enforced are refused, naming the keyword", () => {
  const cases: [unknown, string][] = [
    [{ type: "object", not: { required: ["a"] } }, "schema.not"],
    [{ type: "array", uniqueItems: true }, "schema.uniqueItems"],
    [{ type: "number", multipleOf: 3 }, "schema.multipleOf"],
    [{ type: "object", properties: { a: { allOf: [{ type: "string" }] } } }, "schema.properties.a.allOf"],
    [{ type: "string", format: "credit-card" }, "schema.format"],
    [{ type: "string", format: "date" }, "schema.format"],
    [{ type: "object", properties: { a: { type: "string" } }, additionalProperties: true }, "schema.additionalProperties"],
    [{ type: "number", minimum: 0.5 }, "schema.minimum"],
    [{ oneOf: [{ type: "string" }, { type: "string", maxLength: 3 }] }, "schema.oneOf"],
    [{ type: "string", pattern: "(a)\\1" }, "schema.pattern"],
    [{ type: "string", pattern: "\\p{L}+" }, "schema.pattern"],
    [{ type: "string", pattern: "a{,3}" }, "schema.pattern"],
    [{ $ref: "https://example.com/s.json" }, "schema.$ref"],
    [{ type: "object", patternProperties: { "^x": {} } }, "schema.patternProperties"],
  ];
  for (const [schema, param] of cases) {
    test(param, () => {
      let err: unknown;
      try {
        checkSchema(schema, "schema");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MlxkError);
      expect((err as MlxkError).httpStatus).toBe(400);
      expect((err as MlxkError).extra.param).toBe(param);
    });
  }
  test("annotations and the enforced set pass", () => {
    expect(() =>
      checkSchema(
        {
          title: "t",
          $defs: { tag: { type: "string", enum: ["a", "b"] } },
          type: "object",
          properties: { n: { type: "integer", minimum: 0, maximum: 9 }, tags: { type: "array", items: { $ref: "#/$defs/tag" }, minItems: 1, maxItems: 3 } },
          required: ["n"],
          additionalProperties: false,
        },
        "schema",
      ),
    ).not.toThrow();
  });
});

const PROPERTY_SCHEMAS: Record<string, unknown>[] = [
  {
    type: "object",
    properties: {
      name: { type: "string", minLength: 1, maxLength: 12 },
      age: { type: "integer", minimum: 0, maximum: 150 },
      nick: { type: "string", pattern: "^[a-z]{2,5}$" },
      tags: { type: "array", items: { enum: ["a", "b", "c"] }, minItems: 1, maxItems: 3 },
    },
    required: ["name", "age", "tags"],
    additionalProperties: false,
  },
  {
    $defs: { point: { type: "object", properties: { x: { type: "number" }, y: { type: "number" } }, required: ["x", "y"], additionalProperties: false } },
    type: "object",
    properties: {
      kind: { const: "path" },
      points: { type: "array", items: { $ref: "#/$defs/point" }, maxItems: 3 },
      closed: { type: "boolean" },
      label: { anyOf: [{ type: "string", pattern: "^[a-z]{1,6}$" }, { type: "null" }] },
    },
    required: ["kind", "points", "label"],
    additionalProperties: false,
  },
  {
    type: "object",
    properties: { id: { type: "string", format: "uuid" }, ip: { type: "string", format: "ipv4" } },
    required: ["id", "ip"],
    additionalProperties: false,
  },
];

describe("property: sampled outputs always validate (SmolLM2 vocabulary)", async () => {
  const text = loadTextPipeline(await smollm2Gguf());
  const ajv = new Ajv({ strict: false });
  addFormats(ajv);
  const eos = [...text.eosTokenIds];
  // Tokens that close strings and containers get a head start, so random walks end in reasonable time.
  const closes = new Float32Array(text.tokenizer.vocabSize);
  for (let i = 0; i < closes.length; i++) if (/["\]}]/.test(text.tokenizer.idToToken(i) ?? "")) closes[i] = 6;
  PROPERTY_SCHEMAS.forEach((schema, k) => {
    test(`schema ${k}: 12 random walks`, async () => {
      const validate = ajv.compile(schema);
      const rng = new Rng(1000 + k);
      let finished = 0;
      for (let walk = 0; walk < 12; walk++) {
        using c = await createConstraint(text, { kind: "schema", schema, param: "schema" });
        const ids: number[] = [];
        let ended = false;
        for (let step = 0; step < 300 && !ended; step++) {
          await c.prepareNext();
          const logits = new Float32Array(text.tokenizer.vocabSize);
          for (let i = 0; i < logits.length; i++) logits[i] = rng.next() * 4 + closes[i]!;
          for (const e of eos) logits[e] = 10;
          c.mask(logits);
          const { token } = sampleToken(logits, { temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 }, rng);
          if (text.eosTokenIds.has(token)) ended = true;
          else {
            c.accept(token);
            ids.push(token);
          }
        }
        if (!ended) continue;
        finished++;
        const out = text.decode(ids);
        const value = JSON.parse(out) as unknown;
        expect({ out, valid: validate(value), errors: validate.errors ?? null }).toEqual({ out, valid: true, errors: null });
      }
      expect(finished).toBeGreaterThanOrEqual(6);
    });
  });
});

import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { SCHEMA_PATH, buildSchema, renderSchema } from "../../scripts/gen-json-schema.ts";

test("docs/json-api-schema.json is generated from the current valibot schemas (run `npm run schema`)", () => {
  expect(readFileSync(SCHEMA_PATH, "utf8")).toBe(renderSchema());
});

test("the schema has a data block per command and resolvable $refs", () => {
  const s = buildSchema() as { allOf: { if: { properties: { command: { const: string } } } }[]; definitions: Record<string, unknown> };
  const commands = s.allOf.map((b) => b.if.properties.command.const);
  expect(commands).toEqual(expect.arrayContaining(["version", "list", "health", "show", "rm"]));
  const text = JSON.stringify(s);
  for (const m of text.matchAll(/"\$ref":"#\/definitions\/([^"]+)"/g)) expect(s.definitions[m[1]!]).toBeDefined();
  const model = s.definitions.modelObject as { required: string[] };
  expect(model.required).toEqual(
    expect.arrayContaining(["name", "hash", "size_bytes", "last_modified", "framework", "model_type", "capabilities", "health", "runtime_compatible", "cached"]),
  );
});

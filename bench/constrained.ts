/**
 * Constrained decoding cost: decode tok/s with a json_schema constraint vs unconstrained, same model,
 * same prompt, same run (interleaved rounds, best of each), greedy (unconstrained greedy runs the
 * pipelined on-device path, its best configuration) and sampled (temperature 0.8, host sampler both);
 * plus the one-time costs: tokenizer tables (once per tokenizer) and grammar compile (once per schema).
 * SmolLM2-135M-Instruct and the Qwen2.5-0.5B-shaped random model of bench/generate.ts.
 *
 * Usage: bun bench/constrained.ts [--gen 64] [--rounds 2] [--only smollm2|qwen05]
 */
import { collect } from "../src/engine/collect.ts";
import { compileGrammar } from "../src/engine/constrain.ts";
import type { MlxEngine } from "../src/engine/engine.ts";
import { openModel } from "../src/engine/open.ts";
import type { GenerateRequest } from "../src/engine/types.ts";
import { smollm2Gguf } from "../test/support/smollm2.ts";
import { qwenShapedGguf } from "./generate.ts";

const arg = (n: string, d: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : d;
};
const GEN = Number(arg("gen", "64"));
const ROUNDS = Number(arg("rounds", "2"));
const only = arg("only", "");

// A free-text field keeps the grammar open for the whole measured window.
const SCHEMA = {
  type: "object",
  properties: { title: { type: "string", maxLength: 40 }, year: { type: "integer", minimum: 1900, maximum: 2100 }, story: { type: "string" } },
  required: ["title", "year", "story"],
  additionalProperties: false,
};

async function decodeTps(e: MlxEngine, temperature: number, constrained: boolean): Promise<{ tps: number; n: number }> {
  const req: GenerateRequest = {
    input: { messages: [{ role: "user", content: "Write a long story about a lighthouse keeper, as JSON." }] },
    maxTokens: GEN,
    sampling: { temperature, topP: 0.95, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20, seed: 1 },
    ...(constrained ? { constraint: { type: "json_schema" as const, schema: SCHEMA } } : {}),
  };
  const a = await collect(e.generate(req));
  return { tps: a.done.timings.generationTps, n: a.done.usage.completionTokens };
}

const models: { name: string; gguf: string }[] = [];
const smol = await smollm2Gguf();
if (only !== "qwen05") models.push({ name: "SmolLM2-135M-Instruct Q4_1", gguf: smol });
if (only !== "smollm2") models.push({ name: "Qwen2.5-0.5B-shaped random Q4_1", gguf: await qwenShapedGguf(smol) });

for (const m of models) {
  const e = (await openModel(m.gguf, {})) as MlxEngine;
  let t0 = performance.now();
  await compileGrammar(e.text, { kind: "json_object" });
  const tables = performance.now() - t0;
  t0 = performance.now();
  await compileGrammar(e.text, { kind: "schema", schema: SCHEMA, param: "schema" });
  const compile = performance.now() - t0;
  const best: Record<string, { tps: number; n: number }> = {};
  for (let r = 0; r < ROUNDS; r++) {
    const order: [string, number, boolean][] = [
      ["greedy", 0, false],
      ["greedy+schema", 0, true],
      ["sampled", 0.8, false],
      ["sampled+schema", 0.8, true],
    ];
    if (r % 2 === 1) order.reverse();
    for (const [k, t, c] of order) {
      const x = await decodeTps(e, t, c);
      if (!best[k] || x.tps > best[k]!.tps) best[k] = x;
    }
  }
  const f = (x: number) => x.toFixed(1);
  console.log(
    JSON.stringify({
      model: m.name,
      tokenizer_tables_ms: Math.round(tables),
      schema_compile_ms: Math.round(compile),
      greedy_tps: f(best.greedy!.tps),
      greedy_schema_tps: f(best["greedy+schema"]!.tps),
      greedy_ratio: (best["greedy+schema"]!.tps / best.greedy!.tps).toFixed(2),
      sampled_tps: f(best.sampled!.tps),
      sampled_schema_tps: f(best["sampled+schema"]!.tps),
      sampled_ratio: (best["sampled+schema"]!.tps / best.sampled!.tps).toFixed(2),
      tokens: Object.fromEntries(Object.entries(best).map(([k, v]) => [k, v.n])),
    }),
  );
  e[Symbol.dispose]();
}

/**
 * The engine's front half and constrained decode paths on SmolLM2: prepare() (one context check, one
 * max-tokens policy), and masked greedy on the device giving exactly the tokens masked greedy on the host gives.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { collect } from "../../src/engine/collect.ts";
import { openModel } from "../../src/engine/open.ts";
import type { GenerateRequest } from "../../src/engine/types.ts";
import { MlxkError } from "../../src/errors.ts";
import { MlxEngine } from "../../src/engine/engine.ts";
import { TextPipeline } from "../../src/generate/text.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { smollm2Gguf } from "../support/smollm2.ts";

let engine: MlxEngine;
beforeAll(async () => {
  engine = (await openModel(await smollm2Gguf(), {})) as MlxEngine;
});
afterAll(() => engine?.[Symbol.dispose]());

const greedy = { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 };
const ask = (content: string): GenerateRequest["input"] => ({ messages: [{ role: "user", content }] });

describe("prepare()", () => {
  test("renders once: the prompt and ids it returns are what the model sees", () => {
    const p = engine.prepare({ input: ask("Hi"), sampling: greedy });
    expect(p.prompt).toContain("Hi");
    expect(p.ids.length).toBe(engine.countPromptTokens(ask("Hi")));
  });

  test("max tokens: requested, else the caller's default, else the rest of the context; never past it", () => {
    const ctx = engine.info.contextLength;
    const p = engine.prepare({ input: ask("Hi"), sampling: greedy });
    expect(p.maxTokens).toBe(ctx - p.ids.length);
    expect(engine.prepare({ input: ask("Hi"), sampling: greedy }, { defaultMaxTokens: 7 }).maxTokens).toBe(7);
    expect(engine.prepare({ input: ask("Hi"), sampling: greedy, maxTokens: 3 }, { defaultMaxTokens: 7 }).maxTokens).toBe(3);
    expect(engine.prepare({ input: ask("Hi"), sampling: greedy, maxTokens: 10 ** 9 }).maxTokens).toBe(ctx - p.ids.length);
  });

  test("a prompt over the context is context_length_exceeded, naming both sizes", () => {
    const long = "word ".repeat(engine.info.contextLength + 10);
    let err: unknown;
    try {
      engine.prepare({ input: { prompt: long }, sampling: greedy });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MlxkError);
    const e = err as MlxkError;
    expect(e.type).toBe("context_length_exceeded");
    expect(e.httpStatus).toBe(400);
    expect(e.extra.param).toBe("prompt");
    expect(e.message).toContain(`${engine.info.contextLength} tokens`);
    expect(e.extra.prompt_tokens as number).toBeGreaterThan(engine.info.contextLength);
  });
});

describe("constrained greedy: device and host agree", () => {
  const schema = { type: "object", properties: { city: { type: "string", maxLength: 16 }, n: { type: "integer", minimum: 1, maximum: 9 } }, required: ["city", "n"] };
  test("same tokens with the mask applied on the device (pipelined) and on the host (logprobs force it)", async () => {
    const base: GenerateRequest = { input: ask("Name a city and a digit as JSON."), sampling: greedy, maxTokens: 40, constraint: { type: "json_schema", schema } };
    const device = await collect(engine.generate(base));
    const host = await collect(engine.generate({ ...base, topLogprobs: 0 }));
    expect(host.logprobs.length).toBeGreaterThan(0);
    expect(device.text).toBe(host.text);
    const v = JSON.parse(device.text) as { city: string; n: number };
    expect(typeof v.city).toBe("string");
    expect(Number.isInteger(v.n) && v.n >= 1 && v.n <= 9).toBe(true);
    expect(device.done.finishReason).toBe("stop");
  }, 60000);
});

describe("a Hermes-template model: forced and auto calls in the family's own syntax", () => {
  // SmolLM2's weights behind Qwen2.5's real chat template: the engine picks the hermes call syntax from it.
  const withTemplate = (file: string) => {
    const t = engine.text;
    const text = new TextPipeline({
      tokenizer: t.tokenizer,
      chatTemplates: { default: readFileSync(join(import.meta.dir, "..", "fixtures", "chat-templates", `${file}.jinja`), "utf8") },
      config: t.config,
      generationConfig: t.generationConfig,
    });
    return new MlxEngine(engine.loaded, text, `smollm2-as-${file}`);
  };
  const qwen = () => withTemplate("Qwen-Qwen2.5-7B-Instruct");
  const tools = [{ name: "get_weather", description: "Weather of a city", parameters: { type: "object", properties: { city: { type: "string", maxLength: 20 } }, required: ["city"] } }];

  test("named: one call, wrapped as <tool_call> while generating, arguments validate", async () => {
    const e = qwen();
    expect(e.toolFormat).toBe("hermes");
    const a = await collect(e.generate({ input: ask("Weather in Oslo?"), sampling: greedy, maxTokens: 60, tools, toolChoice: { name: "get_weather" } }));
    expect(a.done.finishReason).toBe("tool_calls");
    expect(a.text).toBe("");
    expect(a.toolCalls.map((c) => c.name)).toEqual(["get_weather"]);
    expect(typeof (JSON.parse(a.toolCalls[0]!.arguments) as { city: unknown }).city).toBe("string");
  }, 60000);

  test("auto: text, or calls that parse — never a broken <tool_call>", async () => {
    const a = await collect(qwen().generate({ input: ask("Weather in Oslo? Use the tool."), sampling: greedy, maxTokens: 60, tools }));
    expect(a.text).not.toContain("<tool_call>");
    for (const c of a.toolCalls) expect(typeof (JSON.parse(c.arguments) as { city: unknown }).city).toBe("string");
    if (a.toolCalls.length > 0) expect(a.done.finishReason).toBe("tool_calls");
  }, 60000);

  test("strict functions: enforced under auto where the family allows it, else a 400 naming the field", () => {
    const strict = [{ ...tools[0]!, strict: true }];
    expect(() => qwen().prepare({ input: ask("x"), sampling: greedy, tools: strict })).not.toThrow();
    const llama = withTemplate("meta-llama-Llama-3.1-8B-Instruct");
    expect(llama.toolFormat).toBe("llama3");
    const param = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as MlxkError).extra.param;
      }
      return null;
    };
    expect(param(() => llama.prepare({ input: ask("x"), sampling: greedy, tools: strict }))).toBe("tools[0].function.strict");
    expect(param(() => llama.prepare({ input: ask("x"), sampling: greedy, tools: strict, toolChoice: "required" }))).toBeNull();
    const loose = [{ name: "f", strict: true, parameters: { type: "object", not: {} } }];
    expect(param(() => qwen().prepare({ input: ask("x"), sampling: greedy, tools: loose }))).toBe("tools[0].function.parameters.not");
  });
});

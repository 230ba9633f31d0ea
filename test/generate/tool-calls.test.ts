/**
 * Tool-call parsers per family, against the families' real chat templates (test/fixtures/chat-templates):
 * the format is detected from the template, tools and tool turns render through it, and answers in the
 * family's call syntax parse to calls — in one piece and streamed in small pieces — while text that
 * only looks like a call stays text.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { OutputChain } from "../../src/engine/output.ts";
import { templateMessage, templateTool } from "../../src/engine/tools.ts";
import type { ChatMessage, ToolCallDelta, ToolDefinition } from "../../src/engine/types.ts";
import { renderChatTemplate } from "../../src/generate/chat-template.ts";
import { ReasoningParser } from "../../src/generate/reasoning.ts";
import { createToolCallParser, detectToolCallFormat, type ToolCallFormat } from "../../src/generate/tool-calls/index.ts";

const DIR = join(import.meta.dir, "..", "fixtures", "chat-templates");
const template = (f: string) => readFileSync(join(DIR, `${f}.jinja`), "utf8");

const TOOLS: ToolDefinition[] = [
  {
    name: "get_weather",
    description: "Current weather of a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name" },
        days: { type: "integer", description: "Days ahead" },
        metric: { type: "boolean", description: "Celsius" },
      },
      required: ["city"],
    },
  },
  { name: "search", description: "Web search", parameters: { type: "object", properties: { q: { type: "string", description: "Query" } }, required: ["q"] } },
];

const CONVERSATION: ChatMessage[] = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "Weather in Paris?" },
  { role: "assistant", content: "", toolCalls: [{ id: "abc123XYZ", name: "get_weather", arguments: '{"city": "Paris", "days": 2}' }] },
  { role: "tool", content: '{"temp_c": 21}', toolCallId: "abc123XYZ", name: "get_weather" },
  { role: "assistant", content: "It is 21 °C in Paris." },
  { role: "user", content: "And tomorrow?" },
];

interface Family {
  file: string;
  format: ToolCallFormat;
  /** An answer in the family's syntax with one or two calls. */
  output: string;
  calls: { name: string; arguments: Record<string, unknown> }[];
  /** Leading answer text before the calls. */
  text?: string;
  reasoning?: "think" | "harmony";
}

const FAMILIES: Family[] = [
  {
    file: "Qwen-Qwen2.5-7B-Instruct",
    format: "hermes",
    output: 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}\n</tool_call>\n<tool_call>\n{"name": "search", "arguments": {"q": "Paris events"}}\n</tool_call>',
    calls: [
      { name: "get_weather", arguments: { city: "Paris", days: 1 } },
      { name: "search", arguments: { q: "Paris events" } },
    ],
    text: "Let me check.\n",
  },
  {
    file: "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
    format: "hermes",
    output: '<tool_call>\n{"arguments": {"city": "Oslo"}, "name": "get_weather"}\n</tool_call>',
    calls: [{ name: "get_weather", arguments: { city: "Oslo" } }],
  },
  {
    file: "Qwen-Qwen3-0.6B",
    format: "hermes",
    reasoning: "think",
    output: '<think>\nThe user wants weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    calls: [{ name: "get_weather", arguments: { city: "Paris" } }],
  },
  {
    file: "Qwen3-Coder",
    format: "qwen3_coder",
    output:
      "<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=metric>\ntrue\n</parameter>\n</function>\n</tool_call>",
    calls: [{ name: "get_weather", arguments: { city: "New York", days: 3, metric: true } }],
  },
  {
    file: "meta-llama-Llama-3.1-8B-Instruct",
    format: "llama3",
    output: '{"name": "get_weather", "parameters": {"city": "Paris", "days": 2}}',
    calls: [{ name: "get_weather", arguments: { city: "Paris", days: 2 } }],
  },
  {
    file: "meta-llama-Llama-3.2-3B-Instruct",
    format: "llama3",
    output: '<|python_tag|>{"name": "search", "parameters": {"q": "llamas"}}; {"name": "get_weather", "parameters": {"city": "Lima"}}',
    calls: [
      { name: "search", arguments: { q: "llamas" } },
      { name: "get_weather", arguments: { city: "Lima" } },
    ],
  },
  {
    file: "mistralai-Mistral-Nemo-Instruct-2407",
    format: "mistral",
    output: '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "Ab3dE6gH9"}]',
    calls: [{ name: "get_weather", arguments: { city: "Paris" } }],
  },
  {
    file: "Mistral-Small-3.2-24B-Instruct-2506",
    format: "mistral",
    output: '[TOOL_CALLS]get_weather[ARGS]{"city": "Rome", "days": 5}[TOOL_CALLS]search[ARGS]{"q": "Rome"}',
    calls: [
      { name: "get_weather", arguments: { city: "Rome", days: 5 } },
      { name: "search", arguments: { q: "Rome" } },
    ],
  },
  {
    file: "google-gemma-4-31B-it",
    format: "gemma4",
    output: '<|tool_call>call:get_weather{city:<|"|>São Paulo, BR<|"|>,days:2,metric:true}<tool_call|>',
    calls: [{ name: "get_weather", arguments: { city: "São Paulo, BR", days: 2, metric: true } }],
  },
  {
    file: "openai-gpt-oss-120b",
    format: "harmony",
    reasoning: "harmony",
    output:
      '<|channel|>analysis<|message|>Need the weather tool.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris", "days": 1}<|call|>',
    calls: [{ name: "get_weather", arguments: { city: "Paris", days: 1 } }],
  },
];

function chain(f: Family): OutputChain {
  const reasoning = f.reasoning ? new ReasoningParser({ format: f.reasoning === "harmony" ? "harmony" : "think", toolCalls: true }) : null;
  return new OutputChain(reasoning, createToolCallParser(f.format, TOOLS), { harmonyCalls: true });
}

/** Feed `pieces` through a chain; returns the concatenated text and the calls assembled from deltas. */
function run(f: Family, pieces: string[]) {
  const c = chain(f);
  let text = "";
  let reasoning = "";
  const deltas: ToolCallDelta[] = [];
  for (const p of [...pieces.map((x) => c.push(x)), c.flush()]) {
    text += p.text;
    reasoning += p.reasoning;
    deltas.push(...p.toolCalls);
  }
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const d of deltas) {
    if (d.id !== undefined) {
      expect(d.index).toBe(calls.length); // a new call gets the next index, id and name come first
      expect(d.arguments).toBe("");
      calls.push({ id: d.id, name: d.name!, arguments: "" });
    } else calls[d.index]!.arguments += d.arguments;
  }
  return { text, reasoning, calls, called: c.calledTools };
}

/** Split into pieces of 1..7 characters (deterministic), like a detokenizer's output. */
function pieces(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  let k = 3;
  while (i < s.length) {
    k = (k * 7 + 3) % 7;
    out.push(s.slice(i, i + k + 1));
    i += k + 1;
  }
  return out;
}

describe("tool-call parsers against real chat templates", () => {
  for (const f of FAMILIES) {
    describe(f.file, () => {
      const src = template(f.file);
      test(`detects ${f.format} from the template`, () => {
        expect(detectToolCallFormat({ chatTemplate: src, hasToken: (t) => src.includes(t) })).toBe(f.format);
      });

      test("renders tools, an assistant tool call and its tool result", () => {
        const prompt = renderChatTemplate(src, {
          messages: CONVERSATION.map(templateMessage),
          tools: TOOLS.map(templateTool),
          bosToken: "<s>",
          eosToken: "</s>",
          now: () => new Date(2026, 0, 2),
        });
        expect(prompt).toContain("get_weather");
        expect(prompt).toContain("Current weather of a city");
        expect(prompt).toContain("Paris");
        expect(prompt).toContain("21");
        expect(prompt).toContain("And tomorrow?");
      });

      for (const mode of ["whole", "streamed"] as const) {
        test(`parses the family's call syntax (${mode})`, () => {
          const r = run(f, mode === "whole" ? [f.output] : pieces(f.output));
          expect(r.calls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) }))).toEqual(f.calls);
          for (const c of r.calls) expect(c.id).toMatch(f.format === "mistral" ? /^[A-Za-z0-9]{9}$/ : /^call_[A-Za-z0-9]{24}$/);
          expect(r.text).toBe(f.text ?? "");
          expect(r.called).toBe(true);
          if (f.reasoning) expect(r.reasoning.length).toBeGreaterThan(0);
        });
      }

      test("plain text stays text, streamed or not", () => {
        const plain = "The weather in Paris is sunny {mostly} and [warm].";
        for (const p of [[plain], pieces(plain)]) {
          const r = run(f, p);
          expect(r.text).toBe(plain);
          expect(r.calls).toEqual([]);
        }
      });
    });
  }
});

test("Hermes tool templates take parameters without a description (undefined|trim is \"\" as in jinja2)", () => {
  const tool = { name: "ping", description: "Ping a host", parameters: { type: "object", properties: { host: { type: "string" } }, required: ["host"] } };
  const prompt = renderChatTemplate(template("NousResearch-Hermes-3-Llama-3.1-8B-tool_use"), {
    messages: [{ role: "user", content: "ping example.com" }],
    tools: [templateTool(tool)],
  });
  expect(prompt).toContain("host(str): ");
});

describe("broken-looking calls stay content", () => {
  const cases: { format: ToolCallFormat; text: string }[] = [
    { format: "hermes", text: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \n</tool_call>" },
    { format: "hermes", text: "Use <tool_call> tags like this: <tool_call>not json</tool_call> ok" },
    { format: "qwen3_coder", text: "<tool_call>\n<function=>\n</function>\n</tool_call>" },
    { format: "gemma4", text: "<|tool_call>call:get_weather{city:<|\"|>Paris}<tool_call|>" },
    { format: "mistral", text: "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": " },
    { format: "llama3", text: '{"answer": 42, "name": "not a tool"}' },
    { format: "llama3", text: '{"name": "unknown_fn", "parameters": {}}' },
  ];
  for (const c of cases) {
    test(`${c.format}: ${JSON.stringify(c.text).slice(0, 50)}`, () => {
      for (const p of [[c.text], pieces(c.text)]) {
        const parser = createToolCallParser(c.format, TOOLS)!;
        const out = [...p.map((x) => parser.push(x)), parser.flush()];
        expect(out.map((o) => o.text).join("")).toBe(c.text);
        expect(out.flatMap((o) => o.calls)).toEqual([]);
      }
    });
  }

  test("harmony: a call whose arguments are not JSON stays text", () => {
    const f = FAMILIES.find((x) => x.format === "harmony")!;
    const r = run(f, ["<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{city: Paris<|call|>"]);
    expect(r.calls).toEqual([]);
    expect(r.text).toContain("{city: Paris");
  });

  test("harmony: the recipient may come before the channel; the rendered history uses to=functions", () => {
    const f = FAMILIES.find((x) => x.format === "harmony")!;
    const r = run(f, pieces('<|start|>assistant to=functions.search<|channel|>commentary json<|message|>{"q": "tides"}<|call|>'));
    expect(r.calls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([["search", { q: "tides" }]]);
    const prompt = renderChatTemplate(template(f.file), { messages: CONVERSATION.map(templateMessage), tools: TOOLS.map(templateTool) });
    expect(prompt).toContain("to=functions.get_weather");
  });

  test("parallel_tool_calls false keeps the first call only", () => {
    const c = new OutputChain(null, createToolCallParser("hermes", TOOLS), { parallel: false });
    const out = [c.push(FAMILIES[0]!.output), c.flush()];
    const starts = out.flatMap((o) => o.toolCalls).filter((d) => d.id !== undefined);
    expect(starts.map((d) => d.name)).toEqual(["get_weather"]);
  });
});

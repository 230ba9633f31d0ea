/** Table-driven tests of the pure OpenAI ⇄ engine converters; every emitted body passes the wire schema. */
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { MlxkError } from "../../src/errors.ts";
import { DEFAULT_SAMPLING } from "../../src/generate/sample.ts";
import { parseBody } from "../../src/server/errors.ts";
import {
  chatChunk,
  chatUsageChunk,
  fromChatRequest,
  fromCompletionRequest,
  toChatCompletion,
  toCompletionLogprobs,
  toFinishReason,
  toTextCompletion,
  toUsage,
} from "../../src/server/openai/convert.ts";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  CompletionRequestSchema,
  TextCompletionSchema,
} from "../../src/schemas/openai.ts";

const base = { model: "m", messages: [{ role: "user", content: "hi" }] };

describe("fromChatRequest", () => {
  const rows: { name: string; body: Record<string, unknown>; expect: Record<string, unknown> }[] = [
    { name: "defaults", body: {}, expect: { maxTokens: null, stop: [], stream: false, includeUsage: false, topLogprobs: undefined, sampling: DEFAULT_SAMPLING } },
    { name: "max_completion_tokens wins over max_tokens", body: { max_tokens: 9, max_completion_tokens: 3 }, expect: { maxTokens: 3 } },
    { name: "max_tokens alone", body: { max_tokens: 9 }, expect: { maxTokens: 9 } },
    { name: "stop string → list", body: { stop: "END" }, expect: { stop: ["END"] } },
    { name: "stop list", body: { stop: ["a", "b"] }, expect: { stop: ["a", "b"] } },
    { name: "null stop", body: { stop: null }, expect: { stop: [] } },
    { name: "stream + include_usage", body: { stream: true, stream_options: { include_usage: true } }, expect: { stream: true, includeUsage: true } },
    { name: "logprobs without top", body: { logprobs: true }, expect: { topLogprobs: 0 } },
    { name: "logprobs with top", body: { logprobs: true, top_logprobs: 5 }, expect: { topLogprobs: 5 } },
    { name: "logprobs false", body: { logprobs: false }, expect: { topLogprobs: undefined } },
    {
      name: "sampling fields",
      body: { temperature: 0, top_p: 0.5, top_k: 40, min_p: 0.05, repetition_penalty: 1.0, seed: 3 },
      expect: { sampling: { temperature: 0, topP: 0.5, topK: 40, minP: 0.05, repetitionPenalty: 1, repetitionContextSize: 20, seed: 3 } },
    },
    { name: "zero penalties and n=1 accepted", body: { presence_penalty: 0, frequency_penalty: 0, n: 1, logit_bias: {} }, expect: { stream: false } },
    { name: "tool_choice none accepted", body: { tool_choice: "none", tools: [] }, expect: { stream: false } },
  ];
  for (const r of rows) {
    test(r.name, () => {
      const { plan } = fromChatRequest(parseBody(ChatCompletionRequestSchema, { ...base, ...r.body }));
      expect(plan).toMatchObject(r.expect);
    });
  }

  test("chat_template_kwargs pass through to the engine input", () => {
    const { input } = fromChatRequest(parseBody(ChatCompletionRequestSchema, { ...base, chat_template_kwargs: { enable_thinking: false } }));
    expect(input).toEqual({ messages: [{ role: "user", content: "hi" }], templateKwargs: { enable_thinking: false } });
  });

  const rejects: { name: string; body: Record<string, unknown>; param: string }[] = [
    { name: "n=3", body: { n: 3 }, param: "n" },
    { name: "frequency_penalty", body: { frequency_penalty: 1 }, param: "frequency_penalty" },
    { name: "logit_bias", body: { logit_bias: { "1": 5 } }, param: "logit_bias" },
    { name: "tool_choice auto", body: { tool_choice: "auto" }, param: "tool_choice" },
    { name: "assistant tool_calls", body: { messages: [{ role: "assistant", content: null, tool_calls: [{ id: "x" }] }] }, param: "messages[0].tool_calls[0]" },
    { name: "user null content", body: { messages: [{ role: "user", content: null }] }, param: "messages[0].content" },
    { name: "audio part", body: { messages: [{ role: "user", content: [{ type: "text", text: "a" }, { type: "input_audio" }] }] }, param: "messages[0].content[1].type" },
    { name: "text part without text", body: { messages: [{ role: "user", content: [{ type: "text" }] }] }, param: "messages[0].content[0].text" },
  ];
  for (const r of rejects) {
    test(`rejects ${r.name}`, () => {
      let err: unknown;
      try {
        fromChatRequest(parseBody(ChatCompletionRequestSchema, { ...base, ...r.body }));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MlxkError);
      expect((err as MlxkError).httpStatus).toBe(400);
      expect((err as MlxkError).extra.param).toBe(r.param);
    });
  }
});

describe("fromCompletionRequest", () => {
  test.each([
    [{ prompt: "abc" }, { prompt: "abc" }],
    [{ prompt: ["abc"] }, { prompt: "abc" }],
  ])("prompt %j", (body, input) => {
    expect(fromCompletionRequest(parseBody(CompletionRequestSchema, { model: "m", ...body })).input).toEqual(input);
  });
  test.each([[{ prompt: [1, 2] }], [{ prompt: [] }], [{ prompt: "a", echo: true }], [{ prompt: "a", best_of: 2 }]])("rejects %j", (body) => {
    expect(() => fromCompletionRequest(parseBody(CompletionRequestSchema, { model: "m", ...body }))).toThrow(MlxkError);
  });
  test("legacy logprobs count → topLogprobs", () => {
    expect(fromCompletionRequest(parseBody(CompletionRequestSchema, { model: "m", prompt: "a", logprobs: 2 })).plan.topLogprobs).toBe(2);
  });
});

describe("responses", () => {
  const meta = { id: "chatcmpl-1", created: 1, model: "m", fingerprint: "fp" };
  const usage = toUsage({ promptTokens: 4, completionTokens: 2 });

  test("usage totals and finish reasons", () => {
    expect(usage).toEqual({ prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
    expect([toFinishReason("stop"), toFinishReason("length"), toFinishReason("cancelled")]).toEqual(["stop", "length", "stop"]);
  });

  test("chat completion: content always present, reasoning only when there is some", () => {
    const a = v.parse(ChatCompletionSchema, toChatCompletion(meta, { text: "", reasoning: "", finishReason: "length", usage, logprobs: null }));
    expect(a.choices[0].message).toEqual({ role: "assistant", content: "", refusal: null });
    const b = v.parse(ChatCompletionSchema, toChatCompletion(meta, { text: "x", reasoning: "why", finishReason: "stop", usage, logprobs: [] }));
    expect(b.choices[0].message.reasoning_content).toBe("why");
    expect(b.choices[0].logprobs).toEqual({ content: [], refusal: null });
  });

  test("chunks: usage null only when include_usage; usage chunk has no choices", () => {
    const c1 = v.parse(ChatCompletionChunkSchema, chatChunk(meta, { delta: { content: "a" }, includeUsage: false }));
    expect("usage" in c1).toBe(false);
    const c2 = v.parse(ChatCompletionChunkSchema, chatChunk(meta, { delta: {}, finishReason: "stop", includeUsage: true }));
    expect(c2.usage).toBeNull();
    const u = v.parse(ChatCompletionChunkSchema, chatUsageChunk(meta, usage));
    expect(u.choices).toEqual([]);
  });

  test("text completion and legacy logprob offsets", () => {
    const lp = [
      { token: "ab", logprob: -1, top: [{ token: "ab", logprob: -1 }] },
      { token: "c", logprob: -2, top: [] },
    ];
    expect(toCompletionLogprobs(lp, 5)).toEqual({ tokens: ["ab", "c"], token_logprobs: [-1, -2], top_logprobs: [{ ab: -1 }, {}], text_offset: [5, 7] });
    const t = v.parse(TextCompletionSchema, toTextCompletion({ ...meta, id: "cmpl-1" }, { text: "abc", finishReason: "stop", usage, logprobs: lp }));
    expect(t.choices[0]!.text).toBe("abc");
  });
});

import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChatMessage as EngineChatMessage } from "../../src/engine/types.ts";
import { fallbackChatFormat, loadTextPipeline, type TextPipeline } from "../../src/generate/text.ts";
import { resolveStopTokens } from "../../src/generate/stop-tokens.ts";
import { TextTokenizer } from "../../src/generate/tokenizer.ts";
import { readGguf } from "../../src/gguf/reader.ts";
import { ggufTokenizer } from "../../src/gguf/tokenizer.ts";
import { llamaVocabDir } from "../gguf/llama-vocab.ts";
import { smollm2Gguf } from "../support/smollm2.ts";

describe("TextPipeline from the SmolLM2 GGUF alone", () => {
  let p: TextPipeline;
  beforeAll(async () => {
    p = loadTextPipeline(await smollm2Gguf());
  }, 300_000);

  test("chat template → prompt → ids → streamed text round trip", () => {
    const messages: EngineChatMessage[] = [{ role: "user", content: "What is the capital of France?" }];
    const prompt = p.applyChatTemplate(messages);
    expect(prompt).toEndWith("<|im_start|>assistant\n");
    const ids = p.encodePrompt(prompt);
    expect(ids[0]).toBe(1); // <|im_start|>, no BOS added (add_bos_token false)
    const d = p.createDetokenizer();
    expect(ids.map((i) => d.add(i)).join("") + d.flush()).toBe(prompt);
  });

  test("eos ids: <|im_end|> (eos) and <|endoftext|> (well-known), never BOS", () => {
    expect([...p.eosTokenIds].sort()).toEqual([0, 2]);
    expect(p.reasoningFormat).toBeNull();
    expect(p.createReasoningParser("x")).toBeNull();
  });

  test("stop matcher and fallback format", () => {
    const m = p.createStopMatcher(["\nHuman:"]);
    expect(m.push("ok\nHu").text + m.push("man: x").text).toBe("ok");
    expect(fallbackChatFormat([{ role: "system", content: "S" }, { role: "user", content: "U" }])).toBe(
      "System: S\n\nHuman: U\n\nAssistant: ",
    );
  });
});

describe("TextPipeline from a model directory", () => {
  let dir = "";
  beforeAll(async () => {
    const path = await smollm2Gguf();
    const g = ggufTokenizer(readGguf(path), path);
    dir = mkdtempSync(join(tmpdir(), "mlxk-textdir-"));
    // Add Qwen3-like reasoning tokens so the directory looks like a thinking model.
    const json = structuredClone(g.tokenizerJson);
    const add = (id: number, content: string) =>
      json.added_tokens.push({ id, content, special: false, normalized: false, lstrip: false, rstrip: false, single_word: false });
    add(49152, "<think>");
    add(49153, "</think>");
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(json));
    const { chat_template: _, ...cfg } = g.tokenizerConfig;
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ ...cfg, additional_special_tokens: ["<|endoftext|>", "<repo_name>"] }));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ eos_token_id: [2, 7] }));
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: 8 }));
    writeFileSync(
      join(dir, "chat_template.jinja"),
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}",
    );
  }, 300_000);

  test("eos ids merge config.json, generation_config.json and tokenizer rules; reasoning end never stops", () => {
    const p = loadTextPipeline(dir);
    expect([...p.eosTokenIds].sort((a, b) => a - b)).toEqual([0, 2, 7, 8]);
    expect(p.eosTokenIds.has(49153)).toBe(false);
    expect(p.stopTokens.find((t) => t.id === 7)?.source).toBe("config.json eos_token_id");
  });

  test("reasoning: template opening <think> starts the parser inside reasoning; enable_thinking=false does not", () => {
    const p = loadTextPipeline(dir);
    expect(p.reasoningFormat).toBe("think");
    const thinking = p.applyChatTemplate([{ role: "user", content: "hi" }]);
    const parser = p.createReasoningParser(thinking)!;
    const a = parser.push("hmm\n</think>\n\nHello");
    const b = parser.flush();
    expect({ r: a.reasoning + b.reasoning, a: a.answer + b.answer }).toEqual({ r: "hmm\n", a: "Hello" });
    const direct = p.applyChatTemplate([{ role: "user", content: "hi" }], { kwargs: { enable_thinking: false } });
    expect(p.createReasoningParser(direct)!.reasoning).toBe(false);
  });
});

test("llama-spm: encodePrompt adds BOS once", async () => {
  const p = loadTextPipeline(join(await llamaVocabDir(), "ggml-vocab-llama-spm.gguf"));
  const plain = p.encodePrompt("Hello");
  expect(plain[0]).toBe(1);
  const withBos = p.encodePrompt("<s>Hello");
  expect(withBos.filter((i) => i === 1).length).toBe(1);
  expect([...p.eosTokenIds]).toEqual([2]);
}, 600_000);

test("resolveStopTokens: harmony drops <|end|> and adds <|return|>; non-reasoning keeps <|end|>", () => {
  const added = ["<|endoftext|>", "<|start|>", "<|end|>", "<|return|>", "<|channel|>", "<|message|>", "<|start_header_id|>", "<|end_header_id|>"];
  const vocab: Record<string, number> = { a: added.length };
  added.forEach((t, i) => (vocab[t] = i));
  const tok = new TextTokenizer(
    {
      version: "1.0",
      added_tokens: added.map((content, id) => ({ id, content, special: true, normalized: false, lstrip: false, rstrip: false, single_word: false })),
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: { type: "BPE", vocab, merges: [] },
    },
    { eos_token: "<|return|>" },
  );
  const names = (r: ReturnType<typeof resolveStopTokens>) => r.tokens.map((t) => t.content).sort();
  expect(names(resolveStopTokens({ tokenizer: tok }))).toEqual(["<|endoftext|>", "<|end|>", "<|return|>"]);
  expect(names(resolveStopTokens({ tokenizer: tok, reasoning: "harmony" }))).toEqual(["<|endoftext|>", "<|return|>"]);
});

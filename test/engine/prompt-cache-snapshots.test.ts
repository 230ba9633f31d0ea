/**
 * Message-boundary snapshots for caches that cannot be trimmed: the recurrent state of hybrid models
 * (qwen3_5, lfm2, qwen3_next) and sliding windows (gemma4, gemma3_text, gpt_oss, mistral), against a trimmable
 * model (llama). A chat's
 * next turn whose history renders the answer differently from the tokens generated (an edited answer), and
 * a new chat with the same system prompt, resume from the deepest boundary they pass through and give the
 * tokens of a cold run (greedy and seeded sampling). Boundaries come from the chat template (real families'
 * templates in test/fixtures/chat-templates).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { messageBoundaries, RenderMemo } from "../../src/engine/boundaries.ts";
import { loadEngine, type MlxEngine } from "../../src/engine/engine.ts";
import { collect } from "../../src/engine/collect.ts";
import type { ChatMessage, GenerateDone, SamplingParams } from "../../src/engine/types.ts";
import { renderChatTemplate } from "../../src/generate/chat-template.ts";
import * as mx from "../../src/mlx/index.ts";
import { type HybridName, writeHybridModel } from "../support/tiny-hybrid.ts";
import { type TinyName, writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-snap-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 };
const seeded: SamplingParams = { temperature: 0.8, topP: 0.95, topK: 0, minP: 0, repetitionPenalty: 1.1, repetitionContextSize: 20, seed: 7 };

async function run(engine: MlxEngine, messages: ChatMessage[], sampling: SamplingParams): Promise<{ ids: number[]; text: string; done: GenerateDone }> {
  const ids: number[] = [];
  const answer = await collect(engine.generate({ input: { messages }, maxTokens: 8, sampling }), { onChunk: (c) => c.tokenId >= 0 && ids.push(c.tokenId) });
  return { ids, text: answer.text, done: answer.done };
}

const models: [TinyName | HybridName, "tiny" | "hybrid", boolean][] = [
  ["qwen3_5", "hybrid", false],
  ["lfm2", "hybrid", false],
  ["qwen3_next", "hybrid", false],
  ["gemma4", "hybrid", false],
  ["gemma3_text", "tiny", false],
  ["gpt_oss", "tiny", false],
  ["mistral_swa", "tiny", false],
  ["llama", "tiny", true],
];

const system: ChatMessage = { role: "system", content: `You are a tiny model. ${"Answer briefly. ".repeat(6)}` };

describe.each(models)("%s", (name, kind, trimmable) => {
  const dir = join(tmp, name);
  if (kind === "hybrid") writeHybridModel(name as HybridName, dir);
  else writeTinyModel(name as TinyName, dir);
  const open = (promptCacheBytes: number) => loadEngine({ kind: "dir", path: dir, id: name }, { promptCacheBytes });
  /** Tokens of `messages` rendered without the generation prompt (the end of their last message). */
  const upTo = (e: MlxEngine, messages: ChatMessage[]) => e.text.encodePrompt(e.text.applyChatTemplate(messages, { addGenerationPrompt: false })).length;

  for (const [label, sampling] of [["greedy", greedy], ["seeded sampling", seeded]] as const) {
    test(`${label}: follow-up turns and a new chat resume from message boundaries, tokens as cold`, async () => {
      using warm = await open(1 << 30);
      using cold = await open(0);
      const t1: ChatMessage[] = [system, { role: "user", content: "Hello tiny model" }];
      const a = await run(warm, t1, sampling);
      expect(a.ids).toEqual((await run(cold, t1, sampling)).ids);
      expect(a.done.usage.cachedTokens).toBe(0);

      // The history holds another answer than the one generated: the snapshot of t1's whole prompt (its generation
      // prompt opens the rendered answer) is the deepest one shared.
      const t2: ChatMessage[] = [...t1, { role: "assistant", content: "An edited answer." }, { role: "user", content: "More?" }];
      const b = await run(warm, t2, sampling);
      expect(b.ids).toEqual((await run(cold, t2, sampling)).ids);
      if (trimmable) expect(b.done.usage.cachedTokens).toBeGreaterThanOrEqual(a.done.usage.promptTokens);
      else expect(b.done.usage.cachedTokens).toBe(a.done.usage.promptTokens);

      // A second user message instead of an answer: only the boundary at the end of the first user message is shared.
      const t2b: ChatMessage[] = [...t1, { role: "user", content: "Also this." }];
      const b2 = await run(warm, t2b, sampling);
      expect(b2.ids).toEqual((await run(cold, t2b, sampling)).ids);
      const userEnd = upTo(warm, t1);
      if (trimmable) expect(b2.done.usage.cachedTokens).toBeGreaterThanOrEqual(userEnd);
      else expect(b2.done.usage.cachedTokens).toBe(userEnd);

      // The next turn extends t2 exactly as it was prompted: the snapshot at the end of t2's prompt.
      const t3: ChatMessage[] = [...t2, { role: "assistant", content: b.text }, { role: "user", content: "And then?" }];
      const c = await run(warm, t3, sampling);
      expect(c.ids).toEqual((await run(cold, t3, sampling)).ids);
      expect(c.done.usage.cachedTokens).toBeGreaterThanOrEqual(upTo(warm, t2));

      // A new chat with the same system prompt: the system boundary (up to the first user turn's content).
      const other: ChatMessage[] = [system, { role: "user", content: "Something else" }];
      const d = await run(warm, other, sampling);
      expect(d.ids).toEqual((await run(cold, other, sampling)).ids);
      const sysEnd = upTo(warm, [system, { role: "user", content: "" }]) - 2; // "<|im_end|>\n" of the empty turn is not shared
      if (trimmable) expect(d.done.usage.cachedTokens).toBeGreaterThanOrEqual(sysEnd);
      else expect(d.done.usage.cachedTokens).toBe(sysEnd);
      // Trimmable caches keep no snapshots (at most one entry per request, 5 here); the others keep boundaries too.
      if (trimmable) expect(warm.promptCache!.stats.entries).toBeLessThanOrEqual(5);
      else expect(warm.promptCache!.stats.entries).toBeGreaterThan(5);
    }, 120_000);
  }
});

test("snapshots are freed with the engine (MLX active memory back to the baseline)", async () => {
  mx.synchronize();
  const active0 = mx.memory.active();
  {
    const dir = writeHybridModel("qwen3_5", join(tmp, "qwen3_5-mem"));
    using warm = await loadEngine({ kind: "dir", path: dir, id: "qwen3_5" }, { promptCacheBytes: 1 << 30 });
    const t1: ChatMessage[] = [system, { role: "user", content: "one" }];
    const a = await run(warm, t1, greedy);
    await run(warm, [...t1, { role: "assistant", content: a.text }, { role: "user", content: "two" }], greedy);
    expect(warm.promptCache!.stats.entries).toBeGreaterThan(2);
  }
  mx.synchronize();
  expect(mx.memory.active()).toBe(active0);
}, 60_000);

describe("message boundaries from real chat templates", () => {
  const bytes = (s: string) => [...Buffer.from(s, "utf8")];
  const messages: ChatMessage[] = [
    system,
    { role: "user", content: "What is 2+2?" },
    { role: "assistant", content: "4." },
    { role: "user", content: "And 3+3?" },
  ];
  for (const file of ["Qwen-Qwen3-0.6B", "google-gemma-4-31B-it", "meta-llama-Llama-3.1-8B-Instruct", "openai-gpt-oss-120b", "Mistral-Small-3.2-24B-Instruct-2506"]) {
    test(file, () => {
      const source = readFileSync(join(import.meta.dir, "../fixtures/chat-templates", `${file}.jinja`), "utf8");
      const render = (m: readonly ChatMessage[], addGenerationPrompt: boolean) =>
        renderChatTemplate(source, { messages: [...m], addGenerationPrompt, bosToken: "<s>", eosToken: "</s>", kwargs: { date_string: "26 Jul 2024" } });
      const prompt = render(messages, true);
      const ids = bytes(prompt);
      const chat = { messages, render, encode: bytes, encodeRest: bytes, emptyUser: { role: "user", content: "" } as ChatMessage, role: (m: ChatMessage) => m.role };
      const found = messageBoundaries(chat, prompt, ids, 0);
      expect(found.filter((b) => b.system)).toEqual([found[0]!]);
      const marks = found.map((b) => b.at);
      // The same boundaries when every prefix is tokenized whole (no text-prefix shortcut).
      expect(messageBoundaries({ ...chat, encodeRest: () => [-1] }, prompt, ids, 0)).toEqual(found);
      // Every boundary is a strict prefix of the prompt's tokens, ascending.
      expect(marks.length).toBeGreaterThanOrEqual(2);
      expect(marks).toEqual([...marks].sort((x, y) => x - y));
      for (const m of marks) expect(m).toBeLessThan(ids.length);
      const text = (n: number) => Buffer.from(ids.slice(0, n)).toString("utf8");
      // The system prompt's boundary follows its text; the deepest one follows the last user message.
      expect(text(marks[0]!)).toContain("Answer briefly.");
      expect(text(marks[0]!)).not.toContain("What is 2+2?");
      // (A template without a generation prompt renders the last message as the whole prompt: the answer before it.)
      const last = render(messages, false) === prompt ? /4\.(<\/s>)?$/ : /And 3\+3\?(<\|im_end\|>|<turn\|>|<end_of_turn>|<\|eot_id\|>|<\|end\|>)?$/;
      expect(text(marks.at(-1)!).trimEnd()).toMatch(last);
      // Past the cached part only.
      expect(messageBoundaries(chat, prompt, ids, marks.at(-1)!)).toEqual([]);
    });
  }
});

test("prefix renderings are memoized, the least recently used dropped first", () => {
  const memo = new RenderMemo(2);
  let renders = 0;
  const r = (t: string) => () => `${t}${++renders}`;
  expect(memo.get("a", r("a"))).toBe("a1");
  expect(memo.get("b", r("b"))).toBe("b2");
  expect(memo.get("a", r("a"))).toBe("a1"); // a is now the most recent
  expect(memo.get("c", r("c"))).toBe("c3"); // b goes
  expect(memo.get("a", r("a"))).toBe("a1");
  expect(memo.get("b", r("b"))).toBe("b4");
});

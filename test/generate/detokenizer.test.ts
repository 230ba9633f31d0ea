import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createDetokenizer } from "../../src/generate/detokenizer.ts";
import { TextTokenizer } from "../../src/generate/tokenizer.ts";
import { readGguf } from "../../src/gguf/reader.ts";
import { ggufTokenizer } from "../../src/gguf/tokenizer.ts";
import { llamaVocabDir } from "../gguf/llama-vocab.ts";
import { smollm2Gguf } from "../support/smollm2.ts";

const TEXTS = [
  "Hello, world! How are you today?",
  "emoji 🦙🚀 family 👨‍👩‍👧 flag 🇩🇪 end",
  "中文测试：你好，世界！日本語のテキスト",
  "  spaces\n\n\ttabs and ünïcödé ½ 3.14159",
  "<|im_start|>assistant\nHi<|im_end|>",
];

function load(path: string): TextTokenizer {
  const g = ggufTokenizer(readGguf(path), path);
  return new TextTokenizer(g.tokenizerJson, g.tokenizerConfig);
}

function streamAll(tok: TextTokenizer, ids: number[]): string[] {
  const d = createDetokenizer(tok);
  const pieces = ids.map((id) => d.add(id));
  pieces.push(d.flush());
  return pieces;
}

describe.each([
  ["byte-level BPE (SmolLM2)", async () => load(await smollm2Gguf()), false],
  ["SentencePiece + byte fallback (llama-spm)", async () => load(join(await llamaVocabDir(), "ggml-vocab-llama-spm.gguf")), true],
] as const)("%s", (_, make, spm) => {
  let tok: TextTokenizer;
  beforeAll(async () => {
    tok = await make();
  }, 600_000);

  test.each(TEXTS)("streamed pieces concatenate to the full decode, never with U+FFFD: %s", (text) => {
    const ids = tok.encode(text, { addSpecialTokens: false });
    const pieces = streamAll(tok, ids);
    expect(pieces.join("")).toBe(tok.decode(ids));
    expect(pieces.some((p) => p.includes("\uFFFD"))).toBe(false);
    if (!text.startsWith("<|")) expect(pieces.join("")).toBe(text);
  });

  test("a 4-byte emoji split into byte tokens is held back, then emitted whole", () => {
    const ids = tok.encode("🦙", { addSpecialTokens: false });
    if (spm) expect(ids.map((i) => tok.idToToken(i))).toContain("<0xF0>");
    const d = createDetokenizer(tok);
    const out = ids.map((id) => d.add(id));
    expect(out.slice(0, -1).join("")).toBe(""); // nothing before the last byte arrives
    expect(out.at(-1)! + d.flush()).toBe("🦙");
  });

  test("text is emitted incrementally, not only at flush", () => {
    const ids = tok.encode("one two three four five", { addSpecialTokens: false });
    const pieces = streamAll(tok, ids);
    expect(pieces.filter((p) => p.length > 0).length).toBeGreaterThanOrEqual(5);
    expect(pieces.at(-1)).toBe("");
  });

  test("a dangling partial sequence becomes U+FFFD only at flush", () => {
    // The first byte of 🦙 (F0) alone: as a fallback byte piece (SPM) or the first BPE token (byte-level).
    const first = spm ? tok.tokenToId("<0xF0>")! : tok.encode("🦙", { addSpecialTokens: false })[0]!;
    const d = createDetokenizer(tok);
    expect(d.add(first)).toBe("");
    expect(d.flush()).toContain("\uFFFD");
  });
});

test("skipSpecialTokens drops special tokens from the stream", async () => {
  const tok = load(await smollm2Gguf());
  const ids = tok.encode("<|im_start|>assistant\nHi<|im_end|>", { addSpecialTokens: false });
  const d = createDetokenizer(tok, { skipSpecialTokens: true });
  expect(ids.map((i) => d.add(i)).join("") + d.flush()).toBe("assistant\nHi");
});

test("SentencePiece: added whitespace-run tokens ('▁▁', Gemma style) decode to spaces, like HF decoders", () => {
  const vocab: Record<string, number> = { "<unk>": 0, "<bos>": 1, "▁": 2, a: 3, b: 4, "▁a": 5 };
  for (let i = 0; i < 256; i++) vocab[`<0x${i.toString(16).toUpperCase().padStart(2, "0")}>`] = 6 + i;
  const tok = new TextTokenizer(
    {
      version: "1.0",
      added_tokens: [
        { id: 1, content: "<bos>", special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
        { id: 262, content: "▁▁", special: false, normalized: false, lstrip: false, rstrip: false, single_word: false },
      ],
      normalizer: { type: "Replace", pattern: { String: " " }, content: "▁" },
      pre_tokenizer: null,
      post_processor: null,
      decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }] },
      model: { type: "BPE", vocab, merges: [["▁", "a"]], byte_fallback: true, unk_token: "<unk>", fuse_unk: true },
    },
    { bos_token: "<bos>" },
  );
  const ids = [262, 5, 262, 4, 1];
  expect(tok.decode(ids)).toBe("   a  b<bos>");
  const d = createDetokenizer(tok);
  expect(ids.map((i) => d.add(i)).join("") + d.flush()).toBe("   a  b<bos>");
});

import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readGguf } from "../../src/gguf/reader.ts";
import { ggufTokenizer, spmMerges, TokenType } from "../../src/gguf/tokenizer.ts";
import { TextTokenizer } from "../../src/generate/tokenizer.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { LLAMA_VOCABS, llamaVocabDir, vocabCases } from "./llama-vocab.ts";

interface EncodeGolden {
  text: string;
  ids: number[];
  decoded: string;
}

const smolGolden: EncodeGolden[] = JSON.parse(
  readFileSync(join(import.meta.dir, "../fixtures/tokenizers/smollm2-encode.json"), "utf8"),
);

describe("SmolLM2 tokenizer rebuilt from GGUF metadata", () => {
  let tok: TextTokenizer;
  let converted: ReturnType<typeof ggufTokenizer>;
  beforeAll(async () => {
    const path = await smollm2Gguf();
    converted = ggufTokenizer(readGguf(path), path);
    tok = new TextTokenizer(converted.tokenizerJson, converted.tokenizerConfig);
  }, 300_000);

  test("tokenizer_config from metadata", () => {
    expect(converted.warnings).toEqual([]);
    const c = converted.tokenizerConfig;
    expect([c.bos_token, c.eos_token, c.unk_token, c.pad_token, c.add_bos_token]).toEqual([
      "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_end|>", false,
    ]);
    expect(String(c.chat_template)).toContain("<|im_start|>");
    expect(tok.decoderKind).toBe("bytelevel");
    expect(tok.vocabSize).toBe(49152);
  });

  test.each(smolGolden.map((g) => [JSON.stringify(g.text).slice(0, 50), g] as const))(
    "encode matches Python tokenizers: %s",
    (_, g) => {
      expect(tok.encode(g.text, { addSpecialTokens: false })).toEqual(g.ids);
      expect(tok.decode(g.ids)).toBe(g.decoded);
    },
  );

  test("digits split one by one, specials are single tokens", () => {
    const ids = tok.encode("Hello world 123");
    expect(ids.slice(-3).map((i) => tok.idToToken(i))).toEqual(["1", "2", "3"]);
    expect(tok.encode("<|im_start|>")).toEqual([1]);
    expect(tok.decode([1, 2], { skipSpecialTokens: true })).toBe("");
    expect(tok.decode([])).toBe("");
  });
});

describe("llama.cpp vocab test vectors (vocab-only GGUFs from the llama-cpp-python sdist)", () => {
  let dir = "";
  beforeAll(async () => {
    dir = await llamaVocabDir();
  }, 600_000);

  test.each(LLAMA_VOCABS)("%s: every .inp text encodes to its .out ids", (name) => {
    const path = join(dir, `ggml-vocab-${name}.gguf`);
    const g = ggufTokenizer(readGguf(path), path);
    expect(g.warnings).toEqual([]);
    const tok = new TextTokenizer(g.tokenizerJson, g.tokenizerConfig);
    const cases = vocabCases(dir, name);
    expect(cases.length).toBeGreaterThan(40);
    const failures = cases
      .map((c) => ({ text: c.text, want: c.ids, got: tok.encode(c.text, { addSpecialTokens: false }) }))
      .filter((r) => JSON.stringify(r.got) !== JSON.stringify(r.want));
    expect(failures).toEqual([]);
  });

  test("SentencePiece (llama-spm): add_bos, byte fallback round trip", () => {
    const path = join(dir, "ggml-vocab-llama-spm.gguf");
    const g = ggufTokenizer(readGguf(path), path);
    const tok = new TextTokenizer(g.tokenizerJson, g.tokenizerConfig);
    expect(tok.decoderKind).toBe("spm");
    const text = "Hello 🦙 world\n\tçà 中文";
    const ids = tok.encode(text);
    expect(ids[0]).toBe(1); // <s>
    expect(ids.some((i) => /^<0x[0-9A-F]{2}>$/.test(tok.idToToken(i) ?? ""))).toBe(true);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
  });

  test("unknown pre-tokenizer falls back to GPT-2 rules with a warning", () => {
    const path = join(dir, "ggml-vocab-gpt-2.gguf");
    const f = readGguf(path);
    f.metadata.set("tokenizer.ggml.pre", { type: 8, value: "made-up" });
    expect(ggufTokenizer(f, path).warnings[0]).toContain("made-up");
  });
});

describe("spmMerges", () => {
  test("ranks merges by the merged piece's score; skips control/byte pieces", () => {
    const tokens = ["<s>", "<0x41>", "a", "b", "c", "ab", "bc", "abc"];
    const scores = [0, 0, -1, -2, -3, -0.5, -0.2, -0.1];
    const types = [TokenType.CONTROL, TokenType.BYTE, 1, 1, 1, 1, 1, 1];
    expect(spmMerges(tokens, scores, (i) => types[i]!)).toEqual([
      ["a", "bc"], // abc -0.1
      ["ab", "c"],
      ["b", "c"], // bc -0.2
      ["a", "b"], // ab -0.5
    ]);
  });
});

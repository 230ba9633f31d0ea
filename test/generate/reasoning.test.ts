import { describe, expect, test } from "bun:test";
import { detectReasoningFormat, promptOpensReasoning, ReasoningParser, type ReasoningParserOptions } from "../../src/generate/reasoning.ts";

/** Run the parser over `text` cut into pieces at the given positions. */
function parse(opts: ReasoningParserOptions, pieces: string[]) {
  const p = new ReasoningParser(opts);
  let reasoning = "";
  let answer = "";
  for (const piece of [...pieces.map((x) => p.push(x)), p.flush()]) {
    reasoning += piece.reasoning;
    answer += piece.answer;
  }
  return { reasoning, answer };
}

/** Every way to cut `s` into two or three pieces (every marker split at every position). */
function cuts(s: string): string[][] {
  const out: string[][] = [[s]];
  for (let i = 1; i < s.length; i++) {
    out.push([s.slice(0, i), s.slice(i)]);
    for (let j = i + 1; j < s.length; j += 3) out.push([s.slice(0, i), s.slice(i, j), s.slice(j)]);
  }
  return out;
}

describe("think format", () => {
  const text = "<think>\nLet me add.\n2+2=4\n</think>\n\nThe answer is 4.";
  test("split at every position gives the same reasoning/answer", () => {
    for (const pieces of cuts(text)) {
      expect(parse({ format: "think" }, pieces)).toEqual({ reasoning: "Let me add.\n2+2=4\n", answer: "The answer is 4." });
    }
  });

  test("prompt already opened <think> (Qwen3): output starts inside reasoning", () => {
    const out = "I think.\n</think>\n\nDone.";
    for (const pieces of cuts(out)) {
      expect(parse({ format: "think", startInReasoning: true }, pieces)).toEqual({ reasoning: "I think.\n", answer: "Done." });
    }
  });

  test("no markers: everything is answer; a '<' that is not a marker is released", () => {
    expect(parse({ format: "think" }, ["a < b", " and <thin", "g>"])).toEqual({ reasoning: "", answer: "a < b and <thing>" });
  });

  test("unterminated reasoning is flushed as reasoning", () => {
    expect(parse({ format: "think" }, ["<think>still going </thi"])).toEqual({ reasoning: "still going </thi", answer: "" });
  });

  test("<thinking> variant", () => {
    expect(parse({ format: "thinking" }, ["<thinking>hm</thinking>ok"])).toEqual({ reasoning: "hm", answer: "ok" });
  });
});

describe("harmony (gpt-oss) channels", () => {
  const text =
    "<|channel|>analysis<|message|>User wants 2+2. Easy.<|end|><|start|>assistant<|channel|>final<|message|>4<|return|>";
  test("analysis → reasoning, final → answer, at every split", () => {
    for (const pieces of cuts(text)) {
      expect(parse({ format: "harmony" }, pieces)).toEqual({ reasoning: "User wants 2+2. Easy.", answer: "4" });
    }
  });

  test("constrained commentary header and headerless text", () => {
    expect(
      parse({ format: "harmony" }, ["<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>"]),
    ).toEqual({ reasoning: "", answer: "{}" });
    expect(parse({ format: "harmony" }, ["plain"])).toEqual({ reasoning: "", answer: "plain" });
  });
});

describe("detection", () => {
  const vocab = (ts: string[]) => (t: string) => ts.includes(t);
  test("format from vocabulary and template", () => {
    expect(detectReasoningFormat({ hasToken: vocab(["<|channel|>", "<|message|>"]) })).toBe("harmony");
    expect(detectReasoningFormat({ hasToken: vocab(["<think>", "</think>"]) })).toBe("think");
    expect(detectReasoningFormat({ chatTemplate: "{{ '<think>' }}", hasToken: vocab([]) })).toBe("think");
    expect(detectReasoningFormat({ chatTemplate: "{{ messages }}", hasToken: vocab([]) })).toBeNull();
  });
  test("prompt opens reasoning", () => {
    expect(promptOpensReasoning("<|im_start|>assistant\n<think>\n", "think")).toBe(true);
    expect(promptOpensReasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n", "think")).toBe(false);
    expect(promptOpensReasoning("<|im_start|>assistant\n", "think")).toBe(false);
  });
});

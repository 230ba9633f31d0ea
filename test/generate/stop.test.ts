import { describe, expect, test } from "bun:test";
import { CHAT_STOP_STRINGS, StopStringMatcher } from "../../src/generate/stop.ts";

/** Feed `text` split at the given cut points; returns emitted text and the stop. */
function feed(stops: string[], chunks: string[]) {
  const m = new StopStringMatcher(stops);
  let out = "";
  let stop: string | null = null;
  for (const c of chunks) {
    const r = m.push(c);
    out += r.text;
    if (r.stop) {
      stop = r.stop;
      break;
    }
  }
  if (stop === null) out += m.flush();
  return { out, stop };
}

function allSplits(s: string): string[][] {
  const res: string[][] = [];
  for (let i = 0; i <= s.length; i++) for (let j = i; j <= s.length; j++) res.push([s.slice(0, i), s.slice(i, j), s.slice(j)]);
  return res;
}

describe("StopStringMatcher", () => {
  test("stop string across every pair of chunk boundaries: text before it, never the stop itself", () => {
    const text = "The answer is 42.\nHuman: next question";
    for (const chunks of allSplits(text)) {
      expect(feed(["\nHuman:"], chunks)).toEqual({ out: "The answer is 42.", stop: "\nHuman:" });
    }
  });

  test("held-back partial match is released when it turns out not to be a stop", () => {
    const m = new StopStringMatcher(["STOP"]);
    expect(m.push("abc ST")).toEqual({ text: "abc ", stop: null });
    expect(m.push("O")).toEqual({ text: "", stop: null });
    expect(m.push("RM")).toEqual({ text: "STORM", stop: null });
    expect(m.push(" S")).toEqual({ text: " ", stop: null });
    expect(m.flush()).toBe("S");
  });

  test("earliest occurrence wins; reports which stop matched; nothing after", () => {
    expect(feed(["bb", "a"], ["xxbba"])).toEqual({ out: "xx", stop: "bb" });
    expect(feed(["\nYou:", "\n\nYou:"], ["hi\n\nYou: there"])).toEqual({ out: "hi", stop: "\n\nYou:" });
    const m = new StopStringMatcher(["x"]);
    m.push("ax");
    expect(m.push("more")).toEqual({ text: "", stop: "x" });
    expect(m.matched).toBe("x");
    expect(m.flush()).toBe("");
  });

  test("no stops: passthrough; empty stop strings ignored", () => {
    expect(feed([], ["a", "b"])).toEqual({ out: "ab", stop: null });
    expect(feed([""], ["a", "b"])).toEqual({ out: "ab", stop: null });
  });

  test("chat stop strings", () => {
    expect(feed([...CHAT_STOP_STRINGS], ["Sure.", "\n\nAssis", "tant: more"])).toEqual({ out: "Sure.", stop: "\n\nAssistant:" });
  });
});

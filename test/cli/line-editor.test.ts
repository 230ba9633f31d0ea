/** The chat line editor's pure parts: key decoding across chunks, editing, history browsing, layout. */
import { describe, expect, test } from "bun:test";
import { EditorState, type Key, KeyDecoder, layout, openBlock, unwrapBlock } from "../../src/cli/line-editor.ts";

function typeAll(s: EditorState, keys: Key[]): void {
  for (const k of keys) s.apply(k);
}

describe("KeyDecoder", () => {
  test("arrows, Home/End in their xterm, VT220 and SS3 spellings; control keys; text runs", () => {
    const d = new KeyDecoder();
    const kinds = d.feed("ab\x1b[D\x1bOC\x1b[1~\x1b[4~\x1b[3~\x01\x05\x0b\x15\x17\x7f\r").map((k) => k.kind);
    expect(kinds).toEqual(["text", "left", "right", "home", "end", "delete", "home", "end", "killEnd", "killStart", "killWord", "backspace", "enter"]);
  });

  test("an escape sequence and a paste split across chunks; a paste keeps its newlines and may contain ESC-like text", () => {
    const d = new KeyDecoder();
    expect(d.feed("\x1b[")).toEqual([]);
    expect(d.feed("A")).toEqual([{ kind: "up" }]);
    expect(d.feed("\x1b[20")).toEqual([]);
    expect(d.feed("0~line 1\r\nline 2\rline 3\x1b[")).toEqual([]);
    expect(d.feed("201")).toEqual([]);
    expect(d.feed("~z")).toEqual([{ kind: "paste", text: "line 1\nline 2\nline 3" }, { kind: "text", text: "z" }]);
    const big = "y".repeat(100_000);
    expect(d.feed(`\x1b[200~${big}\x1b[201~`)).toEqual([{ kind: "paste", text: big }]);
  });

  test("unknown sequences are swallowed, not typed", () => {
    expect(new KeyDecoder().feed("\x1b[15~\x1b[1;2Pq")).toEqual([{ kind: "text", text: "q" }]);
  });
});

describe("EditorState", () => {
  test("insert in the middle, word moves and kills, Ctrl-D deletes under the cursor", () => {
    const s = new EditorState();
    typeAll(s, [{ kind: "text", text: "hello big world" }, { kind: "wordLeft" }, { kind: "killWord" }]);
    expect(s.text).toBe("hello world");
    typeAll(s, [{ kind: "home" }, { kind: "eof" }, { kind: "text", text: "J" }]);
    expect(s.text).toBe("Jello world");
    typeAll(s, [{ kind: "wordRight" }, { kind: "killEnd" }]);
    expect(s.text).toBe("Jello");
    expect(new EditorState().apply({ kind: "eof" })).toBe("eof");
  });

  test("history: Up/Down browse and give back the draft", () => {
    const s = new EditorState(["one", "two"]);
    s.apply({ kind: "text", text: "dra" });
    s.apply({ kind: "up" });
    expect(s.text).toBe("two");
    s.apply({ kind: "up" });
    s.apply({ kind: "up" });
    expect(s.text).toBe("one");
    s.apply({ kind: "down" });
    s.apply({ kind: "down" });
    expect(s.text).toBe("dra");
  });

  test("Enter after a trailing backslash or inside an open \"\"\" block adds a line", () => {
    const s = new EditorState();
    s.apply({ kind: "text", text: "first \\" });
    expect(s.apply({ kind: "enter" })).toBeNull();
    s.apply({ kind: "text", text: "second" });
    expect(s.apply({ kind: "enter" })).toBe("submit");
    expect(s.text).toBe("first \nsecond");
    expect(openBlock('"""\nabc')).toBe(true);
    expect(openBlock('"""\nabc\n"""')).toBe(false);
    expect(unwrapBlock('"""\nabc\ndef\n"""')).toBe("abc\ndef");
  });
});

describe("layout", () => {
  test("wraps long rows, continues lines after newlines, places the cursor", () => {
    const l = layout("You: ", "... ", "abcdefghij\nxy", 13, 10);
    expect(l.rows).toEqual(["You: abcde", "fghij", "... xy"]);
    expect({ row: l.row, col: l.col }).toEqual({ row: 2, col: 6 });
    const full = layout("You: ", "... ", "abcde", 5, 10);
    expect(full.rows).toEqual(["You: abcde", ""]);
    expect({ row: full.row, col: full.col }).toEqual({ row: 1, col: 0 });
  });
});

/**
 * The line editor of interactive chat: raw-mode input with cursor movement, emacs keys, history and
 * bracketed paste of any length (a paste is inserted as text, its newlines included, never submitted line
 * by line). Three layers: a key decoder (bytes → keys, stateful across chunks), a pure editor state
 * (keys → buffer, cursor, history) and layout, and a thin terminal driver that owns raw mode.
 * No library: node:readline submits a multi-line paste line by line and cannot hold type-ahead.
 */

export type Key =
  | { kind: "text"; text: string }
  | { kind: "paste"; text: string }
  | {
      kind:
        | "enter"
        | "newline"
        | "backspace"
        | "delete"
        | "left"
        | "right"
        | "up"
        | "down"
        | "home"
        | "end"
        | "wordLeft"
        | "wordRight"
        | "killEnd"
        | "killStart"
        | "killWord"
        | "interrupt"
        | "eof"
        | "clear";
    };

const PASTE_START = "\x1b[200~";
const PASTE_END = "\x1b[201~";

const CONTROL: Record<string, Key["kind"]> = {
  "\r": "enter",
  "\n": "newline", // Ctrl-J
  "\x7f": "backspace",
  "\b": "backspace",
  "\x01": "home",
  "\x05": "end",
  "\x02": "left",
  "\x06": "right",
  "\x10": "up",
  "\x0e": "down",
  "\x0b": "killEnd",
  "\x15": "killStart",
  "\x17": "killWord",
  "\x03": "interrupt",
  "\x04": "eof",
  "\x0c": "clear",
};

/** CSI / SS3 sequences (xterm, VT220, rxvt spellings) → keys. */
const SEQUENCES: Record<string, Key["kind"]> = {
  "[A": "up",
  "[B": "down",
  "[C": "right",
  "[D": "left",
  "[H": "home",
  "[F": "end",
  "OA": "up",
  "OB": "down",
  "OC": "right",
  "OD": "left",
  "OH": "home",
  "OF": "end",
  "[1~": "home",
  "[7~": "home",
  "[4~": "end",
  "[8~": "end",
  "[3~": "delete",
  "[1;5C": "wordRight",
  "[1;5D": "wordLeft",
  "[1;3C": "wordRight",
  "[1;3D": "wordLeft",
  b: "wordLeft", // Alt-b
  f: "wordRight", // Alt-f
  "\r": "newline", // Alt-Enter
  "\x7f": "killWord", // Alt-Backspace
};

/** Bytes (as text) → keys. Keeps state across chunks: an escape sequence or a paste may arrive in pieces. */
export class KeyDecoder {
  private pending = "";
  private paste: string[] | null = null;

  feed(chunk: string): Key[] {
    let s = this.pending + chunk;
    this.pending = "";
    const keys: Key[] = [];
    let text = "";
    const flushText = () => {
      if (text) keys.push({ kind: "text", text });
      text = "";
    };
    while (s.length > 0) {
      if (this.paste) {
        const end = s.indexOf(PASTE_END);
        if (end < 0) {
          // keep a tail that may be the start of the end marker
          const keep = Math.min(s.length, PASTE_END.length - 1);
          this.paste.push(s.slice(0, s.length - keep));
          this.pending = s.slice(s.length - keep);
          return keys;
        }
        this.paste.push(s.slice(0, end));
        keys.push({ kind: "paste", text: this.paste.join("").replace(/\r\n?/g, "\n") });
        this.paste = null;
        s = s.slice(end + PASTE_END.length);
        continue;
      }
      const c = s[0]!;
      if (c === "\x1b") {
        flushText();
        if (s.startsWith(PASTE_START)) {
          this.paste = [];
          s = s.slice(PASTE_START.length);
          continue;
        }
        if (s.length === 1 || (PASTE_START.startsWith(s) && s.length < PASTE_START.length)) {
          this.pending = s; // an incomplete sequence: wait for the rest
          return keys;
        }
        const m = /^\x1b(\[[0-9;]*[@-~]|O[A-Za-z]|[\s\S])/.exec(s);
        if (!m) {
          this.pending = s;
          return keys;
        }
        const kind = SEQUENCES[m[1]!];
        if (kind) keys.push({ kind } as Key);
        s = s.slice(m[0].length);
        continue;
      }
      const ctl = CONTROL[c];
      if (ctl) {
        flushText();
        // a terminal without bracketed paste sends "\r\n" pairs; one Enter is enough
        keys.push({ kind: ctl } as Key);
        s = s.slice(1);
        continue;
      }
      if (c < " " && c !== "\t") {
        s = s.slice(1); // other control characters do nothing
        continue;
      }
      text += c;
      s = s.slice(1);
    }
    flushText();
    return keys;
  }
}

export type EditResult = "submit" | "interrupt" | "eof" | "clear" | null;

/** A `"""` block not closed yet: Enter adds a line instead of sending. */
export function openBlock(text: string): boolean {
  const t = text.trim();
  return t.startsWith('"""') && !(t.length >= 6 && t.endsWith('"""'));
}

/** The message inside a `"""…"""` block (the quotes are markup, not content). */
export function unwrapBlock(text: string): string {
  const t = text.trim();
  return t.startsWith('"""') && t.length >= 6 && t.endsWith('"""') ? t.slice(3, -3).replace(/^\n/, "").replace(/\n$/, "") : text;
}

/** Buffer, cursor and history browsing; pure, so every key's effect is testable without a terminal. */
export class EditorState {
  text = "";
  cursor = 0;
  private index: number;
  private draft = "";

  constructor(private readonly history: string[] = []) {
    this.index = history.length;
  }

  set(text: string): void {
    this.text = text;
    this.cursor = text.length;
  }

  private insert(t: string): void {
    this.text = this.text.slice(0, this.cursor) + t + this.text.slice(this.cursor);
    this.cursor += t.length;
  }

  private wordStart(): number {
    let i = this.cursor;
    while (i > 0 && /\s/.test(this.text[i - 1]!)) i--;
    while (i > 0 && !/\s/.test(this.text[i - 1]!)) i--;
    return i;
  }

  private wordEnd(): number {
    let i = this.cursor;
    while (i < this.text.length && /\s/.test(this.text[i]!)) i++;
    while (i < this.text.length && !/\s/.test(this.text[i]!)) i++;
    return i;
  }

  private browse(to: number): void {
    if (to < 0 || to > this.history.length || to === this.index) return;
    if (this.index === this.history.length) this.draft = this.text;
    this.index = to;
    this.set(to === this.history.length ? this.draft : this.history[to]!);
  }

  apply(key: Key): EditResult {
    switch (key.kind) {
      case "text":
      case "paste":
        this.insert(key.text);
        return null;
      case "newline":
        this.insert("\n");
        return null;
      case "enter":
        // `\` at the end continues on a new line; an open """ block continues until its closing """
        if (this.cursor === this.text.length && this.text.endsWith("\\")) {
          this.text = this.text.slice(0, -1);
          this.cursor = this.text.length;
          this.insert("\n");
          return null;
        }
        if (openBlock(this.text)) {
          this.cursor = this.text.length;
          this.insert("\n");
          return null;
        }
        return "submit";
      case "backspace":
        if (this.cursor > 0) {
          this.text = this.text.slice(0, this.cursor - 1) + this.text.slice(this.cursor);
          this.cursor--;
        }
        return null;
      case "delete":
        this.text = this.text.slice(0, this.cursor) + this.text.slice(this.cursor + 1);
        return null;
      case "eof":
        if (this.text === "") return "eof";
        this.text = this.text.slice(0, this.cursor) + this.text.slice(this.cursor + 1);
        return null;
      case "left":
        this.cursor = Math.max(0, this.cursor - 1);
        return null;
      case "right":
        this.cursor = Math.min(this.text.length, this.cursor + 1);
        return null;
      case "home":
        this.cursor = this.text.lastIndexOf("\n", this.cursor - 1) + 1;
        return null;
      case "end": {
        const nl = this.text.indexOf("\n", this.cursor);
        this.cursor = nl < 0 ? this.text.length : nl;
        return null;
      }
      case "wordLeft":
        this.cursor = this.wordStart();
        return null;
      case "wordRight":
        this.cursor = this.wordEnd();
        return null;
      case "killEnd":
        this.text = this.text.slice(0, this.cursor);
        return null;
      case "killStart":
        this.text = this.text.slice(this.cursor);
        this.cursor = 0;
        return null;
      case "killWord": {
        const from = this.wordStart();
        this.text = this.text.slice(0, from) + this.text.slice(this.cursor);
        this.cursor = from;
        return null;
      }
      case "up":
        this.browse(this.index - 1);
        return null;
      case "down":
        this.browse(this.index + 1);
        return null;
      case "interrupt":
        return "interrupt";
      case "clear":
        return "clear";
    }
  }
}

function visibleChar(c: string): string {
  return c === "\t" ? "    " : c;
}

/**
 * Rows the prompt and text occupy at `columns`, and where the cursor is. Newlines start a row with `cont`;
 * long rows wrap. Widths count code units as one column (wide CJK glyphs would misplace the cursor).
 */
export function layout(prompt: string, cont: string, text: string, cursor: number, columns: number): { rows: string[]; row: number; col: number } {
  const width = Math.max(10, columns);
  const rows: string[] = [prompt];
  let col = prompt.length;
  let cur = { row: 0, col };
  for (let i = 0; i <= text.length; i++) {
    if (i === cursor) {
      // a cursor after a full row sits at the start of the next one
      if (col >= width) {
        rows.push("");
        col = 0;
      }
      cur = { row: rows.length - 1, col };
    }
    if (i === text.length) break;
    const c = text[i]!;
    if (c === "\n") {
      rows.push(cont);
      col = cont.length;
      continue;
    }
    for (const v of visibleChar(c)) {
      if (col >= width) {
        rows.push("");
        col = 0;
      }
      rows[rows.length - 1] += v;
      col++;
    }
  }
  return { rows, ...cur };
}

export interface TerminalIO {
  write: (s: string) => void;
  columns: () => number;
  /** Screen height: a message taller than the screen is shown as the window of rows around the cursor. */
  rows?: () => number;
  setRaw: (on: boolean) => void;
  onData: (cb: (chunk: string) => void) => () => void;
}

export function processTerminal(): TerminalIO {
  return {
    write: (s) => void process.stdout.write(s),
    columns: () => process.stdout.columns || 80,
    rows: () => process.stdout.rows || 24,
    setRaw: (on) => {
      process.stdin.setRawMode?.(on);
      if (on) process.stdin.resume();
      else process.stdin.pause();
    },
    onData: (cb) => {
      const h = (d: Buffer | string) => cb(typeof d === "string" ? d : d.toString("utf8"));
      process.stdin.on("data", h);
      return () => void process.stdin.off("data", h);
    },
  };
}

/**
 * The terminal side of a chat session: raw mode and bracketed paste on for its lifetime, keys routed to the
 * line being edited, or — while an answer streams — Ctrl-C to stop it and everything else kept as type-ahead
 * for the next prompt (shown there, editable, never sent by itself).
 */
export class LineEditor {
  private readonly decoder = new KeyDecoder();
  private consumer: ((k: Key) => void) | null = null;
  private typeAhead: Key[] = [];
  private interruptHandler: (() => void) | null = null;
  private readonly offData: () => void;
  private closed = false;
  private readonly restore = () => this.close();

  constructor(
    private readonly io: TerminalIO,
    readonly history: string[] = [],
    private readonly onSubmit: (line: string) => void = () => {},
  ) {
    io.setRaw(true);
    io.write("\x1b[?2004h");
    this.offData = io.onData((chunk) => {
      for (const k of this.decoder.feed(chunk)) this.dispatch(k);
    });
    process.once("exit", this.restore);
  }

  private dispatch(k: Key): void {
    if (this.consumer) return this.consumer(k);
    if (k.kind === "interrupt") return this.interruptHandler?.();
    this.typeAhead.push(k);
  }

  /** While an answer runs: Ctrl-C calls `handler`; returns the unsubscribe function (the run.ts onInterrupt shape). */
  onInterrupt(handler: () => void): () => void {
    this.interruptHandler = handler;
    return () => {
      if (this.interruptHandler === handler) this.interruptHandler = null;
    };
  }

  /** Characters typed since the last prompt (during an answer). */
  get pendingTypeAhead(): number {
    return this.typeAhead.length;
  }

  /** Edit one message; resolves the text on Enter, null on Ctrl-D (empty line) or Ctrl-C on an empty line. */
  readLine(prompt: string, cont = "... "): Promise<string | null> {
    const state = new EditorState(this.history);
    let drawn = { row: 0, rows: 1 };
    const draw = () => {
      const full = layout(prompt, cont, state.text, state.cursor, this.io.columns());
      // the cursor cannot move above the top of the screen: redraw only a screenful around the cursor
      const height = Math.max(3, (this.io.rows?.() ?? 1e9) - 1);
      const start = full.rows.length > height ? Math.min(Math.max(0, full.row - height + 1), full.rows.length - height) : 0;
      const l = start > 0 || full.rows.length > height ? { rows: full.rows.slice(start, start + height), row: full.row - start, col: full.col } : full;
      let out = drawn.row > 0 ? `\x1b[${drawn.row}A` : "";
      out += `\r\x1b[J${l.rows.join("\r\n")}`;
      const up = l.rows.length - 1 - l.row;
      if (up > 0) out += `\x1b[${up}A`;
      out += `\r${l.col > 0 ? `\x1b[${l.col}C` : ""}`;
      this.io.write(out);
      drawn = { row: l.row, rows: l.rows.length };
    };
    const finish = () => {
      // leave the cursor below the whole message
      const down = drawn.rows - 1 - drawn.row;
      this.io.write(`${down > 0 ? `\x1b[${down}B` : ""}\r\n`);
    };
    return new Promise((resolve) => {
      const onKey = (k: Key) => {
        const r = state.apply(k);
        if (r === "submit") {
          draw();
          finish();
          this.consumer = null;
          const line = state.text;
          if (line.trim() !== "" && this.history.at(-1) !== line) {
            this.history.push(line);
            this.onSubmit(line);
          }
          return resolve(line);
        }
        if (r === "eof" || (r === "interrupt" && state.text === "")) {
          finish();
          this.consumer = null;
          return resolve(null);
        }
        if (r === "interrupt") state.set(""); // Ctrl-C on a non-empty line clears it, as shells do
        if (r === "clear") {
          this.io.write("\x1b[H\x1b[2J");
          drawn = { row: 0, rows: 1 };
        }
        draw();
      };
      // keys typed while the previous answer ran: replayed into this line (Enter among them does not send)
      const queued = this.typeAhead;
      this.typeAhead = [];
      for (const k of queued) {
        if (k.kind === "enter") state.apply({ kind: "text", text: " " });
        else if (k.kind !== "interrupt" && k.kind !== "eof") state.apply(k);
      }
      state.set(state.text.trimEnd());
      this.consumer = onKey;
      draw();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.off("exit", this.restore);
    this.offData();
    this.io.write("\x1b[?2004l");
    this.io.setRaw(false);
  }
}

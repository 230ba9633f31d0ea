/**
 * Streaming split of model output into reasoning and answer text.
 *
 * - `think`: `<think>…</think>` (Qwen3, DeepSeek-R1). Qwen3-style templates may end the prompt with
 *   `<think>\n`, so the output starts inside reasoning (`startInReasoning`).
 * - `thinking`: `<thinking>…</thinking>`.
 * - `harmony` (gpt-oss): `<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…<|return|>`;
 *   the `analysis` channel is reasoning, any other channel (final, commentary) is answer.
 * A marker split across chunks is buffered until it is complete or proven not to be a marker.
 */

export type ReasoningFormat = "think" | "thinking" | "harmony";

export interface ReasoningDelta {
  reasoning: string;
  answer: string;
  /** harmony with `toolCalls`: complete `to=functions.NAME` messages (arguments = the message text). */
  calls?: { name: string; arguments: string }[];
}

export interface ReasoningParserOptions {
  format: ReasoningFormat;
  /** The prompt already opened the reasoning block (e.g. ends with `<think>\n`). @default false */
  startInReasoning?: boolean;
  /** harmony: messages addressed `to=functions.NAME` are tool calls, not answer text. @default false */
  toolCalls?: boolean;
}

const TAGS: Record<"think" | "thinking", [string, string]> = {
  think: ["<think>", "</think>"],
  thinking: ["<thinking>", "</thinking>"],
};
const HARMONY = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"];

/** Splits a text stream on a fixed marker set, holding back a possible partial marker at the end. */
class MarkerScanner {
  private held = "";
  constructor(private readonly markers: readonly string[]) {}

  /** Text pieces and complete markers, in order. */
  *scan(text: string, final = false): Generator<{ marker: string | null; text: string }> {
    let buf = this.held + text;
    this.held = "";
    for (;;) {
      let at = -1;
      let which = "";
      for (const m of this.markers) {
        const i = buf.indexOf(m);
        if (i >= 0 && (at < 0 || i < at)) {
          at = i;
          which = m;
        }
      }
      if (at < 0) break;
      if (at > 0) yield { marker: null, text: buf.slice(0, at) };
      yield { marker: which, text: "" };
      buf = buf.slice(at + which.length);
    }
    const keep = final ? 0 : this.partial(buf);
    if (buf.length - keep > 0) yield { marker: null, text: buf.slice(0, buf.length - keep) };
    this.held = buf.slice(buf.length - keep);
  }

  private partial(buf: string): number {
    let best = 0;
    for (const m of this.markers) {
      for (let k = Math.min(m.length - 1, buf.length); k > best; k--) {
        if (buf.endsWith(m.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}

/** Incremental reasoning/answer splitter; feed decoded text with push(), then call flush(). */
export class ReasoningParser {
  private readonly scanner: MarkerScanner;
  private readonly format: ReasoningFormat;
  private inReasoning: boolean;
  /** harmony: reading a header (`<|start|>role<|channel|>name…`) until `<|message|>`. */
  private inHeader = false;
  private header = "";
  /** Drop whitespace at the start of a section ("<think>\n", "</think>\n\n"). */
  private trimStart = true;
  /** harmony: the function the current message calls, and its text so far. */
  private callName: string | null = null;
  private callArgs = "";
  private readonly toolCalls: boolean;
  private calls: { name: string; arguments: string }[] = [];

  constructor(opts: ReasoningParserOptions) {
    this.format = opts.format;
    this.toolCalls = opts.toolCalls ?? false;
    this.inReasoning = opts.startInReasoning ?? false;
    this.scanner = new MarkerScanner(opts.format === "harmony" ? HARMONY : TAGS[opts.format]);
  }

  push(text: string): ReasoningDelta {
    return this.run(text, false);
  }

  flush(): ReasoningDelta {
    return this.run("", true);
  }

  /** Whether the parser is currently inside reasoning. */
  get reasoning(): boolean {
    return this.inReasoning;
  }

  private run(text: string, final: boolean): ReasoningDelta {
    const out: ReasoningDelta = { reasoning: "", answer: "" };
    for (const piece of this.scanner.scan(text, final)) {
      if (piece.marker !== null) this.onMarker(piece.marker);
      else this.onText(piece.text, out);
    }
    if (final && this.callName !== null) this.endCall();
    if (this.calls.length > 0) {
      out.calls = this.calls;
      this.calls = [];
    }
    return out;
  }

  private onMarker(m: string): void {
    if (this.format !== "harmony") {
      const [open, close] = TAGS[this.format];
      if (m === open) this.inReasoning = true;
      else if (m === close) this.inReasoning = false;
      this.trimStart = true;
      return;
    }
    switch (m) {
      case "<|start|>":
      case "<|channel|>":
        if (!this.inHeader) this.header = "";
        this.inHeader = true;
        this.header += m;
        break;
      case "<|constrain|>":
        if (this.inHeader) this.header += m;
        break;
      case "<|message|>": {
        const channel = /<\|channel\|>\s*([A-Za-z_]+)/.exec(this.header)?.[1] ?? "final";
        const to = this.toolCalls ? /\bto=functions\.([^\s<]+)/.exec(this.header)?.[1] : undefined;
        this.callName = to ?? null;
        this.callArgs = "";
        this.inReasoning = to === undefined && channel === "analysis";
        this.inHeader = false;
        this.trimStart = true;
        break;
      }
      default: // <|end|>, <|return|>, <|call|>: message over; the next text is headerless answer unless a header follows
        if (this.callName !== null) this.endCall();
        this.inReasoning = false;
        this.inHeader = false;
        this.trimStart = true;
    }
  }

  private endCall(): void {
    this.calls.push({ name: this.callName!, arguments: this.callArgs.trim() });
    this.callName = null;
    this.callArgs = "";
  }

  private onText(t: string, out: ReasoningDelta): void {
    if (this.inHeader) {
      this.header += t;
      return;
    }
    if (this.callName !== null) {
      this.callArgs += t;
      return;
    }
    if (this.trimStart) {
      t = t.replace(/^\s+/, "");
      if (t.length === 0) return;
      this.trimStart = false;
    }
    if (this.inReasoning) out.reasoning += t;
    else out.answer += t;
  }
}

/**
 * Guess a model's reasoning format from its chat template and vocabulary: harmony tokens → harmony,
 * a `<think>`/`</think>` pair → think. Returns null for models without reasoning markers.
 */
export function detectReasoningFormat(o: { chatTemplate?: string | null; hasToken: (t: string) => boolean }): ReasoningFormat | null {
  if (o.hasToken("<|channel|>") && o.hasToken("<|message|>")) return "harmony";
  if (o.hasToken("<think>") && o.hasToken("</think>")) return "think";
  if (o.chatTemplate?.includes("<think>")) return "think";
  if (o.chatTemplate?.includes("<thinking>")) return "thinking";
  return null;
}

/** True when a rendered prompt leaves the model inside an open reasoning block (Qwen3 / R1 style templates). */
export function promptOpensReasoning(prompt: string, format: ReasoningFormat): boolean {
  if (format === "harmony") return false;
  const [open, close] = TAGS[format];
  const o = prompt.lastIndexOf(open);
  return o >= 0 && prompt.indexOf(close, o) < 0;
}

/**
 * Stop strings over streamed text. Text that could still be the start of a stop string is held back;
 * when a stop string appears, the text before its earliest occurrence is released and the stop
 * string itself (and anything after it) never is.
 */

export interface StopResult {
  /** Text safe to emit now. */
  text: string;
  /** The stop string that matched (earliest occurrence; the longest one on a tie), or null. */
  stop: string | null;
}

/** The chat stop strings mlx-knife adds in interactive chat and the server's chat endpoint (contract §6.1). */
export const CHAT_STOP_STRINGS: readonly string[] = [
  "\nHuman:",
  "\nAssistant:",
  "\nYou:",
  "\n\nHuman:",
  "\n\nAssistant:",
  "\n\nYou:",
];

export class StopStringMatcher {
  private readonly stops: string[];
  private held = "";
  private done = false;
  /** The stop string that ended the stream, once one did. */
  matched: string | null = null;

  constructor(stops: readonly string[]) {
    this.stops = [...new Set(stops.filter((s) => s.length > 0))];
  }

  /** Feed streamed text; after a match, every further call returns empty text. */
  push(text: string): StopResult {
    if (this.done) return { text: "", stop: this.matched };
    const buf = this.held + text;
    let at = -1;
    let which: string | null = null;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at || (i === at && s.length > (which as string).length))) {
        at = i;
        which = s;
      }
    }
    if (which !== null) {
      this.done = true;
      this.matched = which;
      this.held = "";
      return { text: buf.slice(0, at), stop: which };
    }
    const keep = this.partialSuffix(buf);
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stop: null };
  }

  /** End of stream: release held text (it never became a stop string). */
  flush(): string {
    const s = this.done ? "" : this.held;
    this.held = "";
    return s;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of some stop string. */
  private partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > best; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}

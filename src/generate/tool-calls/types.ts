/** The shapes every tool-call parser shares (index.ts: the families; forced.ts: enforced calls). */
/** One piece of call output: `name` set starts a new call; otherwise `arguments` continues the current one. */
export interface CallPiece {
  name?: string;
  id?: string;
  arguments: string;
}

export interface ParsedText {
  text: string;
  calls: CallPiece[];
}

export interface ToolCallParser {
  push(text: string): ParsedText;
  flush(): ParsedText;
  /** Mistral templates insist on 9-character alphanumeric call ids. */
  readonly idStyle?: "openai" | "mistral";
}

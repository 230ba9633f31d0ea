/**
 * Where the messages of a rendered chat end, in prompt tokens: the positions where the prompt cache keeps a
 * snapshot of caches it cannot trim (sliding windows, recurrent states), so the next turn of the chat, or
 * another chat with the same system prompt, resumes there. Found as mlx-lm's server finds its system-prompt
 * segment: render a prefix of the message list and take the tokens it shares with the whole prompt (a
 * boundary is never a position the whole prompt does not pass through, whatever the template does). Where the
 * prefix's text starts the prompt's text and the prompt's tokens end with the tokens of the rest (the usual case:
 * a special token opens the next turn), only that short rest is tokenized.
 */

/** The chat as its template renders it (prefixes included). */
export interface ChatRendering<M> {
  messages: readonly M[];
  render(messages: readonly M[], addGenerationPrompt: boolean): string;
  /** The prompt's tokens for a whole rendering (BOS rule included). */
  encode(text: string): number[];
  /** Tokens of a piece of the prompt after its start (no BOS or other added tokens). */
  encodeRest(text: string): number[];
  /** A message with this role and empty content (closes a system-only prefix, as mlx-lm does). */
  emptyUser: M;
  role(m: M): string;
}

/** A position in the prompt's tokens where a message ends; `system`: the end of the system prompt. */
export interface Boundary {
  at: number;
  system: boolean;
}

/** The deepest message boundaries kept per request, besides the end of the system prompt. */
export const MAX_MESSAGE_BOUNDARIES = 3;

function sharedPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Boundaries in `ids` (the tokens of `prompt`) past `floor` (tokens already cached), ascending: the end of the
 * system prompt and of the last MAX_MESSAGE_BOUNDARIES messages. A prefix the template refuses to render
 * (e.g. one that ends on an assistant turn) gives no boundary.
 */
export function messageBoundaries<M>(chat: ChatRendering<M>, prompt: string, ids: readonly number[], floor: number): Boundary[] {
  const out = new Map<number, boolean>();
  const at = (messages: readonly M[]): number => {
    let text: string;
    try {
      text = chat.render(messages, false);
    } catch {
      return 0;
    }
    if (text.length > 0 && prompt.startsWith(text)) {
      const rest = chat.encodeRest(prompt.slice(text.length));
      const b = ids.length - rest.length;
      if (b > 0 && rest.every((t, i) => ids[b + i] === t)) return b;
    }
    return sharedPrefix(chat.encode(text), ids);
  };

  const msgs = chat.messages;
  let system = 0;
  while (system < msgs.length && chat.role(msgs[system]!) === "system") system++;
  for (let k = msgs.length, found = 0; k > system && found < MAX_MESSAGE_BOUNDARIES; k--) {
    const b = at(msgs.slice(0, k));
    // Shorter prefixes end earlier: nothing below the cached part is worth rendering.
    if (b <= floor && b > 0) break;
    if (b > floor && b < ids.length && !out.has(b)) {
      out.set(b, false);
      found++;
    }
  }
  // The system prompt closed by an empty user turn: its shared part reaches into the first user turn's header
  // (and is the only system boundary of templates that fold the system prompt into that turn, as gemma's do).
  if (system > 0) {
    const b = at([...msgs.slice(0, system), chat.emptyUser]) || at(msgs.slice(0, system));
    if (b > floor && b < ids.length) out.set(b, true);
  }
  return [...out].map(([at, system]) => ({ at, system })).sort((a, b) => a.at - b.at);
}

/**
 * The last few renderings of message-list prefixes, by their input: a chat's boundaries render the same
 * prefixes every turn, and some templates take tens of ms (gemma-4's).
 */
export class RenderMemo {
  /** Least recently used first. */
  readonly #texts = new Map<string, string>();

  constructor(readonly size: number) {}

  get(key: string, render: () => string): string {
    const hit = this.#texts.get(key);
    this.#texts.delete(key);
    const text = hit ?? render();
    this.#texts.set(key, text);
    for (const k of this.#texts.keys()) {
      if (this.#texts.size <= this.size) break;
      this.#texts.delete(k);
    }
    return text;
  }
}

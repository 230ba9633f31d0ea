/**
 * Where the messages of a rendered chat end, in prompt tokens: the positions where the prompt cache keeps a
 * snapshot of caches it cannot trim (sliding windows, recurrent states), so the next turn of the chat, or
 * another chat with the same system prompt, resumes there. Found as mlx-lm's server finds its system-prompt
 * segment: render a prefix of the message list and take the tokens it shares with the whole prompt (a
 * boundary is never a position the whole prompt does not pass through, whatever the template does).
 */

/** The chat as its template renders it (prefixes included). */
export interface ChatRendering<M> {
  messages: readonly M[];
  render(messages: readonly M[], addGenerationPrompt: boolean): string;
  encode(text: string): number[];
  /** A message with this role and empty content (closes a system-only prefix, as mlx-lm does). */
  emptyUser: M;
  role(m: M): string;
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
 * Boundaries in `ids` (the whole prompt) past `floor` (tokens already cached), ascending: the end of the
 * system prompt and of the last MAX_MESSAGE_BOUNDARIES messages. A prefix the template refuses to render
 * (e.g. one that ends on an assistant turn) gives no boundary.
 */
export function messageBoundaries<M>(chat: ChatRendering<M>, ids: readonly number[], floor: number): number[] {
  const out = new Set<number>();
  const at = (messages: readonly M[]): number => {
    try {
      return sharedPrefix(chat.encode(chat.render(messages, false)), ids);
    } catch {
      return 0;
    }
  };
  const keep = (b: number) => {
    if (b > floor && b < ids.length) out.add(b);
  };
  const msgs = chat.messages;
  let system = 0;
  while (system < msgs.length && chat.role(msgs[system]!) === "system") system++;
  for (let k = msgs.length, found = 0; k > system && found < MAX_MESSAGE_BOUNDARIES; k--) {
    const b = at(msgs.slice(0, k));
    // Shorter prefixes end earlier: nothing below the cached part is worth rendering.
    if (b <= floor && b > 0) break;
    if (b > floor && b < ids.length && !out.has(b)) {
      out.add(b);
      found++;
    }
  }
  // The system prompt closed by an empty user turn: its shared part reaches into the first user turn's header
  // (and is the only system boundary of templates that fold the system prompt into that turn, as gemma's do).
  if (system > 0) keep(at([...msgs.slice(0, system), chat.emptyUser]) || at(msgs.slice(0, system)));
  return [...out].sort((a, b) => a - b);
}

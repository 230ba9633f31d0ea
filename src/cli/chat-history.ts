/**
 * Chat input history, per user: `$XDG_STATE_HOME/mlxk/chat_history` (one JSON string per line, so a
 * multi-line message stays one entry), private to the user (0600), the newest 1000 entries kept.
 */
import { appendFileSync, chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Env, stateDir } from "../env.ts";

export const HISTORY_LIMIT = 1000;

export function historyPath(env: Env): string {
  return join(stateDir(env), "chat_history");
}

export function loadHistory(env: Env): string[] {
  let text: string;
  try {
    text = readFileSync(historyPath(env), "utf8");
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      const v = JSON.parse(line);
      if (typeof v === "string") out.push(v);
    } catch {
      // a torn last line (two chats writing at once) is skipped, not fatal
    }
  }
  if (out.length > HISTORY_LIMIT * 2) {
    // compact now and then so the file does not grow without bound
    const kept = out.slice(-HISTORY_LIMIT);
    try {
      writeFileSync(historyPath(env), kept.map((l) => `${JSON.stringify(l)}\n`).join(""), { mode: 0o600 });
    } catch {
      // read-only state dir: history still works for this session
    }
    return kept;
  }
  return out.slice(-HISTORY_LIMIT);
}

export function appendHistory(env: Env, line: string): void {
  const path = historyPath(env);
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    appendFileSync(path, `${JSON.stringify(line)}\n`, { mode: 0o600 });
    chmodSync(path, 0o600);
  } catch {
    // history is a convenience: a read-only home must not break the chat
  }
}

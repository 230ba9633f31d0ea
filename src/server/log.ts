/** Server logs go to stderr: one human line, or one JSON object per line with --log-json (for log shippers). */
import type { Logger } from "./context.ts";

export function makeLogger(opts: { json: boolean; write?: (line: string) => void }): Logger {
  const write = opts.write ?? ((l: string) => void process.stderr.write(l));
  return (level, msg, fields = {}) => {
    const ts = new Date().toISOString();
    if (opts.json) {
      write(`${JSON.stringify({ ts, level, msg, ...fields })}\n`);
      return;
    }
    const kv = Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(" ");
    write(`${ts} ${level.toUpperCase().padEnd(5)} ${msg}${kv ? ` ${kv}` : ""}\n`);
  };
}

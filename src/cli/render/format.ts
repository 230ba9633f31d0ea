/**
 * Human formatting shared by the cache commands: decimal sizes, relative times, ` | `-joined tables.
 *
 * Exports: formatSize(bytes), relativeTime(iso, now?), renderTable(headers, rows), truncate(s, n), wrap(s, width)
 */

export { formatSize } from "../../cache/units.ts";

/** `just now`, `1m ago`, `Nm ago`, `1h ago`, `Nh ago`, `1d ago`, `Nd ago`, else the date (UTC). */
export function relativeTime(iso: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, (now - t) / 1000);
  if (s < 45) return "just now";
  if (s < 90) return "1m ago";
  if (s < 45 * 60) return `${Math.round(s / 60)}m ago`;
  if (s < 90 * 60) return "1h ago";
  if (s < 24 * 3600) return `${Math.round(s / 3600)}h ago`;
  if (s < 36 * 3600) return "1d ago";
  if (s < 30 * 86400) return `${Math.round(s / 86400)}d ago`;
  return iso.slice(0, 10);
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/** Greedy word wrap; words longer than `width` are split. */
export function wrap(s: string, width: number): string[] {
  const lines: string[] = [];
  let cur = "";
  for (const word of s.split(/\s+/).filter(Boolean)) {
    let w = word;
    while (w.length > width) {
      if (cur) {
        lines.push(cur);
        cur = "";
      }
      lines.push(w.slice(0, width));
      w = w.slice(width);
    }
    if (!cur) cur = w;
    else if (cur.length + 1 + w.length <= width) cur += ` ${w}`;
    else {
      lines.push(cur);
      cur = w;
    }
  }
  if (cur || lines.length === 0) lines.push(cur);
  return lines;
}

/** Width in terminal columns: counts code points, and East Asian wide characters as two. */
function width(s: string): number {
  let w = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    w += (c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0xa4cf) || (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) || (c >= 0xff00 && c <= 0xff60) || (c >= 0x20000 && c <= 0x3fffd) ? 2 : 1;
  }
  return w;
}

function pad(s: string, n: number): string {
  return s + " ".repeat(Math.max(0, n - width(s)));
}

/** Cells joined by ` | `, a dash rule joined by `-+-`; a cell may hold several lines (wrapped text). */
export function renderTable(headers: string[], rows: (string | string[])[][]): string {
  const cells = rows.map((r) => r.map((c) => (Array.isArray(c) ? c : [c])));
  const widths = headers.map((h, i) => Math.max(width(h), ...cells.map((r) => Math.max(...(r[i] ?? [""]).map(width)))));
  const line = (parts: string[]): string => parts.map((p, i) => pad(p, widths[i]!)).join(" | ").trimEnd();
  const out = [line(headers), widths.map((w) => "-".repeat(w)).join("-+-")];
  for (const r of cells) {
    const height = Math.max(...r.map((c) => c.length));
    for (let k = 0; k < height; k++) out.push(line(r.map((c) => c[k] ?? "")));
  }
  return out.join("\n");
}

/** Text of the pull progress display (the CLI decides where and whether to draw it). */
import type { PullProgress } from "./download.ts";

export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "--:--";
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function bar(done: number, total: number, width: number): string {
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const full = Math.round(frac * width);
  return `[${"#".repeat(full)}${"-".repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}%`;
}

function shorten(path: string, max: number): string {
  return path.length <= max ? path.padEnd(max) : `…${path.slice(path.length - max + 1)}`;
}

/** One overall line (bytes, speed, ETA) and one line per file being downloaded. */
export function renderProgress(p: PullProgress, now: number, opts: { columns?: number; maxFiles?: number; endpoint?: string } = {}): string[] {
  const columns = Math.max(60, opts.columns ?? 80);
  const note = p.note ? [`  ${p.note}`.slice(0, columns - 1)] : [];
  if (p.phase === "contacting") {
    const waited = Math.floor((now - p.startedAt) / 1000);
    return [`Contacting the Hub${opts.endpoint ? ` at ${opts.endpoint}` : ""}… ${waited > 0 ? `(${waited} s)` : ""}`.trimEnd().slice(0, columns - 1), ...note];
  }
  const elapsed = Math.max(0.001, (now - p.startedAt) / 1000);
  const speed = p.downloadedBytes / elapsed;
  const left = p.totalBytes - p.doneBytes;
  const eta = speed > 0 ? left / speed : Number.POSITIVE_INFINITY;
  const head = `${p.finishedFiles}/${p.totalFiles} files ${formatBytes(p.doneBytes)} / ${formatBytes(p.totalBytes)}  ${formatBytes(speed)}/s  ETA ${formatDuration(eta)}`;
  const lines = [`${bar(p.doneBytes, p.totalBytes, 20)} ${head}`.slice(0, columns - 1)];
  const nameWidth = Math.max(16, columns - 52);
  const active = [...p.active.entries()].slice(0, opts.maxFiles ?? 4);
  for (const [path, f] of active) {
    lines.push(`  ${shorten(path, nameWidth)} ${bar(f.done, f.size, 12)} ${formatBytes(f.done)} / ${formatBytes(f.size)}`.slice(0, columns - 1));
  }
  return [...lines, ...note];
}

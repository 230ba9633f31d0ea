/** Size formatting that is part of the JSON data (show --files `size`). Exports: formatSize(bytes) */

/** Decimal units as mlx-knife prints them: `512B`, `1.2KB`, `3.4MB`, `2.1GB`, `1.0TB`. */
export function formatSize(bytes: number): string {
  if (bytes < 1000) return `${bytes}B`;
  const units = ["KB", "MB", "GB", "TB", "PB"];
  let v = bytes / 1000;
  let i = 0;
  while (v >= 999.95 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(1)}${units[i]}`;
}

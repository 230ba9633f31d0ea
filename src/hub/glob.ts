/**
 * `--include` / `--exclude` matching with huggingface_hub's rules (fnmatch: `*` also crosses `/`,
 * a pattern ending in `/` means everything below that folder).
 */

export function fnmatchToRegExp(pattern: string): RegExp {
  let p = pattern.endsWith("/") ? `${pattern}*` : pattern;
  let re = "";
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const close = p.indexOf("]", i + 2);
      if (close < 0) re += "\\[";
      else {
        let body = p.slice(i + 1, close);
        if (body.startsWith("!")) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, "\\\\")}]`;
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
  }
  p = re;
  return new RegExp(`^${p}$`, "s");
}

/** Keep paths matching any include (all when none given) and no exclude. */
export function filterPaths(paths: string[], include: string[] = [], exclude: string[] = []): string[] {
  const inc = include.map(fnmatchToRegExp);
  const exc = exclude.map(fnmatchToRegExp);
  return paths.filter((p) => (inc.length === 0 || inc.some((r) => r.test(p))) && !exc.some((r) => r.test(p)));
}

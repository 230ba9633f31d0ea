/**
 * Help text of one command, plain (no ANSI: it is read in pipes, pagers and CI logs too), with `mlxk` in the
 * usage line and a command's own notes (examples, endpoints, chat commands) after the options.
 */
import type { ArgsDef, CommandDef } from "citty";

/** Extra help a command module attaches to its definition: `Object.assign(defineCommand(…), { notes })`. */
export interface WithNotes {
  notes?: string;
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export async function renderHelp(cmd: CommandDef<any> & WithNotes, name: string, opts: { variadic?: boolean } = {}): Promise<string> {
  const meta = typeof cmd.meta === "function" ? await cmd.meta() : await cmd.meta;
  const args: ArgsDef = (typeof cmd.args === "function" ? await cmd.args() : await cmd.args) ?? {};
  const positionals: [string, string][] = [];
  const options: [string, string][] = [];
  let usage = `mlxk ${name}`;
  for (const [key, a] of Object.entries(args)) {
    const desc = a.description ?? "";
    if (a.type === "positional") {
      usage += a.required === false ? ` [${key}]` : ` <${key}>`;
      positionals.push([key, desc]);
      continue;
    }
    const flag = `--${kebab(key)}`;
    if (a.type === "boolean") {
      options.push([a.default === true ? `--[no-]${kebab(key)}` : flag, desc]);
    } else {
      const hint = "valueHint" in a && a.valueHint ? String(a.valueHint) : "value";
      options.push([`${flag} <${hint}>`, desc]);
    }
  }
  if (opts.variadic) usage += " [prompt...]";
  if (options.length > 0) usage += " [options]";
  const width = Math.min(34, Math.max(...[...positionals, ...options].map(([k]) => k.length), 0) + 2);
  const rows = (list: [string, string][]) => list.map(([k, d]) => `  ${k.padEnd(width)}${d}`.trimEnd());
  const out = [`mlxk ${name}: ${meta?.description ?? ""}`, "", `Usage: ${usage}`];
  if (positionals.length > 0) out.push("", "Arguments:", ...rows(positionals));
  if (options.length > 0) out.push("", "Options:", ...rows(options), `  ${"--help".padEnd(width)}Show this help`);
  if (cmd.notes) out.push("", cmd.notes.trimEnd());
  return `${out.join("\n")}\n`;
}

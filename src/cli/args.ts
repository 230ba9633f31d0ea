/** Shared citty arg fragments and the strict argument check citty lacks (it ignores unknown flags). */
import type { ArgsDef } from "citty";
import { MlxkError } from "../errors.ts";
import { didYouMean } from "./suggest.ts";

export const jsonArgs = {
  json: { type: "boolean", description: "Print the result as a JSON envelope on stdout" },
} as const satisfies ArgsDef;

export const modelArg = {
  model: { type: "positional", description: "Model name (org/name, short name, substring, name@hash, GGUF repo name:QUANT, or path)", required: true },
} as const satisfies ArgsDef;

const GLOBAL_FLAGS = new Set(["json", "help", "h"]);

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * Reject unknown flags, values given to boolean flags and surplus positionals before citty parses,
 * so a typo never runs a command with the wrong settings.
 */
export function checkArgs(def: ArgsDef, rawArgs: string[], opts: { variadic?: boolean; command?: string } = {}): void {
  const help = opts.command ? `'mlxk ${opts.command} --help'` : "with --help";
  const flags = new Map<string, "boolean" | "string">();
  let positionals = 0;
  for (const [name, arg] of Object.entries(def)) {
    if (arg.type === "positional") {
      positionals++;
      continue;
    }
    const kind = arg.type === "boolean" ? "boolean" : "string";
    const aliases = "alias" in arg && arg.alias ? (Array.isArray(arg.alias) ? arg.alias : [arg.alias]) : [];
    for (const n of [name, kebab(name), ...aliases]) flags.set(n, kind);
  }
  let seenPositionals = 0;
  for (let i = 0; i < rawArgs.length; i++) {
    const tok = rawArgs[i]!;
    if (tok === "--") {
      seenPositionals += rawArgs.length - i - 1;
      break;
    }
    if (!tok.startsWith("-") || tok === "-" || /^-\d/.test(tok)) {
      seenPositionals++;
      continue;
    }
    const body = tok.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (GLOBAL_FLAGS.has(name)) continue;
    let kind = flags.get(name);
    if (kind === undefined && name.startsWith("no-") && flags.get(name.slice(3)) === "boolean") kind = "boolean";
    if (kind === undefined) {
      const hint = didYouMean(name, [...flags.keys()].filter((f) => f.length > 1), (f) => `--${f}`);
      throw new MlxkError("CommandError", `Unknown option '${tok.split("=")[0]}'.${hint} Run ${help} to see the options.`);
    }
    if (kind === "boolean" && eq >= 0) throw new MlxkError("CommandError", `Option '--${name}' takes no value.`);
    if (kind === "string" && eq < 0) {
      const next = rawArgs[i + 1];
      if (next === undefined) throw new MlxkError("CommandError", `Option '--${name}' needs a value.`);
      i++;
    }
  }
  if (!opts.variadic && seenPositionals > positionals) {
    throw new MlxkError("CommandError", `Too many arguments (expected at most ${positionals}). Run ${help} to see the usage.`);
  }
}

/** citty passes numbers as strings: parse and range-check one with a clear message. */
export function parseIntArg(name: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  // plain checks, not valibot: this file loads on every command and valibot costs ~3 ms to load from source
  const s = value.trim();
  const n = Number(s);
  if (!/^\d+$/.test(s) || !Number.isInteger(n) || n < min || n > max) {
    throw new MlxkError("InvalidArgumentError", `--${name} must be an integer between ${min} and ${max} (got '${value}')`);
  }
  return n;
}

export function parseFloatArg(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
    throw new MlxkError("InvalidArgumentError", `--${name} must be a number between ${min} and ${max} (got '${value}')`);
  }
  return n;
}

const BYTE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1e3, kb: 1e3, kib: 2 ** 10, m: 1e6, mb: 1e6, mib: 2 ** 20, g: 1e9, gb: 1e9, gib: 2 ** 30, t: 1e12, tb: 1e12, tib: 2 ** 40 };

/** A size in bytes: a plain integer or a number with a unit (512MB, 2GiB, 1.5G). */
export function parseBytesArg(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new MlxkError("InvalidArgumentError", `--${name} must be a size in bytes, e.g. 2147483648, 512MB or 2GiB (got '${value}')`);
  return Math.floor(Number(m[1]) * unit);
}

/** Values of a repeatable string flag (`--x a --x b`, `--x=a`), each also split on commas. */
export function listArg(rawArgs: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") break;
    const v = a === `--${name}` ? rawArgs[++i] : a.startsWith(`--${name}=`) ? a.slice(name.length + 3) : undefined;
    if (v !== undefined) out.push(...v.split(",").map((s) => s.trim()).filter(Boolean));
  }
  return out;
}

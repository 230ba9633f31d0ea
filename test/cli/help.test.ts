/**
 * `--help` of every command shows examples, and every example only uses flags and argument counts the command
 * accepts (checked with the same checkArgs the CLI runs). NO_COLOR / FORCE_COLOR decide about color; doctor's output.
 */
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { checkArgs } from "../../src/cli/args.ts";
import { EXAMPLES, helpText } from "../../src/cli/examples.ts";
import { COMMANDS } from "../../src/cli/main.ts";
import { useColor } from "../../src/env.ts";
import { glibcTooOld } from "../../src/mlx/doctor.ts";
import { DoctorDataSchema } from "../../src/schemas/doctor.ts";
import { runCliCapture } from "../support/cli.ts";

/** The words of the `mlxk …` invocation in an example line (quotes honoured; stops at a pipe, `)` or redirect). */
function mlxkWords(line: string): string[] {
  const from = line.slice(line.indexOf("mlxk "));
  const words: string[] = [];
  for (const m of from.matchAll(/"([^"]*)"|'([^']*)'|([^\s|)>]+)|([|)>])/g)) {
    if (m[4]) break;
    words.push(m[1] ?? m[2] ?? m[3]!);
  }
  return words.slice(1);
}

describe("--help examples", () => {
  for (const [name, entry] of Object.entries(COMMANDS)) {
    test(`${name}: --help ends with examples that the command accepts`, async () => {
      const r = await runCliCapture([name, "--help"]);
      expect(r.code).toBe(0);
      const lines = EXAMPLES[name] ?? [];
      expect(lines.length).toBeGreaterThan(0);
      expect(r.stdout).toContain(`Examples:\n${lines.map((l) => `  ${l}`).join("\n")}\n`);
      const def = await entry.load();
      const args = (typeof def.args === "function" ? await def.args() : await def.args) ?? {};
      for (const l of lines) {
        const words = mlxkWords(l);
        expect(words[0]).toBe(name);
        expect(() => checkArgs(args, words.slice(1), { variadic: entry.variadic })).not.toThrow();
      }
    });
  }

  test("mlxk --help has examples too", async () => {
    const r = await runCliCapture(["--help"]);
    expect(r.stdout).toContain("\nExamples:\n  mlxk list\n");
  });
});

describe("NO_COLOR / FORCE_COLOR", () => {
  test("color only on a terminal, FORCE_COLOR wins, NO_COLOR and TERM=dumb turn it off", () => {
    expect(useColor({}, true)).toBe(true);
    expect(useColor({}, false)).toBe(false);
    expect(useColor({ NO_COLOR: "1" }, true)).toBe(false);
    expect(useColor({ NO_COLOR: "" }, true)).toBe(true); // empty = unset, as the NO_COLOR spec says
    expect(useColor({ TERM: "dumb" }, true)).toBe(false);
    expect(useColor({ FORCE_COLOR: "1" }, false)).toBe(true);
    expect(useColor({ FORCE_COLOR: "1", NO_COLOR: "1" }, false)).toBe(true);
    expect(useColor({ FORCE_COLOR: "0" }, true)).toBe(false);
  });

  test("--help is plain in a pipe and colored with FORCE_COLOR", () => {
    const colored = "\x1b[36mrm [OPTIONS]\x1b[39m";
    expect(helpText(colored, "rm", {}, false)).toStartWith("rm [OPTIONS]\n");
    expect(helpText(colored, "rm", { FORCE_COLOR: "1" }, false)).toStartWith(colored);
    expect(helpText(colored, "rm", { NO_COLOR: "1" }, true)).toStartWith("rm [OPTIONS]\n");
  });

  test("doctor's human output has no escape codes in a pipe; its JSON follows the schema", async () => {
    const human = await runCliCapture(["doctor"]);
    expect(human.stdout).toContain("MLX runtime:");
    expect(human.stdout).not.toContain("\x1b[");
    const r = await runCliCapture(["doctor", "--json"]);
    const d = v.parse(DoctorDataSchema, JSON.parse(r.stdout).data);
    expect(d.candidates.length).toBeGreaterThan(0);
  });

  test("doctor flags a glibc older than the wheels need", () => {
    expect(glibcTooOld("2.31")).toBe(true);
    expect(glibcTooOld("2.35")).toBe(false);
    expect(glibcTooOld("2.36")).toBe(false);
    expect(glibcTooOld("3.0")).toBe(false);
    expect(glibcTooOld(null)).toBe(false);
  });
});

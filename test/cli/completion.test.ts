/**
 * `mlxk completion bash|zsh|fish` run by the real shells: bash completes through its COMP_WORDS protocol, fish
 * through `complete -C`, zsh is loaded after compinit (shells that are not installed are skipped and say so).
 * Model names come from a temp cache via `mlxk completion --models`.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { addRepo, mlxModelFiles } from "../support/hf-cache.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const tmp = mkdtempSync(join(tmpdir(), "mlxk-compl-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const hub = join(tmp, "hub");
addRepo(hub, { name: "mlx-community/Qwen3-0.6B-4bit", files: mlxModelFiles() });
addRepo(hub, { name: "org/Other-8bit", files: mlxModelFiles() });
const bin = join(tmp, "bin");
mkdirSync(bin);
writeFileSync(join(bin, "mlxk"), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, "bin", "mlxk"))} "$@"\n`);
chmodSync(join(bin, "mlxk"), 0o755);
const env = { PATH: `${bin}:${process.env.PATH}`, HF_HUB_CACHE: hub, HOME: tmp };

function sh(cmd: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync(cmd, { env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? 1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

const script = (shell: string): string => {
  const r = sh(["mlxk", "completion", shell]);
  expect(r.code).toBe(0);
  writeFileSync(join(tmp, `c.${shell}`), r.stdout);
  return join(tmp, `c.${shell}`);
};

test("--models lists cache names (and mlx-community short names) without scanning", () => {
  expect(sh(["mlxk", "completion", "--models"]).stdout.split("\n").filter(Boolean)).toEqual([
    "Qwen3-0.6B-4bit",
    "mlx-community/Qwen3-0.6B-4bit",
    "org/Other-8bit",
  ]);
});

test("no or an unknown shell is a usage error", () => {
  expect(sh(["mlxk", "completion"]).code).toBe(2);
  expect(sh(["mlxk", "completion", "tcsh"]).stderr).toContain("bash|zsh|fish");
});

/** What bash offers for the words typed so far (the last one is being completed). */
function bashComplete(file: string, line: string): string[] {
  const words = line.split(" ");
  const code = `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _mlxk; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = sh(["bash", "-c", code]);
  expect(r.stderr).toBe("");
  return r.stdout.split("\n").filter(Boolean);
}

test("bash: commands, flags of the command, model names, flag values skipped", () => {
  const f = script("bash");
  expect(bashComplete(f, "mlxk ")).toContain("doctor");
  expect(bashComplete(f, "mlxk li")).toEqual(["list"]);
  expect(bashComplete(f, "mlxk run --te")).toEqual(["--temperature"]);
  expect(bashComplete(f, "mlxk run --no-s")).toEqual(["--no-stream"]);
  expect(bashComplete(f, "mlxk show ")).toEqual(["Qwen3-0.6B-4bit", "mlx-community/Qwen3-0.6B-4bit", "org/Other-8bit"]);
  expect(bashComplete(f, "mlxk rm org/")).toEqual(["org/Other-8bit"]);
  expect(bashComplete(f, "mlxk run --temperature 0 Qw")).toEqual(["Qwen3-0.6B-4bit"]);
  expect(bashComplete(f, "mlxk server --model mlx-")).toEqual(["mlx-community/Qwen3-0.6B-4bit"]);
  // the second positional of run is the prompt: no model names there
  expect(bashComplete(f, "mlxk run Qwen3-0.6B-4bit Qw")).toEqual([]);
  expect(bashComplete(f, "mlxk completion z")).toEqual(["zsh"]);
}, 30_000);

const fish = Bun.which("fish");
test.skipIf(fish === null)("fish: complete -C offers commands, flags and model names (needs fish)", () => {
  const f = script("fish");
  const c = (line: string): string[] =>
    sh(["fish", "--no-config", "-c", `source ${f}; complete -C '${line}'`]).stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]!);
  expect(c("mlxk li")).toEqual(["list"]);
  expect(c("mlxk show org/")).toEqual(["org/Other-8bit"]);
  expect(c("mlxk run --temp")).toEqual(["--temperature"]);
}, 30_000);

const zsh = Bun.which("zsh");
test.skipIf(zsh === null)("zsh: the script parses and registers with compdef (needs zsh)", () => {
  const f = script("zsh");
  expect(sh(["zsh", "-n", f]).code).toBe(0);
  const r = sh(["zsh", "-f", "-c", `autoload -U compinit && compinit -u -D && source ${f} && print -r -- \${_comps[mlxk]} \${_comps[mlxk-json]}`]);
  expect(r.stdout.trim()).toBe("_mlxk _mlxk");
}, 30_000); // compinit alone takes seconds on a loaded machine

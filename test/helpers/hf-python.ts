/**
 * Python huggingface_hub for interop tests: a venv under .cache/py-venv with the pinned packages of
 * hf-requirements.txt, created on first use. Fails loudly when python3/venv/pip are missing.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
const VENV = join(ROOT, ".cache", "py-venv");
const REQUIREMENTS = join(import.meta.dir, "hf-requirements.txt");
const MARKER = join(VENV, ".mlxk-requirements");
export const HF_INTEROP_SCRIPT = join(import.meta.dir, "hf_interop.py");

async function run(cmd: string[]): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

/** Path of the venv's python with huggingface_hub installed. */
export async function ensureHfPython(): Promise<string> {
  const python = join(VENV, "bin", "python");
  const wanted = readFileSync(REQUIREMENTS, "utf8");
  if (existsSync(python) && existsSync(MARKER) && readFileSync(MARKER, "utf8") === wanted) return python;
  const sys = Bun.which("python3");
  if (!sys) throw new Error("Interop tests need python3 (with venv and pip) to install huggingface_hub; none found on PATH.");
  if (!existsSync(python)) {
    const r = await run([sys, "-m", "venv", VENV]);
    if (r.code !== 0) throw new Error(`python3 -m venv failed (install python3-venv):\n${r.out}`);
  }
  const r = await run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", REQUIREMENTS]);
  if (r.code !== 0) throw new Error(`pip install of huggingface_hub failed:\n${r.out}`);
  writeFileSync(MARKER, wanted);
  return python;
}

/** Run hf_interop.py and parse its JSON answer. */
export async function hfInterop(python: string, args: string[], env: Record<string, string>): Promise<any> {
  const p = Bun.spawn([python, HF_INTEROP_SCRIPT, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HF_HUB_DISABLE_TELEMETRY: "1", NO_PROXY: "127.0.0.1,localhost", ...env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  if (code !== 0) throw new Error(`hf_interop.py ${args.join(" ")} failed (${code}):\n${err}`);
  return JSON.parse(out.trim().split("\n").pop()!);
}

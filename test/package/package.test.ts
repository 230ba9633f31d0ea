/**
 * The package as a new user gets it: `npm pack` (scripts/pack.ts: mlxk with its platform packages as
 * optionalDependencies, plus this machine's prebuilt `mlxk-<os>-<arch>`), installed into fresh temp projects
 * with npm and with bun, then `list`, `run` on SmolLM2 and `server` + one chat from there. One install per
 * package manager, reused by every test; dependencies come from the local caches first (`--prefer-offline`),
 * the registry only for what they lack. Where neither can install (no cache, no registry) the tests skip
 * and say why.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packMain, packPlatform } from "../../scripts/pack.ts";
import { findShim, PLATFORM_PACKAGE } from "../../src/mlx/paths.ts";
import { addRepo, mlxModelFiles } from "../support/hf-cache.ts";
import { smollm2Gguf } from "../support/smollm2.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-pkg-"));
// several installs with a 90 MB Bun each: removing them takes a while on a busy disk
afterAll(() => rmSync(tmp, { recursive: true, force: true }), 120_000);
const out = join(tmp, "out");
mkdirSync(out);
// the platform package is packed from the installed runtime; without one (no compiler at npm install) skip all
const noRuntime = findShim() === null ? "the MLX runtime is not built (npm install could not build it)" : null;
const mainTgz = packMain(out);
const platformTgz = noRuntime ? "" : packPlatform(out);
const hub = join(tmp, "hub");
addRepo(hub, { name: "mlx-community/Pkg-4bit", files: mlxModelFiles() });
/** Nothing of the user's: an empty-but-one-model cache and a temp data dir for any first-use setup. */
const baseEnv = { ...process.env, HF_HUB_CACHE: hub, XDG_DATA_HOME: join(tmp, "xdg"), MLXK_API_KEY: "", NO_COLOR: "1" };

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string[], cwd: string, env: Record<string, string | undefined> = baseEnv): Result {
  const p = Bun.spawnSync(cmd, { cwd, env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? 1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

function project(name: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), `${JSON.stringify({ name: `t-${name}`, private: true })}\n`);
  return dir;
}

/** Install, or the reason it could not (printed with the skip). */
function install(cmd: string[], cwd: string): string | null {
  const r = sh(cmd, cwd);
  return r.code === 0 ? null : `${cmd.slice(0, 2).join(" ")} failed (no cache and no registry?): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`;
}

const npmDir = project("npm");
const npmSkip = noRuntime ?? install(["npm", "install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", mainTgz, platformTgz], npmDir);
const bunDir = project("bun");
// first without the platform package: the first-use path; the platform package is added in its test
const bunSkip = noRuntime ?? install([process.execPath, "add", mainTgz], bunDir);
if (npmSkip) console.warn(`skipping npm package tests: ${npmSkip}`);
if (bunSkip) console.warn(`skipping bun package tests: ${bunSkip}`);

const bin = (dir: string, name = "mlxk"): string => join(dir, "node_modules", ".bin", name);
const PROMPT = "What is the capital of France?";

test("the tarball ships the runtime sources and docs, no tests, bench, CI or fixtures", () => {
  const files = sh(["tar", "tzf", mainTgz], tmp).stdout.split("\n").filter(Boolean);
  expect(files).toContain("package/bin/mlxk-launcher.sh");
  expect(files).toContain("package/src/cli/main.ts");
  expect(files).toContain("package/mlx-c/VERSION");
  expect(files).toContain("package/scripts/install-mlx.ts");
  expect(files).toContain("package/docs/migrating-from-mlx-knife.md");
  expect(files.filter((f) => /^package\/(test|bench|\.ci|\.mlx|mlx-c\/build|dist|node_modules)\//.test(f))).toEqual([]);
  const pkg = JSON.parse(sh(["tar", "xzOf", mainTgz, "package/package.json"], tmp).stdout);
  expect(Object.keys(pkg.optionalDependencies)).toEqual(["mlxk-linux-x64", "mlxk-linux-arm64", "mlxk-darwin-arm64"]);
  expect(pkg.bin).toEqual({ mlxk: "bin/mlxk-launcher.sh", "mlxk-json": "bin/mlxk-launcher.sh" });
});

describe.skipIf(npmSkip !== null)("npm install ./mlxk.tgz ./mlxk-<platform>.tgz", () => {
  test("list --json (and the mlxk-json alias) from the installed package", () => {
    const r = sh([bin(npmDir), "list", "--json"], npmDir);
    expect(r.code).toBe(0);
    const env = JSON.parse(r.stdout);
    expect(env.data.count).toBe(1);
    expect(env.data.models[0].name).toBe("mlx-community/Pkg-4bit");
    expect(sh([bin(npmDir, "mlxk-json"), "list", "--json"], npmDir).stdout).toBe(r.stdout);
  });

  test("doctor finds the runtime in the platform package", () => {
    const d = JSON.parse(sh([bin(npmDir), "doctor", "--json"], npmDir).stdout).data;
    expect(d.runtime.available).toBe(true);
    expect(d.runtime.source).toBe("platform-package");
    expect(d.paths.platform_package).toBe(join(npmDir, "node_modules", PLATFORM_PACKAGE));
  });

  test("run on SmolLM2", async () => {
    const gguf = await smollm2Gguf();
    const r = sh([bin(npmDir), "run", gguf, PROMPT, "--max-tokens", "16", "--temperature", "0"], npmDir);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.toLowerCase()).toContain("paris");
  }, 60_000);

  test("server + one chat", async () => {
    const gguf = await smollm2Gguf();
    const proc = Bun.spawn([bin(npmDir), "server", "--port", "0", "--json"], { cwd: npmDir, env: baseEnv, stdout: "pipe", stderr: "pipe" });
    try {
      const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
      let line = "";
      while (!line.includes("\n")) {
        const c = await reader.read();
        if (c.done) throw new Error(`server exited: ${line} ${await new Response(proc.stderr).text()}`);
        line += new TextDecoder().decode(c.value);
      }
      const { port } = JSON.parse(line.split("\n")[0]!).data as { port: number };
      const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: gguf, temperature: 0, max_tokens: 16, messages: [{ role: "user", content: PROMPT }] }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { choices: { message: { content: string } }[] };
      expect(body.choices[0]!.message.content.toLowerCase()).toContain("paris");
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
    }
  }, 90_000);
});

describe.skipIf(npmSkip !== null || bunSkip !== null)("npx / bunx with the tarballs (no project)", () => {
  const emptyDir = join(tmp, "empty");
  mkdirSync(emptyDir, { recursive: true });

  test("npx -p mlxk.tgz -p mlxk-<platform>.tgz mlxk list --json", () => {
    const r = sh(["npx", "--yes", "--prefer-offline", "-p", mainTgz, "-p", platformTgz, "mlxk", "list", "--json"], emptyDir);
    // npx keeps each install in <npm cache>/_npx/<hash> (~160 MB, a new one per temp tarball path): drop ours
    const npxDir = join(sh(["npm", "config", "get", "cache"], emptyDir).stdout.trim(), "_npx");
    for (const d of existsSync(npxDir) ? readdirSync(npxDir) : []) {
      const pj = join(npxDir, d, "package.json");
      if (existsSync(pj) && readFileSync(pj, "utf8").includes(out)) rmSync(join(npxDir, d), { recursive: true, force: true });
    }
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).data.count).toBe(1);
  }, 120_000);

  test("npm i -g and bun add -g: the global mlxk runs with no bun on PATH", () => {
    const npmPrefix = join(tmp, "npm-global");
    expect(install(["npm", "install", "-g", "--prefix", npmPrefix, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", mainTgz, platformTgz], emptyDir)).toBeNull();
    const bunHome = join(tmp, "bun-global");
    const bunEnv = { ...baseEnv, BUN_INSTALL: bunHome };
    expect(sh([process.execPath, "add", "-g", mainTgz, platformTgz], emptyDir, bunEnv).code).toBe(0);
    for (const exe of [join(npmPrefix, "bin", "mlxk"), join(bunHome, "bin", "mlxk-json")]) {
      const r = sh([exe, "doctor", "--json"], emptyDir, { ...baseEnv, PATH: "/usr/bin:/bin" });
      expect(r.stderr).toBe("");
      expect(JSON.parse(r.stdout).data.runtime).toMatchObject({ available: true, source: "platform-package" });
    }
  }, 180_000);

  test("bunx -p mlxk.tgz mlxk list --json", () => {
    const r = sh([process.execPath, "x", "-p", mainTgz, "mlxk", "list", "--json"], emptyDir);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).data.count).toBe(1);
  }, 120_000);
});

describe.skipIf(bunSkip !== null)("bun add ./mlxk.tgz (postinstall blocked), then ./mlxk-<platform>.tgz", () => {
  test("without the platform package, pip or a compiler, run says what is missing and exits 1", async () => {
    const gguf = await smollm2Gguf();
    const noTools = join(tmp, "no-tools");
    mkdirSync(noTools, { recursive: true });
    // the bin/mlxk the launcher would exec, run by this Bun: PATH then has neither python3 nor g++
    const r = sh([process.execPath, join(bunDir, "node_modules", "mlxk", "bin", "mlxk"), "run", gguf, PROMPT], bunDir, { ...baseEnv, PATH: noTools });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("setting up MLX 0.32.4");
    expect(r.stderr).toContain("pip was not found");
    expect(r.stderr).toContain("apt install python3-pip");
    const d = JSON.parse(sh([process.execPath, join(bunDir, "node_modules", "mlxk", "bin", "mlxk"), "doctor", "--json"], bunDir, { ...baseEnv, PATH: noTools }).stdout).data;
    expect(d.runtime.available).toBe(false);
    expect(d.setup_tools).toEqual({ pip: null, compiler: null });
    expect(d.missing.length).toBe(3);
  });

  test("with the platform package: list and run on SmolLM2 through the installed bin", async () => {
    expect(install([process.execPath, "add", platformTgz], bunDir)).toBeNull();
    const list = sh([bin(bunDir), "list", "--json"], bunDir);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).data.count).toBe(1);
    const gguf = await smollm2Gguf();
    const r = sh([bin(bunDir), "run", gguf, PROMPT, "--max-tokens", "16", "--temperature", "0"], bunDir);
    expect(r.code).toBe(0);
    expect(r.stdout.toLowerCase()).toContain("paris");
    expect(readFileSync(join(bunDir, "package.json"), "utf8")).toContain(PLATFORM_PACKAGE);
  }, 60_000);
});

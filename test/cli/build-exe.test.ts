/**
 * `npm run build` as a user gets it: this machine's release archive (scripts/build-exe.ts buildRelease),
 * unpacked into a folder with no repo and no node_modules, run with a bare environment: the same `list --json`
 * as `bun bin/mlxk`, `run` through the lib/ beside it, SHA256SUMS that match, install.sh and the Homebrew formula.
 * With MLXK_TEST_FIRST_USE=1 also an archive without lib/ (as darwin-arm64's off a Mac) setting the runtime up
 * from its share/mlx-c on first use (compiles the shim: ~1 min on a loaded machine).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { buildRelease, HOST } from "../../scripts/build-exe.ts";
import { findShim, mlxRoot } from "../../src/mlx/paths.ts";
import { type TempHub, addRepo, makeTempHub, mlxModelFiles } from "../support/hf-cache.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

let hub: TempHub;
let outDir: string;
beforeAll(() => {
  hub = makeTempHub();
  addRepo(hub.hubDir, { name: "mlx-community/Exe-4bit", files: mlxModelFiles() });
  addRepo(hub.hubDir, { name: "org/broken", files: { "config.json": "{" } });
  outDir = mkdtempSync(join(tmpdir(), "mlxk-exe-"));
});
// executables of ~110 MB each: removing them takes a while on a busy disk
afterAll(() => {
  hub.cleanup();
  rmSync(outDir, { recursive: true, force: true });
}, 120_000);

async function run(cmd: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  // a bare environment: nothing from the repo or from Bun leaks in
  const p = Bun.spawn(cmd, { cwd, env: { ...hub.env, PATH: "/usr/bin:/bin" }, stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, stdout, stderr };
}

// One test on purpose: the compile takes several seconds on a small machine.
test.skipIf(findShim() === null)("the release archive runs after unpacking anywhere: list --json as bun bin/mlxk, run, doctor, sha256", async () => {
  process.env.MLXK_RELEASE_BASE = `file://${join(outDir, "dist")}`;
  const rel = await buildRelease(join(outDir, "dist"), [HOST]);
  delete process.env.MLXK_RELEASE_BASE;
  expect(rel.skipped).toEqual({});
  expect(rel.archives.map((a) => basename(a))).toEqual([expect.stringMatching(new RegExp(`^mlxk-\\d.*-${HOST.os}-${HOST.arch}\\.tar\\.gz$`))]);
  const sums = readFileSync(rel.sums, "utf8").trim().split("\n");
  for (const f of [...rel.archives, ...rel.executables]) {
    expect(sums).toContain(`${createHash("sha256").update(readFileSync(f)).digest("hex")}  ${basename(f)}`);
  }
  const elsewhere = join(outDir, "elsewhere");
  mkdirSync(elsewhere);
  expect(Bun.spawnSync(["tar", "xzf", rel.archives[0]!, "-C", elsewhere]).exitCode).toBe(0);
  const exe = join(elsewhere, basename(rel.archives[0]!, ".tar.gz"), "mlxk");

  const compiled = await run([exe, "list", "--json"], elsewhere);
  const script = await run([process.execPath, join(import.meta.dir, "..", "..", "bin", "mlxk"), "list", "--json"]);
  expect(compiled.code).toBe(0);
  expect(script.code).toBe(0);
  expect(JSON.parse(compiled.stdout).data.count).toBe(2);
  expect(compiled.stdout).toBe(script.stdout);

  const doctor = JSON.parse((await run([exe, "doctor", "--json"], elsewhere)).stdout).data;
  expect(doctor.executable).toBe(true);
  expect(doctor.runtime).toMatchObject({ available: true, source: "executable", shim: join(exe, "..", "lib", basename(findShim()!)) });

  // install.sh picks this machine's archive, checks SHA256SUMS and links mlxk into a bin dir: the link still finds lib/
  const inst = Bun.spawnSync(["sh", join(outDir, "dist", "install.sh")], {
    env: { PATH: "/usr/bin:/bin", HOME: outDir, MLXK_RELEASE_BASE: `file://${join(outDir, "dist")}`, MLXK_INSTALL_DIR: join(outDir, "opt"), MLXK_BIN_DIR: join(outDir, "bin") },
    stderr: "pipe",
  });
  expect(inst.stderr.toString()).toContain("linked as");
  expect(inst.exitCode).toBe(0);
  const linked = JSON.parse((await run([join(outDir, "bin", "mlxk-json"), "doctor", "--json"], elsewhere)).stdout).data;
  expect(linked.runtime.available).toBe(true);
  const formula = readFileSync(join(outDir, "dist", "mlxk.rb"), "utf8");
  expect(formula).toContain(`sha256 "${createHash("sha256").update(readFileSync(rel.archives[0]!)).digest("hex")}"`);
  expect(formula).toContain(`url "file://${join(outDir, "dist")}/${basename(rel.archives[0]!)}"`);

  const model = writeTinyModel("llama", join(outDir, "tiny"));
  const gen = await run([exe, "run", model, "hi", "--max-tokens", "3", "--temperature", "0", "--json"], elsewhere);
  expect(gen.stderr).toBe("");
  expect(JSON.parse(gen.stdout).data.usage.completion_tokens).toBeGreaterThan(0);
}, 180_000);

test.skipIf(Bun.which("ruby") === null)("the generated Homebrew formula is valid Ruby (needs ruby)", () => {
  const p = Bun.spawnSync(["ruby", "-c", join(outDir, "dist", "mlxk.rb")], { stdout: "pipe", stderr: "pipe" });
  expect(p.stderr.toString()).toBe("");
  expect(p.stdout.toString()).toContain("Syntax OK");
});

test.skipIf(process.env.MLXK_TEST_FIRST_USE !== "1")(
  "an archive without lib/ (darwin-arm64 built off a Mac) builds the shim from share/mlx-c on first use (MLXK_TEST_FIRST_USE=1)",
  async () => {
    const rel = await buildRelease(join(outDir, "dist-src"), [HOST], { sourcesOnly: true });
    expect(Object.keys(rel.skipped)).toEqual([`${HOST.os}-${HOST.arch}`]);
    const elsewhere = join(outDir, "elsewhere-src");
    mkdirSync(elsewhere);
    expect(Bun.spawnSync(["tar", "xzf", rel.archives[0]!, "-C", elsewhere]).exitCode).toBe(0);
    const exe = join(elsewhere, basename(rel.archives[0]!, ".tar.gz"), "mlxk");
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: outDir, XDG_DATA_HOME: join(outDir, "xdg"), HF_HUB_CACHE: hub.hubDir, MLX_DIR: mlxRoot() };
    const before = JSON.parse(Bun.spawnSync([exe, "doctor", "--json"], { env, cwd: elsewhere }).stdout.toString()).data;
    expect(before.runtime.available).toBe(false);
    expect(before.missing[0]).toContain("no lib/ beside the executable");
    const model = writeTinyModel("llama", join(outDir, "tiny-src"));
    const p = Bun.spawnSync([exe, "run", model, "hi", "--max-tokens", "2", "--temperature", "0", "--json"], { env, cwd: elsewhere, stdout: "pipe", stderr: "pipe" });
    expect(p.stderr.toString()).toContain("setting up MLX");
    expect(p.exitCode).toBe(0);
    expect(JSON.parse(p.stdout.toString()).data.usage.completion_tokens).toBeGreaterThan(0);
    const after = JSON.parse(Bun.spawnSync([exe, "doctor", "--json"], { env, cwd: elsewhere }).stdout.toString()).data;
    expect(after.runtime).toMatchObject({ available: true, source: "user" });
  },
  300_000,
);

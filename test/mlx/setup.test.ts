/**
 * First use of `run` without a runtime: an installed-package layout (no .git, no mlx-c/build, no platform package)
 * in a temp dir. The fast tests check when setup is not attempted and what an unreachable PyPI gives. The full path — two first runs at once, one sets
 * the runtime up under the lock, the other waits and uses it — compiles the shim (~30 s on 2 cores, ~1 min loaded),
 * so it runs with MLXK_TEST_FIRST_USE=1; MLX_DIR points at the repo's unpacked wheel, so no network is needed.
 */
import { afterAll, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureMlxRuntime } from "../../src/mlx/setup.ts";
import { findShim, mlxRoot, REPO_ROOT } from "../../src/mlx/paths.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-setup-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test("no setup when a shim is found, or when MLXK_SHIM names one explicitly", async () => {
  expect(findShim()).not.toBeNull();
  expect(await ensureMlxRuntime({ env: { ...process.env, XDG_DATA_HOME: join(tmp, "never") } })).toBeNull();
  expect(await ensureMlxRuntime({ env: { ...process.env, MLXK_SHIM: join(tmp, "missing.so"), XDG_DATA_HOME: join(tmp, "never") } })).toBeNull();
  expect(existsSync(join(tmp, "never"))).toBe(false);
});

/** An installed-package layout of this checkout: no .git, no mlx-c/build, no platform package. */
function packageCopy(name: string): string {
  const pkg = join(tmp, name);
  for (const f of ["bin", "src", "mlx-c/src", "mlx-c/include", "mlx-c/VERSION", "package.json"]) {
    mkdirSync(join(pkg, f, ".."), { recursive: true });
    cpSync(join(REPO_ROOT, f), join(pkg, f), { recursive: true });
  }
  symlinkSync(join(REPO_ROOT, "node_modules"), join(pkg, "node_modules"));
  return pkg;
}

test("no network to PyPI: run says so, exits 1, and leaves no half-set-up runtime", () => {
  const pkg = packageCopy("pkg-offline");
  const model = writeTinyModel("llama", join(tmp, "tiny-offline"));
  const xdg = join(tmp, "xdg-offline");
  // a closed port as the index, no pip cache (it may hold the wheel), no retries
  const env = { ...process.env, XDG_DATA_HOME: xdg, PIP_INDEX_URL: "http://127.0.0.1:9/simple", PIP_NO_CACHE_DIR: "1", PIP_RETRIES: "0", PIP_TIMEOUT: "2" };
  const p = Bun.spawnSync([process.execPath, join(pkg, "bin", "mlxk"), "run", model, "hi", "--json"], { env, stdout: "pipe", stderr: "pipe" });
  expect(p.exitCode).toBe(1);
  const out = JSON.parse(p.stdout.toString());
  expect(out.error.type).toBe("mlx_unavailable");
  expect(out.error.message).toContain("is PyPI reachable");
  expect(existsSync(join(xdg, "mlxk", "0.32.4"))).toBe(false);
}, 60_000);

test.skipIf(process.env.MLXK_TEST_FIRST_USE !== "1")(
  "two first runs at once: one sets the runtime up under the lock, the other waits and uses it (MLXK_TEST_FIRST_USE=1)",
  async () => {
    const pkg = packageCopy("pkg");
    const model = writeTinyModel("llama", join(tmp, "tiny"));
    const env = { ...process.env, XDG_DATA_HOME: join(tmp, "xdg"), MLX_DIR: mlxRoot(), HF_HUB_CACHE: join(tmp, "hub") };
    const start = () =>
      Bun.spawn([process.execPath, join(pkg, "bin", "mlxk"), "run", model, "hi", "--max-tokens", "2", "--temperature", "0", "--json"], {
        env,
        stdout: "pipe",
        stderr: "pipe",
      });
    const procs = [start(), start()];
    const res = await Promise.all(
      procs.map(async (p) => ({ code: await p.exited, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() })),
    );
    for (const r of res) {
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out).data.usage.completion_tokens).toBeGreaterThan(0);
    }
    expect(res.filter((r) => r.err.includes("setting up MLX")).length).toBe(1);
    const dir = join(tmp, "xdg", "mlxk", "0.32.4");
    expect(readdirSync(dir).filter((f) => /^libmlxk-[0-9a-f]{12}\.so$/.test(f)).length).toBe(1);
  },
  300_000,
);

import { afterAll, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyRuntimeSidecar, mlxRoot, REPO_ROOT } from "../../src/mlx/paths.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-install-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of the files the installer needs, so its .mlx/ and mlx-c/build/ land in a temp repo. */
function tempRepo(): string {
  const root = join(tmp, "repo");
  for (const f of ["scripts/install-mlx.ts", "src/env.ts", "src/mlx/paths.ts", "src/mlx/install.ts", "mlx-c/VERSION"]) {
    mkdirSync(join(root, f, ".."), { recursive: true });
    cpSync(join(REPO_ROOT, f), join(root, f));
  }
  cpSync(join(REPO_ROOT, "mlx-c/src"), join(root, "mlx-c/src"), { recursive: true });
  cpSync(join(REPO_ROOT, "mlx-c/include"), join(root, "mlx-c/include"), { recursive: true });
  return root;
}

test("without a C++ compiler the installer explains once, records the reason and exits 0", () => {
  const root = tempRepo();
  const emptyPath = join(tmp, "empty-bin");
  mkdirSync(emptyPath);
  const p = Bun.spawnSync([process.execPath, join(root, "scripts/install-mlx.ts")], {
    cwd: root,
    // MLX_DIR skips the download; an empty PATH hides g++/clang++.
    env: { HOME: tmp, PATH: emptyPath, MLX_DIR: mlxRoot() },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(p.exitCode).toBe(0);
  const err = p.stderr.toString();
  expect(err).toContain("no C++20 compiler found");
  expect(err).toContain("apt install g++");
  expect(err.match(/NOT installed/g)?.length).toBe(1);
  const status = JSON.parse(readFileSync(join(root, ".mlx/status.json"), "utf8"));
  expect(status.ok).toBe(false);
  expect(status.reason).toContain("no C++20 compiler found");
});

test("an MLX_DIR without libmlx is reported, not thrown", () => {
  const root = tempRepo();
  const p = Bun.spawnSync([process.execPath, join(root, "scripts/install-mlx.ts")], {
    cwd: root,
    env: { HOME: tmp, PATH: process.env.PATH, MLX_DIR: join(tmp, "no-mlx-here") },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(p.exitCode).toBe(0);
  const status = JSON.parse(readFileSync(join(root, ".mlx/status.json"), "utf8"));
  expect(status.ok).toBe(false);
  expect(status.reason).toMatch(/MLX_DIR=.*no-mlx-here has no lib\/libmlx/);
});

test("the sidecar layout for a compiled executable (lib/ beside it) loads on its own", () => {
  const lib = join(tmp, "sidecar", "dist", "lib");
  const shim = copyRuntimeSidecar(lib);
  const code = `
    import * as mx from "./src/mlx/index.ts";
    const sum = mx.sum(mx.array([1, 2, 3])).item();
    const maps = require("node:fs").readFileSync("/proc/self/maps", "utf8").split("\\n");
    const paths = [...new Set(maps.filter((l) => /libmlx(k)?\\.so|libblas/.test(l)).map((l) => l.split(/\\s+/).pop()))];
    console.log(JSON.stringify({ v: mx.mlxVersion(), sum, paths }));`;
  const p = Bun.spawnSync([process.execPath, "-e", code], {
    cwd: REPO_ROOT,
    env: { ...process.env, MLXK_SHIM: shim },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(p.exitCode).toBe(0);
  const out = JSON.parse(p.stdout.toString());
  expect(out.v).toBe("0.32.4");
  expect(out.sum).toBe(6);
  expect(out.paths).toContain(shim);
  // resolved through the shim's $ORIGIN/mlx/lib RPATH entry, not the repo's wheel
  expect(out.paths).toContain(join(lib, "mlx", "lib", "libmlx.so"));
});

import { afterAll, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InstallError, withCpuFallback } from "../../src/mlx/install.ts";
import { copyRuntimeSidecar, mlxRoot, REPO_ROOT, WHEEL_PINS } from "../../src/mlx/paths.ts";
import type { WheelChoice } from "../../src/mlx/wheel-select.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-install-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of the files the installer needs, so its .mlx/ and mlx-c/build/ land in a temp repo. */
function tempRepo(): string {
  const root = join(tmp, "repo");
  for (const f of ["scripts/install-mlx.ts", "src/env.ts", "src/mlx/paths.ts", "src/mlx/install.ts", "src/mlx/wheel-select.ts", "mlx-c/VERSION"]) {
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

const pin = (pkg: string) => WHEEL_PINS.find((p) => p.package === pkg && p.platform === "manylinux_2_35_x86_64")!;
const cudaChoice: WheelChoice = { backend: "cuda", pin: pin("mlx-cuda-12"), runtime: ["nvidia-cublas-cu12==12.9.*"], reason: "NVIDIA driver 570.86.15 supports CUDA 12.8 → mlx-cuda-12" };
const cpuChoice = (): WheelChoice => ({ backend: "cpu", pin: pin("mlx-cpu"), runtime: [], reason: "MLXK_BACKEND=cpu" });

test("a CUDA setup that fails falls back to the CPU wheel with one message naming the cause", async () => {
  const logs: string[] = [];
  const tried: string[] = [];
  const r = await withCpuFallback(cudaChoice, cpuChoice, async (c) => {
    tried.push(c.pin.package);
    if (c.backend === "cuda") throw new InstallError("the built shim does not load:\nlibcuda.so.1: cannot open shared object file");
    return c.pin.file;
  }, (m) => logs.push(m));
  expect(tried).toEqual(["mlx-cuda-12", "mlx-cpu"]);
  expect(r.result).toBe("mlx_cpu-0.32.4-py3-none-manylinux_2_35_x86_64.whl");
  expect(r.choice.reason).toBe("CUDA setup failed (the built shim does not load: libcuda.so.1: cannot open shared object file); fell back to CPU");
  expect(logs).toHaveLength(1);
  expect(logs[0]).toContain("installing the CPU build (mlx-cpu) instead");
});

test("a CUDA setup that works, or a CPU setup that fails, is not retried", async () => {
  const ok = await withCpuFallback(cudaChoice, cpuChoice, async (c) => c.backend, () => {});
  expect(ok).toEqual({ result: "cuda", choice: cudaChoice });
  let n = 0;
  const failing = withCpuFallback(cpuChoice(), cpuChoice, async () => {
    n++;
    throw new InstallError("no C++20 compiler found");
  }, () => {});
  await expect(failing).rejects.toThrow("no C++20 compiler found");
  expect(n).toBe(1);
});

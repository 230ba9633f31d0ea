/**
 * `mlxk server` from the `bun build --compile` executable: the supervisor re-invokes the executable itself as
 * its worker (there is no worker.ts on disk), the worker loads a model through the shim, and a killed worker
 * comes back. The MLX runtime is the `lib/` folder buildExe lays out beside the executable (no MLXK_SHIM), and
 * `run` works from the same executable.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildExe } from "../../scripts/build-exe.ts";
import { findShim } from "../../src/mlx/paths.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "mlxk-srv-exe-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until(cond: () => boolean | Promise<boolean>, what: string, maxMs = 20000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting for: ${what}`);
    await Bun.sleep(50);
  }
}

// One test on purpose: the compile takes seconds on a small machine.
test("compiled executable: server with a model, chat, worker restart, SIGTERM", async () => {
  expect(findShim()).not.toBeNull();
  const exe = await buildExe(join(dir, "mlxk"));
  expect(existsSync(join(dir, "lib", "libmlxk.so"))).toBe(true);
  const model = writeTinyModel("llama", join(dir, "tiny"));
  const env = { PATH: process.env.PATH ?? "", HOME: dir, HF_HUB_CACHE: join(dir, "hub") };
  const run = Bun.spawnSync([exe, "run", model, "hi", "--max-tokens", "3", "--temperature", "0", "--json"], { env });
  expect(run.exitCode).toBe(0);
  expect(JSON.parse(run.stdout.toString()).data.usage.completion_tokens).toBeGreaterThan(0);
  const proc = Bun.spawn([exe, "server", "--model", model, "--port", "0", "--json"], {
    env,
    stdout: "pipe",
    stderr: "pipe",
  });
  let err = "";
  void (async () => {
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += new TextDecoder().decode(c);
  })();
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const r = await reader.read();
    if (r.done) throw new Error(`no startup line: ${out} ${err}`);
    out += new TextDecoder().decode(r.value);
  }
  // pid is the supervisor's (the process to signal); the worker it restarts is worker_pid
  const { port, worker_pid: pid } = (JSON.parse(out) as { data: { port: number; worker_pid: number } }).data;
  // the worker is the executable itself, not a bun script
  expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]).toBe(exe);
  const ask = () =>
    fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4, temperature: 0 }),
    });
  const first = (await (await ask()).json()) as { usage: { completion_tokens: number } };
  expect(first.usage.completion_tokens).toBeGreaterThan(0);
  process.kill(pid, "SIGKILL");
  await until(() => err.includes("worker restarted"), "restart");
  await until(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 200, "model reloaded");
  expect((await ask()).status).toBe(200);
  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
}, 120_000);

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildExe } from "../../scripts/build-exe.ts";
import { type TempHub, addRepo, makeTempHub, mlxModelFiles } from "../support/hf-cache.ts";

let hub: TempHub;
let outDir: string;
beforeAll(() => {
  hub = makeTempHub();
  addRepo(hub.hubDir, { name: "mlx-community/Exe-4bit", files: mlxModelFiles() });
  addRepo(hub.hubDir, { name: "org/broken", files: { "config.json": "{" } });
  outDir = mkdtempSync(join(tmpdir(), "mlxk-exe-"));
});
afterAll(() => {
  hub.cleanup();
  rmSync(outDir, { recursive: true, force: true });
});

async function run(cmd: string[]): Promise<{ code: number; stdout: string }> {
  const p = Bun.spawn(cmd, { env: { ...hub.env, PATH: process.env.PATH ?? "" }, stdout: "pipe", stderr: "pipe" });
  const [code, stdout] = await Promise.all([p.exited, new Response(p.stdout).text()]);
  return { code, stdout };
}

// One test on purpose: the compile takes several seconds on a small machine.
test("standalone dist/mlxk prints the same `list --json` as bun bin/mlxk", async () => {
  const exe = await buildExe(join(outDir, "mlxk"));
  const compiled = await run([exe, "list", "--json"]);
  const script = await run([process.execPath, join(import.meta.dir, "..", "..", "bin", "mlxk"), "list", "--json"]);
  expect(compiled.code).toBe(0);
  expect(script.code).toBe(0);
  expect(JSON.parse(compiled.stdout).data.count).toBe(2);
  expect(compiled.stdout).toBe(script.stdout);
}, 120_000);

/**
 * The broke-cluster examples of docs/migrating-from-mlx-knife.md, run as written: every ```sh block of that section
 * under bash, `ssh <host> cmd…` replaced by a stand-in that runs cmd against that host's temp cache, and its
 * stdout compared with the ```text block after it.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { addRepo, mlxModelFiles } from "../support/hf-cache.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const doc = readFileSync(join(ROOT, "docs", "migrating-from-mlx-knife.md"), "utf8");
const section = doc.slice(doc.indexOf("## The broke-cluster pattern"));
const examples = [...section.matchAll(/```sh\n([\s\S]*?)```\s*```text\n([\s\S]*?)```/g)].map((m) => ({ script: m[1]!, expected: m[2]! }));

const tmp = mkdtempSync(join(tmpdir(), "mlxk-broke-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const hubs = join(tmp, "hosts");
addRepo(join(hubs, "studio-1"), { name: "mlx-community/Llama-3.2-1B-Instruct-4bit", files: mlxModelFiles() });
addRepo(join(hubs, "studio-1"), { name: "mlx-community/Qwen3-0.6B-4bit", files: mlxModelFiles() });
addRepo(join(hubs, "studio-2"), { name: "mlx-community/Qwen3-0.6B-4bit", files: mlxModelFiles() });
addRepo(join(hubs, "studio-2"), { name: "org/broken", files: { "config.json": "{" } });
const bin = join(tmp, "bin");
mkdirSync(bin);
const script = (name: string, body: string): void => {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
};
script("ssh", 'h=$1; shift; HF_HUB_CACHE="$HUBS/$h" exec "$@"');
script("mlxk", `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, "bin", "mlxk"))} "$@"`);
const jq = Bun.which("jq");

test("the section has its examples", () => {
  expect(examples.length).toBeGreaterThanOrEqual(5);
});

for (const [i, ex] of examples.entries()) {
  test.skipIf(jq === null)(`broke-cluster example ${i + 1} prints what the doc shows (needs jq)`, () => {
    const p = Bun.spawnSync(["bash", "-euo", "pipefail", "-c", ex.script], {
      env: { PATH: `${bin}:${process.env.PATH}`, HUBS: hubs, HOME: tmp },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(p.stderr.toString()).toBe("");
    expect(p.stdout.toString()).toBe(ex.expected);
  });
}

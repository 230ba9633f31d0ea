/**
 * `mlxk launch --sync` on loopback: a model missing from the HF cache is refused before any rank starts
 * (naming the model and the ranks); with --sync it is pulled from the (loopback) Hub into the cache the ranks
 * read, and the launch answers as a single-process `run` does, with no pull progress in its output.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { mlxAvailability } from "../../src/mlx/ffi.ts";
import { type HubFile, LoopbackHub } from "../helpers/loopback-hub.ts";
import { makeTempHub, type TempHub } from "../support/hf-cache.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const MLXK = [process.execPath, join(ROOT, "bin", "mlxk")];
const noMlx = !mlxAvailability().available;
const MODEL = "org/tiny-llama-sync";

let hub: LoopbackHub;
let cache: TempHub;
let tmp: string;
let env: Record<string, string>;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mlxk-sync-"));
  const dir = writeTinyModel("llama", join(tmp, "llama"));
  const files: HubFile[] = readdirSync(dir).map((f) => ({ path: f, content: new Uint8Array(readFileSync(join(dir, f))) }));
  files.push({ path: "README.md", content: "---\nlibrary_name: mlx\ntags: [mlx]\n---\n# tiny llama\n" });
  hub = await LoopbackHub.start();
  await hub.addRepo(MODEL, files);
  cache = makeTempHub();
  env = { ...cache.env, HF_ENDPOINT: hub.url };
});
afterAll(() => {
  hub?.stop();
  cache?.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

async function cli(args: string[]) {
  const p = Bun.spawn([...MLXK, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

describe.skipIf(noMlx)("mlxk launch --sync", () => {
  const run = ["run", MODEL, "Hello", "--temperature", "0", "--max-tokens", "8", "--no-chat-template", "--json"];
  const repoDir = () => join(cache.hubDir, `models--${MODEL.replace("/", "--")}`);

  test("without --sync: a model missing from the cache is refused before any rank starts, naming it and the ranks", async () => {
    const r = await cli(["launch", "-n", "2", "--", ...run]);
    expect(r.code).not.toBe(0);
    // --json (the run's) shapes the launch's own error too: one envelope, and no rank said anything
    const e = JSON.parse(r.stdout) as { status: string; error: { type: string; message: string } };
    expect(e.status).toBe("error");
    expect(e.error.type).toBe("model_not_found");
    expect(e.error.message).toContain(`rank 0, 1 (127.0.0.1) cannot load ${MODEL}`);
    expect(e.error.message).toContain("--sync pulls it here");
    expect(r.stderr).not.toContain("[rank");
    // nothing was fetched
    expect(hub.requests.length).toBe(0);
    expect(existsSync(repoDir())).toBe(false);
  }, 60_000);

  test("with --sync: pulled into the ranks' cache, then the answer of a single-process run, clean output", async () => {
    const r = await cli(["launch", "-n", "2", "--sync", "--", ...run]);
    expect({ code: r.code, err: r.code ? r.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(existsSync(join(repoDir(), "snapshots"))).toBe(true);
    expect(hub.requests.some((q) => q.path.includes("model.safetensors"))).toBe(true);
    // stdout is rank 0's JSON envelope alone; stderr says what was pulled and carries no progress bars
    const dist = JSON.parse(r.stdout) as { status: string; data: { response: string } };
    expect(dist.status).toBe("success");
    expect(r.stderr.trim().split("\n")).toEqual([`mlxk launch: pulling ${MODEL} on 127.0.0.1…`]);
    const single = await cli(run);
    expect(single.code).toBe(0);
    expect(dist.data.response).toBe((JSON.parse(single.stdout) as { data: { response: string } }).data.response);
    // a second --sync finds it there: no pull
    hub.requests.length = 0;
    const again = await cli(["launch", "-n", "2", "--sync", "--", ...run]);
    expect(again.code).toBe(0);
    expect(again.stderr).not.toContain("pulling");
    expect(JSON.parse(again.stdout).data.response).toBe(dist.data.response);
  }, 90_000);

  test("with --sync, a pull that fails stops the launch with the pull's own message, before any rank starts", async () => {
    const r = await cli(["launch", "-n", "2", "--sync", "--", "run", "org/not-on-the-hub", "Hello", "--max-tokens", "2"]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trim().split("\n");
    expect(lines[0]).toBe("mlxk launch: pulling org/not-on-the-hub on 127.0.0.1…");
    expect(r.stderr).toMatch(/--sync: pulling org\/not-on-the-hub on 127\.0\.0\.1 failed: \S/);
    expect(r.stderr).not.toContain("[rank");
  }, 60_000);
});

/** Interrupting a real `bun bin/mlxk pull` process (SIGKILL, SIGINT, a write error) and resuming it. */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { LoopbackHub } from "../helpers/loopback-hub.ts";
import { modelRepoFiles } from "../helpers/model-repo.ts";
import { runCliCapture } from "../support/cli.ts";
import { type TempHub, makeTempHub } from "../support/hf-cache.ts";

const ROOT = join(import.meta.dir, "..", "..");
const WEIGHTS = 4_000_000;
let hub: LoopbackHub;
let cache: TempHub;
let env: Record<string, string>;
let sha256: string;
let commit: string;

beforeAll(async () => {
  hub = await LoopbackHub.start();
  commit = await hub.addRepo("org/big", modelRepoFiles({ weightBytes: WEIGHTS, seed: 7 }));
  sha256 = hub.fileInfo("org/big", "model.safetensors").sha256;
});
afterAll(() => hub.stop());
beforeEach(() => {
  cache = makeTempHub();
  env = { ...cache.env, HF_ENDPOINT: hub.url, PATH: process.env.PATH ?? "/usr/bin:/bin" };
  hub.requests.length = 0;
  hub.faults.clear();
  // slow enough (~1.6 MB/s) that the test can interrupt the weights mid-file
  hub.fault("org/big", "model.safetensors", { throttle: { chunk: 32_768, delayMs: 20 }, times: 1 });
});
afterEach(() => cache.cleanup());

const blobsDir = () => join(cache.hubDir, "models--org--big", "blobs");
const partial = () => join(blobsDir(), `${sha256}.incomplete`);

function spawnPull(args: string[], wrap?: (cmd: string[]) => string[]) {
  const cmd = [process.execPath, join(ROOT, "bin", "mlxk"), "pull", "org/big", ...args];
  return Bun.spawn(wrap ? wrap(cmd) : cmd, { cwd: ROOT, env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
}

/** Wait until the partial weights file holds some bytes (the process is mid-file). */
async function waitForPartialBytes(proc: ReturnType<typeof spawnPull>): Promise<void> {
  for (;;) {
    if (existsSync(partial()) && statSync(partial()).size > 64 * 1024) return;
    if (proc.exitCode !== null) throw new Error(`pull exited early (${proc.exitCode}): ${await new Response(proc.stderr).text()}`);
    await Bun.sleep(25);
  }
}

function pulledBytesMatch(): boolean {
  const link = join(cache.hubDir, "models--org--big", "snapshots", commit, "model.safetensors");
  return Buffer.from(readFileSync(link)).equals(Buffer.from(hub.fileBytes("org/big", "model.safetensors")));
}

describe("pull: interrupted and resumed", () => {
  test("SIGKILL mid-file, then pull resumes from the partial blob with a Range request", async () => {
    const proc = spawnPull(["--json"]);
    await waitForPartialBytes(proc);
    proc.kill("SIGKILL");
    await proc.exited;
    const have = statSync(partial()).size;
    expect(have).toBeGreaterThan(0);
    expect(have).toBeLessThan(hub.fileInfo("org/big", "model.safetensors").size);
    // nothing was published: no snapshot, so nothing can look healthy
    expect(existsSync(join(cache.hubDir, "models--org--big", "snapshots"))).toBe(false);

    const ask = await runCliCapture(["pull", "org/big", "--json"], { env });
    expect(JSON.parse(ask.stdout).data.download_status).toBe("requires_confirmation");

    hub.requests.length = 0;
    const r = await runCliCapture(["pull", "org/big", "--force-resume", "--json"], { env });
    expect(r.code).toBe(0);
    const data = JSON.parse(r.stdout).data;
    expect(data).toMatchObject({ download_status: "success", health: "healthy", commit });
    const weights = hub.requests.filter((q) => q.server === "cdn");
    expect(weights.length).toBe(1);
    expect(weights[0]!.range).toBe(`bytes=${have}-`);
    // finished files were skipped: the only hub downloads are files that had not completed before the kill
    expect(data.bytes_downloaded).toBeLessThan(WEIGHTS);
    expect(pulledBytesMatch()).toBe(true);
    expect(readdirSync(blobsDir()).filter((n) => n.endsWith(".incomplete"))).toEqual([]);
  });

  test("SIGINT stops the pull, keeps the partial file and says how to resume", async () => {
    const proc = spawnPull(["--json"]);
    await waitForPartialBytes(proc);
    proc.kill("SIGINT");
    const code = await proc.exited;
    const out = await new Response(proc.stdout).text();
    expect(code).toBe(130);
    const env1 = JSON.parse(out);
    expect(env1.status).toBe("error");
    expect(env1.error.type).toBe("download_failed");
    expect(env1.error.message).toContain("mlxk pull org/big --force-resume");
    expect(statSync(partial()).size).toBeGreaterThan(0);

    const r = await runCliCapture(["pull", "org/big", "--force-resume", "--json"], { env });
    expect(JSON.parse(r.stdout).data.download_status).toBe("success");
    expect(hub.requests.some((q) => q.server === "cdn" && q.range?.startsWith("bytes="))).toBe(true);
    expect(pulledBytesMatch()).toBe(true);
  });

  test("a write error mid-file (file size limit) fails the pull and publishes nothing", async () => {
    hub.faults.clear();
    // RLIMIT_FSIZE of 1 MiB with SIGXFSZ ignored: writes past it fail with EFBIG, as on a full disk
    const proc = spawnPull(["--json"], (cmd) => ["bash", "-c", `trap '' XFSZ; ulimit -f 1024; exec "$@"`, "bash", ...cmd]);
    const code = await proc.exited;
    const out = await new Response(proc.stdout).text();
    expect(code).toBe(1);
    const e = JSON.parse(out);
    expect(e.error.type).toBe("download_failed");
    expect(e.error.message).toContain("EFBIG");
    expect(e.data.download_status).toBe("failed");
    expect(existsSync(join(blobsDir(), sha256))).toBe(false);
    expect(existsSync(join(cache.hubDir, "models--org--big", "snapshots"))).toBe(false);
    // the partial stops at the limit and is resumed by the next (unlimited) pull
    expect(statSync(partial()).size).toBe(1024 * 1024);
    hub.requests.length = 0;
    const r = await runCliCapture(["pull", "org/big", "--force-resume", "--json"], { env });
    expect(JSON.parse(r.stdout).data.download_status).toBe("success");
    expect(hub.requests.find((q) => q.server === "cdn")?.range).toBe(`bytes=${1024 * 1024}-`);
    expect(pulledBytesMatch()).toBe(true);
  });

  test("two pull processes at once: the blob lock lets exactly one download each file", async () => {
    // --force-resume: whichever starts second would otherwise stop at the other's unfinished model dir
    const a = spawnPull(["--json", "--force-resume"]);
    const b = spawnPull(["--json", "--force-resume"]);
    const [ca, cb] = await Promise.all([a.exited, b.exited]);
    const outs = await Promise.all([new Response(a.stdout).text(), new Response(b.stdout).text()]);
    expect({ codes: [ca, cb], outs }).toEqual({ codes: [0, 0], outs });
    const statuses = outs.map((o) => JSON.parse(o).data.download_status).sort();
    expect(statuses.every((s) => s === "success" || s === "already_exists")).toBe(true);
    expect(hub.requests.filter((q) => q.server === "cdn").length).toBe(1);
    const gets = hub.requests.filter((q) => q.server === "hub" && q.path.includes("/resolve/"));
    expect(new Set(gets.map((q) => q.path)).size).toBe(gets.length);
    expect(pulledBytesMatch()).toBe(true);
    expect(existsSync(join(cache.hubDir, ".locks", "models--org--big"))).toBe(false);
  });
});

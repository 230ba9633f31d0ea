/** pull against a Hub that hangs, stalls or is misconfigured: timeouts, retries, Ctrl-C in every phase, the resume command. */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PullProgress } from "../../src/hub/download.ts";
import { renderProgress } from "../../src/hub/progress.ts";
import { API_FAULT, LoopbackHub } from "../helpers/loopback-hub.ts";
import { modelRepoFiles } from "../helpers/model-repo.ts";
import { runCliCapture } from "../support/cli.ts";
import { type TempHub, makeTempHub } from "../support/hf-cache.ts";

const ROOT = join(import.meta.dir, "..", "..");
let hub: LoopbackHub;
let cache: TempHub;
let env: Record<string, string>;
let commit: string;

beforeAll(async () => {
  hub = await LoopbackHub.start();
  commit = await hub.addRepo("org/tiny", modelRepoFiles({ weightBytes: 200_000, seed: 11 }));
});
afterAll(() => hub.stop());
beforeEach(() => {
  cache = makeTempHub();
  // short deadlines keep the tests fast; the defaults (10 s) are those of huggingface_hub
  env = { ...cache.env, HF_ENDPOINT: hub.url, HF_HUB_ETAG_TIMEOUT: "0.2", HF_HUB_DOWNLOAD_TIMEOUT: "0.3", PATH: process.env.PATH ?? "/usr/bin:/bin" };
  hub.requests.length = 0;
  hub.faults.clear();
});
afterEach(() => cache.cleanup());

const apiCalls = () => hub.requests.filter((r) => r.server === "hub" && r.path.startsWith("/api/"));
const weightsBytesMatch = () =>
  Buffer.from(readFileSync(join(cache.hubDir, "models--org--tiny", "snapshots", commit, "model.safetensors"))).equals(
    Buffer.from(hub.fileBytes("org/tiny", "model.safetensors")),
  );

describe("pull: timeouts and retries", () => {
  test("a Hub that accepts and never answers fails after the retries, naming the timeout variable", async () => {
    hub.fault("org/tiny", API_FAULT, { hang: true });
    const r = await runCliCapture(["pull", "org/tiny", "--json"], { env });
    expect(r.code).toBe(1);
    const e = JSON.parse(r.stdout);
    expect(e.error.type).toBe("download_failed");
    expect(e.error.message).toContain("did not answer within 0.2 s");
    expect(e.error.message).toContain("HF_HUB_ETAG_TIMEOUT");
    expect(e.data.download_status).toBe("error");
    expect(apiCalls().length).toBe(3);
  });

  test("one unanswered metadata call is retried and the pull succeeds", async () => {
    hub.fault("org/tiny", API_FAULT, { hang: true, times: 1 });
    const r = await runCliCapture(["pull", "org/tiny", "--json"], { env });
    expect(JSON.parse(r.stdout).data.download_status).toBe("success");
    expect(apiCalls().length).toBeGreaterThanOrEqual(3); // the hung one, its retry, the tree listing
  });

  test("a transient 503 on the metadata call is retried", async () => {
    hub.fault("org/tiny", API_FAULT, { status: 503, times: 1 });
    const r = await runCliCapture(["pull", "org/tiny", "--json"], { env });
    expect(JSON.parse(r.stdout).data.download_status).toBe("success");
  });

  test("a file transfer that stalls mid-body resumes from where it stopped (read timeout)", async () => {
    hub.fault("org/tiny", "model.safetensors", { stallAfter: 50_000, times: 1 });
    const r = await runCliCapture(["pull", "org/tiny", "--json"], { env });
    expect(JSON.parse(r.stdout).data).toMatchObject({ download_status: "success", health: "healthy" });
    const cdn = hub.requests.filter((q) => q.server === "cdn");
    expect(cdn.map((q) => q.range)).toEqual([null, "bytes=50000-"]);
    expect(weightsBytesMatch()).toBe(true);
  });

  test("a file request that is never answered is retried (connect timeout)", async () => {
    hub.fault("org/tiny", "model.safetensors", { hang: true, times: 1 });
    const r = await runCliCapture(["pull", "org/tiny", "--json"], { env });
    expect(JSON.parse(r.stdout).data.download_status).toBe("success");
    expect(hub.requests.filter((q) => q.server === "cdn").length).toBe(2);
    expect(weightsBytesMatch()).toBe(true);
  });

  test("HF_ENDPOINT that is not a URL names the variable", async () => {
    const r = await runCliCapture(["pull", "org/tiny"], { env: { ...env, HF_ENDPOINT: "notaurl" } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("HF_ENDPOINT is not an http(s) URL: 'notaurl'");
  });
});

describe("pull: progress before the file list is known", () => {
  test("says it is contacting the Hub instead of showing 100% of 0 files", () => {
    const p = new PullProgress();
    const lines = renderProgress(p, p.startedAt + 2500, { endpoint: "https://huggingface.co" });
    expect(lines[0]).toBe("Contacting the Hub at https://huggingface.co… (2 s)");
    expect(lines.join("\n")).not.toContain("0/0 files");
    p.note = "no answer within 10 s; retrying in 0.5 s (attempt 2 of 3)";
    expect(renderProgress(p, p.startedAt)[1]).toContain("retrying");
  });
});

describe("pull: Ctrl-C in every phase (real process)", () => {
  function spawnPull(args: string[], e: Record<string, string>) {
    return Bun.spawn([process.execPath, join(ROOT, "bin", "mlxk"), "pull", ...args], { cwd: ROOT, env: e, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  }
  async function waitFor(cond: () => boolean, proc: ReturnType<typeof spawnPull>): Promise<void> {
    while (!cond()) {
      if (proc.exitCode !== null) throw new Error(`pull exited early (${proc.exitCode}): ${await new Response(proc.stderr).text()}`);
      await Bun.sleep(20);
    }
  }

  test("SIGINT during the metadata call exits 130 at once; the resume command keeps @revision, --include and --exclude", async () => {
    hub.fault("org/tiny", API_FAULT, { hang: true });
    // default (10 s) deadlines: only the signal can end this pull quickly
    const e = { ...env, HF_HUB_ETAG_TIMEOUT: "", HF_HUB_DOWNLOAD_TIMEOUT: "" };
    const proc = spawnPull(["org/tiny@main", "--include", "*.json", "--include", "model.safetensors", "--exclude", "README.md", "--json"], e);
    await waitFor(() => apiCalls().length > 0, proc);
    const t0 = performance.now();
    proc.kill("SIGINT");
    const code = await proc.exited;
    const waited = performance.now() - t0;
    const out = JSON.parse(await new Response(proc.stdout).text());
    expect(code).toBe(130);
    expect(waited).toBeLessThan(5000); // well before the 10 s deadline would have ended it
    expect(out.error.message).toContain("mlxk pull org/tiny@main --include '*.json' --include model.safetensors --exclude README.md --force-resume");
  });

  test("SIGINT while a file transfer is stalled exits 130", async () => {
    hub.fault("org/tiny", "model.safetensors", { stallAfter: 10_000 });
    const e = { ...env, HF_HUB_DOWNLOAD_TIMEOUT: "" };
    const proc = spawnPull(["org/tiny", "--json"], e);
    await waitFor(() => hub.requests.some((q) => q.server === "cdn"), proc);
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(130);
    expect(JSON.parse(await new Response(proc.stdout).text()).error.message).toContain("mlxk pull org/tiny --force-resume");
  });
});

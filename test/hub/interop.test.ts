/**
 * Interop with Python huggingface_hub (pinned, installed into .cache/py-venv by the test itself):
 * it must read what `mlxk pull` wrote, and mlxk must accept what `snapshot_download` wrote,
 * both against the same loopback Hub.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LoopbackHub } from "../helpers/loopback-hub.ts";
import { ensureHfPython, hfInterop } from "../helpers/hf-python.ts";
import { modelRepoFiles } from "../helpers/model-repo.ts";
import { runCliCapture } from "../support/cli.ts";
import { type TempHub, makeTempHub } from "../support/hf-cache.ts";

let hub: LoopbackHub;
let python: string;
let cache: TempHub;
let env: Record<string, string>;
let commit: string;
const FILES = ["README.md", "config.json", "extra/notes.txt", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];

beforeAll(async () => {
  python = await ensureHfPython();
  hub = await LoopbackHub.start();
  commit = await hub.addRepo("org/interop", modelRepoFiles({ weightBytes: 200_000, seed: 11 }));
}, 600_000);
afterAll(() => hub?.stop());
beforeEach(() => {
  cache = makeTempHub();
  env = { ...cache.env, HF_ENDPOINT: hub.url };
  hub.requests.length = 0;
});
afterEach(() => cache.cleanup());

describe("interop with Python huggingface_hub", () => {
  test("scan_cache_dir() reads an mlxk pull: same files, sizes, blobs, refs, no warnings", async () => {
    const r = await runCliCapture(["pull", "org/interop", "--json"], { env });
    expect(r.code).toBe(0);
    const scan = await hfInterop(python, ["scan", cache.hubDir], env);
    expect(scan.warnings).toEqual([]);
    expect(scan.repos.length).toBe(1);
    const repo = scan.repos[0];
    expect(repo).toMatchObject({ repo_id: "org/interop", repo_type: "model", nb_files: FILES.length, refs: ["main"] });
    expect(repo.revisions.length).toBe(1);
    expect(repo.revisions[0].commit_hash).toBe(commit);
    expect(repo.revisions[0].refs).toEqual(["main"]);
    const expected = FILES.map((name) => {
      const i = hub.fileInfo("org/interop", name);
      return { name, size: i.size, blob: i.lfs ? i.sha256 : i.gitOid };
    });
    expect(repo.revisions[0].files).toEqual(expected);
    expect(repo.size_on_disk).toBe(expected.reduce((s, f) => s + f.size, 0));
  });

  test("snapshot_download() with HF_HUB_OFFLINE finds the mlxk snapshot complete (tree cache agrees)", async () => {
    await runCliCapture(["pull", "org/interop", "--json"], { env });
    hub.requests.length = 0;
    const out = await hfInterop(python, ["offline", "org/interop", cache.hubDir], { ...env, HF_HUB_OFFLINE: "1" });
    expect(out.path).toBe(join(cache.hubDir, "models--org--interop", "snapshots", commit));
    expect(hub.requests.length).toBe(0);
  });

  test("mlxk list / health / pull accept a repo fetched by snapshot_download from the loopback Hub", async () => {
    const out = await hfInterop(python, ["download", "org/interop", cache.hubDir], env);
    const snap = join(cache.hubDir, "models--org--interop", "snapshots", commit);
    expect(out.path).toBe(snap);
    // Python took the CDN redirect for the LFS file, without our token or a Range
    expect(hub.requests.some((q) => q.server === "hub" && q.method === "HEAD")).toBe(true);
    expect(hub.requests.filter((q) => q.server === "cdn").length).toBe(1);
    expect(readFileSync(join(snap, "config.json"), "utf8")).toBe(new TextDecoder().decode(hub.fileBytes("org/interop", "config.json")));

    const list = await runCliCapture(["list", "--json"], { env });
    expect(list.code).toBe(0);
    const model = JSON.parse(list.stdout).data.models.find((m: { name: string }) => m.name === "org/interop");
    expect(model).toMatchObject({ hash: commit, health: "healthy", cached: true });

    const health = await runCliCapture(["health", "org/interop", "--json"], { env });
    const hd = JSON.parse(health.stdout).data;
    expect(hd.summary).toMatchObject({ total: 1, healthy_count: 1 });

    hub.requests.length = 0;
    const again = await runCliCapture(["pull", "org/interop", "--json"], { env });
    expect(JSON.parse(again.stdout).data).toMatchObject({ download_status: "already_exists", commit });
    expect(hub.requests.length).toBe(0);
  });
});

/** `clone` from the user's cache and from the loopback Hub: sentinel + content hash, cache untouched, resume. */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { checkClean } from "../../src/cache/content-hash.ts";
import { readSentinel } from "../../src/cache/workspace.ts";
import { CloneDataSchema } from "../../src/schemas/workspace.ts";
import { clone } from "../../src/workspace/clone.ts";
import { LoopbackHub } from "../helpers/loopback-hub.ts";
import { modelRepoFiles } from "../helpers/model-repo.ts";
import { runCliCapture } from "../support/cli.ts";
import { type TempHub, addRepo, makeTempHub, mlxModelFiles } from "../support/hf-cache.ts";

let hub: LoopbackHub;
let cache: TempHub;
let home: string;
let env: Record<string, string>;
let tinySha: string;

beforeAll(async () => {
  hub = await LoopbackHub.start();
  tinySha = await hub.addRepo("org/tiny", modelRepoFiles());
  await hub.addRepo("org/big", modelRepoFiles({ weightBytes: 3_000_000, seed: 5 }));
  await hub.addRepo("org/noconfig", modelRepoFiles().filter((f) => f.path !== "config.json"));
});
afterAll(() => hub.stop());
beforeEach(() => {
  cache = makeTempHub();
  home = join(cache.root, "ws");
  mkdirSync(home);
  env = { ...cache.env, HF_ENDPOINT: hub.url, MLXK_WORKSPACE_HOME: home };
  hub.requests.length = 0;
  hub.faults.clear();
});
afterEach(() => cache.cleanup());

/** Every path under a dir with its size and mtime: the cache must look exactly the same after a clone. */
function fingerprint(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const st = statSync(p, { throwIfNoEntry: false });
      out.push(`${p}:${st?.size}:${st?.mtimeMs}`);
      if (st?.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

describe("clone from the cache", () => {
  test("copies the snapshot into a workspace with a managed sentinel and a clean v2 content hash; the cache is untouched", async () => {
    const { revision } = addRepo(cache.hubDir, { name: "org/cached", files: mlxModelFiles() });
    const before = fingerprint(cache.hubDir);
    const r = await runCliCapture(["clone", "org/cached", "mine", "--json"], { env });
    expect(r.code).toBe(0);
    const d = v.parse(CloneDataSchema, r.json().data);
    const ws = join(home, "mine");
    expect(d).toMatchObject({ model: "org/cached", clone_status: "success", target_dir: ws, source: "cache", commit_hash: revision, health_check: true, health: "healthy", resumed: false });
    expect(["reflink", "copy"]).toContain(d.copy_method!);
    expect(hub.requests.length).toBe(0); // no network for a cached model
    for (const [rel] of Object.entries(mlxModelFiles())) {
      expect(statSync(join(ws, rel)).isFile()).toBe(true); // real files, not links into the cache
      expect(readFileSync(join(ws, rel)).equals(readFileSync(join(cache.hubDir, "models--org--cached", "snapshots", revision, rel)))).toBe(true);
    }
    const s = readSentinel(ws)!;
    expect(s).toMatchObject({ source_repo: "org/cached", source_revision: revision, managed: true, operation: "clone", hash_algorithm: "v2", content_hash: d.content_hash });
    expect(checkClean(ws, s).clean).toBe(true);
    expect(fingerprint(cache.hubDir)).toEqual(before);
    expect(readdirSync(home)).toEqual(["mine"]); // no temp area left behind
    const list = (await runCliCapture(["list", "mine", "--json"], { env })).json().data.models;
    expect(list[0]).toMatchObject({ name: ws, cached: false, clean: true, origin: "org/cached", content_hash: d.content_hash });
  });

  test("targets: non-empty refused (nothing written), no target needs MLXK_WORKSPACE_HOME, none inside the cache", async () => {
    addRepo(cache.hubDir, { name: "org/cached", files: mlxModelFiles() });
    mkdirSync(join(home, "busy"));
    writeFileSync(join(home, "busy", "keep.txt"), "mine");
    let r = await runCliCapture(["clone", "org/cached", "busy", "--json"], { env });
    expect(r.code).toBe(1);
    expect(r.json().error).toMatchObject({ type: "InvalidTargetError", message: expect.stringContaining("not empty") });
    expect(readdirSync(join(home, "busy"))).toEqual(["keep.txt"]);
    r = await runCliCapture(["clone", "org/cached", "--json"], { env: { ...env, MLXK_WORKSPACE_HOME: "" } });
    expect(r.json().error).toMatchObject({ type: "InvalidTargetError", message: expect.stringContaining("Target directory required") });
    r = await runCliCapture(["clone", "org/cached", join(cache.hubDir, "inside"), "--json"], { env });
    expect(r.json().error).toMatchObject({ type: "InvalidTargetError", message: expect.stringContaining("inside the Hugging Face cache") });
    // default target: $MLXK_WORKSPACE_HOME/<name>; an existing empty dir is fine
    mkdirSync(join(home, "cached"));
    r = await runCliCapture(["clone", "org/cached", "--json"], { env });
    expect(r.json().data).toMatchObject({ clone_status: "success", target_dir: join(home, "cached") });
    r = await runCliCapture(["clone", "org/cached@abc", "--branch", "main", "--json"], { env });
    expect(r.json().error.type).toBe("InvalidArgumentError");
  });
});

describe("clone from the Hub", () => {
  test("pulls into a private temp cache, never the user's, and publishes byte-identical files", async () => {
    const r = await runCliCapture(["clone", "org/tiny", "tiny", "--json"], { env });
    expect(r.code).toBe(0);
    const d = v.parse(CloneDataSchema, r.json().data);
    expect(d).toMatchObject({ source: "hub", commit_hash: tinySha, health: "healthy", files: 6 });
    const ws = join(home, "tiny");
    for (const f of ["config.json", "model.safetensors", "extra/notes.txt", "README.md"]) {
      expect(Buffer.from(readFileSync(join(ws, f))).equals(Buffer.from(hub.fileBytes("org/tiny", f)))).toBe(true);
    }
    expect(existsSync(join(cache.hubDir, "models--org--tiny"))).toBe(false);
    expect(readdirSync(home)).toEqual(["tiny"]);
    expect(checkClean(ws, readSentinel(ws)).clean).toBe(true);
  });

  test("unhealthy download: nothing published unless --no-health-check", async () => {
    let r = await runCliCapture(["clone", "org/noconfig", "nc", "--json"], { env });
    expect(r.code).toBe(1);
    expect(r.json().error).toMatchObject({ type: "HealthCheckFailed", message: expect.stringContaining("config.json") });
    expect(r.json().data).toMatchObject({ clone_status: "error", health: "unhealthy" });
    expect(readdirSync(home)).toEqual([]);
    r = await runCliCapture(["clone", "org/noconfig", "nc", "--no-health-check", "--json"], { env });
    expect(r.json().data).toMatchObject({ clone_status: "success", health_check: false, health: null });
  });

  test("a missing repo fails as pull_failed with the Hub's error type", async () => {
    const r = await runCliCapture(["clone", "org/nope", "x", "--json"], { env });
    expect(r.code).toBe(1);
    expect(r.json().data).toMatchObject({ clone_status: "pull_failed" });
    expect(existsSync(join(home, "x"))).toBe(false);
  });

  test("interrupted mid-download, the same clone resumes with a Range request and finishes", async () => {
    hub.fault("org/big", "model.safetensors", { throttle: { chunk: 32_768, delayMs: 20 }, times: 1 });
    const controller = new AbortController();
    const target = join(home, "big");
    const running = clone({ spec: "org/big", target, env, signal: controller.signal });
    // wait for the temp area's partial blob to hold bytes, then interrupt
    const partialBytes = (): number => {
      for (const n of readdirSync(home).filter((n) => n.startsWith(".mlxk-clone-"))) {
        const blobs = join(home, n, "hub", "models--org--big", "blobs");
        for (const b of existsSync(blobs) ? readdirSync(blobs) : []) if (b.endsWith(".incomplete")) return statSync(join(blobs, b)).size;
      }
      return 0;
    };
    while (partialBytes() < 64 * 1024) await Bun.sleep(20);
    controller.abort();
    const err: any = await running.catch((e) => e);
    expect(err?.data).toMatchObject({ clone_status: "cancelled" });
    expect(existsSync(target)).toBe(false);
    hub.requests.length = 0;
    const d = await clone({ spec: "org/big", target, env });
    expect(d).toMatchObject({ clone_status: "success", resumed: true, health: "healthy" });
    expect(hub.requests.some((q) => q.path.endsWith("model.safetensors") && q.range?.startsWith("bytes=") && !q.range.startsWith("bytes=0-"))).toBe(true);
    expect(Buffer.from(readFileSync(join(target, "model.safetensors"))).equals(Buffer.from(hub.fileBytes("org/big", "model.safetensors")))).toBe(true);
    expect(readdirSync(home)).toEqual(["big"]);
  });
});

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { resolveModel } from "../../src/cache/resolve.ts";
import { recalcHash } from "../../src/cache/content-hash.ts";
import { SENTINEL } from "../../src/cache/workspace.ts";
import { HealthDataSchema, ListDataSchema, ShowDataSchema } from "../../src/schemas/cli-output.ts";
import { runCliCapture } from "../support/cli.ts";
import { type FileContent, type TempHub, addRepo, makeTempHub, mlxModelFiles } from "../support/hf-cache.ts";

let hub: TempHub;
let home: string;
let env: Record<string, string>;
let alphaHash: string;

function writeDir(dir: string, files: Record<string, FileContent>): void {
  mkdirSync(dir, { recursive: true });
  for (const [rel, c] of Object.entries(files)) {
    const body = typeof c === "string" || c instanceof Uint8Array ? c : "json" in c ? JSON.stringify(c.json) : "";
    writeFileSync(join(dir, rel), body);
  }
}

beforeAll(() => {
  hub = makeTempHub();
  addRepo(hub.hubDir, { name: "mlx-community/alpha-model", files: mlxModelFiles() });
  addRepo(hub.hubDir, { name: "org/other-4bit", files: mlxModelFiles() });
  home = join(hub.root, "workspaces");
  const sentinel = (extra: Record<string, unknown>) => ({
    json: { mlxk_version: "2.0.7", created_at: "2025-12-29T10:30:00Z", source_repo: "mlx-community/alpha-model", managed: true, operation: "clone", ...extra },
  });
  writeDir(join(home, "alpha-model"), mlxModelFiles());
  alphaHash = recalcHash(join(home, "alpha-model"), sentinel({}).json).content_hash as string;
  writeDir(join(home, "alpha-model-v2"), mlxModelFiles());
  writeDir(join(home, "beta-dirty"), mlxModelFiles());
  recalcHash(join(home, "beta-dirty"), sentinel({ operation: "convert" }).json);
  // an edit after the pin: same size would not matter, the content differs
  writeFileSync(join(home, "beta-dirty", "config.json"), JSON.stringify({ model_type: "llama", edited: true }));
  writeDir(join(home, "beta-two"), { ...mlxModelFiles(), [SENTINEL]: "{ not json" });
  writeDir(join(home, "broken-ws"), { "model.safetensors": "x", [SENTINEL]: sentinel({ managed: false }) });
  writeDir(join(home, "not-a-model"), { "notes.txt": "hello" });
  env = { ...hub.env, MLXK_WORKSPACE_HOME: home };
});
afterAll(() => hub.cleanup());

const ws = (n: string) => join(home, n);

describe("workspace resolution", () => {
  const resolve = (spec: string, e: Record<string, string> = env) => resolveModel(spec, { hubDir: hub.hubDir, env: e });

  test("exact name wins over substring hits and over the cache", () => {
    expect(resolve("alpha-model")).toMatchObject({ kind: "path", dir: ws("alpha-model"), name: ws("alpha-model"), workspace: true });
  });

  test("a single case-insensitive substring hit resolves", () => {
    expect(resolve("DIRTY")).toMatchObject({ kind: "path", dir: ws("beta-dirty") });
  });

  test("several substring hits are ambiguous, not the first dir", () => {
    let err: any;
    try {
      resolve("beta");
    } catch (e) {
      err = e;
    }
    expect(err?.type).toBe("ambiguous_match");
    expect(err.extra.matches).toEqual(["beta-dirty", "beta-two"]);
  });

  test("no workspace hit falls through to the cache; without MLXK_WORKSPACE_HOME the cache decides", () => {
    expect(resolve("other")).toMatchObject({ kind: "cache", name: "org/other-4bit" });
    expect(resolve("alpha-model", hub.env)).toMatchObject({ kind: "cache", name: "mlx-community/alpha-model" });
  });
});

describe("list with workspaces", () => {
  test("JSON carries workspace entries with sentinel fields", async () => {
    const r = await runCliCapture(["list", "--json"], { env });
    expect(r.code).toBe(0);
    const data = v.parse(ListDataSchema, r.json().data);
    const by = (n: string) => data.models.find((m) => m.name === n)!;
    expect(data.models.map((m) => m.name)).toEqual(
      [ws("alpha-model"), ws("alpha-model-v2"), ws("beta-dirty"), ws("beta-two"), ws("broken-ws"), "mlx-community/alpha-model", "org/other-4bit"],
    );
    expect(by(ws("alpha-model"))).toMatchObject({ cached: false, display_name: "alpha-model", origin: "mlx-community/alpha-model", content_hash: alphaHash, clean: true, health: "healthy" });
    expect(alphaHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(by(ws("beta-dirty"))).toMatchObject({ clean: false, hash_modified: expect.stringMatching(/Z$/) });
    for (const n of ["alpha-model-v2", "beta-two"]) {
      expect(by(ws(n))).toMatchObject({ origin: null, content_hash: null, hash_modified: null, clean: null, display_name: n });
    }
    expect(by(ws("broken-ws"))).toMatchObject({ health: "unhealthy", reason: "No config.json found in workspace" });
    expect(by("org/other-4bit")).toMatchObject({ cached: true, origin: null, display_name: null });
  });

  test("a pattern matches workspace dir names", async () => {
    const r = await runCliCapture(["list", "beta", "--json"], { env });
    expect(r.json().data.models.map((m: any) => m.display_name)).toEqual(["beta-dirty", "beta-two"]);
  });

  test("human Src and Clean columns", async () => {
    const r = await runCliCapture(["list", "--all", "--verbose"], { env });
    const rows = new Map(r.stdout.split("\n").map((l) => l.split(" | ").map((c) => c.trim())).map((c) => [c[0], c]));
    expect(rows.get("Name")?.slice(4, 6)).toEqual(["Src", "Clean"]);
    expect(rows.get("alpha-model")?.slice(4, 6)).toEqual(["ws", "✓"]);
    expect(rows.get("beta-dirty")?.slice(4, 6)).toEqual(["ws*", "✗"]);
    expect(rows.get("beta-two")?.slice(4, 6)).toEqual(["ws?", "—"]);
    expect(rows.get("org/other-4bit")?.slice(4, 6)).toEqual(["cache", "—"]);
    expect(rows.get("mlx-community/alpha-model")?.[4]).toBe("cache");
  });
});

describe("health with workspaces", () => {
  test("all: workspaces included, cache entry with a workspace's name skipped", async () => {
    const r = await runCliCapture(["health", "--json"], { env });
    const data = v.parse(HealthDataSchema, r.json().data);
    const names = [...data.healthy, ...data.unhealthy].map((e) => e.name);
    expect(names).toContain(ws("alpha-model"));
    expect(names).toContain("org/other-4bit");
    expect(names).not.toContain("mlx-community/alpha-model");
    expect(data.summary.total).toBe(6);
    expect(data.unhealthy).toEqual([expect.objectContaining({ name: ws("broken-ws"), reason: "No config.json found in workspace", managed: false })]);
    expect(data.healthy.find((e) => e.name === ws("alpha-model"))?.managed).toBe(true);
    expect(data.healthy.find((e) => e.name === ws("beta-two"))?.managed).toBe(false);
  });

  test("one workspace by name", async () => {
    const r = await runCliCapture(["health", "broken", "--json"], { env });
    expect(r.json().data.unhealthy[0]).toMatchObject({ name: ws("broken-ws"), reason: "No config.json found in workspace" });
  });
});

describe("show and rm on workspaces", () => {
  test("show by name returns the sentinel as workspace_metadata", async () => {
    const r = await runCliCapture(["show", "dirty", "--json"], { env });
    expect(r.code).toBe(0);
    const data = v.parse(ShowDataSchema, r.json().data);
    expect(data.model).toMatchObject({ name: ws("beta-dirty"), cached: false, clean: false, content_hash: expect.stringMatching(/^sha256:/), display_name: null });
    expect(data.clean_hint).toContain("--recalc-hash");
    expect(data.workspace_metadata).toMatchObject({ operation: "convert", source_repo: "mlx-community/alpha-model" });
    const human = await runCliCapture(["show", "dirty"], { env });
    expect(human.stdout).toContain("Workspace:");
    expect(human.stdout).toMatch(/Operation:\s+convert/);
  });

  test("show on a workspace without a valid sentinel: workspace_metadata null", async () => {
    const r = await runCliCapture(["show", "beta-two", "--json"], { env });
    expect(r.json().data.workspace_metadata).toBeNull();
  });

  test("rm refuses a workspace and deletes nothing", async () => {
    const r = await runCliCapture(["rm", "alpha-model", "--force", "--json"], { env });
    expect(r.code).toBe(1);
    expect(r.json().error).toMatchObject({ type: "workspace_model", message: `Cannot delete workspace model. Use: rm -rf ${ws("alpha-model")}` });
    expect(existsSync(join(ws("alpha-model"), "config.json"))).toBe(true);
  });
});

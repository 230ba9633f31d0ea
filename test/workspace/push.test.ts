/**
 * `push` against the loopback Hub's upload API (create, branch, preupload, LFS, commit): only changed files go,
 * ignore rules hold, the token never shows, a push killed mid-upload leaves no commit and the retry finishes — and
 * Python huggingface_hub's own upload_folder works against the same endpoints (when its venv exists).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { recalcHash } from "../../src/cache/content-hash.ts";
import { PushDataSchema } from "../../src/schemas/workspace.ts";
import { LoopbackHub } from "../helpers/loopback-hub.ts";
import { weightsBytes } from "../helpers/model-repo.ts";
import { runCliCapture } from "../support/cli.ts";
import { mlxModelFiles } from "../support/hf-cache.ts";

const ROOT = join(import.meta.dir, "..", "..");
const PYVENV = join(ROOT, ".cache", "py-venv", "bin", "python");
const TOKEN = "hf_pushWriteToken0123456789";
let hub: LoopbackHub;
let tmp: string;
let ws: string;
let env: Record<string, string>;

function writeModel(dir: string, weights = 300_000): void {
  mkdirSync(dir, { recursive: true });
  for (const [rel, c] of Object.entries(mlxModelFiles())) writeFileSync(join(dir, rel), typeof c === "string" || c instanceof Uint8Array ? c : JSON.stringify((c as { json: unknown }).json));
  writeFileSync(join(dir, "model.safetensors"), weightsBytes(weights, 3));
}

beforeAll(async () => {
  hub = await LoopbackHub.start();
  hub.tokens.add(TOKEN);
  hub.uploads.namespaces.set(TOKEN, "me");
  hub.tokens.add("hf_otherUserToken000000001");
  hub.uploads.namespaces.set("hf_otherUserToken000000001", "someone");
  tmp = mkdtempSync(join(tmpdir(), "mlxk-push-"));
  ws = join(tmp, "ws");
  writeModel(ws);
  recalcHash(ws, { managed: true, operation: "clone", mlxk_version: "x", created_at: "2026-01-01T00:00:00Z", source_repo: "org/src" });
  mkdirSync(join(ws, ".hf_cache", "hub"), { recursive: true });
  writeFileSync(join(ws, ".hf_cache", "hub", "x.bin"), "cache");
  writeFileSync(join(ws, ".DS_Store"), "x");
  mkdirSync(join(ws, "scratch"));
  writeFileSync(join(ws, "scratch", "notes.txt"), "private notes");
  writeFileSync(join(ws, ".hfignore"), "# mine\nscratch/\n");
  env = { HOME: tmp, HF_HOME: join(tmp, "hf"), HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN, PATH: process.env.PATH ?? "/usr/bin:/bin" };
});
afterAll(() => {
  hub.stop();
  rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  hub.uploads.throttle = null;
});

const pushJson = async (args: string[], e = env) => {
  const r = await runCliCapture(["push", ...args, "--json"], { env: e });
  expect(r.stdout + r.stderr).not.toContain(TOKEN);
  return { code: r.code, json: r.json() };
};

describe("push", () => {
  test("--check-only needs no token; guards: --private, token, missing repo without --create", async () => {
    const c = await pushJson([ws, "me/tiny", "--check-only"], { ...env, HF_TOKEN: "" });
    expect(c.json.data.workspace_health).toMatchObject({ files_count: 4, healthy: true, config: { exists: true, valid_json: true } });
    expect((await pushJson([ws, "me/tiny"])).json.error.type).toBe("InvalidArgumentError");
    expect((await pushJson([ws, "me/tiny", "--private"], { ...env, HF_TOKEN: "" })).json.error).toMatchObject({ type: "auth_error", message: expect.stringContaining("HF_TOKEN not set") });
    expect((await pushJson([ws, "me/tiny", "--private"])).json.error.type).toBe("repo_not_found");
    expect(hub.repos.has("me/tiny")).toBe(false);
  });

  test("--dry-run lists what would go and changes nothing", async () => {
    const r = await pushJson([ws, "me/tiny", "--private", "--create", "--dry-run"]);
    const d = v.parse(PushDataSchema, r.json.data);
    expect(d).toMatchObject({ dry_run: true, would_create_repo: true, dry_run_summary: { added: 4, modified: 0, deleted: 0 } });
    expect(d.files!.map((f) => f.path)).toEqual(["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    expect(hub.repos.has("me/tiny")).toBe(false);
  });

  test("--create pushes the files (weights through LFS), ignores sentinel/caches/.hfignore; a second push sends nothing", async () => {
    const r = await pushJson([ws, "me/tiny", "--private", "--create", "--commit", "first"]);
    expect(r.code).toBe(0);
    const d = v.parse(PushDataSchema, r.json.data);
    expect(d).toMatchObject({ created_repo: true, no_changes: false, uploaded_files_count: 4, local_files_count: 4, experimental: false });
    const head = hub.commitOf("me/tiny", "main")!;
    expect(d.commit_sha).toBe(head.sha);
    expect([...head.files.keys()].sort()).toEqual([".gitattributes", ...d.files!.filter((f) => f.change === "added").map((f) => f.path)].sort());
    for (const p of ["scratch/notes.txt", ".mlxk_workspace.json", ".DS_Store", ".hfignore", ".hf_cache/hub/x.bin"]) expect(head.files.has(p)).toBe(false);
    expect(hub.fileInfo("me/tiny", "model.safetensors").lfs).toBe(true);
    expect(Buffer.from(hub.fileBytes("me/tiny", "model.safetensors")).equals(Buffer.from(await Bun.file(join(ws, "model.safetensors")).arrayBuffer()))).toBe(true);
    expect(hub.uploads.commits.at(-1)?.summary).toBe("first");
    const again = await pushJson([ws, "me/tiny", "--private"]);
    expect(again.json.data).toMatchObject({ no_changes: true, uploaded_files_count: 0, commit_sha: null });
    expect(hub.commitOf("me/tiny", "main")!.sha).toBe(head.sha);
  });

  test("--branch creates it from main and commits only the changed file", async () => {
    writeFileSync(join(ws, "tokenizer_config.json"), JSON.stringify({ changed: true }));
    const r = await pushJson([ws, "me/tiny", "--private", "--branch", "dev"]);
    expect(r.json.data).toMatchObject({ created_branch: true, uploaded_files_count: 1, change_summary: { added: 0, modified: 1 } });
    expect(hub.uploads.commits.at(-1)).toMatchObject({ branch: "dev", lines: [{ key: "header" }, { key: "file", path: "tokenizer_config.json" }] });
    expect(new TextDecoder().decode(hub.fileBytes("me/tiny", "tokenizer_config.json", "dev"))).toBe(JSON.stringify({ changed: true }));
    expect(hub.commitOf("me/tiny", "main")!.files.get("tokenizer_config.json")).toBeDefined();
  });

  test("a public repo and a foreign namespace are refused; the token never shows", async () => {
    await hub.addRepo("me/public-one", [{ path: "README.md", content: "hi" }]);
    expect((await pushJson([ws, "me/public-one", "--private"])).json.error.message).toContain("public repo");
    const other = await pushJson([ws, "someone-else/x", "--private", "--create"]);
    expect(other.code).toBe(1);
    expect(other.json.error.type).toBe("push_operation_failed");
  });

  test("killed mid-upload (SIGKILL): no commit, nothing half-stored; the retry uploads and commits", async () => {
    const big = join(tmp, "big");
    writeModel(big, 12_000_000);
    hub.uploads.throttle = { delayMs: 15 };
    const cmd = [process.execPath, join(ROOT, "bin", "mlxk"), "push", big, "me/big", "--private", "--create", "--json"];
    const p = Bun.spawn(cmd, { env, stdout: "pipe", stderr: "pipe" });
    const oid = new Bun.CryptoHasher("sha256").update(await Bun.file(join(big, "model.safetensors")).arrayBuffer()).digest("hex");
    while ((hub.uploads.receiving.get(oid) ?? 0) < 1_000_000) {
      if (p.exitCode !== null) throw new Error(`push ended early: ${await new Response(p.stderr).text()}`);
      await Bun.sleep(20);
    }
    p.kill("SIGKILL");
    await p.exited;
    // the server sees the body end short: nothing stored, and main still only has the repo's first commit
    while (hub.uploads.receiving.has(oid)) await Bun.sleep(10);
    expect(hub.uploads.lfs.has(oid)).toBe(false);
    expect(hub.commitOf("me/big", "main")!.files.has("model.safetensors")).toBe(false);
    hub.uploads.throttle = null;
    const r = await pushJson([big, "me/big", "--private"]);
    expect(r.json.data).toMatchObject({ created_repo: false, uploaded_files_count: 4 });
    expect(Buffer.from(hub.fileBytes("me/big", "model.safetensors")).equals(Buffer.from(await Bun.file(join(big, "model.safetensors")).arrayBuffer()))).toBe(true);
  }, 60_000);

  test.skipIf(!existsSync(PYVENV))("Python huggingface_hub upload_folder works against the same endpoints; mlxk then sees no changes", async () => {
    const script = [
      "import sys",
      "from huggingface_hub import HfApi",
      "api = HfApi(endpoint=sys.argv[1], token=sys.argv[2])",
      "api.create_repo('me/py-up', private=True)",
      "info = api.upload_folder(folder_path=sys.argv[3], repo_id='me/py-up', commit_message='from python', ignore_patterns=['.mlxk_workspace.json', '.hf_cache/**', '.DS_Store', '.hfignore', 'scratch/**'])",
      "print(info.oid)",
    ].join("\n");
    // async spawn: the loopback Hub answers from this process's event loop
    const p = Bun.spawn([PYVENV, "-c", script, hub.url, TOKEN, ws], { env: { PATH: env.PATH!, HF_HUB_DISABLE_TELEMETRY: "1", HF_HUB_DISABLE_XET: "1", NO_PROXY: "127.0.0.1" }, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect(err).not.toContain("Traceback");
    expect(await p.exited).toBe(0);
    const sha = out.trim().split("\n").at(-1);
    expect(hub.commitOf("me/py-up", "main")!.sha).toBe(sha!);
    expect(hub.fileInfo("me/py-up", "model.safetensors").lfs).toBe(true);
    const r = await pushJson([ws, "me/py-up", "--private"]);
    expect(r.json.data).toMatchObject({ no_changes: true, uploaded_files_count: 0 });
  }, 60_000);
});

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkClean, computeContentHash, recalcHash } from "../../src/cache/content-hash.ts";
import { SENTINEL, readSentinel } from "../../src/cache/workspace.ts";
import { runCliCapture } from "../support/cli.ts";
import { addRepo, makeTempHub, mlxModelFiles } from "../support/hf-cache.ts";

let dir: string;
const HEADER = '{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}';

function safetensors(header: string, body = new Uint8Array(8)): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
  return Buffer.concat([len, Buffer.from(header), body]);
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "mlxk-hash-"));
  mkdirSync(join(dir, "sub"));
  writeFileSync(join(dir, "model.safetensors"), safetensors(HEADER));
  writeFileSync(join(dir, "config.json"), '{"model_type": "llama"}');
  writeFileSync(join(dir, "sub", "notes.txt"), "héllo\n");
  writeFileSync(join(dir, ".DS_Store"), "x");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("content hash v2", () => {
  test("matches the ADR-025 recipe as Python's hashlib computes it (golden from a python3 run)", () => {
    const { content_hash, file_index } = computeContentHash(dir);
    expect(content_hash).toBe("sha256:77c9149dc4fc1bdf9f463d95fe910dbaa0bf87d101503d369acf750bbefb1643");
    expect(file_index.map((e) => e.path)).toEqual(["config.json", "model.safetensors", "sub/notes.txt"]);
  });

  test("safetensors count by header only: tensor bytes do not move the hash, a header change does", () => {
    const a = computeContentHash(dir).content_hash;
    writeFileSync(join(dir, "model.safetensors"), safetensors(HEADER, new Uint8Array(8).fill(7)));
    expect(computeContentHash(dir).content_hash).toBe(a);
    writeFileSync(join(dir, "model.safetensors"), safetensors(HEADER.replace("F32", "F16")));
    expect(computeContentHash(dir).content_hash).not.toBe(a);
  });

  test("a corrupt safetensors header or a symlink out of the workspace refuses to hash", () => {
    writeFileSync(join(dir, "bad.safetensors"), Buffer.alloc(8));
    expect(() => computeContentHash(dir)).toThrow(/corrupt header/);
    rmSync(join(dir, "bad.safetensors"));
    symlinkSync("/etc/hostname", join(dir, "leak.txt"));
    expect(() => computeContentHash(dir)).toThrow(/outside/);
  });

  test("clean check: unchanged → true; mtime-only drift self-heals into the sentinel; edits, new and removed files → false", () => {
    writeFileSync(join(dir, SENTINEL), JSON.stringify({ managed: true, operation: "clone", mlxk_version: "x", created_at: "2026-01-01T00:00:00Z" }));
    const pinned = recalcHash(dir, readSentinel(dir));
    expect(checkClean(dir, readSentinel(dir))).toEqual({ clean: true, hint: null, changed: [] });
    // a copy to another disk: new mtimes, same bytes
    utimesSync(join(dir, "config.json"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect(checkClean(dir, readSentinel(dir)).clean).toBe(true);
    const healed = readSentinel(dir)!.file_index as { path: string; mtime_ns: number }[];
    expect(healed.find((e) => e.path === "config.json")!.mtime_ns).not.toBe((pinned.file_index as typeof healed).find((e) => e.path === "config.json")!.mtime_ns);
    expect(readSentinel(dir)!.content_hash).toBe(pinned.content_hash);
    // OS cruft is excluded
    writeFileSync(join(dir, "Thumbs.db"), "y");
    expect(checkClean(dir, readSentinel(dir)).clean).toBe(true);
    writeFileSync(join(dir, "config.json"), '{"model_type": "qwen2"}');
    writeFileSync(join(dir, "extra.json"), "{}");
    rmSync(join(dir, "sub", "notes.txt"));
    const r = checkClean(dir, readSentinel(dir));
    expect(r.clean).toBe(false);
    expect(r.changed).toEqual(["config.json", "extra.json", "sub/notes.txt"]);
    expect(r.hint).toContain("--recalc-hash");
  });

  test("no v2 recipe or a tampered file_index: clean unknown with a hint, and no file outside is touched", () => {
    expect(checkClean(dir, { content_hash: "ab".repeat(32) })).toMatchObject({ clean: null, hint: expect.stringContaining("not v2") });
    const tampered = { content_hash: "sha256:x", hash_algorithm: "v2", file_index: [{ path: "../../etc/passwd", size: 1, mtime_ns: 0, sha: "sha256:0" }] };
    expect(checkClean(dir, tampered)).toMatchObject({ clean: null, hint: expect.stringContaining("invalid file_index") });
  });
});

describe("show --recalc-hash and health keep the hash honest", () => {
  test("re-pin after an edit; refused on cache models; health reports drift", async () => {
    const hub = makeTempHub();
    try {
      addRepo(hub.hubDir, { name: "org/cached-model", files: mlxModelFiles() });
      const home = join(hub.root, "ws");
      const ws = join(home, "edited");
      mkdirSync(ws, { recursive: true });
      for (const [rel, c] of Object.entries(mlxModelFiles())) writeFileSync(join(ws, rel), typeof c === "string" || c instanceof Uint8Array ? c : JSON.stringify((c as { json: unknown }).json));
      writeFileSync(join(ws, SENTINEL), JSON.stringify({ mlxk_version: "2.0.5", created_at: "2026-01-01T00:00:00Z", source_repo: "org/cached-model", managed: true, operation: "clone", content_hash: "ab".repeat(32) }));
      const env = { ...hub.env, MLXK_WORKSPACE_HOME: home };

      // a v1 hash: unknown, with the migration hint
      let h = (await runCliCapture(["health", "edited", "--json"], { env })).json().data.healthy[0];
      expect(h).toMatchObject({ clean: null, clean_hint: expect.stringContaining("not v2") });

      const r = await runCliCapture(["show", "edited", "--recalc-hash", "--json"], { env });
      expect(r.code).toBe(0);
      const d = r.json().data;
      expect(d.hash_updated).toBe(true);
      expect(d.model).toMatchObject({ clean: true, content_hash: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });
      const written = JSON.parse(readFileSync(join(ws, SENTINEL), "utf8"));
      expect(written).toMatchObject({ hash_algorithm: "v2", source_repo: "org/cached-model", managed: true, operation: "clone", content_hash: d.model.content_hash });

      writeFileSync(join(ws, "config.json"), JSON.stringify({ model_type: "llama", hacked: 1 }));
      h = (await runCliCapture(["health", "edited", "--json"], { env })).json().data.healthy[0];
      expect(h).toMatchObject({ clean: false, changed_files: ["config.json"] });
      expect((await runCliCapture(["health", "edited"], { env })).stdout).toContain("content hash: 1 file(s) changed");

      const c = await runCliCapture(["show", "org/cached-model", "--recalc-hash", "--json"], { env });
      expect(c.code).toBe(1);
      expect(c.json().error).toMatchObject({ type: "ValidationError", message: expect.stringContaining("workspaces only") });
    } finally {
      hub.cleanup();
    }
  });
});

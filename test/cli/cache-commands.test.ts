import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { EnvelopeSchema } from "../../src/schemas/envelope.ts";
import { HealthDataSchema, ListDataSchema, ShowDataSchema } from "../../src/schemas/cli-output.ts";
import { runCliCapture } from "../support/cli.ts";
import { ggufFile } from "../support/gguf-repos.ts";
import { type TempHub, addRepo, lfsPointer, makeTempHub, mlxModelFiles, revisionFor, safetensorsBytes } from "../support/hf-cache.ts";

const W = safetensorsBytes({ w: { dtype: "F16", shape: [8] } });
let zoo: TempHub;
const OLD = revisionFor("old-rev");

/** One cache holding every kind of repo the issue lists. */
function buildZoo(hub: TempHub): void {
  const d = hub.hubDir;
  addRepo(d, { name: "mlx-community/Llama-3.2-1B-Instruct-4bit", files: mlxModelFiles(), mtime: new Date("2025-01-02T03:04:05Z") });
  addRepo(d, { name: "mlx-community/Llama-3.2-1B-Instruct-8bit", files: mlxModelFiles() });
  const sharded = mlxModelFiles({ modelType: "qwen3" });
  delete sharded["model.safetensors"];
  Object.assign(sharded, {
    "model-00001-of-00002.safetensors": W,
    "model-00002-of-00002.safetensors": W,
    "model.safetensors.index.json": { json: { weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" } } },
  });
  addRepo(d, { name: "mlx-community/Qwen3-Sharded-4bit", files: sharded });
  const missing = { ...sharded };
  delete missing["model-00002-of-00002.safetensors"];
  addRepo(d, { name: "mlx-community/Qwen3-MissingShard-4bit", files: missing });
  addRepo(d, { name: "mlx-community/LfsPointer-4bit", files: { ...mlxModelFiles(), "model.safetensors": lfsPointer("weights") } });
  addRepo(d, { name: "mlx-community/Partial-4bit", files: mlxModelFiles(), incomplete: ["b".repeat(64)] });
  addRepo(d, { name: "mlx-community/BadConfig-4bit", files: { ...mlxModelFiles(), "config.json": "invalid json {" } });
  addRepo(d, { name: "TheBloke/Llama-2-7B-Chat-GGUF", files: { "config.json": { json: { model_type: "llama" } }, "llama-2-7b-chat.Q4_0.gguf": ggufFile() } });
  addRepo(d, { name: "TheBloke/starcoder-GGUF", files: { "starcoder.Q4_0.gguf": ggufFile({ arch: "starcoder", chatTemplate: null }) } });
  addRepo(d, {
    name: "microsoft/DialoGPT-small",
    files: { "config.json": { json: { model_type: "gpt2" } }, "model.safetensors": safetensorsBytes({ w: { dtype: "F32", shape: [2] } }, { format: "pt" }) },
  });
  addRepo(d, { name: "org/tokenizer-only", files: { "tokenizer.json": { json: { version: "1.0" } }, "tokenizer_config.json": { json: {} } } });
  addRepo(d, { name: "mlx-community/Multi-4bit", revision: OLD, files: mlxModelFiles(), mtime: new Date("2024-01-01T00:00:00Z") });
  addRepo(d, { name: "mlx-community/Multi-4bit", files: { "config.json": "{" }, refs: { main: OLD } });
  addRepo(d, { name: "mlx-community/Locked-4bit", files: mlxModelFiles(), locks: ["abc.lock"] });
  addRepo(d, { name: "組織/模型-ünï-4bit", files: mlxModelFiles() });
  addRepo(d, { name: "mlx-community/Unreadable-4bit", files: { ...mlxModelFiles(), "generation_config.json": { loop: true } } });
}

beforeAll(() => {
  zoo = makeTempHub();
  buildZoo(zoo);
});
afterAll(() => zoo.cleanup());

async function cli(argv: string[], env: Record<string, string> = zoo.env, opts: { tty?: boolean; answers?: boolean[] } = {}) {
  return runCliCapture(argv, { env, ...opts });
}

function envelope(stdout: string) {
  return v.parse(EnvelopeSchema, JSON.parse(stdout));
}

describe("list", () => {
  test("--json: every model with the contract fields, validated, sorted", async () => {
    const r = await cli(["list", "--json"]);
    expect(r.code).toBe(0);
    const env = envelope(r.stdout);
    const data = v.parse(ListDataSchema, env.data);
    expect(data.count).toBe(15);
    const names = data.models.map((m) => m.name);
    expect(names).toEqual([...names].sort());
    const by = Object.fromEntries(data.models.map((m) => [m.name, m]));
    expect(by["mlx-community/Llama-3.2-1B-Instruct-4bit"]).toMatchObject({
      hash: revisionFor("mlx-community/Llama-3.2-1B-Instruct-4bit"),
      last_modified: "2025-01-02T03:04:05Z",
      framework: "MLX",
      model_type: "chat",
      capabilities: ["text-generation", "chat"],
      context_length: 2048,
      health: "healthy",
      runtime_compatible: true,
      reason: null,
      cached: true,
      origin: null,
      content_hash: null,
    });
    expect(by["mlx-community/Qwen3-Sharded-4bit"]!.health).toBe("healthy");
    expect(by["mlx-community/Qwen3-MissingShard-4bit"]!.reason).toBe("Missing weight shards: model-00002-of-00002.safetensors");
    expect(by["mlx-community/LfsPointer-4bit"]!.reason).toBe("LFS pointers instead of files: model.safetensors");
    expect(by["mlx-community/Partial-4bit"]!.reason).toStartWith("Download incomplete");
    expect(by["mlx-community/BadConfig-4bit"]!.reason).toBe("config.json contains invalid JSON");
    expect(by["TheBloke/Llama-2-7B-Chat-GGUF"]).toMatchObject({
      framework: "GGUF",
      model_type: "chat",
      context_length: 4096,
      health: "healthy",
      runtime_compatible: true,
      reason: null,
    });
    expect(by["TheBloke/starcoder-GGUF"]).toMatchObject({ framework: "GGUF", model_type: "base", health: "healthy", runtime_compatible: false });
    expect(by["TheBloke/starcoder-GGUF"]!.reason).toStartWith("GGUF architecture 'starcoder' is not supported by mlxk");
    expect(by["microsoft/DialoGPT-small"]).toMatchObject({ framework: "PyTorch", runtime_compatible: false });
    expect(by["org/tokenizer-only"]).toMatchObject({ health: "unhealthy", reason: "config.json missing" });
    expect(by["mlx-community/Multi-4bit"]).toMatchObject({ hash: OLD, health: "healthy" });
    expect(by["組織/模型-ünï-4bit"]!.health).toBe("healthy");
    expect(by["mlx-community/Unreadable-4bit"]!.reason).toBe("Files point to missing blobs: generation_config.json");
    // sizes are the blob sizes behind the symlinks
    expect(by["mlx-community/Llama-3.2-1B-Instruct-4bit"]!.size_bytes).toBeGreaterThan(5000);
  });

  test("pattern filters case-insensitively", async () => {
    const data = v.parse(ListDataSchema, envelope((await cli(["list", "LLAMA-3.2", "--json"])).stdout).data);
    expect(data.models.map((m) => m.name)).toEqual(["mlx-community/Llama-3.2-1B-Instruct-4bit", "mlx-community/Llama-3.2-1B-Instruct-8bit"]);
  });

  test("human: compact table hides unhealthy/unrunnable and strips mlx-community/", async () => {
    const r = await cli(["list"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^Name +\| Hash +\| Size +\| Modified +\| Src +\| Type$/);
    expect(lines[1]).toMatch(/^-+(-\+-+)+$/);
    expect(r.stdout).toMatch(/^Llama-3.2-1B-Instruct-4bit +\| /m);
    expect(r.stdout).not.toContain("mlx-community/");
    expect(r.stdout).toContain("TheBloke/Llama-2-7B-Chat-GGUF");
    expect(r.stdout).not.toContain("starcoder-GGUF");
    expect(r.stdout).not.toContain("BadConfig");
  });

  test("human: --all --health --verbose shows everything with reasons", async () => {
    const r = await cli(["list", "--all", "--health", "--verbose"]);
    expect(r.stdout.split("\n")[0]).toMatch(/Clean +\| Framework +\| Type +\| Integrity +\| Runtime +\| Reason$/);
    expect(r.stdout).toContain("TheBloke/Llama-2-7B-Chat-GGUF");
    expect(r.stdout).toContain("mlx-community/BadConfig-4bit");
    expect(r.stdout).toMatch(/\| unhealthy +\| - +\| config\.json contains/);
  });

  test("human: --health compact column marks healthy* and unhealthy", async () => {
    const r = await cli(["list", "--all", "--health"]);
    expect(r.stdout).toMatch(/starcoder-GGUF .*\| healthy\*$/m);
    expect(r.stdout).toMatch(/Llama-2-7B-Chat-GGUF .*\| healthy$/m);
    expect(r.stdout).toMatch(/BadConfig-4bit .*\| unhealthy$/m);
  });

  test("empty cache and missing cache dir list nothing, exit 0", async () => {
    const empty = makeTempHub();
    const missing = makeTempHub({ create: false });
    try {
      for (const env of [empty.env, missing.env]) {
        const r = await cli(["list", "--json"], env);
        expect(r.code).toBe(0);
        expect(envelope(r.stdout).data).toMatchObject({ models: [], count: 0 });
        expect((await cli(["list"], env)).code).toBe(0);
      }
      expect(existsSync(missing.hubDir)).toBe(false);
    } finally {
      empty.cleanup();
      missing.cleanup();
    }
  });

  test("unknown flags are usage errors", async () => {
    const r = await cli(["list", "--frob", "--json"]);
    expect(r.code).toBe(2);
    expect(envelope(r.stdout).error?.type).toBe("CommandError");
  });

  test("list, health and show never write to the cache", async () => {
    const snap = (): string[] => {
      const out: string[] = [];
      const walk = (d: string): void => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          out.push(`${p}:${e.isDirectory() ? statSync(p).mtimeMs : ""}`);
          if (e.isDirectory()) walk(p);
        }
      };
      walk(zoo.hubDir);
      return out.sort();
    };
    const before = snap();
    await cli(["list", "--json"]);
    await cli(["health", "--json"]);
    await cli(["show", "Llama-3.2-1B-Instruct-4bit", "--json"]);
    expect(snap()).toEqual(before);
  });
});

describe("health", () => {
  test("all models: healthy/unhealthy split and summary", async () => {
    const r = await cli(["health", "--json"]);
    expect(r.code).toBe(0);
    const data = v.parse(HealthDataSchema, envelope(r.stdout).data);
    expect(data.summary).toEqual({ total: 15, healthy_count: data.healthy.length, unhealthy_count: data.unhealthy.length });
    expect(data.unhealthy.map((e) => e.name)).toContain("mlx-community/BadConfig-4bit");
    const gguf = data.healthy.find((e) => e.name === "TheBloke/Llama-2-7B-Chat-GGUF");
    expect(gguf).toEqual({
      name: "TheBloke/Llama-2-7B-Chat-GGUF",
      status: "healthy",
      reason: "Model is healthy",
      runtime_compatible: true,
      runtime_reason: null,
    });
  });

  test("one model, @hash picks the revision", async () => {
    const one = v.parse(HealthDataSchema, envelope((await cli(["health", "Multi-4bit", "--json"])).stdout).data);
    expect(one.summary).toEqual({ total: 1, healthy_count: 1, unhealthy_count: 0 });
    const newest = revisionFor("mlx-community/Multi-4bit");
    const other = v.parse(HealthDataSchema, envelope((await cli(["health", `Multi-4bit@${newest.slice(0, 7)}`, "--json"])).stdout).data);
    expect(other.unhealthy[0]?.reason).toBe("config.json contains invalid JSON");
  });

  test("human output: summary line and one line per model", async () => {
    const r = await cli(["health"]);
    expect(r.stdout).toMatch(/^Summary: total 15, healthy \d+, unhealthy \d+\n/);
    expect(r.stdout).toContain("unhealthy mlx-community/BadConfig-4bit — config.json contains invalid JSON");
    const one = await cli(["health", "Sharded"]);
    expect(one.stdout).toBe("healthy   mlx-community/Qwen3-Sharded-4bit — Multi-file model complete\n");
  });

  test("ambiguous → ambiguous_match with matches; unknown → model_not_found (exit 1)", async () => {
    const a = await cli(["health", "Llama-3.2", "--json"]);
    expect(a.code).toBe(1);
    const env = envelope(a.stdout);
    expect(env.error).toMatchObject({ type: "ambiguous_match", matches: ["mlx-community/Llama-3.2-1B-Instruct-4bit", "mlx-community/Llama-3.2-1B-Instruct-8bit"] });
    const n = await cli(["health", "no-such-model"]);
    expect(n.code).toBe(1);
    expect(n.stderr).toBe("health: Error: No model found matching 'no-such-model'\n");
  });

  test("--verify names corrupt blobs", async () => {
    const hub = makeTempHub();
    try {
      const { snapshotDir } = addRepo(hub.hubDir, { name: "mlx-community/V-4bit", files: mlxModelFiles() });
      const ok = v.parse(HealthDataSchema, envelope((await cli(["health", "--verify", "--json"], hub.env)).stdout).data);
      expect(ok.summary.healthy_count).toBe(1);
      expect(ok.verified).toBe(true);
      // flip bytes inside the weights blob without changing its size
      const blob = Bun.file(join(snapshotDir, "model.safetensors"));
      const bytes = new Uint8Array(await blob.arrayBuffer());
      bytes[bytes.length - 1] = 7;
      await Bun.write(join(snapshotDir, "model.safetensors"), bytes);
      const bad = v.parse(HealthDataSchema, envelope((await cli(["health", "--verify", "--json"], hub.env)).stdout).data);
      expect(bad.unhealthy[0]).toMatchObject({ reason: "Corrupt files (content does not match its hash): model.safetensors", corrupt_files: ["model.safetensors"] });
      // without --verify the same cache looks healthy: the rule is the re-hash
      const plain = v.parse(HealthDataSchema, envelope((await cli(["health", "--json"], hub.env)).stdout).data);
      expect(plain.summary.healthy_count).toBe(1);
    } finally {
      hub.cleanup();
    }
  });
});

describe("show", () => {
  test("metadata from config and safetensors headers", async () => {
    const r = await cli(["show", "Llama-3.2-1B-Instruct-4bit", "--json"]);
    expect(r.code).toBe(0);
    const data = v.parse(ShowDataSchema, envelope(r.stdout).data);
    expect(data.model.quantization).toEqual({ bits: 4, group_size: 32 });
    expect(data.metadata).toEqual({
      model_type: "llama",
      architecture: "LlamaForCausalLM",
      quantization: "4bit",
      quantization_bits: 4,
      quantization_group_size: 32,
      quantization_mode: "affine",
      context_length: 2048,
      vocab_size: 128,
      hidden_size: 64,
      num_attention_heads: 4,
      num_hidden_layers: 2,
      // embed 128×64 packed in 128×8 uint32 at 4 bits + norm 64; scales/biases are not parameters
      parameters: 128 * 64 + 64,
      dtypes: ["F16", "U32"],
    });
  });

  test("--files and --config", async () => {
    const f = v.parse(ShowDataSchema, envelope((await cli(["show", "Llama-3.2-1B-Instruct-4bit", "--files", "--json"])).stdout).data);
    expect(f.metadata).toBeNull();
    expect(f.files?.map((x) => [x.name, x.type])).toEqual([
      ["config.json", "config"],
      ["model.safetensors", "weights"],
      ["tokenizer.json", "tokenizer"],
      ["tokenizer_config.json", "tokenizer"],
    ]);
    const c = v.parse(ShowDataSchema, envelope((await cli(["show", "Llama-3.2-1B-Instruct-4bit", "--config", "--json"])).stdout).data);
    expect(c.config?.model_type).toBe("llama");
  });

  test("human output", async () => {
    const r = await cli(["show", "Llama-3.2-1B-Instruct-4bit"]);
    expect(r.stdout).toContain(`Model: mlx-community/Llama-3.2-1B-Instruct-4bit@${revisionFor("mlx-community/Llama-3.2-1B-Instruct-4bit").slice(0, 7)}\n`);
    expect(r.stdout).toContain("Quantization: 4-bit (group_size=32)\n");
    expect(r.stdout).toContain("Health: healthy\n");
    const g = await cli(["show", "starcoder-GGUF"]);
    expect(g.stdout).toContain("Health: healthy (files OK, runtime incompatible)\n");
    expect(g.stdout).toContain("Reason: GGUF architecture 'starcoder' is not supported by mlxk");
  });

  test("errors: not found, ambiguous, bad hash, missing argument", async () => {
    expect(envelope((await cli(["show", "zzz", "--json"])).stdout).error?.type).toBe("model_not_found");
    expect(envelope((await cli(["show", "Llama-3.2", "--json"])).stdout).error?.type).toBe("ambiguous_match");
    const h = envelope((await cli(["show", "Multi-4bit@ffff", "--json"])).stdout);
    expect(h.error?.type).toBe("hash_not_found");
    expect(h.error?.available_hashes).toHaveLength(2);
    const m = await cli(["show", "--json"]);
    expect(m.code).toBe(2);
  });
});

describe("rm", () => {
  function fresh(): TempHub {
    const hub = makeTempHub();
    addRepo(hub.hubDir, { name: "mlx-community/Del-4bit", files: mlxModelFiles() });
    addRepo(hub.hubDir, { name: "mlx-community/Keep-4bit", files: mlxModelFiles() });
    return hub;
  }

  test("exact name deletes the repo dir and reports freed bytes", async () => {
    const hub = fresh();
    try {
      const r = await cli(["rm", "mlx-community/Del-4bit", "--json"], hub.env);
      expect(r.code).toBe(0);
      const d = envelope(r.stdout).data as Record<string, unknown>;
      expect(d).toMatchObject({ model: "mlx-community/Del-4bit", action: "deleted", requires_confirmation: false, lock_files_cleaned: 0 });
      expect(d.freed_bytes as number).toBeGreaterThan(5000);
      expect(existsSync(join(hub.hubDir, "models--mlx-community--Del-4bit"))).toBe(false);
      expect(existsSync(join(hub.hubDir, "models--mlx-community--Keep-4bit"))).toBe(true);
    } finally {
      hub.cleanup();
    }
  });

  test("fuzzy match without -f deletes nothing (requires_confirmation); with -f it deletes", async () => {
    const hub = fresh();
    try {
      const r = await cli(["rm", "del", "--json"], hub.env);
      expect(r.code).toBe(0);
      expect(envelope(r.stdout).data).toMatchObject({ action: "requires_confirmation", requires_confirmation: true, model: "mlx-community/Del-4bit" });
      expect(existsSync(join(hub.hubDir, "models--mlx-community--Del-4bit"))).toBe(true);
      const f = await cli(["rm", "del", "-f"], hub.env);
      expect(f.stdout).toMatch(/^rm: mlx-community\/Del-4bit — deleted: Deleted mlx-community\/Del-4bit \(/);
      expect(existsSync(join(hub.hubDir, "models--mlx-community--Del-4bit"))).toBe(false);
    } finally {
      hub.cleanup();
    }
  });

  test("on a terminal a fuzzy match asks [y/N]", async () => {
    const hub = fresh();
    try {
      const no = await cli(["rm", "del"], hub.env, { tty: true, answers: [false] });
      expect(no.stderr).toContain("[y/N]");
      expect(no.stdout).toContain("cancelled");
      expect(existsSync(join(hub.hubDir, "models--mlx-community--Del-4bit"))).toBe(true);
      const yes = await cli(["rm", "del"], hub.env, { tty: true, answers: [true] });
      expect(yes.stdout).toContain("deleted");
      expect(existsSync(join(hub.hubDir, "models--mlx-community--Del-4bit"))).toBe(false);
    } finally {
      hub.cleanup();
    }
  });

  test("--dry-run lists and keeps everything", async () => {
    const hub = fresh();
    try {
      const r = await cli(["rm", "mlx-community/Del-4bit", "--dry-run", "--json"], hub.env);
      expect(envelope(r.stdout).data).toMatchObject({ action: "dry_run", dry_run: true, paths: ["models--mlx-community--Del-4bit"] });
      expect(existsSync(join(hub.hubDir, "models--mlx-community--Del-4bit"))).toBe(true);
    } finally {
      hub.cleanup();
    }
  });

  test("locks present without -f → locks_present; with -f the lock dir goes too", async () => {
    const hub = fresh();
    try {
      addRepo(hub.hubDir, { name: "org/locked", files: mlxModelFiles(), locks: ["x.lock"] });
      // a lock of a different model whose name extends this one must not count
      addRepo(hub.hubDir, { name: "org/locked-8bit", files: mlxModelFiles(), locks: ["y.lock"] });
      const r = await cli(["rm", "org/locked", "--json"], hub.env);
      expect(r.code).toBe(1);
      const env = envelope(r.stdout);
      expect(env.error?.type).toBe("locks_present");
      expect(env.data).toMatchObject({ locks_detected: true, lock_files: [".locks/models--org--locked/x.lock"] });
      const f = await cli(["rm", "org/locked", "-f", "--json"], hub.env);
      expect(envelope(f.stdout).data).toMatchObject({ action: "deleted", lock_files_cleaned: 1 });
      expect(existsSync(join(hub.hubDir, ".locks", "models--org--locked"))).toBe(false);
      expect(existsSync(join(hub.hubDir, ".locks", "models--org--locked-8bit", "y.lock"))).toBe(true);
    } finally {
      hub.cleanup();
    }
  });

  test("model@hash deletes only that revision, its own blobs and refs", async () => {
    const hub = makeTempHub();
    try {
      const a = revisionFor("a");
      const b = revisionFor("b");
      const shared = mlxModelFiles();
      addRepo(hub.hubDir, { name: "org/two", revision: a, files: { ...shared, "extra.bin": "only-in-a" }, refs: { "pr/1": a } });
      const { repoDir } = addRepo(hub.hubDir, { name: "org/two", revision: b, files: shared, refs: { main: b } });
      const blobsBefore = readdirSync(join(repoDir, "blobs")).length;
      const r = await cli(["rm", `org/two@${a.slice(0, 8)}`, "--json"], hub.env);
      expect(envelope(r.stdout).data).toMatchObject({ action: "deleted", commit_hash: a });
      expect(existsSync(join(repoDir, "snapshots", a))).toBe(false);
      expect(existsSync(join(repoDir, "snapshots", b))).toBe(true);
      expect(readdirSync(join(repoDir, "blobs")).length).toBe(blobsBefore - 1);
      expect(existsSync(join(repoDir, "refs", "pr", "1"))).toBe(false);
      expect(existsSync(join(repoDir, "refs", "main"))).toBe(true);
      // the remaining revision is intact
      const h = v.parse(HealthDataSchema, envelope((await cli(["health", "org/two", "--json"], hub.env)).stdout).data);
      expect(h.summary.unhealthy_count).toBe(0);
    } finally {
      hub.cleanup();
    }
  });

  test("dangerous names, ambiguity, not found, missing cache", async () => {
    const hub = fresh();
    try {
      for (const bad of ["../../etc", "org/../x", "a\\b"]) {
        const r = await cli(["rm", bad, "-f", "--json"], hub.env);
        expect(r.code).toBe(1);
        expect(["ValidationError", "model_not_found"]).toContain(envelope(r.stdout).error?.type as string);
      }
      const amb = envelope((await cli(["rm", "4bit", "-f", "--json"], hub.env)).stdout);
      expect(amb.error?.type).toBe("ambiguous_match");
      expect(amb.data).toMatchObject({ action: "ambiguous", matches: ["mlx-community/Del-4bit", "mlx-community/Keep-4bit"] });
      expect(envelope((await cli(["rm", "nope", "--json"], hub.env)).stdout).error?.type).toBe("model_not_found");
      const missing = makeTempHub({ create: false });
      expect(envelope((await cli(["rm", "x", "--json"], missing.env)).stdout).error?.type).toBe("cache_not_found");
      missing.cleanup();
      expect(readdirSync(hub.hubDir).sort()).toEqual(["models--mlx-community--Del-4bit", "models--mlx-community--Keep-4bit"]);
    } finally {
      hub.cleanup();
    }
  });

  test("a repo dir that is a symlink out of the cache is refused, its target untouched", async () => {
    const hub = makeTempHub();
    const outside = makeTempHub();
    try {
      const { repoDir } = addRepo(outside.hubDir, { name: "org/victim", files: mlxModelFiles() });
      const { symlinkSync } = await import("node:fs");
      symlinkSync(repoDir, join(hub.hubDir, "models--org--victim"));
      const r = await cli(["rm", "org/victim", "-f", "--json"], hub.env);
      expect(envelope(r.stdout).error?.type).toBe("unsafe_path");
      expect(existsSync(join(repoDir, "blobs"))).toBe(true);
    } finally {
      hub.cleanup();
      outside.cleanup();
    }
  });

  test("permission problems are reported, not crashed on", async () => {
    if (process.getuid?.() === 0) {
      // root ignores directory permissions; the rule is still exercised by the non-root CI run
      expect(true).toBe(true);
      return;
    }
    const hub = fresh();
    try {
      const snaps = join(hub.hubDir, "models--mlx-community--Del-4bit", "snapshots");
      chmodSync(snaps, 0o500);
      const r = await cli(["rm", "mlx-community/Del-4bit", "--json"], hub.env);
      expect(["permission_denied", "deletion_failed"]).toContain(envelope(r.stdout).error?.type as string);
      chmodSync(snaps, 0o755);
    } finally {
      hub.cleanup();
    }
  });
});

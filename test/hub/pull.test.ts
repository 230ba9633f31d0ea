/** `mlxk pull` against the loopback Hub over real sockets, in-process CLI. */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { EnvelopeSchema } from "../../src/schemas/envelope.ts";
import { PullDataSchema } from "../../src/schemas/pull.ts";
import { LoopbackHub } from "../helpers/loopback-hub.ts";
import { modelRepoFiles } from "../helpers/model-repo.ts";
import { runCliCapture } from "../support/cli.ts";
import { ggufFile } from "../support/gguf-repos.ts";
import { type TempHub, addRepo, makeTempHub, mlxModelFiles } from "../support/hf-cache.ts";

let hub: LoopbackHub;
let cache: TempHub;
let env: Record<string, string>;
let mainSha: string;
const TOKEN = "hf_loopbackSecretToken123";

beforeAll(async () => {
  hub = await LoopbackHub.start();
  mainSha = await hub.addRepo("org/tiny", modelRepoFiles());
  await hub.addRepo("org/private", modelRepoFiles({ seed: 2 }), { private: true });
  await hub.addRepo("org/gated", modelRepoFiles({ seed: 3 }), { gated: "manual" });
  await hub.addRepo("org/forbidden", modelRepoFiles({ seed: 4 }), { forceStatus: 403 });
  // a GGUF repo as QuantFactory/bartowski publish them: no config.json, two quants
  await hub.addRepo("org/Tiny-GGUF", [
    { path: "README.md", content: "---\nlicense: apache-2.0\n---\n" },
    { path: "Tiny.Q4_0.gguf", content: ggufFile() },
    { path: "Tiny.Q8_0.gguf", content: ggufFile({ type: "Q8_0" }) },
  ]);
  hub.grant("org/private", TOKEN);
  hub.tokens.add("hf_validButNotGranted0001");
});
afterAll(() => hub.stop());
beforeEach(() => {
  cache = makeTempHub();
  env = { ...cache.env, HF_ENDPOINT: hub.url };
  hub.requests.length = 0;
});
afterEach(() => cache.cleanup());

function repoDir(id: string): string {
  return join(cache.hubDir, `models--${id.replace("/", "--")}`);
}

async function pullJson(args: string[], e: Record<string, string> = env) {
  const r = await runCliCapture(["pull", ...args, "--json"], { env: e });
  const envelope = v.parse(EnvelopeSchema, JSON.parse(r.stdout));
  return { ...r, envelope, data: envelope.data === null ? null : v.parse(PullDataSchema, envelope.data) };
}

describe("pull: public repo", () => {
  test("downloads into the HF cache layout with verified, byte-identical blobs", async () => {
    const r = await pullJson(["org/tiny"]);
    expect(r.code).toBe(0);
    expect(r.data).toMatchObject({ model: "org/tiny", download_status: "success", commit: mainSha, commit_hash: mainSha, files: 6, health: "healthy" });
    const dir = repoDir("org/tiny");
    const snap = join(dir, "snapshots", mainSha);
    expect(r.data!.local_dir).toBe(snap);
    expect(readFileSync(join(dir, "refs", "main"), "utf8")).toBe(mainSha);
    for (const path of ["config.json", "model.safetensors", "README.md", "extra/notes.txt", "tokenizer.json", "tokenizer_config.json"]) {
      const info = hub.fileInfo("org/tiny", path);
      const link = join(snap, path);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      const target = readlinkSync(link);
      expect(target.startsWith("../")).toBe(true); // relative, as huggingface_hub writes them
      expect(target.endsWith(`blobs/${info.lfs ? info.sha256 : info.gitOid}`)).toBe(true);
      expect(Buffer.from(readFileSync(link)).equals(Buffer.from(hub.fileBytes("org/tiny", path)))).toBe(true);
    }
    expect(hub.fileInfo("org/tiny", "model.safetensors").lfs).toBe(true);
    expect(readdirSync(join(dir, "blobs")).some((n) => n.endsWith(".incomplete"))).toBe(false);
    const tree = JSON.parse(readFileSync(join(dir, "trees", `${mainSha}.json`), "utf8"));
    expect(tree.format_version).toBe(1);
    expect(tree.files["model.safetensors"].lfs_sha256).toBe(hub.fileInfo("org/tiny", "model.safetensors").sha256);
    expect(r.data!.bytes_downloaded).toBe(["config.json", "model.safetensors", "README.md", "extra/notes.txt", "tokenizer.json", "tokenizer_config.json"].reduce((s, p) => s + hub.fileInfo("org/tiny", p).size, 0));
  });

  test("second pull of a healthy model reports already_exists without downloading", async () => {
    await pullJson(["org/tiny"]);
    hub.requests.length = 0;
    const r = await pullJson(["org/tiny"]);
    expect(r.data).toMatchObject({ download_status: "already_exists", commit: mainSha, health: "healthy", bytes_downloaded: 0 });
    expect(hub.requests.length).toBe(0);
  });

  test("human output names the model and the snapshot dir", async () => {
    const r = await runCliCapture(["pull", "org/tiny"], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`pull: org/tiny — Downloaded to ${join(repoDir("org/tiny"), "snapshots", mainSha)}`);
    // not a TTY: no progress display
    expect(r.stderr).toBe("");
  });

  test("--workers bounds the parallel downloads; invalid values are usage errors", async () => {
    const bad = await pullJson(["org/tiny", "--workers", "0"]);
    expect(bad.code).toBe(2);
    expect(bad.envelope.error?.type).toBe("InvalidArgumentError");
    expect(hub.requests.length).toBe(0);
    const r = await pullJson(["org/tiny", "--workers", "1"]);
    expect(r.data).toMatchObject({ download_status: "success", files: 6 });
  });

  test("tree listing pagination (Link header) is followed", async () => {
    hub.treePageSize = 2;
    try {
      const r = await pullJson(["org/tiny"]);
      expect(r.data!.files).toBe(6);
      expect(hub.requests.filter((q) => q.path.includes("/tree/")).length).toBeGreaterThan(2);
    } finally {
      hub.treePageSize = 1000;
    }
  });

  test("--include / --exclude select files with fnmatch globs (repeatable)", async () => {
    const r = await pullJson(["org/tiny", "--include", "*.json", "--include", "extra/*", "--exclude", "tokenizer*"]);
    expect(r.code).toBe(0);
    const snap = join(repoDir("org/tiny"), "snapshots", mainSha);
    expect(readdirSync(snap).sort()).toEqual(["config.json", "extra"]);
    expect(existsSync(join(snap, "extra", "notes.txt"))).toBe(true);
    expect(r.data!.files).toBe(2);
    // no weights: the model is there but not healthy, and pull says so
    expect(r.data!.health).toBe("unhealthy");
    expect(hub.requests.some((q) => q.path.endsWith("model.safetensors"))).toBe(false);
  });

  test("a GGUF repo (no config.json) is healthy after the download; --include picks one quant", async () => {
    const r = await pullJson(["org/Tiny-GGUF"]);
    expect(r.code).toBe(0);
    expect(r.data).toMatchObject({ download_status: "success", files: 3, health: "healthy" });
    cache.cleanup();
    cache = makeTempHub();
    const one = await pullJson(["org/Tiny-GGUF", "--include", "*Q8_0.gguf"], { ...env, ...cache.env });
    expect(one.data).toMatchObject({ files: 1, health: "healthy" });
  });

  test("org/name-GGUF:QUANT downloads only that quant (plus the repo's other files), adds another later, refuses an unknown one", async () => {
    const q8 = await pullJson(["org/Tiny-GGUF:q8_0"]);
    expect(q8.code).toBe(0);
    expect(q8.data).toMatchObject({ download_status: "success", files: 2, health: "healthy" });
    const snap = q8.data!.local_dir!;
    expect(readdirSync(snap).sort()).toEqual(["README.md", "Tiny.Q8_0.gguf"]);
    expect((await pullJson(["org/Tiny-GGUF:Q8_0"])).data!.download_status).toBe("already_exists");
    const q4 = await pullJson(["org/Tiny-GGUF:Q4_0"]);
    expect(q4.data).toMatchObject({ download_status: "success", files: 2, health: "healthy" });
    expect(readdirSync(snap).sort()).toEqual(["README.md", "Tiny.Q4_0.gguf", "Tiny.Q8_0.gguf"]);
    const bad = await pullJson(["org/Tiny-GGUF:Q2_K"]);
    expect(bad.code).toBe(1);
    expect(bad.envelope.error?.message).toBe("'org/Tiny-GGUF' has no GGUF quant 'Q2_K' (available: Q4_0, Q8_0)");
    const notGguf = await pullJson(["org/tiny:Q4_0"]);
    expect(notGguf.envelope.error?.message).toBe("'org/tiny' has no GGUF files: ':Q4_0' selects a GGUF quant");
  });

  test("an include that matches nothing is an error before anything is written", async () => {
    const r = await pullJson(["org/tiny", "--include", "*.gguf"]);
    expect(r.code).toBe(2);
    expect(r.envelope.error?.type).toBe("InvalidArgumentError");
    expect(existsSync(repoDir("org/tiny"))).toBe(false);
  });

  test("the token never goes to the CDN host of a redirected LFS file", async () => {
    const r = await pullJson(["org/tiny"], { ...env, HF_TOKEN: TOKEN });
    expect(r.code).toBe(0);
    const cdn = hub.requests.filter((q) => q.server === "cdn");
    expect(cdn.length).toBe(1);
    expect(cdn[0]!.authorization).toBeNull();
    expect(hub.requests.filter((q) => q.server === "hub").every((q) => q.authorization === `Bearer ${TOKEN}`)).toBe(true);
  });

  test("a short name expands to mlx-community/<name> only when that is cached", async () => {
    await hub.addRepo("mlx-community/Short", modelRepoFiles({ seed: 9 }));
    const missing = await pullJson(["Short"]);
    expect(missing.envelope.error?.type).toBe("access_denied"); // 'Short' itself does not exist (anonymous: 401)
    addRepo(cache.hubDir, { name: "mlx-community/Short", files: { "config.json": { json: { model_type: "llama" } } } });
    const r = await pullJson(["Short", "--force-resume"]);
    expect(r.data).toMatchObject({ model: "mlx-community/Short", expanded_name: "mlx-community/Short", download_status: "success" });
  });
});

describe("pull: revisions", () => {
  test("a pinned commit downloads that commit and writes no ref for it", async () => {
    const old = await hub.addRepo("org/versions", [{ path: "config.json", content: '{"model_type":"llama","v":1}' }, { path: "model.safetensors", content: new Uint8Array(2048).fill(1) }]);
    const head = await hub.commit("org/versions", [{ path: "config.json", content: '{"model_type":"llama","v":2}' }, { path: "model.safetensors", content: new Uint8Array(2048).fill(2) }]);
    const r = await pullJson([`org/versions@${old}`]);
    expect(r.data).toMatchObject({ download_status: "success", commit: old });
    const dir = repoDir("org/versions");
    expect(readFileSync(join(dir, "snapshots", old, "config.json"), "utf8")).toContain('"v":1');
    expect(existsSync(join(dir, "refs"))).toBe(false);
    expect(hub.requests.some((q) => q.path.includes(`/revision/${old}`))).toBe(true);
    // without a revision the cached (healthy) model counts as present, as in mlx-knife
    expect((await pullJson(["org/versions"])).data!.download_status).toBe("already_exists");
    // naming the branch asks for a revision not cached yet: it downloads and records refs/main
    const r2 = await pullJson(["org/versions@main"]);
    expect(r2.data).toMatchObject({ download_status: "success", commit: head });
    expect(readFileSync(join(dir, "refs", "main"), "utf8")).toBe(head);
    const again = await pullJson([`org/versions@${old}`]);
    expect(again.data!.download_status).toBe("already_exists");
  });

  test("an unknown revision is model_not_found and writes nothing", async () => {
    const r = await pullJson(["org/tiny@no-such-branch"]);
    expect(r.code).toBe(1);
    expect(r.envelope.error?.type).toBe("model_not_found");
    expect(existsSync(repoDir("org/tiny"))).toBe(false);
  });
});

describe("pull: access errors leave no trace in the cache", () => {
  const cases: [string, string, Record<string, string>, string][] = [
    ["private repo, anonymous (401)", "org/private", {}, "access_denied"],
    ["missing repo, anonymous (401)", "org/nope", {}, "access_denied"],
    ["missing repo with a valid token (404)", "org/nope", { HF_TOKEN: "hf_validButNotGranted0001" }, "model_not_found"],
    ["private repo, token without access (404)", "org/private", { HF_TOKEN: "hf_validButNotGranted0001" }, "model_not_found"],
    ["generic 403", "org/forbidden", {}, "access_denied"],
    ["gated repo, anonymous (401 GatedRepo)", "org/gated", {}, "gated"],
    ["gated repo, token not on the list (403 GatedRepo)", "org/gated", { HF_TOKEN: "hf_validButNotGranted0001" }, "gated"],
    ["invalid token (401)", "org/tiny", { HF_TOKEN: "hf_notAValidToken99999" }, "access_denied"],
  ];
  for (const [name, repo, extra, type] of cases) {
    test(name, async () => {
      const r = await pullJson([repo], { ...env, ...extra });
      expect(r.code).toBe(1);
      expect(r.envelope.status).toBe("error");
      expect(r.envelope.error?.type).toBe(type);
      expect(r.data!.model).toBe(repo);
      expect(["access_denied", "failed", "error"]).toContain(r.data!.download_status);
      expect(existsSync(repoDir(repo))).toBe(false);
      expect(existsSync(join(cache.hubDir, ".locks"))).toBe(false);
      for (const t of Object.values(extra)) expect(r.stdout).not.toContain(t);
    });
  }

  test("private repo with a granted token from the token file (HF_TOKEN_PATH)", async () => {
    const tokenFile = join(cache.root, "my-token");
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const r = await pullJson(["org/private"], { ...env, HF_TOKEN_PATH: tokenFile });
    expect(r.data!.download_status).toBe("success");
  });

  test("token file at $HF_HOME/token is used, HF_TOKEN wins over it", async () => {
    writeFileSync(join(cache.root, "token"), "hf_notAValidToken99999");
    const viaFile = await pullJson(["org/private"]);
    expect(viaFile.envelope.error?.type).toBe("access_denied");
    const r = await pullJson(["org/private"], { ...env, HF_TOKEN: TOKEN });
    expect(r.data!.download_status).toBe("success");
  });

  test("gated repo with access downloads", async () => {
    hub.grant("org/gated", "hf_gatedAccess0000001");
    const r = await pullJson(["org/gated"], { ...env, HUGGING_FACE_HUB_TOKEN: "hf_gatedAccess0000001" });
    expect(r.data!.download_status).toBe("success");
  });
});

describe("pull: validation and offline, before any network call", () => {
  const bad = ["", "   ", "org//name", "/org/name", "org/name/", "a/b/c", "org/na--me", "org/-name", `org/${"x".repeat(97)}`, "org/name@", "org/na me", "org/name@../x"];
  for (const spec of bad) {
    test(`'${spec.slice(0, 30)}' is a ValidationError`, async () => {
      const r = await pullJson([spec]);
      expect(r.code).toBe(1);
      expect(r.envelope.error?.type).toBe("ValidationError");
      expect(r.envelope.error?.message).toStartWith("Invalid model name:");
      expect(hub.requests.length).toBe(0);
    });
  }

  test("HF_HUB_OFFLINE=1 refuses with type offline", async () => {
    const r = await pullJson(["org/tiny"], { ...env, HF_HUB_OFFLINE: "1" });
    expect(r.envelope.error?.type).toBe("offline");
    expect(hub.requests.length).toBe(0);
    expect(existsSync(repoDir("org/tiny"))).toBe(false);
  });

  test("an unreachable Hub is download_failed and writes nothing", async () => {
    const r = await pullJson(["org/tiny"], { ...env, HF_ENDPOINT: "http://127.0.0.1:9" });
    expect(r.envelope.error?.type).toBe("download_failed");
    expect(existsSync(repoDir("org/tiny"))).toBe(false);
  });
});

describe("pull: damaged downloads", () => {
  test("corrupted bytes fail the sha256 check; nothing is published", async () => {
    hub.fault("org/tiny", "model.safetensors", { corruptAt: 5000, times: 1 });
    const r = await pullJson(["org/tiny"]);
    expect(r.code).toBe(1);
    expect(r.envelope.error?.type).toBe("download_failed");
    expect(r.envelope.error?.message).toContain("Checksum mismatch for 'model.safetensors'");
    const dir = repoDir("org/tiny");
    const sha = hub.fileInfo("org/tiny", "model.safetensors").sha256;
    expect(existsSync(join(dir, "blobs", sha))).toBe(false);
    expect(existsSync(join(dir, "blobs", `${sha}.incomplete`))).toBe(false);
    expect(existsSync(join(dir, "snapshots"))).toBe(false);
    // the model dir exists (other blobs finished) but is not healthy: the next pull asks first
    const again = await pullJson(["org/tiny"]);
    expect(again.data!.download_status).toBe("requires_confirmation");
    const resumed = await pullJson(["org/tiny", "--force-resume"]);
    expect(resumed.data).toMatchObject({ download_status: "success", health: "healthy" });
  });

  test("a dropped connection is resumed with a Range request in the same pull", async () => {
    // paced, so the first bytes are surely read before the reset (the server logs the injected drop)
    hub.fault("org/tiny", "model.safetensors", { dropAfter: 100_000, throttle: { chunk: 16_384, delayMs: 5 }, times: 1 });
    const r = await pullJson(["org/tiny"]);
    expect(r.data!.download_status).toBe("success");
    const cdn = hub.requests.filter((q) => q.server === "cdn");
    expect(cdn.length).toBe(2);
    expect(cdn[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(Number(cdn[1]!.range!.slice(6, -1))).toBeGreaterThan(0);
    const link = join(repoDir("org/tiny"), "snapshots", mainSha, "model.safetensors");
    expect(Buffer.from(readFileSync(link)).equals(Buffer.from(hub.fileBytes("org/tiny", "model.safetensors")))).toBe(true);
  });

  test("a server error on one file fails the pull without publishing a snapshot", async () => {
    hub.fault("org/tiny", "tokenizer.json", { status: 500 });
    try {
      const r = await pullJson(["org/tiny"]);
      expect(r.envelope.error?.type).toBe("download_failed");
      expect(r.data!.download_status).toBe("failed");
      expect(existsSync(join(repoDir("org/tiny"), "snapshots"))).toBe(false);
    } finally {
      hub.faults.clear();
    }
  });
});

describe("pull: existing models", () => {
  test("existing unhealthy model → requires_confirmation (JSON exit 0; non-TTY human exit 1; TTY asks)", async () => {
    const files = mlxModelFiles();
    delete files["model.safetensors"];
    addRepo(cache.hubDir, { name: "org/tiny", revision: mainSha, files });
    const j = await pullJson(["org/tiny"]);
    expect(j.code).toBe(0);
    expect(j.data!.download_status).toBe("requires_confirmation");
    expect(j.data!.message).toEndWith("Use --force-resume to attempt resume or 'mlxk rm' to delete.");
    expect(hub.requests.length).toBe(0);

    const nonTty = await runCliCapture(["pull", "org/tiny"], { env });
    expect(nonTty.code).toBe(1);
    expect(nonTty.stderr).toContain("pull: Error:");

    const declined = await runCliCapture(["pull", "org/tiny"], { env, tty: true, answers: [false] });
    expect(declined.code).toBe(0);
    expect(declined.stderr).toContain("Resume download? [Y/n]: ");
    expect(declined.stdout).toContain("Download cancelled. Partial download kept.");
    expect(hub.requests.length).toBe(0);

    const accepted = await runCliCapture(["pull", "org/tiny"], { env: { ...env, HF_HUB_DISABLE_PROGRESS_BARS: "1" }, tty: true, answers: [true] });
    expect(accepted.code).toBe(0);
    expect(accepted.stdout).toContain("Downloaded to");
    expect(readFileSync(join(repoDir("org/tiny"), "snapshots", mainSha, "model.safetensors")).length).toBe(hub.fileInfo("org/tiny", "model.safetensors").size);
  });

  test("two pulls of the same repo at once both succeed with one consistent result", async () => {
    const [a, b] = await Promise.all([pullJson(["org/tiny"]), pullJson(["org/tiny"])]);
    expect(a.data!.download_status).toBe("success");
    expect(["success", "already_exists"]).toContain(b.data!.download_status);
    const link = join(repoDir("org/tiny"), "snapshots", mainSha, "model.safetensors");
    expect(Buffer.from(readFileSync(link)).equals(Buffer.from(hub.fileBytes("org/tiny", "model.safetensors")))).toBe(true);
  });
});

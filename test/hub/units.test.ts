/** Small pure parts of pull: spec validation, glob filtering, progress text, token handling; plus the TTY display. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PullProgress } from "../../src/hub/download.ts";
import { filterPaths } from "../../src/hub/glob.ts";
import { formatBytes, renderProgress } from "../../src/hub/progress.ts";
import { parseRepoSpec } from "../../src/hub/repo-id.ts";
import { redact, resolveToken } from "../../src/hub/token.ts";
import { LoopbackHub } from "../helpers/loopback-hub.ts";
import { modelRepoFiles } from "../helpers/model-repo.ts";
import { runCliCapture } from "../support/cli.ts";
import { makeTempHub } from "../support/hf-cache.ts";

describe("parseRepoSpec", () => {
  test("splits on the last @", () => {
    expect(parseRepoSpec("org/name")).toEqual({ repoId: "org/name", revision: null });
    expect(parseRepoSpec("org/name@main")).toEqual({ repoId: "org/name", revision: "main" });
    expect(parseRepoSpec("gpt2@refs/pr/1")).toEqual({ repoId: "gpt2", revision: "refs/pr/1" });
    expect(parseRepoSpec(`org/m.v1_x-y@${"a".repeat(40)}`).revision).toBe("a".repeat(40));
  });
  test("96 characters is the limit", () => {
    expect(parseRepoSpec(`o/${"x".repeat(94)}`).repoId.length).toBe(96);
    expect(() => parseRepoSpec(`o/${"x".repeat(95)}`)).toThrow("Invalid model name");
  });
  test("messages say what is wrong", () => {
    expect(() => parseRepoSpec("")).toThrow("Invalid model name: empty");
    expect(() => parseRepoSpec("a//b")).toThrow("contains '//'");
    expect(() => parseRepoSpec("/a")).toThrow("starts or ends with '/'");
    expect(() => parseRepoSpec("org/x.git")).toThrow("'.git'");
  });
});

describe("filterPaths (fnmatch semantics, like huggingface_hub allow/ignore patterns)", () => {
  const paths = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "sub/dir/a.json", "README.md", "[x].txt"];
  test("no patterns keeps everything", () => expect(filterPaths(paths)).toEqual(paths));
  test("* crosses folders", () => expect(filterPaths(paths, ["*.json"])).toEqual(["config.json", "sub/dir/a.json"]));
  test("trailing / means the folder's content", () => expect(filterPaths(paths, ["sub/"])).toEqual(["sub/dir/a.json"]));
  test("? and character classes", () => {
    expect(filterPaths(paths, ["model-0000[1]-*"])).toEqual(["model-00001-of-00002.safetensors"]);
    expect(filterPaths(paths, ["model-0000?-of-00002.safetensors"]).length).toBe(2);
    expect(filterPaths(paths, ["model-0000[!1]-*"])).toEqual(["model-00002-of-00002.safetensors"]);
  });
  test("exclude wins over include; regex characters are literal", () => {
    expect(filterPaths(paths, ["*"], ["*.safetensors", "README.*"])).toEqual(["config.json", "sub/dir/a.json", "[x].txt"]);
    expect(filterPaths(["a+b.json", "aab.json"], ["a+b.json"])).toEqual(["a+b.json"]);
  });
});

describe("progress text", () => {
  test("overall bytes, speed, ETA and one line per active file", () => {
    const p = new PullProgress();
    p.totalBytes = 2_000_000;
    p.doneBytes = 1_000_000;
    p.downloadedBytes = 1_000_000;
    p.totalFiles = 3;
    p.phase = "downloading";
    p.finishedFiles = 1;
    p.active.set("model.safetensors", { size: 1_500_000, done: 500_000 });
    const lines = renderProgress(p, p.startedAt + 2000, { columns: 120 });
    expect(lines.length).toBe(2);
    expect(lines[0]).toContain("1/3 files 1.00 MB / 2.00 MB");
    expect(lines[0]).toContain("500.0 kB/s");
    expect(lines[0]).toContain("ETA 00:02");
    expect(lines[0]).toContain(" 50%");
    expect(lines[1]).toContain("model.safetensors");
    expect(lines[1]).toContain("500.0 kB / 1.50 MB");
  });
  test("formatBytes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1_234_567_890)).toBe("1.23 GB");
  });
});

describe("token", () => {
  test("env order: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH file, $HF_HOME/token", () => {
    const t = makeTempHub();
    try {
      writeFileSync(join(t.root, "token"), "hf_fromHomeFile000\n");
      writeFileSync(join(t.root, "other"), "hf_fromPathFile000\n");
      expect(resolveToken({ HF_HOME: t.root })).toBe("hf_fromHomeFile000");
      expect(resolveToken({ HF_HOME: t.root, HF_TOKEN_PATH: join(t.root, "other") })).toBe("hf_fromPathFile000");
      expect(resolveToken({ HF_HOME: t.root, HUGGING_FACE_HUB_TOKEN: "b" })).toBe("b");
      expect(resolveToken({ HF_HOME: t.root, HF_TOKEN: "a", HUGGING_FACE_HUB_TOKEN: "b" })).toBe("a");
      expect(resolveToken({ HF_HOME: join(t.root, "none") })).toBeUndefined();
    } finally {
      t.cleanup();
    }
  });
  test("redact removes the token and hf_ tokens", () => {
    expect(redact("x secret-value y hf_abcdefghijkl z", "secret-value")).toBe("x [REDACTED_TOKEN] y [REDACTED_TOKEN] z");
  });
});

describe("progress display on a terminal", () => {
  let hub: LoopbackHub;
  beforeAll(async () => {
    hub = await LoopbackHub.start();
    await hub.addRepo("org/slow", modelRepoFiles({ weightBytes: 400_000 }));
  });
  afterAll(() => hub.stop());

  async function slowPull(args: string[], extraEnv: Record<string, string> = {}) {
    const t = makeTempHub();
    // about a second of download, so the display (every 200 ms) draws at least once
    hub.fault("org/slow", "model.safetensors", { throttle: { chunk: 40_000, delayMs: 100 }, times: 1 });
    try {
      return await runCliCapture(["pull", "org/slow", ...args], { env: { ...t.env, HF_ENDPOINT: hub.url, ...extraEnv }, tty: true });
    } finally {
      t.cleanup();
    }
  }

  test("TTY: progress lines on stderr, result on stdout", async () => {
    const r = await slowPull([]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\d+\/\d+ files .* ETA /);
    expect(r.stderr).toContain("model.safetensors");
    expect(r.stdout).toContain("Downloaded to");
  });

  test("no progress with --json or HF_HUB_DISABLE_PROGRESS_BARS=1", async () => {
    expect((await slowPull(["--json"])).stderr).toBe("");
    expect((await slowPull([], { HF_HUB_DISABLE_PROGRESS_BARS: "1" })).stderr).toBe("");
  });
});

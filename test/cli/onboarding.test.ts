/** What a first-time user and a script meet first: help, typos, the empty cache, exit codes, broken output. */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ERROR_TYPES } from "../../src/errors.ts";
import { runCliCapture } from "../support/cli.ts";
import { addRepo, makeTempHub, mlxModelFiles } from "../support/hf-cache.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const BIN = join(ROOT, "bin", "mlxk");
const COMMANDS = ["pull", "list", "health", "show", "rm", "run", "server", "ps", "stop"];
const scratch = mkdtempSync(join(tmpdir(), "mlxk-onb-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("help", () => {
  test("every command's help starts its usage line with mlxk and has no ANSI codes", async () => {
    for (const c of COMMANDS) {
      const r = await runCliCapture([c, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: mlxk ${c}`);
      expect(r.stdout).not.toContain("\x1b");
    }
  });

  test("mlxk help <cmd> is <cmd> --help; mlxk help is the overview (exit 0)", async () => {
    expect((await runCliCapture(["help", "run"])).stdout).toBe((await runCliCapture(["run", "--help"])).stdout);
    const top = await runCliCapture(["help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain("mlxk help <command>");
    expect(top.stdout).toContain("Quick start:");
  });

  test("run --help explains the prompt argument, stdin '-', chat commands and exit codes", async () => {
    const out = (await runCliCapture(["run", "--help"])).stdout;
    expect(out).toContain("Usage: mlxk run <model> [prompt...] [options]");
    for (const s of ["| mlxk run <model>", 'mlxk run <model> - "', "/clear", "/system", "/exit", "130 interrupted"]) expect(out).toContain(s);
  });

  test("server --help lists the endpoints", async () => {
    const out = (await runCliCapture(["server", "--help"])).stdout;
    for (const s of ["GET  /health", "GET  /v1/models", "POST /v1/chat/completions", "POST /v1/completions", "--max-tokens-cap", "--request-timeout"]) {
      expect(out).toContain(s);
    }
  });
});

describe("did you mean", () => {
  test("a mistyped command suggests the right one", async () => {
    const r = await runCliCapture(["lsit"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Did you mean 'mlxk list'?");
    expect((await runCliCapture(["sever"])).stderr).toContain("Did you mean 'mlxk server'?");
    expect((await runCliCapture(["xyzzy"])).stderr).not.toContain("Did you mean");
  });

  test("a mistyped flag suggests the right one", async () => {
    const r = await runCliCapture(["pull", "org/x", "--forse-resume"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Did you mean '--force-resume'?");
    expect((await runCliCapture(["run", "m", "--max-token", "3"])).stderr).toContain("Did you mean '--max-tokens'?");
  });
});

describe("empty cache", () => {
  test("list on an empty cache names the cache path and pull (stderr; stdout stays the table)", async () => {
    const hub = makeTempHub();
    try {
      const r = await runCliCapture(["list"], { env: hub.env });
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`No models in ${hub.hubDir}`);
      expect(r.stderr).toContain("mlxk pull ");
      expect(r.stdout).toContain("Name");
      expect((await runCliCapture(["list", "--json"], { env: hub.env })).stderr).toBe("");
    } finally {
      hub.cleanup();
    }
  });
});

describe("exit codes for scripts", () => {
  test("health --strict exits 1 when a model is unhealthy; plain health keeps mlx-knife's 0", async () => {
    const hub = makeTempHub();
    try {
      addRepo(hub.hubDir, { name: "org/good", files: mlxModelFiles() });
      const broken = mlxModelFiles();
      broken["model.safetensors"] = { dangling: true };
      addRepo(hub.hubDir, { name: "org/broken", files: broken });
      expect((await runCliCapture(["health"], { env: hub.env })).code).toBe(0);
      const strict = await runCliCapture(["health", "--strict"], { env: hub.env });
      expect(strict.code).toBe(1);
      expect(strict.stderr).toContain("1 of 2 model(s) unhealthy");
      const json = await runCliCapture(["health", "--strict", "--json"], { env: hub.env });
      expect(json.code).toBe(1);
      expect(JSON.parse(json.stdout).data.summary.unhealthy_count).toBe(1);
      expect((await runCliCapture(["health", "org/good", "--strict"], { env: hub.env })).code).toBe(0);
    } finally {
      hub.cleanup();
    }
  });

  test("an empty prompt or empty stdin is a usage error (exit 2), before any model loads", async () => {
    for (const [args, stdin] of [
      [["run", "no/such-model"], ""],
      [["run", "no/such-model", "-"], "  \n"],
      [["run", "no/such-model", "--prompt", ""], "x"],
    ] as const) {
      const p = Bun.spawn([process.execPath, BIN, ...args], { stdin: new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe", env: { ...process.env, HF_HUB_CACHE: scratch } });
      const err = await new Response(p.stderr).text();
      expect(await p.exited).toBe(2);
      expect(err).toContain("Empty prompt");
    }
  });

  test("Ctrl-C in a one-shot run exits 130 and keeps the partial answer", async () => {
    const model = writeTinyModel("llama", join(scratch, "tiny-run"));
    const cfg = join(model, "config.json");
    writeFileSync(cfg, JSON.stringify({ ...JSON.parse(readFileSync(cfg, "utf8")), max_position_embeddings: 1_000_000 }));
    // greedy on this tiny model's "hi there" never meets a stop token: the answer runs until interrupted
    const p = Bun.spawn([process.execPath, BIN, "run", model, "hi there", "--max-tokens", "500000", "--verbose", "--json", "--temperature", "0"], {
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
    });
    let err = "";
    const dec = new TextDecoder();
    // keep draining stderr: a reader that goes away would (rightly) end mlxk with EPIPE
    void (async () => {
      for await (const c of p.stderr as ReadableStream<Uint8Array>) err += dec.decode(c);
    })();
    while (!err.includes("Loaded ")) {
      if (p.exitCode !== null) throw new Error(`run ended early: ${err}`);
      await Bun.sleep(10);
    }
    p.kill("SIGINT");
    const out = await new Response(p.stdout).text();
    expect(await p.exited).toBe(130);
    expect(JSON.parse(out).data.finish_reason).toBe("cancelled");
  }, 60000);

  test("a closed pipe and a full disk are one line and exit 1, never a stack trace", async () => {
    // a FIFO whose reader is gone: the first write fails with EPIPE
    const fifo = join(scratch, "fifo");
    Bun.spawnSync(["mkfifo", fifo]);
    const { constants } = await import("node:fs");
    const r = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const w = openSync(fifo, constants.O_WRONLY);
    closeSync(r);
    const full = openSync("/dev/full", "w");
    try {
      for (const out of [w, full]) {
        const p = Bun.spawn([process.execPath, BIN, "help", "run"], { stdout: out, stderr: "pipe" });
        const err = await new Response(p.stderr).text();
        expect(await p.exited).toBe(1);
        expect(err.trim().split("\n")).toHaveLength(1);
        expect(err).toMatch(/^mlxk: Error: .*(EPIPE|ENOSPC)/);
      }
    } finally {
      closeSync(w);
      closeSync(full);
    }
  });
});

describe("error types", () => {
  test("one convention: the contract's names verbatim, everything mlxk adds in snake_case", () => {
    // mlx-knife's own names (mlxk-contract.md §2.4, §2.5; clone/convert in §1.2), PascalCase ones included
    const contract = new Set(["ValidationError", "CommandError", "InvalidArgumentError", "InternalError", "InvalidTargetError", "CloneFailedError", "HealthCheckFailed"]);
    for (const t of Object.keys(ERROR_TYPES)) {
      if (contract.has(t)) continue;
      expect(t).toMatch(/^[a-z]+(_[a-z]+)*$/);
    }
  });
});

/** `mlxk run` in-process against tiny fixture models: JSON envelope, raw prompts, stdin, interactive chat, refusals. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../src/cli/main.ts";
import type { RunContext } from "../../src/cli/run.ts";
import { addRepo, makeTempHub } from "../support/hf-cache.ts";
import { writeSafetensors, writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-run-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const tiny = writeTinyModel("qwen2_q4", join(tmp, "tiny"));

async function run(argv: string[], extra: Partial<RunContext> = {}) {
  let stdout = "";
  let stderr = "";
  const ctx: RunContext = {
    json: false,
    env: { HOME: tmp, HF_HOME: join(tmp, "hf") },
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
    stdoutIsTTY: false,
    stdinIsTTY: true,
    ask: async (_q, f) => f,
    exitCode: 0,
    onInterrupt: () => () => {},
    ...extra,
  };
  const code = await runCli(argv, ctx);
  return { code, stdout, stderr };
}

describe("mlxk run", () => {
  test("--json: envelope with response, usage and timings", async () => {
    const r = await run(["run", tiny, "Hello", "there", "--temperature", "0", "--max-tokens", "5", "--json"]);
    expect(r.code).toBe(0);
    const env = JSON.parse(r.stdout);
    expect(env.status).toBe("success");
    expect(env.command).toBe("run");
    expect(env.data.model).toBe(tiny);
    expect(env.data.prompt).toBe("Hello there");
    expect(typeof env.data.response).toBe("string");
    expect(env.data.usage.completion_tokens).toBeLessThanOrEqual(5);
    expect(env.data.usage.prompt_tokens).toBeGreaterThan(2);
    expect(env.data.timings.generation_tps).toBeGreaterThanOrEqual(0);
  });

  test("--no-chat-template sends the raw prompt; `-` reads stdin first", async () => {
    const raw = await run(["run", tiny, "Hi", "--no-chat-template", "--temperature", "0", "--max-tokens", "3", "--json"]);
    // byte-level tokenizer without template: "Hi" is exactly two tokens
    expect(JSON.parse(raw.stdout).data.usage.prompt_tokens).toBe(2);
    const piped = await run(["run", tiny, "-", "--prompt", "sum up", "--no-chat-template", "--max-tokens", "2", "--json"], {
      readStdin: async () => "piped text",
      stdinIsTTY: false,
    });
    expect(JSON.parse(piped.stdout).data.prompt).toBe("piped text\n\nsum up");
  });

  test("interactive chat: commands, history, exit", async () => {
    const lines = ["/help", "Hello", "/system be brief", "/clear", "second \\", "line", "/exit"];
    const r = await run(["run", tiny, "--temperature", "0", "--max-tokens", "4"], {
      readLines: async function* () {
        yield* lines;
      },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Starting interactive chat");
    expect(r.stdout).toContain("/system <text>");
    expect(r.stdout.match(/Assistant: /g)?.length).toBe(2);
    expect(r.stdout).toContain("System prompt set.");
    expect(r.stdout).toContain("Conversation cleared.");
    expect(r.stdout).toContain("Goodbye!");
  });

  test("interactive chat reuses its own KV between turns (--verbose says how many prompt tokens)", async () => {
    const r = await run(["run", tiny, "--temperature", "0", "--max-tokens", "4", "--verbose"], {
      readLines: async function* () {
        yield* ["Hello", "And again", "/exit"];
      },
    });
    expect(r.code).toBe(0);
    const reused = [...r.stderr.matchAll(/Prompt: (\d+) tokens(?: \((\d+) reused from the last turn\))?/g)];
    expect(reused.length).toBe(2);
    expect(reused[0]![2]).toBeUndefined();
    expect(Number(reused[1]![2])).toBeGreaterThan(Number(reused[0]![1]) - 2);
    // the backend profile's device line: device, kernels, compute dtype and the device's memory
    expect(r.stderr).toMatch(/Device: cpu[^\n]*, compute float32; memory \d+\.\d GB free of \d+\.\d GB/);
  });

  test("a cache name resolves through the HF cache (short name → mlx-community/…)", async () => {
    const hub = makeTempHub();
    try {
      const files = Object.fromEntries(readdirSync(tiny).map((f) => [f, new Uint8Array(readFileSync(join(tiny, f)))]));
      addRepo(hub.hubDir, { name: "mlx-community/Tiny-Qwen2-4bit", files });
      const r = await run(["run", "Tiny-Qwen2-4bit", "Hello", "--temperature", "0", "--max-tokens", "3", "--json"], { env: hub.env });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).data.usage.completion_tokens).toBeLessThanOrEqual(3);
    } finally {
      hub.cleanup();
    }
  });

  test("a transformers-saved checkpoint (multimodal wrapper, transformers 5 config) runs by its cache name", async () => {
    const hub = makeTempHub();
    try {
      const dir = writeTinyModel("gemma3", join(tmp, "gemma3-hf"), { layout: "hf", spelling: "v5" });
      const files = Object.fromEntries(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))]));
      addRepo(hub.hubDir, { name: "google/tiny-gemma-3-it", files: { ...files, "preprocessor_config.json": { json: { image_processor_type: "Tiny" } } } });
      const r = await run(["run", "google/tiny-gemma-3-it", "Hello", "--temperature", "0", "--max-tokens", "3", "--json"], { env: hub.env });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).data.model).toBe("google/tiny-gemma-3-it");
    } finally {
      hub.cleanup();
    }
  });

  test("a thinking model: reasoning is split out, shown first, and hidden with --no-reasoning", async () => {
    const dir = writeTinyModel("qwen2_q4", join(tmp, "thinking"));
    const cfg = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
    // The template opens the reasoning block, so everything the model says before </think> is reasoning.
    cfg.chat_template = `${cfg.chat_template.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>\n{% endif %}")}`;
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
    const args = ["run", dir, "Hello", "--temperature", "0", "--max-tokens", "6"];
    const j = JSON.parse((await run([...args, "--json"])).stdout).data;
    expect(j.reasoning.length).toBeGreaterThan(0);
    expect(j.response).toBe("");
    expect((await run(args)).stdout.startsWith("**[Reasoning]**")).toBe(true);
    expect((await run([...args, "--no-reasoning"])).stdout).not.toContain("[Reasoning]");
    // Streamed on a terminal, the reasoning is dimmed; NO_COLOR turns that off.
    const tty = await run(args, { stdoutIsTTY: true });
    expect(tty.stdout).toContain("\x1b[2m");
    expect(tty.stdout.replace(/\x1b\[2m|\x1b\[22m/g, "")).toContain(j.reasoning.trim().slice(0, 3));
    const plain = await run(args, { stdoutIsTTY: true, env: { HOME: tmp, HF_HOME: join(tmp, "hf"), NO_COLOR: "1" } });
    expect(plain.stdout).not.toContain("\x1b[");
  });

  test("Ctrl-C at the chat prompt ends the session", async () => {
    const handlers: (() => void)[] = [];
    const r = await run(["run", tiny, "--max-tokens", "2"], {
      onInterrupt: (h) => {
        handlers.push(h);
        return () => void handlers.splice(handlers.indexOf(h), 1);
      },
      readLines: async function* () {
        setTimeout(() => handlers.forEach((h) => h()), 50);
        await new Promise(() => {}); // the user never types
      },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Goodbye!");
    expect(handlers.length).toBe(0);
  });

  test("a missing model, a broken model and an unsupported model_type are refused with reasons", async () => {
    const missing = await run(["run", join(tmp, "nope"), "hi", "--json"]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout).error.type).toBe("model_not_found");

    const broken = join(tmp, "broken");
    mkdirSync(broken, { recursive: true });
    writeFileSync(join(broken, "config.json"), JSON.stringify({ model_type: "llama" }));
    const b = await run(["run", broken, "hi"]);
    expect(b.code).toBe(1);
    expect(b.stderr).toContain("is not healthy");

    const odd = join(tmp, "odd");
    mkdirSync(odd, { recursive: true });
    writeFileSync(join(odd, "config.json"), JSON.stringify({ model_type: "mamba" }));
    writeSafetensors(odd, { "x.weight": { dtype: "F32", shape: [1], data: new Float32Array([1]) } });
    writeFileSync(join(odd, "tokenizer.json"), "{}");
    const u = await run(["run", odd, "hi", "--json"]);
    expect(u.code).toBe(1);
    const err = JSON.parse(u.stdout).error;
    expect(err.type).toBe("unsupported_model");
    expect(err.message).toContain("mamba");
  });

  test("bad numbers are usage errors", async () => {
    const r = await run(["run", tiny, "hi", "--temperature", "abc"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--temperature");
  });
});

describe("mlxk run: --json-schema and --tools", () => {
  const dir = mkdtempSync(join(tmpdir(), "mlxk-run-structured-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const schemaFile = join(dir, "schema.json");
  writeFileSync(schemaFile, JSON.stringify({ type: "object", properties: { pick: { enum: ["red", "green"] }, ok: { type: "boolean" } }, required: ["pick", "ok"] }));
  const toolsFile = join(dir, "tools.json");
  writeFileSync(toolsFile, JSON.stringify([{ type: "function", function: { name: "paint", parameters: { type: "object", properties: { color: { enum: ["red", "blue"] } }, required: ["color"] } } }]));

  test("--json-schema: the answer is JSON that validates, even from a random model", async () => {
    const r = await run(["run", tiny, "Pick", "--temperature", "0", "--max-tokens", "40", "--json-schema", schemaFile, "--json"]);
    expect(r.code).toBe(0);
    const env = JSON.parse(r.stdout);
    const value = JSON.parse(env.data.response);
    expect(["red", "green"]).toContain(value.pick);
    expect(typeof value.ok).toBe("boolean");
    expect(Object.keys(value).sort()).toEqual(["ok", "pick"]);
  });

  test("--tools with a named --tool-choice returns data.tool_calls and finish_reason tool_calls", async () => {
    const r = await run(["run", tiny, "Paint it", "--temperature", "0", "--max-tokens", "20", "--tools", toolsFile, "--tool-choice", "paint", "--json"]);
    expect(r.code).toBe(0);
    const env = JSON.parse(r.stdout);
    expect(env.data.finish_reason).toBe("tool_calls");
    expect(env.data.tool_calls).toHaveLength(1);
    expect(env.data.tool_calls[0].function.name).toBe("paint");
    expect(["red", "blue"]).toContain(JSON.parse(env.data.tool_calls[0].function.arguments).color);
  });

  test("usage errors name the flag", async () => {
    const noJson = await run(["run", tiny, "x", "--tools", toolsFile]);
    expect(noJson.code).toBe(2);
    expect(noJson.stderr + noJson.stdout).toContain("--tools needs --json");
    const missing = await run(["run", tiny, "x", "--json-schema", join(dir, "nope.json"), "--json"]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toContain("--json-schema");
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ type: "object", properties: { a: { type: "string" } }, not: {} }));
    const unenforceable = await run(["run", tiny, "x", "--json-schema", bad, "--json"]);
    expect(unenforceable.code).toBe(1);
    expect(unenforceable.stdout).toContain("not");
  });
});

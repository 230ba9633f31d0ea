/**
 * Interactive chat through a real terminal: `mlxk run <model>` inside tmux, keys sent with send-keys, the screen
 * read with capture-pane. Covers line editing, persisted history, bracketed paste of any length, type-ahead during
 * an answer, the chat answer cap and dropping old turns when the context is full.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeTinyModel } from "../support/tiny-models.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const BIN = join(ROOT, "bin", "mlxk");
const HAVE_TMUX = Bun.spawnSync(["sh", "-c", "command -v tmux"]).exitCode === 0;
const dir = mkdtempSync(join(tmpdir(), "mlxk-pty-"));
const socket = `mlxk-test-${process.pid}`;
let model = "";
let smallCtx = "";

function tinyModel(name: string, maxPositions: number): string {
  const m = writeTinyModel("llama", join(dir, name));
  const cfg = join(m, "config.json");
  writeFileSync(cfg, JSON.stringify({ ...JSON.parse(readFileSync(cfg, "utf8")), max_position_embeddings: maxPositions }));
  return m;
}

beforeAll(() => {
  if (!HAVE_TMUX) return;
  // a session that lives as long as the suite: tmux's server exits with its last session, and a session
  // started while it shuts down gets lost
  tmux("new-session", "-d", "-s", "keeper", "sleep 600");
  model = tinyModel("m", 1_000_000);
  smallCtx = tinyModel("small", 160);
}, 60000);
afterAll(() => {
  if (HAVE_TMUX) Bun.spawnSync(["tmux", "-L", socket, "kill-server"]);
  rmSync(dir, { recursive: true, force: true });
});

function tmux(...args: string[]): string {
  const r = Bun.spawnSync(["tmux", "-L", socket, ...args]);
  if (r.exitCode !== 0 && args[0] === "new-session") throw new Error(`tmux ${args[0]} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

class Session {
  constructor(readonly name: string) {}

  static start(name: string, args: string[], state = join(dir, "state")): Session {
    const cmd = [process.execPath, BIN, "run", ...args].map((a) => `'${a}'`).join(" ");
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", `env XDG_STATE_HOME='${state}' ${cmd}; echo "EXIT=$?"; sleep 60`);
    return new Session(name);
  }

  screen(): string {
    return tmux("capture-pane", "-p", "-J", "-t", this.name, "-S", "-400");
  }

  keys(...k: string[]): void {
    tmux("send-keys", "-t", this.name, ...k);
  }

  /** The prompt line currently being edited (the last `You:` on the screen). */
  promptLine(): string {
    return this.screen().split("\n").filter((l) => l.startsWith("You:")).at(-1) ?? "";
  }

  /** Poll the screen until `cond` holds; the bound only keeps a broken build from hanging the suite. */
  async until(cond: (screen: string) => boolean, what: string, maxMs = 20000): Promise<void> {
    const end = Date.now() + maxMs;
    while (!cond(this.screen())) {
      if (Date.now() > end) throw new Error(`gave up waiting for ${what}; screen:\n${this.screen()}`);
      await Bun.sleep(30);
    }
  }

  countOf(s: string): number {
    return this.screen().split(s).length - 1;
  }

  async waitPrompt(n: number): Promise<void> {
    await this.until(() => this.countOf("You:") >= n, `prompt #${n}`);
  }

  kill(): void {
    tmux("kill-session", "-t", this.name);
  }
}

function history(state = join(dir, "state")): string[] {
  try {
    return readFileSync(join(state, "mlxk", "chat_history"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as string);
  } catch {
    return [];
  }
}

describe.skipIf(!HAVE_TMUX)("interactive chat in a real terminal (tmux)", () => {
  test("cursor keys edit the line, the message is kept in the per-user history, Up recalls it in a new session", async () => {
    const s = Session.start("edit", [model, "--temperature", "0", "--max-tokens", "4"]);
    try {
      await s.waitPrompt(1);
      s.keys("helo", "Left", "Left", "l", "End", " world", "Home", "say ");
      await s.until(() => s.promptLine() === "You: say hello world", "edited line");
      s.keys("Enter");
      await s.waitPrompt(2);
      expect(history().at(-1)).toBe("say hello world");
      // no raw escape sequence reached the model or the screen
      expect(s.screen()).not.toContain("^[[D");
      s.keys("C-d");
      await s.until((t) => t.includes("EXIT=0"), "exit");
    } finally {
      s.kill();
    }
    const again = Session.start("recall", [model, "--temperature", "0", "--max-tokens", "4"]);
    try {
      await again.waitPrompt(1);
      again.keys("Up");
      await again.until(() => again.promptLine() === "You: say hello world", "recalled line");
      again.keys("C-u", "C-d");
      await again.until((t) => t.includes("EXIT=0"), "exit");
    } finally {
      again.kill();
    }
  }, 60000);

  test("a bracketed paste of 200 lines (16 kB) stays one message, byte for byte", async () => {
    const text = Array.from({ length: 200 }, (_, i) => `line ${i} of the paste: ${"x".repeat(60)}`).join("\n");
    writeFileSync(join(dir, "paste.txt"), text);
    const s = Session.start("paste", [model, "--temperature", "0", "--max-tokens", "2"]);
    try {
      await s.waitPrompt(1);
      tmux("load-buffer", "-b", "p", join(dir, "paste.txt"));
      tmux("paste-buffer", "-p", "-b", "p", "-t", "paste");
      await s.until((t) => t.includes("... line 199 of the paste"), "paste shown");
      s.keys("Enter");
      await s.until(() => history().at(-1) === text, "paste in history", 30000);
      await s.until((t) => t.includes("Assistant:"), "answer to the paste");
      expect(s.countOf("Assistant:")).toBe(1);
    } finally {
      s.kill();
    }
  }, 60000);

  test("keys typed during an answer wait, visibly, in the next prompt; Ctrl-C stops the answer", async () => {
    // greedy on this tiny model's "hi there" never meets a stop token: the answer runs until interrupted
    const s = Session.start("ahead", [model, "--temperature", "0", "--max-tokens", "200000"], join(dir, "state-ahead"));
    try {
      await s.waitPrompt(1);
      s.keys("hi there", "Enter");
      await s.until((t) => t.includes("Assistant:"), "answer started");
      s.keys("abc");
      s.keys("C-c");
      await s.until((t) => t.includes("[Generation interrupted by user]"), "interrupt");
      await s.until(() => s.promptLine() === "You: abc", "type-ahead in the prompt");
      expect(s.screen()).toContain("What you typed during the answer is in the prompt below");
      expect(history(join(dir, "state-ahead"))).toEqual(["hi there"]);
    } finally {
      s.kill();
    }
  }, 60000);

  test("chat answers stop at the chat default cap with a note", async () => {
    const s = Session.start("cap", [model, "--temperature", "0"], join(dir, "state-cap"));
    try {
      await s.waitPrompt(1);
      s.keys("hi there", "Enter");
      await s.until((t) => t.includes("[Answer cut off at 1024 tokens (chat default 1024)"), "cap note", 60000);
    } finally {
      s.kill();
    }
  }, 90000);

  test("when the conversation outgrows the context the oldest turns are dropped, with a note", async () => {
    const s = Session.start("ctx", [smallCtx, "--temperature", "0", "--max-tokens", "16"], join(dir, "state-ctx"));
    try {
      for (let i = 1; i <= 6; i++) {
        await s.waitPrompt(i);
        s.keys(`message number ${i} with some words`, "Enter");
      }
      await s.until((t) => t.includes("[Dropped the"), "drop note");
      expect(s.screen()).toContain("160-token context");
      expect(s.screen()).not.toContain("[ERROR]");
    } finally {
      s.kill();
    }
  }, 60000);
});

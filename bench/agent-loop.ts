/**
 * Agent-loop replay with and without the prompt cache: a ~1k-token system prompt, 10 turns, each turn's
 * prompt the whole conversation so far, streamed through two servers over real ports in the same process
 * (same model; turns interleaved so both see the same machine load). Reports the follow-up-turn TTFT
 * ratio cold/warm and the prompt tokens reused, per model:
 *   smollm2  SmolLM2-135M-Instruct Q4_1 GGUF (full attention: trimmable KV)
 *   hybrid   a Qwen3.5-shaped random 4-bit model (Gated DeltaNet recurrent state + full attention: snapshots)
 *   sliding  a Gemma3-shaped random 4-bit model (512-token sliding windows + full attention: snapshots)
 * The random models are made once by mlx-lm (.cache/py-ref) under .cache/bench/, with the tiny models' byte
 * tokenizer and ChatML template (test/support/tiny-models.ts), so their system prompt is ~1k bytes = tokens.
 * Usage: bun bench/agent-loop.ts [--model smollm2|hybrid|sliding|SPEC]… [--turns N] [--tokens N]
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { freemem, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { smollm2Gguf } from "../test/support/smollm2.ts";
import { VOCAB, writeTinyModel } from "../test/support/tiny-models.ts";
import { createApp } from "../src/server/app.ts";
import { ModelManager } from "../src/server/model-manager.ts";
import { loadTarget, resolveTarget } from "../src/server/models-source.ts";
import { readSse } from "../src/server/openai/sse.ts";
import { PY_SAVE_Q4, qwen35PyConfig } from "./generate.ts";

const ROOT = resolve(import.meta.dir, "..");
const CACHE = join(ROOT, ".cache", "bench");
const PY = join(ROOT, ".cache", "py-ref", "bin", "python");

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const picked = process.argv.flatMap((a, i) => (process.argv[i - 1] === "--model" ? [a] : []));
const TURNS = Number(arg("turns") ?? 10);
const TOKENS = Number(arg("tokens") ?? 24);

const MAKE = `
import sys, json
import mlx.core as mx, mlx.nn as nn
from pathlib import Path
from mlx_lm.utils import save_model
path, kind, vocab = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if kind == "hybrid":
  from mlx_lm.models import qwen3_5 as arch
  cfg = ${qwen35PyConfig("12", "vocab")}
else:
  from mlx_lm.models import gemma3_text as arch
  cfg = {"model_type": "gemma3_text", "hidden_size": 1152, "num_hidden_layers": 12, "intermediate_size": 6912,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "rms_norm_eps": 1e-6, "vocab_size": vocab,
    "sliding_window": 512, "sliding_window_pattern": 6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
    "query_pre_attn_scalar": 256, "max_position_embeddings": 32768}
${PY_SAVE_Q4}
`;

/** A random model of `kind` with the byte tokenizer, made once. */
function benchModel(kind: "hybrid" | "sliding"): string {
  const dir = join(CACHE, `agent-loop-${kind}-q4`);
  if (existsSync(join(dir, "tokenizer_config.json"))) return dir;
  mkdirSync(dir, { recursive: true });
  const p = Bun.spawnSync([PY, "-c", MAKE, dir, kind, String(VOCAB)], { stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) throw new Error(`making the ${kind} model with mlx-lm failed`);
  const tiny = mkdtempSync(join(tmpdir(), "mlxk-agent-tok-"));
  writeTinyModel("llama", tiny);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(tiny, f), join(dir, f));
  rmSync(tiny, { recursive: true, force: true });
  return dir;
}

function serve(promptCacheBytes: number): { url: string; stop: () => void } {
  const manager = new ModelManager({ resolve: (s) => resolveTarget(s), load: (t) => loadTarget(t, { promptCacheBytes }), freeMemory: freemem });
  const app = createApp({ manager, listModels: () => [] });
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
  return { url: `http://127.0.0.1:${server.port}`, stop: () => (server.stop(true), manager.close(), manager.dispose()) };
}

type Msg = { role: "system" | "user" | "assistant"; content: string };
async function turn(url: string, spec: string, messages: Msg[]): Promise<{ ttftMs: number; text: string; prompt: number; cached: number }> {
  const body = { model: spec, messages, max_tokens: TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } };
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  if (!res.ok) throw new Error(`${res.status}: ${await res.text()}`);
  let ttftMs = 0;
  let text = "";
  let prompt = 0;
  let cached = 0;
  for await (const d of readSse(res.body!)) {
    if (d === "[DONE]") break;
    const c = JSON.parse(d) as { choices: { delta: { content?: string } }[]; usage?: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens: number } } | null };
    if (c.usage) {
      prompt = c.usage.prompt_tokens;
      cached = c.usage.prompt_tokens_details?.cached_tokens ?? 0;
    }
    const t = c.choices[0]?.delta.content;
    if (t) {
      if (ttftMs === 0) ttftMs = performance.now() - t0;
      text += t;
    }
  }
  return { ttftMs, text, prompt, cached };
}

const tools = Array.from({ length: 32 }, (_, i) => `- tool_${i}(path: string, limit: number): reads the file at path and returns at most limit lines of it, numbered.`).join("\n");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

/** One replay; the system prompt is cut to `systemChars` (a byte tokenizer counts every character). */
async function replay(label: string, spec: string, systemChars?: number): Promise<void> {
  const full = `You are a coding agent working in a repository. Think step by step and call tools.\nAvailable tools:\n${tools}`;
  const system: Msg = { role: "system", content: systemChars ? full.slice(0, systemChars) : full };
  const cold = serve(0);
  const warm = serve(1 << 30);
  const conv: { cold: Msg[]; warm: Msg[] } = { cold: [system], warm: [system] };
  const rows: { turn: number; prompt: number; cached: number; cold: number; warm: number }[] = [];
  let same = true;
  for (let i = 1; i <= TURNS; i++) {
    const user: Msg = { role: "user", content: i === 1 ? "Find where the config is parsed." : `Tool result ${i - 1}: src/config.ts line ${i * 7}: parse(${i}). What next?` };
    conv.cold.push(user);
    conv.warm.push(user);
    const c = await turn(cold.url, spec, conv.cold);
    const w = await turn(warm.url, spec, conv.warm);
    if (c.text !== w.text) {
      same = false;
      console.error(`turn ${i}: answers differ (cold ${JSON.stringify(c.text)} vs warm ${JSON.stringify(w.text)})`);
    }
    conv.cold.push({ role: "assistant", content: c.text });
    conv.warm.push({ role: "assistant", content: w.text });
    rows.push({ turn: i, prompt: w.prompt, cached: w.cached, cold: c.ttftMs, warm: w.ttftMs });
  }
  cold.stop();
  warm.stop();
  const follow = rows.slice(1);
  console.log(`\n### ${label}\n\n| turn | prompt tokens | reused (warm) | TTFT cold / warm |\n|---:|---:|---:|---:|`);
  for (const r of rows) console.log(`| ${r.turn} | ${r.prompt} | ${r.cached} | ${(r.cold / r.warm).toFixed(2)}× |`);
  const ratio = median(follow.map((r) => r.cold)) / median(follow.map((r) => r.warm));
  console.log(`\nfollow-up turns (2..${TURNS}): median TTFT cold/warm **${ratio.toFixed(2)}×**; answers ${same ? "identical every turn" : "DIFFERED"}`);
}

const SYSTEM_BYTES = 1000;
for (const m of picked.length > 0 ? picked : ["smollm2", "hybrid", "sliding"]) {
  if (m === "smollm2") await replay("SmolLM2-135M-Instruct Q4_1 (full attention)", await smollm2Gguf());
  else if (m === "hybrid") await replay("Qwen3.5-shaped random 4-bit, 12 layers (9 Gated DeltaNet + 3 full attention)", benchModel("hybrid"), SYSTEM_BYTES);
  else if (m === "sliding") await replay("Gemma3-shaped random 4-bit, 12 layers (10 with a 512-token sliding window + 2 full)", benchModel("sliding"), SYSTEM_BYTES);
  else await replay(m, m);
}

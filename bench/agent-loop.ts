/**
 * Agent-loop replay with and without the prompt cache: a ~1k-token system prompt, 10 turns, each turn's
 * prompt the whole conversation so far, streamed through two servers over real ports in the same process
 * (same model; turns interleaved so both see the same machine load). Reports the follow-up-turn TTFT
 * ratio cold/warm and the prompt tokens reused.
 * Usage: bun bench/agent-loop.ts [--model SPEC] [--turns N] [--tokens N]   (default model: SmolLM2 GGUF)
 */
import { freemem } from "node:os";
import { smollm2Gguf } from "../test/support/smollm2.ts";
import { createApp } from "../src/server/app.ts";
import { ModelManager } from "../src/server/model-manager.ts";
import { loadTarget, resolveTarget } from "../src/server/models-source.ts";
import { readSse } from "../src/server/openai/sse.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const spec = arg("model") ?? (await smollm2Gguf());
const TURNS = Number(arg("turns") ?? 10);
const TOKENS = Number(arg("tokens") ?? 24);

function serve(promptCacheBytes: number): { url: string; stop: () => void } {
  const manager = new ModelManager({ resolve: (s) => resolveTarget(s), load: (t) => loadTarget(t, { promptCacheBytes }), freeMemory: freemem });
  const app = createApp({ manager, listModels: () => [] });
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
  return { url: `http://127.0.0.1:${server.port}`, stop: () => (server.stop(true), manager.close(), manager.dispose()) };
}

type Msg = { role: "system" | "user" | "assistant"; content: string };
async function turn(url: string, messages: Msg[]): Promise<{ ttftMs: number; text: string; prompt: number; cached: number }> {
  const body = { model: spec, messages, max_tokens: TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } };
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
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
const system: Msg = { role: "system", content: `You are a coding agent working in a repository. Think step by step and call tools.\nAvailable tools:\n${tools}` };
const cold = serve(0);
const warm = serve(1 << 30);
const conv: { cold: Msg[]; warm: Msg[] } = { cold: [system], warm: [system] };
const rows: { turn: number; prompt: number; cached: number; cold: number; warm: number }[] = [];
for (let i = 1; i <= TURNS; i++) {
  const user: Msg = { role: "user", content: i === 1 ? "Find where the config is parsed." : `Tool result ${i - 1}: src/config.ts line ${i * 7}: parse(${i}). What next?` };
  conv.cold.push(user);
  conv.warm.push(user);
  const c = await turn(cold.url, conv.cold);
  const w = await turn(warm.url, conv.warm);
  if (c.text !== w.text) console.error(`turn ${i}: answers differ (cold ${JSON.stringify(c.text)} vs warm ${JSON.stringify(w.text)})`);
  conv.cold.push({ role: "assistant", content: c.text });
  conv.warm.push({ role: "assistant", content: w.text });
  rows.push({ turn: i, prompt: w.prompt, cached: w.cached, cold: c.ttftMs, warm: w.ttftMs });
}
cold.stop();
warm.stop();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const follow = rows.slice(1);
console.log("| turn | prompt tokens | reused (warm) | TTFT ratio cold/warm |\n|---:|---:|---:|---:|");
for (const r of rows) console.log(`| ${r.turn} | ${r.prompt} | ${r.cached} | ${(r.cold / r.warm).toFixed(2)}× |`);
console.log(`\nfollow-up turns (2..${TURNS}): median TTFT ratio cold/warm ${(median(follow.map((r) => r.cold)) / median(follow.map((r) => r.warm))).toFixed(2)}×`);

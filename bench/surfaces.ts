/**
 * API surfaces benchmark: the same greedy streamed request through the OpenAI chat route (reference) and through
 * Responses, Anthropic Messages and Ollama /api/chat, over one real port, one pinned model, interleaved rounds
 * (so machine load hits every surface alike). Reports TTFT and decode tok/s per surface and the median ratio to
 * the chat route of the same round (tok/s ratio > 1 and TTFT ratio < 1 are better).
 * Usage: bun bench/surfaces.ts [--model SPEC] [--tokens N] [--rounds R]   (default model: SmolLM2 GGUF)
 */
import { freemem } from "node:os";
import { smollm2Gguf } from "../test/support/smollm2.ts";
import { createApp } from "../src/server/app.ts";
import { ModelManager } from "../src/server/model-manager.ts";
import { loadTarget, resolveTarget } from "../src/server/models-source.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const TOKENS = Number(arg("tokens") ?? 48);
const ROUNDS = Number(arg("rounds") ?? 5);
const spec = arg("model") ?? (await smollm2Gguf());
const PROMPT = "Write a long story about a lighthouse keeper and the sea.";

const manager = new ModelManager({
  resolve: (s) => resolveTarget(s, { allowPaths: false }),
  load: (t) => loadTarget(t),
  freeMemory: freemem,
  pinned: resolveTarget(spec, { allowPaths: true }),
  aliases: ["bench"],
});
await manager.preload(manager.pinned!);
const app = createApp({ manager, listModels: () => [] });
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
const base = `http://127.0.0.1:${server.port}`;

interface Surface {
  name: string;
  path: string;
  body: Record<string, unknown>;
  /** Text of one frame (SSE data or NDJSON line), "" when the frame carries no answer text. */
  text: (frame: Record<string, unknown>) => string;
  ndjson?: boolean;
}

const surfaces: Surface[] = [
  {
    name: "OpenAI chat (reference)",
    path: "/v1/chat/completions",
    body: { model: "bench", stream: true, temperature: 0, max_tokens: TOKENS, messages: [{ role: "user", content: PROMPT }] },
    text: (f) => ((f.choices as { delta?: { content?: string } }[] | undefined)?.[0]?.delta?.content ?? ""),
  },
  {
    name: "Responses",
    path: "/v1/responses",
    body: { model: "bench", stream: true, temperature: 0, max_output_tokens: TOKENS, input: PROMPT },
    text: (f) => (f.type === "response.output_text.delta" ? String(f.delta) : ""),
  },
  {
    name: "Anthropic Messages",
    path: "/v1/messages",
    body: { model: "bench", stream: true, temperature: 0, max_tokens: TOKENS, messages: [{ role: "user", content: PROMPT }] },
    text: (f) => (f.type === "content_block_delta" && (f.delta as { type: string }).type === "text_delta" ? String((f.delta as { text: string }).text) : ""),
  },
  {
    name: "Ollama /api/chat",
    path: "/api/chat",
    body: { model: "bench", stream: true, options: { temperature: 0, num_predict: TOKENS }, messages: [{ role: "user", content: PROMPT }] },
    text: (f) => ((f.message as { content?: string } | undefined)?.content ?? ""),
    ndjson: true,
  },
];

/** One streamed request: TTFT to the first answer text, decode rate over the text frames after it. */
async function once(s: Surface): Promise<{ ttft: number; tps: number; cpu: number; frames: number; text: string }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const res = await fetch(base + s.path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(s.body) });
  const dec = new TextDecoder();
  let buf = "";
  let first = 0;
  let last = 0;
  let frames = 0;
  let text = "";
  const sep = s.ndjson ? "\n" : "\n\n";
  for await (const chunk of res.body!) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf(sep)) >= 0) {
      const raw = buf.slice(0, i);
      buf = buf.slice(i + sep.length);
      const data = s.ndjson ? raw : raw.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
      if (data === "" || data === "[DONE]") continue;
      const t = s.text(JSON.parse(data) as Record<string, unknown>);
      if (t === "") continue;
      const now = performance.now();
      if (frames === 0) first = now;
      last = now;
      frames++;
      text += t;
    }
  }
  const c = process.cpuUsage(c0);
  return { ttft: first - t0, tps: frames > 1 ? ((frames - 1) * 1000) / (last - first) : 0, cpu: (c.user + c.system) / 1000 / Math.max(1, frames), frames, text };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

for (const s of surfaces) await once(s); // warm-up: one pass each
const rows = surfaces.map(() => ({ ttft: [] as number[], tps: [] as number[], cpu: [] as number[], ttftRatio: [] as number[], tpsRatio: [] as number[], cpuRatio: [] as number[], frames: 0, same: true }));
let reference = "";
for (let r = 0; r < ROUNDS; r++) {
  // rotate the order each round so no surface always runs first
  const order = surfaces.map((_, i) => (i + r) % surfaces.length);
  const got: Record<number, Awaited<ReturnType<typeof once>>> = {};
  for (const i of order) got[i] = await once(surfaces[i]!);
  reference ||= got[0]!.text;
  surfaces.forEach((_, i) => {
    const g = got[i]!;
    rows[i]!.ttft.push(g.ttft);
    rows[i]!.tps.push(g.tps);
    rows[i]!.ttftRatio.push(g.ttft / got[0]!.ttft);
    rows[i]!.tpsRatio.push(g.tps / got[0]!.tps);
    rows[i]!.cpu.push(g.cpu);
    // CPU time per token of the whole process (engine + HTTP + this client): load elsewhere does not inflate it
    rows[i]!.cpuRatio.push(got[0]!.cpu / g.cpu);
    rows[i]!.frames = g.frames;
    rows[i]!.same &&= g.text === got[0]!.text;
  });
}

console.log(`model ${spec}, ${TOKENS} tokens greedy, ${ROUNDS} interleaved rounds, median per surface\n`);
console.log("| Surface | TTFT ms | decode tok/s | CPU ms/token | TTFT ratio vs chat | tok/s ratio vs chat | CPU throughput vs chat | same text |");
console.log("|---|---:|---:|---:|---:|---:|---:|---|");
surfaces.forEach((s, i) => {
  const row = rows[i]!;
  console.log(
    `| ${s.name} | ${median(row.ttft).toFixed(0)} | ${median(row.tps).toFixed(1)} | ${median(row.cpu).toFixed(2)} | ${median(row.ttftRatio).toFixed(2)} | ${median(row.tpsRatio).toFixed(2)} | ${median(row.cpuRatio).toFixed(2)} | ${row.same ? "yes" : "no"} |`,
  );
});
server.stop(true);
manager.close();
manager.dispose();

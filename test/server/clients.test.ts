/**
 * Replays the request shapes of real clients (test/fixtures/clients/*.json: Codex CLI, Claude Code, VS Code
 * Copilot, Open WebUI, aider, Cline) against one pinned server with the aliases those clients send, and checks
 * each is answered in its surface's shape, tools included (scripted engine).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readNamedSse } from "../../src/server/stream.ts";
import { ScriptEngine } from "./support/script-engine.ts";
import { makeApp } from "./support/app.ts";

interface Fixture {
  client: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

const DIR = join(import.meta.dir, "..", "fixtures", "clients");
const fixtures = [...new Bun.Glob("*.json").scanSync(DIR)].sort().map((f) => ({ file: f, ...(JSON.parse(readFileSync(join(DIR, f), "utf8")) as Fixture) }));

const W = "org/caller";
const t = makeApp(
  { [W]: () => new ScriptEngine(W, { eosAfter: 2, calls: [{ name: "get_weather", arguments: '{"city":"Paris"}' }] }) },
  { apiKey: "sk-local", manager: { pinned: W, aliases: ["gpt-oss:20b", "claude-sonnet-4-5-20250929"] } },
);

function send(f: Fixture): Promise<Response> {
  const headers = { ...f.headers };
  // Ollama clients send no key; the server under test requires one like a --api-key deployment would
  if (f.path.startsWith("/api/")) headers.authorization = "Bearer sk-local";
  return t.app.handle(new Request(`http://localhost${f.path}`, { method: f.method, headers, body: JSON.stringify(f.body) }));
}

describe("recorded client request shapes", () => {
  expect(fixtures.length).toBeGreaterThanOrEqual(7);
  for (const f of fixtures) {
    test(`${f.client} (${f.file})`, async () => {
      const res = await send(f);
      const text = await res.clone().text();
      if (res.status !== 200) throw new Error(`${f.file}: ${res.status} ${text}`);
      const engine = t.manager.residentEngine(W) as ScriptEngine;
      const tools = (f.body.tools as unknown[] | undefined) ?? [];
      if (f.path.startsWith("/v1/responses")) {
        const events: { event: string | null; type: string; response?: { output: { type: string }[] } }[] = [];
        for await (const e of readNamedSse(res.body!)) events.push({ event: e.event, ...(JSON.parse(e.data) as { type: string }) });
        expect(events[0]!.type).toBe("response.created");
        const last = events.at(-1)!;
        expect(last.type).toBe("response.completed");
        expect(last.response!.output.map((o) => o.type)).toContain("function_call");
        // function_call + function_call_output items reached the template as a call and its tool turn
        const msgs = "messages" in engine.requests.at(-1)!.input ? (engine.requests.at(-1)!.input as { messages: { role: string }[] }).messages : [];
        expect(msgs.map((m) => m.role)).toEqual(["system", "user", "user", "assistant", "tool"]);
      } else if (f.path.startsWith("/v1/messages/count_tokens")) {
        expect(((await res.json()) as { input_tokens: number }).input_tokens).toBeGreaterThan(0);
      } else if (f.path.startsWith("/v1/messages")) {
        const types: string[] = [];
        for await (const e of readNamedSse(res.body!)) types.push(e.event!);
        expect(types[0]).toBe("message_start");
        expect(types.at(-1)).toBe("message_stop");
        expect(engine.requests.at(-1)!.tools!.map((x) => x.name)).toEqual(["Read", "Bash"]);
      } else if (f.path === "/api/show") {
        expect(((await res.json()) as { capabilities: string[] }).capabilities).toContain("completion");
      } else {
        const lines = text.trim().split("\n").map((l) => JSON.parse(l) as { done: boolean; message?: { tool_calls?: unknown[] } });
        expect(lines.at(-1)!.done).toBe(true);
        if (tools.length > 0) expect(lines.some((l) => (l.message?.tool_calls?.length ?? 0) > 0)).toBe(true);
      }
    });
  }
});

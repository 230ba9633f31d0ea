/**
 * Running requests' KV in the prefix cache: with continuous batching, a request that arrives while another
 * with the same start (a shared system prompt) is still decoding reuses that prefix at once, not only after
 * the other one leaves; both answer exactly as cold runs. Dense (trimmable: any shared prefix, new) and hybrid
 * (recurrent state: only a prompt the running one's prompt is a prefix of; its prompt snapshot did that before).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEngine, type MlxEngine } from "../../src/engine/engine.ts";
import type { GenerateEvent, GenerateRequest, SamplingParams } from "../../src/engine/types.ts";
import { kernelInfo } from "../../src/mlx/kernels.ts";
import { writeHybridModel } from "../support/tiny-hybrid.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-pcache-running-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 };
type Done = Extract<GenerateEvent, { type: "done" }>;

/** Run a request; `onFirst` fires once its first token is out (it is decoding in the batch from then on). */
async function run(engine: MlxEngine, req: GenerateRequest, onFirst?: () => void): Promise<{ ids: number[]; done: Done }> {
  const ids: number[] = [];
  for await (const ev of engine.generate(req)) {
    if (ev.type === "done") return { ids, done: ev };
    if (ev.tokenId >= 0 && ids.push(ev.tokenId) === 1) onFirst?.();
  }
  throw new Error("no done event");
}

const SYSTEM = "You are a terse assistant. Answer in one line. ";
const req = (p: string, maxTokens: number): GenerateRequest => ({ input: { prompt: p }, maxTokens, sampling: greedy });

describe.skipIf(!kernelInfo().enabled)("a request reuses the prompt KV of one still running", () => {
  const cases = [
    { name: "llama_q4 (trimmable)", dir: () => writeTinyModel("llama_q4", join(tmp, "llama_q4")), b: `${SYSTEM}Second question?`, cached: SYSTEM.length },
    // a recurrent state is reused only whole: B extends A's prompt
    { name: "qwen3_5_q4 (recurrent)", dir: () => writeHybridModel("qwen3_5_q4", join(tmp, "qwen3_5_q4")), b: `${SYSTEM}First question? And more.`, cached: `${SYSTEM}First question?`.length },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const dir = c.dir();
      using cold = await loadEngine({ kind: "dir", path: dir, id: "cold" }, { promptCacheBytes: 0 });
      using warm = await loadEngine({ kind: "dir", path: dir, id: "warm" }, { promptCacheBytes: 1 << 30, parallel: 4 });
      expect(warm.parallel).toBe(4);
      const a = req(`${SYSTEM}First question?`, 120);
      const b = req(c.b, 8);
      let aTokens = 0;
      let started!: () => void;
      const aRunning = new Promise<void>((r) => (started = r));
      const aRun = run(warm, a, started).then((r) => ((aTokens = r.ids.length), r));
      await aRunning;
      const bRun = await run(warm, b);
      // A was still decoding when B finished (rows step together; A has 120 tokens to go, B 8)
      expect(aTokens).toBe(0);
      expect(bRun.done.usage.cachedTokens).toBeGreaterThanOrEqual(c.cached);
      const aDone = await aRun;
      expect(aDone.ids.length).toBe(120);
      expect(bRun.ids).toEqual((await run(cold, b)).ids);
      expect(aDone.ids).toEqual((await run(cold, a)).ids);
    }, 60_000);
  }
});

describe.skipIf(!kernelInfo().enabled)("an exact repeat joins the batch without a prefill of its own", () => {
  test("llama_q4: all but its last prompt token cached, it answers as cold (greedy, and the penalty on the device)", async () => {
    const dir = writeTinyModel("llama_q4", join(tmp, "llama_q4_repeat"));
    using cold = await loadEngine({ kind: "dir", path: dir, id: "cold" }, { promptCacheBytes: 0 });
    using warm = await loadEngine({ kind: "dir", path: dir, id: "warm" }, { promptCacheBytes: 1 << 30, parallel: 4 });
    for (const sampling of [greedy, { ...greedy, repetitionPenalty: 1.3 }]) {
      const a = { ...req(`${SYSTEM}Repeat me?`, 12), sampling };
      const first = await run(warm, a);
      // the repeat joins a running batch: the other request decodes meanwhile
      let started!: () => void;
      const otherRunning = new Promise<void>((r) => (started = r));
      const other = run(warm, { ...req("Something else entirely", 40), sampling }, started);
      await otherRunning;
      const again = await run(warm, a);
      expect(again.done.usage.cachedTokens).toBe(again.done.usage.promptTokens - 1);
      expect(again.ids).toEqual(first.ids);
      expect(again.ids).toEqual((await run(cold, a)).ids);
      await other;
    }
    expect(warm.batchPeak).toBeGreaterThan(1);
  }, 60_000);
});

describe.skipIf(!kernelInfo().enabled)("requests arriving together reuse the KV of the first one prefilled", () => {
  test("llama_q4: the lookup is made when the scheduler turns to a row, so all but the first hit; all answer as cold", async () => {
    const dir = writeTinyModel("llama_q4", join(tmp, "llama_q4_together"));
    using cold = await loadEngine({ kind: "dir", path: dir, id: "cold" }, { promptCacheBytes: 0 });
    using warm = await loadEngine({ kind: "dir", path: dir, id: "warm" }, { promptCacheBytes: 1 << 30, parallel: 4 });
    const same = req(`${SYSTEM}Same question?`, 10);
    const other = req(`${SYSTEM}Another question?`, 10);
    // started in the same turn: none has been looked up when the others arrive
    const runs = await Promise.all([run(warm, same), run(warm, same), run(warm, other), run(warm, same)]);
    const cached = runs.map((r) => r.done.usage.cachedTokens ?? 0);
    // the first prefills cold; the exact repeats have all but their last token, the other shares the system prompt
    expect(cached[0]).toBe(0);
    expect(cached[1]).toBe(runs[1]!.done.usage.promptTokens - 1);
    expect(cached[3]).toBe(runs[3]!.done.usage.promptTokens - 1);
    expect(cached[2]).toBeGreaterThanOrEqual(SYSTEM.length);
    expect(warm.batchPeak).toBe(4);
    const coldSame = (await run(cold, same)).ids;
    for (const i of [0, 1, 3]) expect(runs[i]!.ids).toEqual(coldSame);
    expect(runs[2]!.ids).toEqual((await run(cold, other)).ids);
  }, 60_000);
});

/**
 * Continuous batching for every family: dense (ropes that depend on the sequence length and position-scaled
 * queries applied row by row), MoE (per-row expert routing), sliding windows (a ring per row, gpt_oss's sinks),
 * hybrid / recurrent (Gated DeltaNet state and lfm2's conv state stacked per row), gemma4 (KV-shared layers):
 * every row of a decode batch gets bit-identical logits to the same request run alone through the solo token
 * loop, while rows of different prompt lengths join a running batch and leave it at different steps.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { batchRefusal, MlxBatcher } from "../../src/engine/batch.ts";
import { prefill, tokenLoop } from "../../src/engine/generate.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import { Scheduler } from "../../src/engine/scheduler.ts";
import { kernelInfo } from "../../src/mlx/kernels.ts";
import { type HybridName, writeHybridModel } from "../support/tiny-hybrid.ts";
import { type TinyName, writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-batch-models-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const TINY: TinyName[] = ["llama_q4", "qwen2_q4", "olmo2", "granite", "smollm3", "phi3", "llama_dynamic", "ministral3", "mistral3", "qwen3_moe", "qwen3_moe_q4", "mistral_swa", "gemma3_text", "gemma3", "gpt_oss", "gpt_oss_mxfp4"];
const HYBRID: HybridName[] = ["gemma4_text", "gemma4", "gemma4_q4", "gemma4_moe", "gemma4_moe_q4", "glm4_moe_q4", "qwen3_5", "qwen3_5_q4", "qwen3_5_moe_q4", "qwen3_next_q4", "lfm2", "lfm2_q4"];

// different prompt lengths and answer lengths: with 3 rows at once the 4th joins a running batch
const PROMPTS = [
  [72, 101, 108, 108, 111],
  [84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98],
  [120, 121],
  [48, 49, 50, 51, 52, 53, 54, 55],
];
const MAX = [6, 10, 3, 7];

function dirOf(name: TinyName | HybridName): string {
  const dir = join(tmp, name);
  return (TINY as string[]).includes(name) ? writeTinyModel(name as TinyName, dir) : writeHybridModel(name as HybridName, dir);
}

describe.skipIf(!kernelInfo().enabled)("a decode batch row equals the request alone", () => {
  for (const name of [...TINY, ...HYBRID]) {
    test(`${name}: 4 requests through 3 batch rows, logits bit-identical to solo`, async () => {
      using m = await loadModelDir(dirOf(name));
      expect(batchRefusal(m.model, name)).toBeNull();
      const solo = PROMPTS.map((prompt, i) => [...tokenLoop({ model: m.model, prompt, maxTokens: MAX[i]!, wantLogits: true })]);
      using batcher = new MlxBatcher(m.model);
      using sched = new Scheduler(batcher, { parallel: 3 });
      const streams = PROMPTS.map((prompt, i) =>
        sched.join(batcher.newcomer({ prompt, cache: m.model.makeCache(), cached: 0, policy: { wantLogits: true } }), { maxTokens: MAX[i]! }),
      );
      const got = await Promise.all(
        streams.map(async (s) => {
          const out: { token: number; logits?: Float32Array }[] = [];
          for (let r = await s.next(); !r.done; r = await s.next()) out.push(r.value);
          return out;
        }),
      );
      await sched.idle();
      expect(sched.peak).toBe(3);
      got.forEach((rows, i) => {
        expect(rows.map((r) => r.token)).toEqual(solo[i]!.map((r) => r.token));
        rows.forEach((r, t) => expect(r.logits).toEqual(solo[i]![t]!.logits!));
      });
    }, 60_000);
  }

  // an exact prompt-cache hit leaves one prompt token: the row joins without a prefill and the batch step takes it
  for (const name of ["llama_q4", "mistral_swa", "gemma3_text", "qwen3_5_q4", "lfm2", "gemma4_text"] as const) {
    test(`${name}: a row whose cache lacks only its last prompt token joins at once, logits bit-identical to solo`, async () => {
      using m = await loadModelDir(dirOf(name));
      const prompt = PROMPTS[1]!;
      const held = () => {
        const cache = m.model.makeCache();
        prefill(m.model, cache, prompt.slice(0, -1)).dispose();
        return cache;
      };
      const soloCache = held();
      const solo = [...tokenLoop({ model: m.model, prompt, cache: soloCache, cached: prompt.length - 1, maxTokens: 5, wantLogits: true })];
      for (const c of soloCache) c[Symbol.dispose]();
      using batcher = new MlxBatcher(m.model);
      const prefills = new Map<unknown, number>();
      const chunk = batcher.prefill.bind(batcher);
      batcher.prefill = (j) => (prefills.set(j, (prefills.get(j) ?? 0) + 1), chunk(j));
      using sched = new Scheduler(batcher, { parallel: 3 });
      const hit = batcher.newcomer({ prompt, cache: held(), cached: prompt.length - 1, policy: { wantLogits: true } });
      const others = [PROMPTS[0]!, PROMPTS[2]!].map((p) => sched.join(batcher.newcomer({ prompt: p, cache: m.model.makeCache(), cached: 0, policy: {} }), { maxTokens: 4 }));
      const stream = sched.join(hit, { maxTokens: 5 });
      const all = async (s: typeof stream) => {
        const out: { token: number; logits?: Float32Array }[] = [];
        for (let r = await s.next(); !r.done; r = await s.next()) out.push(r.value);
        return out;
      };
      // every consumer at once, as the server runs them (a row waits for the others' consumers)
      const [got] = await Promise.all([all(stream), ...others.map(all)]);
      await sched.idle();
      expect(prefills.get(hit)).toBeUndefined();
      expect(sched.peak).toBe(3);
      expect(got.map((r) => r.token)).toEqual(solo.map((r) => r.token));
      got.forEach((r, t) => expect(r.logits).toEqual(solo[t]!.logits!));
    }, 60_000);
  }

  test("a model that does not declare row batching, or a layer cache of another kind, is refused with the reason", async () => {
    using m = await loadModelDir(dirOf("llama_q4"));
    const unbatched = Object.create(m.model, { rowBatched: { value: undefined } }) as typeof m.model;
    expect(batchRefusal(unbatched, "x")).toMatch(/x does not run a decode batch/);
    class OtherCache {
      readonly offset = 0;
      state() {
        return [];
      }
      [Symbol.dispose]() {}
    }
    const other = Object.create(m.model, { makeCache: { value: () => [new OtherCache()] } }) as typeof m.model;
    expect(batchRefusal(other, "y")).toMatch(/y has layers with a OtherCache/);
  });
});

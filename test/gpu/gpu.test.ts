/**
 * The GPU test set (`npm run test:gpu`): the default backend profile on a CUDA or Metal GPU — every float tiny
 * model against its reference within bf16 tolerance (the GPU computes in bfloat16 by default), SmolLM2 answering
 * "Paris" through the engine, and the server with the `openai` SDK over a real port. Without a GPU (a CPU build of
 * MLX, or MLXK_BACKEND=cpu as `npm test` sets) every test is skipped and the describe line says why.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { loadEngine } from "../../src/engine/engine.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import { deviceFacts, deviceFreeMemory, planBackend } from "../../src/mlx/backend.ts";
import { mlxAvailability } from "../../src/mlx/ffi.ts";
import * as mx from "../../src/mlx/index.ts";
import type { Decoder } from "../../src/models/transformer.ts";
import { createApp } from "../../src/server/app.ts";
import { ModelManager } from "../../src/server/model-manager.ts";
import { runtimeStatus } from "../../src/server/models-source.ts";
import { maxAbsDiff, promptLogits } from "../support/gguf-compare.ts";
import { reference } from "../support/goldens.ts";
import { smollm2Gguf } from "../support/smollm2.ts";
import { QUANTIZED, TINY_MODELS, writeTinyModel } from "../support/tiny-models.ts";

/** Whether a GPU runs here, and if not why (shown in the describe line). */
function gpuHere(): { ok: true; device: string } | { ok: false; why: string } {
  if (process.env.MLXK_BACKEND?.toLowerCase() === "cpu") return { ok: false, why: "MLXK_BACKEND=cpu" };
  const a = mlxAvailability();
  if (!a.available) return { ok: false, why: `MLX unavailable: ${a.reason}` };
  const plan = planBackend(deviceFacts());
  if (plan.device === "cpu") return { ok: false, why: `no GPU: ${plan.reason}` };
  const name = mx.deviceInfo("gpu").name;
  return { ok: true, device: `${plan.device}${name ? ` (${name})` : ""}` };
}
const gpu = gpuHere();
const title = gpu.ok ? `on the GPU: ${gpu.device}` : `GPU tests skipped (${gpu.why})`;

const tmp = mkdtempSync(join(tmpdir(), "mlxk-gpu-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Mixture-of-experts models route each token to its top-k experts: on random tiny weights the router scores
// nearly tie, and bf16 rounding flips the choice (logits then differ by the whole expert's output). They run
// in float32 on the GPU (MLX's GPU gather_mm / gather_qmm) and must match tightly; the rest in the GPU default.
const ROUTED = new Set(TINY_MODELS.filter((n) => /moe|gpt_oss/.test(n)));

describe.skipIf(!gpu.ok)(title, () => {
  describe("tiny models: prompt logits within bf16 tolerance of the reference", () => {
    test.each(TINY_MODELS)("%s", async (name) => {
      const routed = ROUTED.has(name);
      using m = await loadModelDir(writeTinyModel(name, join(tmp, name)), routed ? { dtype: "float32" } : {});
      expect(m.backend.device).not.toBe("cpu");
      expect(m.backend.kernels).toBe("mlx");
      expect(m.backend.dtype).toBe(routed ? "float32" : "half");
      const golden = reference(name);
      const logits = promptLogits(m);
      const want = golden.logits.flat();
      expect(logits.length).toBe(want.length);
      const scale = want.reduce((s, v) => Math.max(s, Math.abs(v)), 0);
      // bfloat16 keeps 8 mantissa bits; through a few layers the logits move by a few percent of their range
      // (float32 on a GPU: TF32-class matmuls may round more than the CPU's 1e-3)
      expect(maxAbsDiff(logits, want)).toBeLessThan(routed ? 1e-2 * scale + 1e-3 : (QUANTIZED.has(name) ? 0.08 : 0.05) * scale + 1e-2);
    });

    test("a float32 checkpoint computes in bfloat16 on the GPU (half the memory)", async () => {
      using m = await loadModelDir(writeTinyModel("llama", join(tmp, "llama-dtype")), {});
      expect((m.model as unknown as Decoder).layers[0]!.self_attn.q_proj.weight.dtype).toBe(mx.Dtype.bfloat16);
    });
  });

  test("SmolLM2-135M (Q4_1 GGUF) answers Paris", async () => {
    using engine = await loadEngine({ kind: "gguf", path: await smollm2Gguf(), id: "smollm2" });
    let text = "";
    for await (const ev of engine.generate({
      input: { messages: [{ role: "user", content: "What is the capital of France?" }] },
      maxTokens: 24,
      sampling: { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, repetitionContextSize: 20 },
    })) {
      if (ev.type !== "done") text += ev.text;
    }
    expect(text).toContain("Paris");
  });

  test("server over a real port with the openai SDK: /v1/models reports the GPU, chat answers Paris", async () => {
    const path = await smollm2Gguf();
    const target = { id: "smollm2", kind: "gguf" as const, path, hash: null, detection: null, weightBytes: Bun.file(path).size, contextLength: 8192 };
    const manager = new ModelManager({
      resolve: () => target,
      load: async () => loadEngine({ kind: "gguf", path, id: "smollm2" }),
      freeMemory: () => deviceFreeMemory(),
      pinned: target,
    });
    const app = createApp({ manager, listModels: () => [], runtime: () => runtimeStatus(process.env) });
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (r) => app.handle(r) });
    try {
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${server.port}/v1`, apiKey: "unused", maxRetries: 0 });
      const list = (await (await fetch(`http://127.0.0.1:${server.port}/v1/models`)).json()) as { device?: { backend: string; memory_total_bytes: number; memory_free_bytes: number } };
      expect(list.device?.backend).not.toBe("cpu");
      expect(list.device!.memory_total_bytes).toBeGreaterThan(0);
      const r = await client.chat.completions.create({ model: "smollm2", temperature: 0, max_tokens: 24, messages: [{ role: "user", content: "What is the capital of France?" }] });
      expect(r.choices[0]!.message.content).toContain("Paris");
      const chunks: string[] = [];
      for await (const c of await client.chat.completions.create({ model: "smollm2", temperature: 0, max_tokens: 24, stream: true, messages: [{ role: "user", content: "What is the capital of France?" }] })) {
        chunks.push(c.choices[0]?.delta?.content ?? "");
      }
      expect(chunks.join("")).toBe(r.choices[0]!.message.content!);
    } finally {
      server.stop(true);
      manager.close();
      manager.dispose();
    }
  });
});

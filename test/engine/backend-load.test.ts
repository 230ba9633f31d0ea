/**
 * The backend profile at load (src/mlx/backend.ts via engine/load.ts), exercised on the CPU: the GPU default
 * dtype policy ("half") narrows float32 checkpoints to bfloat16 and keeps bf16/f16 ones as stored (never
 * widened), the model still answers within bf16 tolerance, and MLXK_BACKEND asking for a GPU this MLX build
 * lacks is refused before anything runs.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModelDir, type LoadedModel } from "../../src/engine/load.ts";
import * as mx from "../../src/mlx/index.ts";
import type { Decoder } from "../../src/models/transformer.ts";
import { promptLogits } from "../support/gguf-compare.ts";
import { writeTinyModel } from "../support/tiny-models.ts";

const tmp = mkdtempSync(join(tmpdir(), "mlxk-backend-load-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const qProj = (m: LoadedModel) => (m.model as unknown as Decoder).layers[0]!.self_attn.q_proj;

describe("compute dtype policy", () => {
  test("half: a float32 checkpoint computes in bfloat16, logits stay float32 and close to the f32 run", async () => {
    const dir = writeTinyModel("llama", join(tmp, "llama"));
    using f32 = await loadModelDir(dir, { dtype: "float32" });
    using half = await loadModelDir(dir, { dtype: "half" });
    expect(qProj(f32).weight.dtype).toBe(mx.Dtype.float32);
    expect(qProj(half).weight.dtype).toBe(mx.Dtype.bfloat16);
    expect(half.backend).toMatchObject({ device: "cpu", dtype: "half" });
    const a = promptLogits(f32);
    const b = promptLogits(half);
    expect(b.length).toBe(a.length);
    const scale = Math.max(...a.map(Math.abs));
    const worst = a.reduce((w, v, i) => Math.max(w, Math.abs(v - b[i]!)), 0);
    // bf16 keeps 8 mantissa bits: a few percent of the logit range after a couple of layers
    expect(worst).toBeLessThan(0.05 * scale + 1e-3);
  });

  test("half never widens: bf16 and f16 checkpoints keep their dtype; float32 widens them", async () => {
    const bf = writeTinyModel("llama3", join(tmp, "llama3-hf"), { layout: "hf" });
    const f16 = writeTinyModel("qwen2", join(tmp, "qwen2-hf"), { layout: "hf" });
    {
      using m = await loadModelDir(bf, { dtype: "half" });
      expect(qProj(m).weight.dtype).toBe(mx.Dtype.bfloat16);
    }
    {
      using m = await loadModelDir(f16, { dtype: "half" });
      expect(qProj(m).weight.dtype).toBe(mx.Dtype.float16);
    }
    {
      using m = await loadModelDir(bf, { dtype: "float32" });
      expect(qProj(m).weight.dtype).toBe(mx.Dtype.float32);
    }
  });

  test("half on a quantized model: packed weights untouched, scales in bfloat16", async () => {
    using m = await loadModelDir(writeTinyModel("llama_q4", join(tmp, "llama_q4")), { dtype: "half" });
    const q = qProj(m);
    expect(q.weight.dtype).toBe(mx.Dtype.uint32);
    expect(q.scales!.dtype).toBe(mx.Dtype.bfloat16);
    expect(promptLogits(m).every(Number.isFinite)).toBe(true);
  });
});

test("MLXK_BACKEND=cuda on a CPU build of MLX is refused with what to do", async () => {
  const dir = writeTinyModel("llama", join(tmp, "llama-cuda"));
  await expect(loadModelDir(dir, { env: { ...process.env, MLXK_BACKEND: "cuda" } })).rejects.toThrow(/MLXK_BACKEND=cuda, but the installed MLX has no GPU device/);
});

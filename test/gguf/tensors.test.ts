/**
 * mlxk's own GGUF tensor reader (src/engine/gguf-tensors.ts, used for files MLX's reader refuses) gives the same
 * arrays as MLX's C++ reader on the real SmolLM2 file (F32, Q4_1, Q8_0 tensors): identical packed codes, equal
 * scales and biases.
 */
import { describe, expect, test } from "bun:test";
import { loadTensors } from "../../src/engine/gguf-tensors.ts";
import { readGguf } from "../../src/gguf/reader.ts";
import * as mx from "../../src/mlx/index.ts";
import { smollm2Gguf } from "../support/smollm2.ts";

describe("own tensor reader = MLX's reader", () => {
  test("SmolLM2: every tensor of blocks 0 and 29, the embeddings and the output norm", async () => {
    const path = await smollm2Gguf();
    const infos = readGguf(path).tensors.filter((t) => /^(blk\.(0|29)\.|token_embd|output_norm)/.test(t.name));
    expect(new Set(infos.map((t) => t.typeName))).toEqual(new Set(["F32", "Q4_1", "Q8_0"]));
    const ours = loadTensors(path, infos);
    const theirs = mx.loadGguf(path).weights;
    try {
      let compared = 0;
      for (const [k, a] of ours) {
        const b = theirs.get(k);
        expect(b, k).toBeDefined();
        expect(a.shape, k).toEqual(b!.shape);
        if (a.dtype === mx.Dtype.uint32) expect(Buffer.from(a.toBytes()).equals(Buffer.from(b!.toBytes())), k).toBe(true);
        else {
          const x = mx.scope(() => a.astype(mx.Dtype.float32).toFloat32Array());
          const y = mx.scope(() => b!.astype(mx.Dtype.float32).toFloat32Array());
          expect(Buffer.from(x.buffer).equals(Buffer.from(y.buffer)), k).toBe(true);
        }
        compared++;
      }
      expect(compared).toBeGreaterThan(20);
    } finally {
      mx.disposeAll(ours);
      mx.disposeAll(theirs);
    }
  });
});

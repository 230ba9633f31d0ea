import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as mx from "../../src/mlx/index.ts";
import { concatBytes, f16Data, f32Data, q4_0Block, q4_1Block, q8_0Block, writeGguf } from "../support/gguf-writer.ts";

const dir = mkdtempSync(join(tmpdir(), "mlxk-mlx-io-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("safetensors", () => {
  test("save → load round trip for f32, f16, bf16, u32 with string metadata", () =>
    mx.scope(() => {
      const path = join(dir, "rt.safetensors");
      const f32 = mx.array([[1.5, -2], [3.25, 4]]);
      const f16 = mx.array([0.5, -1, 65504], { dtype: mx.Dtype.float16 });
      const bf16 = mx.array([1, -0.0078125, 3e38], { dtype: mx.Dtype.bfloat16 });
      const u32 = mx.array(new Uint32Array([0, 1, 4294967295]));
      mx.saveSafetensors(path, { "a.f32": f32, "b.f16": f16, "c.bf16": bf16, "d.u32": u32 }, { format: "mlx", note: "héllo" });
      // the header is plain safetensors JSON
      const buf = readFileSync(path);
      const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString("utf8"));
      expect(header.__metadata__).toEqual({ format: "mlx", note: "héllo" });
      expect(header["b.f16"].dtype).toBe("F16");
      expect(header["c.bf16"].dtype).toBe("BF16");

      const { weights, metadata } = mx.loadSafetensors(path);
      expect([...weights.keys()]).toEqual(["a.f32", "b.f16", "c.bf16", "d.u32"]);
      expect(metadata).toEqual({ format: "mlx", note: "héllo" });
      const get = (k: string): mx.Array => weights.get(k)!;
      expect(get("a.f32").shape).toEqual([2, 2]);
      expect(get("a.f32").toList()).toEqual([[1.5, -2], [3.25, 4]]);
      expect(get("b.f16").dtype).toBe(mx.Dtype.float16);
      expect(Array.from(get("b.f16").toBytes())).toEqual(Array.from(f16.toBytes()));
      expect(get("c.bf16").dtype).toBe(mx.Dtype.bfloat16);
      expect(Array.from(get("c.bf16").toBytes())).toEqual(Array.from(bf16.toBytes()));
      expect(Array.from(get("d.u32").toUint32Array())).toEqual([0, 1, 4294967295]);
    }));

  test("a missing file is an MlxError", () => {
    expect(() => mx.loadSafetensors(join(dir, "nope.safetensors"))).toThrow(mx.MlxError);
  });
});

describe("gguf", () => {
  // Codes chosen so every decoded value is exact in f16: value = (q-8)·d, q·d + m, q·d.
  const q4 = Array.from({ length: 32 }, (_, i) => (i * 7) % 16);
  const q8 = Array.from({ length: 32 }, (_, i) => i * 8 - 128 + (i % 3));
  const path = join(dir, "tiny.gguf");
  writeGguf(
    path,
    {
      "general.architecture": "llama",
      "llama.context_length": { type: "u32", value: 2048 },
      "llama.rope.freq_base": { type: "f32", value: 10000 },
      "tokenizer.ggml.tokens": ["<s>", "hello", "▁world"],
      "tokenizer.ggml.merges": ["h e", "he llo"],
      "tokenizer.ggml.scores": { type: "f32", value: [0, -1.5, -2.25] },
      "tokenizer.ggml.token_type": { type: "i32", value: [3, 1, 1] },
    },
    [
      { name: "blk.0.attn_q.weight", shape: [2, 64], type: "Q4_0", data: concatBytes([q4_0Block(0.5, q4), q4_0Block(0.25, q4), q4_0Block(1, q4), q4_0Block(2, q4)]) },
      { name: "blk.0.ffn_up.weight", shape: [1, 32], type: "Q4_1", data: q4_1Block(0.5, -3, q4) },
      { name: "blk.0.ffn_down.weight", shape: [1, 32], type: "Q8_0", data: q8_0Block(0.125, q8) },
      { name: "output_norm.weight", shape: [3], type: "F32", data: f32Data([1, 2, 3]) },
      { name: "token_embd.weight", shape: [2, 2], type: "F16", data: f16Data([0.5, 1, 1.5, 2]) },
    ],
  );

  test("Q4_0 / Q4_1 / Q8_0 load as affine (weight, scales, biases) triples with group size 32", () =>
    mx.scope(() => {
      const { weights } = mx.loadGguf(path);
      expect([...weights.keys()]).toEqual([
        "blk.0.attn_q.biases", "blk.0.attn_q.scales", "blk.0.attn_q.weight",
        "blk.0.ffn_down.biases", "blk.0.ffn_down.scales", "blk.0.ffn_down.weight",
        "blk.0.ffn_up.biases", "blk.0.ffn_up.scales", "blk.0.ffn_up.weight",
        "output_norm.weight", "token_embd.weight",
      ]);
      const deq = (base: string, bits: number): Float32Array => {
        const w = weights.get(`${base}.weight`)!;
        expect(w.dtype).toBe(mx.Dtype.uint32);
        return mx.dequantize(w, weights.get(`${base}.scales`)!, weights.get(`${base}.biases`)!, { groupSize: 32, bits }).toFloat32Array();
      };
      const q4_0 = [0.5, 0.25, 1, 2].flatMap((d) => q4.map((q) => (q - 8) * d));
      expect(weights.get("blk.0.attn_q.weight")!.shape).toEqual([2, 8]);
      expect(weights.get("blk.0.attn_q.scales")!.shape).toEqual([2, 2]);
      expect(Array.from(deq("blk.0.attn_q", 4))).toEqual(q4_0);
      expect(Array.from(deq("blk.0.ffn_up", 4))).toEqual(q4.map((q) => q * 0.5 - 3));
      expect(Array.from(deq("blk.0.ffn_down", 8))).toEqual(q8.map((q) => q * 0.125));
      expect(weights.get("output_norm.weight")!.toList()).toEqual([1, 2, 3]);
      const emb = weights.get("token_embd.weight")!;
      expect(emb.dtype).toBe(mx.Dtype.float16);
      expect(emb.toList()).toEqual([[0.5, 1], [1.5, 2]]);
    }));

  test("metadata: strings, string lists (vocab, merges), numeric scalars and lists", () =>
    mx.scope(() => {
      const { metadata } = mx.loadGguf(path);
      expect(metadata.get("general.architecture")).toBe("llama");
      expect(metadata.get("tokenizer.ggml.tokens")).toEqual(["<s>", "hello", "▁world"]);
      expect(metadata.get("tokenizer.ggml.merges")).toEqual(["h e", "he llo"]);
      expect(metadata.get("llama.context_length")).toBe(2048);
      expect(metadata.get("llama.rope.freq_base")).toBe(10000);
      expect(Array.from(metadata.get("tokenizer.ggml.scores") as Float32Array)).toEqual([0, -1.5, -2.25]);
      expect(Array.from(metadata.get("tokenizer.ggml.token_type") as Int32Array)).toEqual([3, 1, 1]);
    }));

  // MLX 0.32.4 derives the scales/biases names by dropping the last 7 characters (".weight")
  // of the tensor name, so quantized tensors without that suffix get mangled companion names.
  test("quantized tensors without a .weight suffix: MLX 0.32.4 names the companions from name[:-7]", () =>
    mx.scope(() => {
      const p = join(dir, "odd.gguf");
      writeGguf(p, {}, [{ name: "blk.0.q8x", shape: [1, 32], type: "Q8_0", data: q8_0Block(1, q8) }]);
      const { weights } = mx.loadGguf(p);
      expect([...weights.keys()].sort()).toEqual(["bl.biases", "bl.scales", "blk.0.q8x"]);
    }));
});

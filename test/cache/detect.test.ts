import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { repoHealth } from "../../src/cache/health.ts";
import { countParameters } from "../../src/cache/show.ts";
import { formatSize, relativeTime, renderTable } from "../../src/cli/render/format.ts";
import { type FileContent, type TempHub, addRepo, makeTempHub, mlxModelFiles, safetensorsBytes } from "../support/hf-cache.ts";

let hub: TempHub;
beforeEach(() => {
  hub = makeTempHub();
});
afterEach(() => hub.cleanup());

const Q = { quantization: { bits: 4, group_size: 64 } };
const W = safetensorsBytes({ w: { dtype: "F16", shape: [4] } }, { format: "pt" });

function check(name: string, files: Record<string, FileContent>) {
  const { repoDir } = addRepo(hub.hubDir, { name, files });
  return repoHealth(repoDir, { name });
}

describe("detection (contract §4.3)", () => {
  test("README front matter marks an org model as MLX", () => {
    const files = { "config.json": { json: { model_type: "llama" } }, "model.safetensors": W, "README.md": "---\nlibrary_name: mlx\n---\n# x\n" };
    expect(check("someorg/private-model", files).detection?.framework).toBe("MLX");
    const tags = { ...files, "README.md": "---\ntags:\n  - text-generation\n  - mlx\n---\n" };
    expect(check("someorg/tagged", tags).detection?.framework).toBe("MLX");
    expect(check("someorg/plain", { ...files, "README.md": "# no front matter, mlx mentioned\n" }).detection?.framework).toBe("PyTorch");
  });

  test("kinds: embedding, audio, chat by template file or name, base", () => {
    const cfg = (c: Record<string, unknown>) => ({ "config.json": { json: { ...c, ...Q } }, "model.safetensors": W });
    expect(check("mlx-community/bge-small", cfg({ model_type: "bert" })).detection).toMatchObject({ kind: "embedding", capabilities: ["embeddings"] });
    expect(check("mlx-community/Qwen3-Embedding-0.6B", cfg({ model_type: "qwen3" })).detection?.kind).toBe("embedding");
    expect(check("mlx-community/whisper-large-v3", cfg({ model_type: "whisper" })).detection).toMatchObject({
      kind: "audio",
      capabilities: ["audio", "audio-translate-en"],
    });
    expect(check("mlx-community/whisper-large-v3-turbo", cfg({ model_type: "whisper" })).detection?.capabilities).toEqual(["audio"]);
    expect(check("mlx-community/m1", { ...cfg({ model_type: "llama" }), "chat_template.jinja": "{{x}}" }).detection?.kind).toBe("chat");
    expect(check("mlx-community/m2-Instruct", cfg({ model_type: "llama" })).detection?.kind).toBe("chat");
    expect(check("mlx-community/m3", cfg({ model_type: "llama" })).detection).toMatchObject({ kind: "base", capabilities: ["text-generation"] });
    const tj = { ...cfg({ model_type: "llama" }), "tokenizer.json": { json: { chat_template: "{{x}}", model: {} } } };
    expect(check("mlx-community/m4", tj).detection?.kind).toBe("chat");
  });

  test("vision and audio capabilities of text models", () => {
    const files = (c: Record<string, unknown>, extra: Record<string, FileContent> = {}) => ({
      ...mlxModelFiles(),
      "config.json": { json: { model_type: "gemma3", ...Q, ...c } },
      "preprocessor_config.json": { json: { size: 224 } },
      ...extra,
    });
    expect(check("mlx-community/v", files({ vision_config: { a: 1 } })).detection?.capabilities).toContain("vision");
    expect(check("mlx-community/a", files({ audio_config: { a: 1 } })).detection?.capabilities).toContain("audio");
    expect(check("mlx-community/n", files({ audio_config: null })).detection?.capabilities).not.toContain("audio");
    const video = files({}, { "preprocessor_config.json": { json: { temporal_patch_size: 2 } } });
    expect(check("mlx-community/video", video).detection?.capabilities).not.toContain("vision");
  });

  test("runtime gates for embedding and audio models, and a non-object preprocessor", () => {
    const cfg = (c: Record<string, unknown>) => ({ "config.json": { json: { ...c, ...Q } }, "model.safetensors": W });
    // supported embedders are runnable (by embed, never by run); others name what is supported
    expect(check("mlx-community/bge", cfg({ model_type: "bert" }))).toMatchObject({ runtime_compatible: true, runtime_reason: null });
    expect(check("org/nomic", cfg({ model_type: "nomic_bert" }))).toMatchObject({ runtime_compatible: true, runtime_reason: null });
    expect(check("mlx-community/whisper-tiny", cfg({ model_type: "whisper" })).runtime_reason).toStartWith("Audio models are not supported");
    const vis = { ...cfg({ model_type: "llava" }), "preprocessor_config.json": { json: [1, 2] } };
    expect(check("mlx-community/llava", vis).reason).toBe("preprocessor_config.json invalid");
  });
});

describe("parameter count from safetensors headers", () => {
  test("quantized weights count their unpacked size; scales/biases are not parameters", () => {
    const tensors = {
      "a.weight": { dtype: "U32", shape: [256, 64] }, // 4-bit: 64 words × 8 = 512 inputs
      "a.scales": { dtype: "F16", shape: [256, 8] }, // group 64 → 512 inputs
      "a.biases": { dtype: "F16", shape: [256, 8] },
      "b.weight": { dtype: "U32", shape: [128, 128] }, // 8-bit via per-layer override: 128 words × 4 = 512
      "b.scales": { dtype: "F16", shape: [128, 16] }, // group 32 → 512 inputs
      "norm.weight": { dtype: "BF16", shape: [512] },
    };
    const q = { bits: 4, group_size: 64, b: { bits: 8, group_size: 32 } };
    expect(countParameters(tensors, q)).toBe(256 * 512 + 128 * 512 + 512);
    expect(countParameters({ "x.weight": { dtype: "F32", shape: [3, 5] } }, null)).toBe(15);
  });
});

describe("human formatting", () => {
  test("sizes are decimal", () => {
    expect([512, 1234, 3_400_000, 2_100_000_000, 999_999].map(formatSize)).toEqual(["512B", "1.2KB", "3.4MB", "2.1GB", "1.0MB"]);
  });

  test("relative times follow the contract thresholds", () => {
    const now = Date.parse("2025-06-30T12:00:00Z");
    const ago = (s: number) => relativeTime(new Date(now - s * 1000).toISOString().slice(0, 19) + "Z", now);
    expect([ago(10), ago(60), ago(600), ago(3600), ago(5 * 3600), ago(30 * 3600), ago(5 * 86400), ago(40 * 86400)]).toEqual([
      "just now",
      "1m ago",
      "10m ago",
      "1h ago",
      "5h ago",
      "1d ago",
      "5d ago",
      "2025-05-21",
    ]);
  });

  test("tables join cells with ' | ' and rules with '-+-', wide characters count double", () => {
    expect(renderTable(["A", "Name"], [["x", "模型"]])).toBe("A | Name\n--+-----\nx | 模型");
  });
});

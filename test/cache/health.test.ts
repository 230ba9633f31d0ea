import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { repoHealth } from "../../src/cache/health.ts";
import { repoDirFor } from "../../src/cache/layout.ts";
import { type FileContent, type TempHub, addRepo, lfsPointer, makeTempHub, mlxModelFiles, revisionFor, safetensorsBytes } from "../support/hf-cache.ts";
import { ggufFile } from "../support/gguf-repos.ts";

let hub: TempHub;
beforeEach(() => {
  hub = makeTempHub();
});
afterEach(() => hub.cleanup());

const W = safetensorsBytes({ w: { dtype: "F16", shape: [4] } });
const INDEX = (shards: string[]) => ({
  json: { metadata: {}, weight_map: Object.fromEntries(shards.map((s, i) => [`layer${i}.weight`, s])) },
});

function health(name: string, files: Record<string, FileContent>, extra: Partial<Parameters<typeof addRepo>[1]> = {}) {
  const { repoDir } = addRepo(hub.hubDir, { name, files, ...extra });
  return repoHealth(repoDir, { name });
}

/** mlxModelFiles with some files replaced or removed. */
function mlx(changes: Record<string, FileContent | null>): Record<string, FileContent> {
  const files = mlxModelFiles();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) delete files[k];
    else files[k] = v;
  }
  return files;
}

describe("integrity rules (contract §4.1)", () => {
  test("a complete MLX model is healthy and runnable", () => {
    const h = health("mlx-community/Tiny-4bit", mlxModelFiles());
    expect(h).toMatchObject({ healthy: true, reason: "Model is healthy", runtime_compatible: true, runtime_reason: null });
    expect(h.hash).toBe(revisionFor("mlx-community/Tiny-4bit"));
  });

  test("config.json missing", () => {
    expect(health("mlx-community/a", mlx({ "config.json": null })).reason).toBe("config.json missing");
  });

  test("config.json invalid JSON", () => {
    expect(health("mlx-community/a", mlx({ "config.json": "invalid json {" })).reason).toBe("config.json contains invalid JSON");
  });

  test("config.json empty object", () => {
    expect(health("mlx-community/a", mlx({ "config.json": { json: {} } })).reason).toBe("config.json is empty or invalid");
  });

  test("no weights", () => {
    expect(health("mlx-community/a", mlx({ "model.safetensors": null })).reason).toBe("No model weights found");
  });

  test("zero-byte weights", () => {
    expect(health("mlx-community/a", mlx({ "model.safetensors": "" })).reason).toBe("Empty weight files: model.safetensors");
  });

  test("index with all shards is complete", () => {
    const h = health(
      "mlx-community/big",
      mlx({ "model.safetensors": null, "model-00001-of-00002.safetensors": W, "model-00002-of-00002.safetensors": W, "model.safetensors.index.json": INDEX(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]) }),
    );
    expect(h).toMatchObject({ healthy: true, reason: "Multi-file model complete" });
  });

  test("index with a missing shard", () => {
    const h = health(
      "mlx-community/big",
      mlx({ "model.safetensors": null, "model-00001-of-00002.safetensors": W, "model.safetensors.index.json": INDEX(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]) }),
    );
    expect(h.reason).toBe("Missing weight shards: model-00002-of-00002.safetensors");
  });

  test("index naming other files than present is the mlx-vlm #624 mismatch", () => {
    const h = health("mlx-community/vlm", mlx({ "model.safetensors": W, "model.safetensors.index.json": INDEX(["model-00001-of-00001.safetensors"]) }));
    expect(h.reason).toStartWith("Index/shard mismatch (mlx-vlm #624). Index references 1 shards but found 1 different files.");
  });

  test("index with invalid JSON / empty weight_map", () => {
    expect(health("mlx-community/a", mlx({ "model.safetensors.index.json": "{" })).reason).toBe("Invalid index file");
    expect(health("mlx-community/b", mlx({ "model.safetensors.index.json": { json: { weight_map: {} } } })).reason).toBe(
      "Empty or invalid weight_map in index",
    );
  });

  test("indexed shard that is empty or an LFS pointer", () => {
    const idx = INDEX(["model.safetensors"]);
    expect(health("mlx-community/a", mlx({ "model.safetensors": "", "model.safetensors.index.json": idx })).reason).toBe(
      "Empty weight shards: model.safetensors",
    );
    expect(health("mlx-community/b", mlx({ "model.safetensors": lfsPointer("x"), "model.safetensors.index.json": idx })).reason).toBe(
      "LFS pointers instead of files: model.safetensors",
    );
  });

  test("pytorch index with a missing .bin shard", () => {
    const h = health("org/torch", {
      "config.json": { json: { model_type: "llama" } },
      "pytorch_model-00001-of-00002.bin": W,
      "pytorch_model.bin.index.json": INDEX(["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]),
    });
    expect(h.reason).toBe("Missing weight shards: pytorch_model-00002-of-00002.bin");
  });

  test("shard pattern with a gap, mixed totals, and a complete set without index", () => {
    const s = (i: number, t: number) => `model-0000${i}-of-0000${t}.safetensors`;
    expect(health("mlx-community/a", mlx({ "model.safetensors": null, [s(1, 3)]: W, [s(3, 3)]: W })).reason).toBe("Missing shards by pattern: 2/3 present");
    expect(health("mlx-community/b", mlx({ "model.safetensors": null, [s(1, 2)]: W, [s(2, 3)]: W })).reason).toBe("Inconsistent shard totals detected");
    expect(health("mlx-community/c", mlx({ "model.safetensors": null, [s(1, 2)]: W, [s(2, 2)]: W })).reason).toBe(
      "Safetensors index missing for sharded model",
    );
  });

  test("LFS pointer left instead of a small file", () => {
    expect(health("mlx-community/a", mlx({ "tokenizer.json": lfsPointer("{}") })).reason).toBe("LFS pointers instead of files: tokenizer.json");
  });

  test("partial-download markers in the snapshot", () => {
    expect(health("mlx-community/a", mlx({ "model.safetensors.partial.tmp": "x" })).reason).toBe(
      "Partial download marker detected: model.safetensors.partial.tmp",
    );
  });

  test("a file named 'partial…' is not a marker (mlx-knife quirk not copied)", () => {
    expect(health("mlx-community/a", mlx({ "partial_rotary_notes.txt": "hello" })).healthy).toBe(true);
  });

  test("blobs/*.incomplete of the repo mark an interrupted download", () => {
    const h = health("mlx-community/a", mlxModelFiles(), { incomplete: ["a".repeat(64)] });
    expect(h.healthy).toBe(false);
    expect(h.reason).toStartWith("Download incomplete: 1 unfinished file(s)");
  });

  test("snapshot symlink to a missing blob", () => {
    expect(health("mlx-community/a", mlx({ "model.safetensors": { dangling: true } })).reason).toBe("Files point to missing blobs: model.safetensors");
    expect(health("mlx-community/b", mlx({ "special_tokens_map.json": { dangling: true } })).reason).toBe(
      "Files point to missing blobs: special_tokens_map.json",
    );
  });

  test("zero-byte JSON side files", () => {
    expect(health("mlx-community/a", mlx({ "generation_config.json": "" })).reason).toBe("Empty files: generation_config.json");
  });

  test("tokenizer pair: config without tokenizer.json, invalid tokenizer config", () => {
    expect(health("mlx-community/a", mlx({ "tokenizer.json": null })).reason).toBe("tokenizer_config.json present but tokenizer.json missing");
    expect(health("mlx-community/b", mlx({ "tokenizer_config.json": "{bad" })).reason).toBe("tokenizer_config.json contains invalid JSON");
  });

  test("SentencePiece tokenizer.model stands in for tokenizer.json (mlx-knife quirk not copied)", () => {
    expect(health("mlx-community/a", mlx({ "tokenizer.json": null, "tokenizer.model": "sp-model-bytes" })).healthy).toBe(true);
  });

  test("vision model needs a valid preprocessor config", () => {
    const vis = (extra: Record<string, FileContent | null>) =>
      mlx({ "config.json": { json: { model_type: "llava", quantization: { bits: 4, group_size: 64 } } }, ...extra });
    expect(health("mlx-community/v1", vis({})).reason).toBe("Vision model missing preprocessor_config.json or processor_config.json");
    expect(health("mlx-community/v2", vis({ "preprocessor_config.json": "{x" })).reason).toBe("preprocessor_config.json invalid JSON");
    expect(health("mlx-community/v3", vis({ "preprocessor_config.json": { json: { size: 224 } } })).healthy).toBe(true);
  });

  test("snapshot problems", () => {
    addRepo(hub.hubDir, { name: "org/empty", files: {} });
    const dir = repoDirFor(hub.hubDir, "org/empty");
    expect(repoHealth(dir, { name: "org/empty", hash: "nope" }).reason).toBe("Specific hash nope not found");
    expect(repoHealth(join(hub.hubDir, "models--org--none"), { name: "org/none" }).reason).toBe("No snapshots directory found");
  });

  test("unreadable files do not crash the check", () => {
    const h = health("mlx-community/a", mlx({ "config.json": { loop: true } }));
    expect(h.reason).toBe("config.json missing");
    const { snapshotDir, repoDir } = addRepo(hub.hubDir, { name: "mlx-community/b", files: mlxModelFiles() });
    chmodSync(join(snapshotDir, "config.json"), 0o000);
    const r = repoHealth(repoDir, { name: "mlx-community/b" });
    // root reads anything; everyone else gets a clear reason
    if (process.getuid?.() !== 0) expect(r.reason).toBe("config.json could not be read");
    else expect(r.healthy).toBe(true);
  });
});

describe("runtime compatibility (contract §4.2)", () => {
  test("GGUF repo: runnable when mlxk loads its architecture and tensor types (more in gguf.test.ts)", () => {
    const h = health("TheBloke/Llama-2-7B-Chat-GGUF", { "config.json": { json: { model_type: "llama" } }, "llama-2-7b-chat.Q4_0.gguf": ggufFile() });
    expect(h).toMatchObject({ healthy: true, runtime_compatible: true, runtime_reason: null });
    const star = health("TheBloke/starcoder-GGUF", { "starcoder.Q4_0.gguf": ggufFile({ arch: "starcoder" }) });
    expect(star).toMatchObject({ healthy: true, runtime_compatible: false });
  });

  test("PyTorch repo", () => {
    const h = health("microsoft/DialoGPT-small", {
      "config.json": { json: { model_type: "gpt2" } },
      "model.safetensors": safetensorsBytes({ w: { dtype: "F32", shape: [2] } }, { format: "pt" }),
    });
    // a transformers checkpoint is judged by what mlxk can load, not by its framework (mlx-knife refuses it)
    expect(h.detection?.framework).toBe("PyTorch");
    expect(h.runtime_reason).toContain("model_type 'gpt2' is not supported");
  });

  test("transformers-saved float safetensors of a supported architecture run (framework stays PyTorch)", () => {
    const st = (dtype: string) => safetensorsBytes({ "model.embed_tokens.weight": { dtype, shape: [2] } }, { format: "pt" });
    for (const dtype of ["F32", "F16", "BF16"]) {
      const h = health(`someone/Llama-tiny-${dtype}`, { "config.json": { json: { model_type: "llama" } }, "model.safetensors": st(dtype) });
      expect(h.detection?.framework).toBe("PyTorch");
      expect(h).toMatchObject({ healthy: true, runtime_compatible: true, runtime_reason: null });
    }
    const int8 = health("someone/Llama-int8", { "config.json": { json: { model_type: "llama" } }, "model.safetensors": st("I8") });
    expect(int8.runtime_reason).toContain("dtype I8");
    const gptq = health("someone/Llama-gptq", {
      "config.json": { json: { model_type: "llama", quantization_config: { quant_method: "gptq", bits: 4 } } },
      "model.safetensors": st("F16"),
    });
    expect(gptq.runtime_reason).toContain("transformers quantization 'gptq' is not supported");
  });

  test("unquantized MLX export outside mlx-community is recognised by safetensors metadata", () => {
    const h = health("someone/tiny-bf16", mlxModelFiles({ quantized: false }));
    expect(h.detection?.framework).toBe("MLX");
    expect(h.runtime_compatible).toBe(true);
  });

  test("safetensors metadata spelling mlx with JSON escapes still counts; other formats do not", () => {
    const raw = (meta: string): Uint8Array => {
      const json = `{"__metadata__":{"format":"${meta}"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`;
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
      return Buffer.concat([head, Buffer.from(json), Buffer.alloc(4)]);
    };
    const base = { "config.json": { json: { model_type: "llama" } } };
    expect(health("someone/escaped", { ...base, "model.safetensors": raw("\\u006dlx") }).detection?.framework).toBe("MLX");
    expect(health("someone/torch", { ...base, "model.safetensors": raw("pt") }).detection?.framework).toBe("PyTorch");
  });

  test("healthOnly skips the chat-template files: same health, kind may drop to base", () => {
    const files = mlx({ "tokenizer_config.json": { json: { tokenizer_class: "X" } }, "tokenizer.json": { json: { version: "1.0", chat_template: "{{ x }}" } } });
    const { repoDir } = addRepo(hub.hubDir, { name: "mlx-community/templ", files });
    const full = repoHealth(repoDir, { name: "mlx-community/templ" });
    const lean = repoHealth(repoDir, { name: "mlx-community/templ", healthOnly: true });
    expect(full.detection?.kind).toBe("chat");
    expect(lean.detection?.kind).toBe("base");
    const pick = (h: typeof full) => [h.healthy, h.reason, h.runtime_compatible, h.runtime_reason];
    expect(pick(lean)).toEqual(pick(full));
  });

  test("legacy weights, missing model_type, unsupported model_type", () => {
    const q = { quantization: { bits: 4, group_size: 64 } };
    expect(health("mlx-community/leg", { "config.json": { json: { model_type: "llama", ...q } }, "weights.00.safetensors": W }).runtime_reason).toStartWith(
      "Legacy weight format",
    );
    expect(health("mlx-community/nomt", { "config.json": { json: { ...q } }, "model.safetensors": W }).runtime_reason).toBe(
      "config.json missing model_type field",
    );
    expect(health("mlx-community/bert", { "config.json": { json: { model_type: "starcoder2", ...q } }, "model.safetensors": W }).runtime_reason).toStartWith(
      "model_type 'starcoder2' is not supported by mlxk",
    );
  });

  test("integrity failure wins over runtime reasons", () => {
    const h = health("org/x-GGUF", { "llama.gguf": "x" });
    expect(h).toMatchObject({ healthy: false, runtime_compatible: false, runtime_reason: null });
    expect(h.reason).toStartWith("GGUF file llama.gguf: unexpected end of file");
  });
});

describe("snapshot selection", () => {
  test("refs/main wins over the newest snapshot; newest when refs are missing", () => {
    const old = revisionFor("old");
    const neu = revisionFor("new");
    addRepo(hub.hubDir, { name: "mlx-community/m", revision: old, files: mlxModelFiles(), mtime: new Date(2020, 1, 1) });
    const { repoDir } = addRepo(hub.hubDir, {
      name: "mlx-community/m",
      revision: neu,
      files: mlx({ "config.json": null }),
      refs: { main: old },
      mtime: new Date(2024, 1, 1),
    });
    expect(repoHealth(repoDir, { name: "mlx-community/m" })).toMatchObject({ hash: old, healthy: true });
    expect(repoHealth(repoDir, { name: "mlx-community/m", hash: neu })).toMatchObject({ hash: neu, healthy: false });
    const { repoDir: r2 } = addRepo(hub.hubDir, { name: "mlx-community/n", revision: old, files: mlxModelFiles(), refs: false, mtime: new Date(2020, 1, 1) });
    addRepo(hub.hubDir, { name: "mlx-community/n", revision: neu, files: mlx({ "config.json": null }), refs: false });
    utimesSync(join(r2, "snapshots", neu), new Date(2024, 1, 1), new Date(2024, 1, 1));
    expect(repoHealth(r2, { name: "mlx-community/n" }).hash).toBe(neu);
  });
});

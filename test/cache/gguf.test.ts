/**
 * GGUF repos in a real temp HF cache: health rules (magic, version, tensor data within the file, split sets
 * complete, LFS pointers), the variant per quant and the default choice, and resolution of `name:QUANT`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chooseVariant, inspectGguf, quantOfFile, splitOf } from "../../src/cache/gguf.ts";
import { repoHealth } from "../../src/cache/health.ts";
import { resolveModel, splitQuant } from "../../src/cache/resolve.ts";
import { cacheModel, listModels } from "../../src/cache/scan.ts";
import { openSnapshot } from "../../src/cache/snapshot.ts";
import { locateModel } from "../../src/engine/open.ts";
import { MlxkError } from "../../src/errors.ts";
import { ggufFile, truncate } from "../support/gguf-repos.ts";
import { type FileContent, type TempHub, addRepo, lfsPointer, makeTempHub, mlxModelFiles } from "../support/hf-cache.ts";

let hub: TempHub;
beforeAll(() => {
  hub = makeTempHub();
});
afterAll(() => hub.cleanup());

function repo(name: string, files: Record<string, FileContent>, incomplete?: string[]) {
  const { repoDir, snapshotDir } = addRepo(hub.hubDir, { name, files, incomplete });
  return { repoDir, snapshotDir, h: repoHealth(repoDir, { name }) };
}

function thrown(f: () => unknown): MlxkError {
  try {
    f();
  } catch (e) {
    if (e instanceof MlxkError) return e;
    throw e;
  }
  throw new Error("did not throw");
}

describe("file names", () => {
  test("quant and split parts from the names llama.cpp, bartowski, unsloth and Qwen use", () => {
    expect(quantOfFile("SmolLM2-135M-Instruct.Q4_1.gguf")).toBe("Q4_1");
    expect(quantOfFile("Qwen3-0.6B-Q8_0.gguf")).toBe("Q8_0");
    expect(quantOfFile("qwen2.5-0.5b-instruct-q4_k_m.gguf")).toBe("Q4_K_M");
    expect(quantOfFile("Llama-3.2-1B-Instruct-IQ4_XS.gguf")).toBe("IQ4_XS");
    expect(quantOfFile("gemma-3-1b-it-UD-Q4_K_XL.gguf")).toBe("UD-Q4_K_XL");
    expect(quantOfFile("model-f16.gguf")).toBe("F16");
    expect(quantOfFile("Q8_0/Big-Q8_0-00001-of-00003.gguf")).toBe("Q8_0");
    expect(quantOfFile("model.gguf")).toBeNull();
    expect(splitOf("Big-Q8_0-00002-of-00003.gguf")).toEqual({ part: 2, total: 3, stem: "Big-Q8_0" });
    expect(splitOf("Big-Q8_0.gguf")).toBeNull();
  });

  test("name:QUANT splits off the quant; names without one are untouched", () => {
    expect(splitQuant("org/x-GGUF:Q4_1")).toEqual({ rest: "org/x-GGUF", quant: "Q4_1" });
    expect(splitQuant("org/x-GGUF")).toEqual({ rest: "org/x-GGUF", quant: null });
    expect(splitQuant("org/x@abc:q8_0")).toEqual({ rest: "org/x@abc", quant: "q8_0" });
  });
});

describe("health of GGUF repos", () => {
  test("a single-file repo without config.json is healthy and runnable; kind and context from the header", () => {
    const { h } = repo("QuantFactory/Tiny-Instruct-GGUF", { "Tiny.Q4_0.gguf": ggufFile({ context: 8192 }), "README.md": "# tiny" });
    expect(h).toMatchObject({ healthy: true, reason: "Model is healthy", runtime_compatible: true, runtime_reason: null });
    expect(h.detection).toMatchObject({ framework: "GGUF", kind: "chat", configModelType: "llama" });
    const m = cacheModel(hub.hubDir, "QuantFactory/Tiny-Instruct-GGUF").model;
    expect(m).toMatchObject({ framework: "GGUF", model_type: "chat", context_length: 8192, health: "healthy", runtime_compatible: true });
  });

  test("no chat template in the header → base", () => {
    const { h } = repo("org/Base-GGUF", { "base.Q8_0.gguf": ggufFile({ chatTemplate: null, type: "Q8_0" }) });
    expect(h.detection?.kind).toBe("base");
  });

  test("bad magic, unsupported version, truncated header, truncated tensor data, empty file, LFS pointer", () => {
    const good = ggufFile();
    const badMagic = good.slice();
    badMagic.set(new TextEncoder().encode("GGML"), 0);
    const v9 = good.slice();
    new DataView(v9.buffer).setUint32(4, 9, true);
    expect(repo("o/magic-GGUF", { "m.Q4_0.gguf": badMagic }).h.reason).toBe("GGUF file m.Q4_0.gguf: bad magic");
    expect(repo("o/version-GGUF", { "m.Q4_0.gguf": v9 }).h.reason).toBe("GGUF file m.Q4_0.gguf: unsupported GGUF version 9");
    expect(repo("o/header-GGUF", { "m.Q4_0.gguf": truncate(good, 100) }).h.reason).toStartWith("GGUF file m.Q4_0.gguf: unexpected end of file");
    const cut = repo("o/cut-GGUF", { "m.Q4_0.gguf": truncate(good, good.length - 10) }).h;
    expect(cut).toMatchObject({ healthy: false, runtime_compatible: false, runtime_reason: null });
    expect(cut.reason).toMatch(/^GGUF file m\.Q4_0\.gguf is truncated: tensor data ends at byte \d+, the file has \d+ \(tensor blk\.1\.attn_q\.weight\)/);
    expect(repo("o/empty-GGUF", { "m.Q4_0.gguf": new Uint8Array(0) }).h.reason).toBe("GGUF file m.Q4_0.gguf: empty file");
    expect(repo("o/lfs-GGUF", { "m.Q4_0.gguf": lfsPointer(good) }).h.reason).toBe("GGUF file m.Q4_0.gguf: Git LFS pointer instead of the file");
  });

  test("an unfinished download in blobs/ wins", () => {
    expect(repo("o/inc-GGUF", { "m.Q4_0.gguf": ggufFile() }, ["c".repeat(64)]).h.reason).toStartWith("Download incomplete");
  });

  test("split sets: complete is healthy, a missing part names the part", () => {
    const part = (no: number) => ggufFile({ split: { no, count: 3 } });
    const full = { "Big-Q8_0-00001-of-00003.gguf": part(0), "Big-Q8_0-00002-of-00003.gguf": part(1), "Big-Q8_0-00003-of-00003.gguf": part(2) };
    const ok = repo("o/split-GGUF", full).h;
    expect(ok).toMatchObject({ healthy: true, runtime_compatible: true });
    const missing: Record<string, FileContent> = { ...full };
    delete missing["Big-Q8_0-00002-of-00003.gguf"];
    expect(repo("o/split-missing-GGUF", missing).h.reason).toBe("Split GGUF Big-Q8_0 incomplete: 2/3 parts present (missing part 2)");
    const ins = inspectGguf(openSnapshot(repo("o/split-view-GGUF", full).snapshotDir));
    expect(ins.variants.map((v) => [v.label, v.parts.length, v.total])).toEqual([["Q8_0", 3, 3]]);
  });

  test("unsupported architecture and tensor types are healthy files, not runnable", () => {
    const star = repo("o/star-GGUF", { "s.Q4_0.gguf": ggufFile({ arch: "starcoder2" }) }).h;
    expect(star).toMatchObject({ healthy: true, runtime_compatible: false });
    expect(star.runtime_reason).toStartWith("GGUF architecture 'starcoder2' is not supported by mlxk (supported: llama, mistral, qwen2, qwen3,");
    const kq = repo("o/kq-GGUF", { "k.Q3_K_M.gguf": ggufFile({ type: "Q3_K" }) }).h;
    expect(kq).toMatchObject({ healthy: true, runtime_compatible: false });
    expect(kq.runtime_reason).toStartWith("GGUF tensor type Q3_K not supported by mlxk");
    expect(repo("o/k4-GGUF", { "k.Q4_K_M.gguf": ggufFile({ type: "Q4_K" }) }).h).toMatchObject({ healthy: true, runtime_compatible: true });
  });

  test("mmproj files are not models: a repo of only a projector has no GGUF model", () => {
    const h = repo("o/proj-GGUF", { "mmproj-F16.gguf": ggufFile({ type: "F16" }), "config.json": { json: { model_type: "llava" } } }).h;
    expect(h.detection?.framework).not.toBe("GGUF");
  });
});

describe("a local dir of GGUF files (LM Studio / llama.cpp layout)", () => {
  test("list, resolve and locate it by path, with and without :QUANT", () => {
    const dir = join(hub.root, "lmstudio", "org", "Tiny-GGUF");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "tiny.Q8_0.gguf"), ggufFile({ type: "Q8_0" }));
    writeFileSync(join(dir, "tiny.Q4_0.gguf"), ggufFile());
    const env = { ...hub.env };
    expect(resolveModel(dir, { hubDir: hub.hubDir, env })).toMatchObject({ kind: "path", dir });
    const def = locateModel(dir, { env });
    expect(def).toMatchObject({ kind: "gguf", id: dir });
    expect((def as { path: string }).path).toBe(join(dir, "tiny.Q4_0.gguf"));
    const q8 = locateModel(`${dir}:Q8_0`, { env });
    expect(q8).toMatchObject({ kind: "gguf", id: `${dir}:Q8_0` });
    expect((q8 as { path: string }).path).toBe(join(dir, "tiny.Q8_0.gguf"));
    const listed = listModels({ hubDir: hub.hubDir, pattern: join(hub.root, "lmstudio", "org") }).models;
    expect(listed.map((m) => [m.name, m.framework, m.health, m.runtime_compatible])).toEqual([[dir, "GGUF", "healthy", true]]);
  });
});

describe("choosing the file by quant", () => {
  const quants = {
    "Tiny.Q8_0.gguf": ggufFile({ type: "Q8_0" }),
    "Tiny.Q4_K_M.gguf": ggufFile({ type: "Q3_K" }), // a type mlxk does not load: not runnable
    "Tiny.Q4_1.gguf": ggufFile({ type: "Q4_1" }),
    "Tiny.F16.gguf": ggufFile({ type: "F16" }),
    "mmproj-Tiny-F16.gguf": ggufFile({ type: "F16" }),
  };

  test("variants in preference order; the default is the first runnable (this Q4_K_M is not, Q4_1 is)", () => {
    const { snapshotDir, h } = repo("QuantFactory/Multi-GGUF", quants);
    const ins = inspectGguf(openSnapshot(snapshotDir));
    expect(ins.variants.map((v) => v.label)).toEqual(["Q4_K_M", "Q4_1", "Q8_0", "F16"]);
    expect(chooseVariant(ins, null, "x").label).toBe("Q4_1");
    expect(chooseVariant(ins, "q8_0", "x").label).toBe("Q8_0");
    expect(h).toMatchObject({ healthy: true, runtime_compatible: true });
  });

  test("an unknown quant is model_not_found listing the available ones", () => {
    const { snapshotDir } = repo("QuantFactory/Multi2-GGUF", quants);
    const e = thrown(() => chooseVariant(inspectGguf(openSnapshot(snapshotDir)), "Q2_K", "QuantFactory/Multi2-GGUF"));
    expect(e.type).toBe("model_not_found");
    expect(e.message).toBe("'QuantFactory/Multi2-GGUF' has no GGUF quant 'Q2_K' (available: Q4_K_M, Q4_1, Q8_0, F16)");
    expect(e.extra.available_quants).toEqual(["Q4_K_M", "Q4_1", "Q8_0", "F16"]);
  });

  test("resolve + locate: name:QUANT opens that file, the bare name the default; refusals name the reason", () => {
    repo("QuantFactory/Loc-GGUF", quants);
    const env = { ...hub.env };
    expect(resolveModel("Loc-GGUF:Q8_0", { hubDir: hub.hubDir, env })).toMatchObject({ kind: "cache", name: "QuantFactory/Loc-GGUF", quant: "Q8_0" });
    const d = locateModel("QuantFactory/Loc-GGUF", { env });
    expect(d).toMatchObject({ kind: "gguf", id: "QuantFactory/Loc-GGUF" });
    expect((d as { path: string }).path).toEndWith("/Tiny.Q4_1.gguf");
    const q8 = locateModel("QuantFactory/Loc-GGUF:q8_0", { env });
    expect(q8).toMatchObject({ kind: "gguf", id: "QuantFactory/Loc-GGUF:Q8_0" });
    // the memory estimate is the loaded size: 8-bit codes + f32 scales for Q8_0 (1.25 B/weight), f32 norms
    expect(q8.weightBytes).toBe(Math.round((4 * 256 + 2 * 64 * 256) * 1.25 + 64 * 4));
    const k = thrown(() => locateModel("QuantFactory/Loc-GGUF:Q4_K_M", { env }));
    expect(k.type).toBe("unsupported_model");
    expect(k.message).toStartWith("Model 'QuantFactory/Loc-GGUF:Q4_K_M' is not compatible: GGUF tensor type Q3_K not supported");
    expect(thrown(() => locateModel("QuantFactory/Loc-GGUF:Q3_K_S", { env })).type).toBe("model_not_found");
  });

  test("the same quant in two folders: labelled by path, the bare quant is ambiguous_match naming both", () => {
    const { snapshotDir } = repo("o/TwoDirs-GGUF", { "a/m.Q8_0.gguf": ggufFile({ type: "Q8_0" }), "b/m.Q8_0.gguf": ggufFile({ type: "Q8_0" }) });
    const ins = inspectGguf(openSnapshot(snapshotDir));
    expect(ins.variants.map((v) => v.label).sort()).toEqual(["a/m.Q8_0", "b/m.Q8_0"]);
    const e = thrown(() => chooseVariant(ins, "Q8_0", "o/TwoDirs-GGUF"));
    expect(e.type).toBe("ambiguous_match");
    expect(e.extra.matches).toEqual(["o/TwoDirs-GGUF:a/m.Q8_0", "o/TwoDirs-GGUF:b/m.Q8_0"]);
    expect(chooseVariant(ins, "b/m.Q8_0", "x").rel).toBe("b/m.Q8_0.gguf");
    const ref = locateModel("o/TwoDirs-GGUF:b/m.Q8_0", { env: { ...hub.env } });
    expect(ref).toMatchObject({ kind: "gguf", id: "o/TwoDirs-GGUF:b/m.Q8_0" });
    expect((ref as { path: string }).path).toEndWith("/b/m.Q8_0.gguf");
  });

  test("a broken quant does not block a sound one; a quant on a non-GGUF repo is refused", () => {
    const good = ggufFile({ type: "Q8_0" });
    const q4 = ggufFile();
    repo("o/Mixed-GGUF", { "m.Q8_0.gguf": good, "m.Q4_0.gguf": truncate(q4, q4.length - 100) });
    const env = { ...hub.env };
    expect(repoHealth(`${hub.hubDir}/models--o--Mixed-GGUF`, { name: "o/Mixed-GGUF" }).healthy).toBe(false);
    expect(locateModel("o/Mixed-GGUF:Q8_0", { env })).toMatchObject({ kind: "gguf", id: "o/Mixed-GGUF:Q8_0" });
    const bad = thrown(() => locateModel("o/Mixed-GGUF:Q4_0", { env }));
    expect(bad.type).toBe("execution_error");
    expect(bad.message).toStartWith("Model 'o/Mixed-GGUF:Q4_0' is not healthy: GGUF file m.Q4_0.gguf is truncated");
    addRepo(hub.hubDir, { name: "mlx-community/Plain-4bit", files: mlxModelFiles() });
    const q = thrown(() => locateModel("mlx-community/Plain-4bit:Q4_0", { env }));
    expect(q.type).toBe("ValidationError");
    expect(q.message).toBe("':Q4_0' selects a GGUF quant, but 'mlx-community/Plain-4bit' is not a GGUF model");
  });
});

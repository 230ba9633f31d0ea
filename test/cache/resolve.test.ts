import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nameFromRepoDir, repoDirName } from "../../src/cache/layout.ts";
import { parseSpec, resolveModel } from "../../src/cache/resolve.ts";
import { MlxkError } from "../../src/errors.ts";
import { type TempHub, addRepo, makeTempHub, mlxModelFiles, revisionFor } from "../support/hf-cache.ts";

let hub: TempHub;
beforeEach(() => {
  hub = makeTempHub();
  for (const name of [
    "mlx-community/Phi-3-mini-4k-instruct-4bit",
    "mlx-community/Qwen3-30B-A3B-Instruct-2507-4bit",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    "microsoft/DialoGPT-small",
    "mlx-community/Llama-3.2-1B-Instruct-4bit",
    "mlx-community/Llama-3.2-1B-Instruct-8bit",
    "orgé/模型-ünïcode",
  ]) {
    addRepo(hub.hubDir, { name, files: mlxModelFiles() });
  }
});
afterEach(() => hub.cleanup());

function err(fn: () => unknown): MlxkError {
  try {
    fn();
  } catch (e) {
    if (e instanceof MlxkError) return e;
    throw e;
  }
  throw new Error("expected an MlxkError");
}

const R = (spec: string) => resolveModel(spec, { hubDir: hub.hubDir });

describe("name ↔ cache dir", () => {
  test("round trip", () => {
    for (const n of ["microsoft/DialoGPT-small", "org/sub/model", "single-model", "org-with-dashes/model-with-dashes"]) {
      expect(nameFromRepoDir(repoDirName(n))).toBe(n);
    }
    expect(repoDirName("org/sub/model")).toBe("models--org--sub--model");
    expect(nameFromRepoDir("models--a--b---c")).toBe("a/b/-c");
    expect(nameFromRepoDir("datasets--a--b")).toBeNull();
  });

  test("spec parsing splits on the last @", () => {
    expect(parseSpec("Phi-3@abc")).toEqual({ base: "Phi-3", rev: "abc" });
    expect(parseSpec("Model@")).toEqual({ base: "Model", rev: null });
    expect(parseSpec("a@b@c")).toEqual({ base: "a@b", rev: "c" });
  });
});

describe("resolveModel", () => {
  test("exact org/name", () => {
    expect(R("microsoft/DialoGPT-small")).toMatchObject({ kind: "cache", name: "microsoft/DialoGPT-small", match: "exact", hash: null });
  });

  test("short name expands to mlx-community when cached", () => {
    expect(R("Phi-3-mini-4k-instruct-4bit")).toMatchObject({ name: "mlx-community/Phi-3-mini-4k-instruct-4bit", match: "short_name" });
  });

  test("case-insensitive substring", () => {
    expect(R("dialogpt")).toMatchObject({ name: "microsoft/DialoGPT-small", match: "substring" });
  });

  test("several hits → ambiguous_match with matches", () => {
    const e = err(() => R("Llama-3.2-1B"));
    expect(e.type).toBe("ambiguous_match");
    expect(e.extra.matches).toEqual(["mlx-community/Llama-3.2-1B-Instruct-4bit", "mlx-community/Llama-3.2-1B-Instruct-8bit"]);
  });

  test("none → model_not_found; empty → model_not_found", () => {
    expect(err(() => R("nothing-like-this")).type).toBe("model_not_found");
    expect(err(() => R("   ")).type).toBe("model_not_found");
  });

  test("hash prefix picks the snapshot and disambiguates", () => {
    const rev = revisionFor("second");
    addRepo(hub.hubDir, { name: "mlx-community/Llama-3.2-1B-Instruct-4bit", revision: rev, files: mlxModelFiles(), refs: false });
    const r = R(`Llama-3.2-1B@${rev.slice(0, 6)}`);
    expect(r).toMatchObject({ name: "mlx-community/Llama-3.2-1B-Instruct-4bit", hash: rev });
    const e = err(() => R("DialoGPT-small@ffffffff"));
    expect(e.type).toBe("hash_not_found");
    expect(e.extra.available_hashes).toEqual([revisionFor("microsoft/DialoGPT-small").slice(0, 8)]);
  });

  test("@branch resolves through refs/", () => {
    expect(R("microsoft/DialoGPT-small@main").hash).toBe(revisionFor("microsoft/DialoGPT-small"));
  });

  test("unicode names resolve", () => {
    expect(R("ünïcode").name).toBe("orgé/模型-ünïcode");
  });

  test("dangerous names are refused", () => {
    for (const bad of ["org/../../etc", "a/./b", "org\\name", "a//b", "x\u0000y", "org/name/", "models--a--b"]) {
      expect(err(() => R(bad)).type).toBe("ValidationError");
    }
  });

  test("explicit path with config.json → path model; without → model_not_found", () => {
    const dir = join(hub.root, "ws", "my-model");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "config.json"), "{}");
    expect(resolveModel(dir, { hubDir: hub.hubDir })).toMatchObject({ kind: "path", name: dir });
    expect(resolveModel("./my-model", { hubDir: hub.hubDir, cwd: join(hub.root, "ws") })).toMatchObject({ kind: "path", name: dir });
    expect(err(() => resolveModel(join(hub.root, "ws"), { hubDir: hub.hubDir })).type).toBe("model_not_found");
  });

  test("missing cache dir is an empty cache", () => {
    expect(err(() => resolveModel("x", { hubDir: join(hub.root, "nope") })).type).toBe("model_not_found");
  });
});

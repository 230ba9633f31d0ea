/**
 * Builds real Hugging Face hub caches in temp dirs for tests: content-addressed blobs (sha256 for LFS-type
 * files, git blob sha1 for small text files, as huggingface_hub names them), relative symlinks from
 * snapshots/<rev>/ into ../../blobs/, refs/<branch>, .locks/, blobs/*.incomplete.
 *
 * Exports:
 *   makeTempHub({ create? }) → { root, hubDir, env, cleanup }      env = { HF_HOME: root, HOME }
 *   addRepo(hubDir, RepoSpec) → { repoDir, snapshotDir, revision } (call again with another revision for multi-snapshot repos)
 *   safetensorsBytes(tensors, metadata?)  a valid safetensors file (zero-filled data)
 *   lfsPointer(content)                  the Git-LFS pointer text for some content
 *   mlxModelFiles(opts?)                  files of a small healthy MLX chat model (quantized llama)
 *   revisionFor(seed)                     a deterministic 40-hex commit id
 *   blobNameFor(rel, content)             the blob file name huggingface_hub would use
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export type FileContent =
  | string
  | Uint8Array
  | { json: unknown }
  /** Symlink to a blob that does not exist. */
  | { dangling: true }
  /** Regular file directly in the snapshot (no blob), e.g. caches made with symlinks disabled. */
  | { raw: string | Uint8Array }
  /** A symlink pointing at itself: stat fails with ELOOP, like an unreadable file even for root. */
  | { loop: true };

export interface RepoSpec {
  name: string;
  /** 40-hex commit; default derived from the name. */
  revision?: string;
  files: Record<string, FileContent>;
  /** Branch → commit written under refs/; default `{ main: revision }`; `false` writes no refs dir. */
  refs?: Record<string, string> | false;
  /** mtime of the snapshot dir (newest-snapshot selection). */
  mtime?: Date;
  /** Names of `blobs/<name>.incomplete` files to create (interrupted downloads). */
  incomplete?: string[];
  /** Lock files to create under `.locks/models--…/`. */
  locks?: string[];
}

export interface TempHub {
  root: string;
  hubDir: string;
  env: Record<string, string>;
  cleanup: () => void;
}

export function makeTempHub(opts: { create?: boolean } = {}): TempHub {
  const root = mkdtempSync(join(tmpdir(), "mlxk-hub-"));
  const hubDir = join(root, "hub");
  if (opts.create !== false) mkdirSync(hubDir, { recursive: true });
  return {
    root,
    hubDir,
    env: { HF_HOME: root, HOME: join(root, "home") },
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

export function revisionFor(seed: string): string {
  return createHash("sha1").update(seed).digest("hex");
}

const LFS_EXT = /\.(safetensors|bin|gguf|model|tiktoken|pt|pth|npz)$/;

function bytesOf(c: string | Uint8Array): Uint8Array {
  return typeof c === "string" ? new TextEncoder().encode(c) : c;
}

/** sha256 for LFS-type files, git blob sha1 (`blob <len>\0` + content) for the rest. */
export function blobNameFor(rel: string, content: Uint8Array): string {
  if (LFS_EXT.test(rel)) return createHash("sha256").update(content).digest("hex");
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

export function lfsPointer(content: string | Uint8Array): string {
  const b = bytesOf(content);
  return `version https://git-lfs.github.com/spec/v1\noid sha256:${createHash("sha256").update(b).digest("hex")}\nsize ${b.length}\n`;
}

export function safetensorsBytes(
  tensors: Record<string, { dtype: string; shape: number[] }>,
  metadata: Record<string, string> = { format: "mlx" },
): Uint8Array {
  const size: Record<string, number> = { F32: 4, F16: 2, BF16: 2, U32: 4, I32: 4, U8: 1, I8: 1, F64: 8, I64: 8 };
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1) * (size[t.dtype] ?? 4);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  return out;
}

/** A tiny 4-bit quantized llama in MLX layout: config, weights, tokenizer with chat template. */
export function mlxModelFiles(opts: { modelType?: string; quantized?: boolean; chat?: boolean } = {}): Record<string, FileContent> {
  const quantized = opts.quantized ?? true;
  const config: Record<string, unknown> = {
    model_type: opts.modelType ?? "llama",
    architectures: ["LlamaForCausalLM"],
    hidden_size: 64,
    num_attention_heads: 4,
    num_hidden_layers: 2,
    vocab_size: 128,
    max_position_embeddings: 2048,
  };
  if (quantized) config.quantization = { bits: 4, group_size: 32 };
  const tensors: Record<string, { dtype: string; shape: number[] }> = quantized
    ? {
        "model.embed_tokens.weight": { dtype: "U32", shape: [128, 8] },
        "model.embed_tokens.scales": { dtype: "F16", shape: [128, 2] },
        "model.embed_tokens.biases": { dtype: "F16", shape: [128, 2] },
        "model.norm.weight": { dtype: "F16", shape: [64] },
      }
    : { "model.embed_tokens.weight": { dtype: "F16", shape: [128, 64] }, "model.norm.weight": { dtype: "F16", shape: [64] } };
  const tokCfg: Record<string, unknown> = { tokenizer_class: "PreTrainedTokenizerFast" };
  if (opts.chat ?? true) tokCfg.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}";
  return {
    "config.json": { json: config },
    "model.safetensors": safetensorsBytes(tensors),
    "tokenizer.json": { json: { version: "1.0", model: { type: "BPE", vocab: {} } } },
    "tokenizer_config.json": { json: tokCfg },
  };
}

/** Write one revision of a repo into the cache; blobs are shared by content across revisions. */
export function addRepo(hubDir: string, spec: RepoSpec): { repoDir: string; snapshotDir: string; revision: string } {
  const revision = spec.revision ?? revisionFor(spec.name);
  const repoDir = join(hubDir, `models--${spec.name.split("/").join("--")}`);
  const blobs = join(repoDir, "blobs");
  const snapshotDir = join(repoDir, "snapshots", revision);
  mkdirSync(blobs, { recursive: true });
  mkdirSync(snapshotDir, { recursive: true });
  for (const [rel, content] of Object.entries(spec.files)) {
    const p = join(snapshotDir, rel);
    mkdirSync(dirname(p), { recursive: true });
    const up = "../".repeat(rel.split("/").length + 1);
    if (typeof content === "object" && !(content instanceof Uint8Array)) {
      if ("dangling" in content) {
        symlinkSync(`${up}blobs/${"0".repeat(64)}`, p);
        continue;
      }
      if ("loop" in content) {
        symlinkSync(rel.slice(rel.lastIndexOf("/") + 1), p);
        continue;
      }
      if ("raw" in content) {
        writeFileSync(p, bytesOf(content.raw));
        continue;
      }
    }
    const bytes =
      typeof content === "object" && !(content instanceof Uint8Array) && "json" in content
        ? bytesOf(JSON.stringify(content.json, null, 2))
        : bytesOf(content as string | Uint8Array);
    const blob = blobNameFor(rel, bytes);
    writeFileSync(join(blobs, blob), bytes);
    symlinkSync(`${up}blobs/${blob}`, p);
  }
  for (const inc of spec.incomplete ?? []) writeFileSync(join(blobs, `${inc}.incomplete`), "partial");
  if (spec.refs !== false) {
    for (const [branch, commit] of Object.entries(spec.refs ?? { main: revision })) {
      const rp = join(repoDir, "refs", branch);
      mkdirSync(dirname(rp), { recursive: true });
      writeFileSync(rp, commit);
    }
  }
  if (spec.locks?.length) {
    const ld = join(hubDir, ".locks", `models--${spec.name.split("/").join("--")}`);
    mkdirSync(ld, { recursive: true });
    for (const l of spec.locks) writeFileSync(join(ld, l), "");
  }
  if (spec.mtime) utimesSync(snapshotDir, spec.mtime, spec.mtime);
  return { repoDir, snapshotDir, revision };
}

/** Every file of a model dir (e.g. a tiny fixture model), as addRepo takes them. */
export function dirFiles(dir: string): Record<string, FileContent> {
  const files: Record<string, FileContent> = {};
  for (const f of new Bun.Glob("*").scanSync({ cwd: dir })) files[f] = new Uint8Array(readFileSync(join(dir, f)));
  return files;
}

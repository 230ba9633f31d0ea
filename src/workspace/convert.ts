/**
 * `convert`: a model (cache name, workspace or model dir; MLX or as transformers saves it) into a new workspace —
 * quantized with MLX's own quantize (`--quantize`, the tensors mlx-lm quantizes, quant-plan.ts), cast (`--dtype`),
 * or with its safetensors index rebuilt from the shard headers (`--repair-index`). Weights are read lazily and
 * written shard by shard (each shard's tensors are freed once written), so memory stays near one shard. Everything
 * is written into a temp dir next to the target and published by one rename: a failure midway leaves no target.
 *
 * Exports: convert(opts) → ConvertData
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { nowIso, recalcHash } from "../cache/content-hash.ts";
import { repoHealth } from "../cache/health.ts";
import { isInside, walkFiles } from "../cache/layout.ts";
import { resolveModel } from "../cache/resolve.ts";
import { SENTINEL, readSentinel, workspaceHealth } from "../cache/workspace.ts";
import { weightFiles } from "../engine/load.ts";
import { type Env, hubCacheDir, workspaceHome } from "../env.ts";
import { MlxkError } from "../errors.ts";
import type * as MX from "../mlx/index.ts";
import type { MlxQuantMode } from "../models/layers.ts";
import type { ConvertData } from "../schemas/workspace.ts";
import { CLI_VERSION } from "../version.ts";
import { copyInto, newStats } from "./copy.ts";
import { type QuantParamsOut, quantDecision } from "./quant-plan.ts";
import { indexFor, planShards, rebuildIndex, writeIndex } from "./shards.ts";

export interface ConvertOptions {
  source: string;
  target: string;
  env: Env;
  cwd?: string;
  quantize?: number;
  groupSize?: number;
  qMode?: "affine" | "mxfp4";
  dtype?: "float16" | "bfloat16" | "float32";
  repairIndex?: boolean;
  /** Largest shard in bytes (default 5 GiB, as mlx-lm). */
  maxShardBytes?: number;
  healthCheck?: boolean;
  /** After each shard is written (shards done, total). */
  onShard?: (done: number, total: number) => void;
}

const MAX_SHARD = 5 * 1024 ** 3;
const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|gguf|h5|msgpack|ckpt|onnx)$/i;
const NOT_COPIED_DIRS = new Set([".git", ".hf_cache", "__pycache__", "onnx", "openvino"]);

interface Source {
  dir: string;
  id: string;
  repo: string | null;
  revision: string | null;
}

function locateSource(spec: string, env: Env, cwd: string, repair: boolean): Source {
  const hubDir = hubCacheDir(env);
  const r = resolveModel(spec, { hubDir, cwd, env });
  if (r.kind === "cache") {
    const report = repoHealth(r.repoDir, { name: r.name, hash: r.hash, healthOnly: true });
    if (!report.snapshotDir) throw new MlxkError("model_not_found", `${r.name}: ${report.reason}`);
    // --repair-index exists to fix an unhealthy index; every other mode needs whole files
    if (!report.healthy && !repair) throw new MlxkError("HealthCheckFailed", `Source '${r.name}' is not healthy: ${report.reason}`);
    return { dir: report.snapshotDir, id: r.name, repo: r.name, revision: report.hash };
  }
  const s = readSentinel(r.dir);
  if (!repair) {
    const h = workspaceHealth(r.dir, s);
    if (!h.healthy) throw new MlxkError("HealthCheckFailed", `Source '${r.dir}' is not healthy: ${h.reason}`);
  }
  return { dir: r.dir, id: r.dir, repo: typeof s?.source_repo === "string" ? s.source_repo : null, revision: typeof s?.source_revision === "string" ? s.source_revision : null };
}

function resolveTarget(target: string, env: Env, cwd: string): string {
  const home = workspaceHome(env);
  if (home && !target.includes("/") && target !== "." && target !== "..") return join(resolve(cwd, home), target);
  return isAbsolute(target) ? resolve(target) : resolve(cwd, target);
}

function checkTarget(dir: string, src: string, hubDir: string): void {
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)) {
    throw new MlxkError("InvalidTargetError", `Target '${dir}' exists and is not empty; nothing was written.`);
  }
  const parent = dirname(dir);
  if (!existsSync(parent)) throw new MlxkError("InvalidTargetError", `Parent directory '${parent}' does not exist.`);
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
  const t = join(real(parent), basename(dir));
  if (isInside(real(hubDir), t)) throw new MlxkError("InvalidTargetError", `Target '${dir}' is inside the Hugging Face cache; the cache is never written by convert.`);
  if (isInside(real(src), t)) throw new MlxkError("InvalidTargetError", `Target '${dir}' is inside the source model dir.`);
}

/** Non-weight files of the source (tokenizer, templates, generation config, code, README), reflinked where possible. */
function copyAuxiliary(src: string, dst: string, skip: (rel: string) => boolean): void {
  const stats = newStats();
  for (const f of walkFiles(src)) {
    const parts = f.rel.split("/");
    if (parts.slice(0, -1).some((p) => NOT_COPIED_DIRS.has(p)) || skip(f.rel) || f.size < 0) continue;
    copyInto(f.path, join(dst, f.rel), stats);
  }
}

function sortedConfig(config: Record<string, unknown>): string {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(config).sort()) out[k] = config[k];
  return `${JSON.stringify(out, null, 4)}\n`;
}

export async function convert(opts: ConvertOptions): Promise<ConvertData> {
  const cwd = opts.cwd ?? process.cwd();
  const quantizing = opts.quantize !== undefined;
  const repair = opts.repairIndex === true;
  if (repair && (quantizing || opts.dtype)) throw new MlxkError("InvalidArgumentError", "--repair-index copies the weights as they are; it cannot be combined with --quantize or --dtype");
  if (!repair && !quantizing && !opts.dtype) throw new MlxkError("InvalidArgumentError", "Nothing to do: give --quantize BITS, --dtype DTYPE or --repair-index");
  if (!quantizing && (opts.groupSize !== undefined || opts.qMode !== undefined)) throw new MlxkError("InvalidArgumentError", "--q-group-size and --q-mode need --quantize");
  const qMode = opts.qMode ?? "affine";
  if (qMode === "mxfp4" && quantizing && (opts.quantize !== 4 || (opts.groupSize ?? 32) !== 32)) {
    throw new MlxkError("InvalidArgumentError", "--q-mode mxfp4 is 4-bit with group size 32 (MLX's MXFP4)");
  }
  const groupSize = opts.groupSize ?? (qMode === "mxfp4" ? 32 : 64);
  const src = locateSource(opts.source, opts.env, cwd, repair);
  const target = resolveTarget(opts.target, opts.env, cwd);
  checkTarget(target, src.dir, hubCacheDir(opts.env));
  const config = JSON.parse(readFileSync(join(src.dir, "config.json"), "utf8")) as Record<string, unknown>;
  const multimodal = ["vision_config", "audio_config"].find((k) => config[k] !== null && typeof config[k] === "object");
  if (multimodal && !repair) throw new MlxkError("unsupported_multimodal", `'${src.id}' has a ${multimodal}: convert quantizes and casts text models only`);

  const data: ConvertData = {
    source: src.id,
    target,
    mode: repair ? "repair-index" : quantizing ? "quantize" : "dtype",
    health_check: opts.healthCheck !== false,
    health_status: null,
    health_reason: null,
    message: "",
    warning: null,
    bits: quantizing ? opts.quantize! : null,
    group_size: quantizing ? groupSize : null,
    content_hash: null,
    q_mode: quantizing ? qMode : null,
    dtype: null,
    quantized_tensors: 0,
    shards: 0,
    bytes: 0,
    overrides: {},
  };
  const staging = join(dirname(target), `.mlxk-convert-${basename(target)}-${process.pid}-${Date.now().toString(36)}`);
  mkdirSync(staging);
  try {
    if (repair) {
      copyAuxiliary(src.dir, staging, (rel) => rel === "model.safetensors.index.json" || rel === SENTINEL);
      for (const f of readdirSync(staging).filter((f) => f.endsWith(".safetensors"))) data.bytes += statSync(join(staging, f)).size;
      const index = rebuildIndex(staging);
      writeIndex(staging, index);
      data.shards = new Set(Object.values(index.weight_map)).size;
    } else {
      await writeWeights(src, config, staging, opts, data, groupSize, qMode);
      copyAuxiliary(src.dir, staging, (rel) => WEIGHT_FILE.test(rel) || rel === "config.json" || rel.endsWith(".index.json") || rel === SENTINEL || rel.endsWith(".mlxk-part"));
    }
    const sentinel = {
      mlxk_version: CLI_VERSION,
      created_at: nowIso(),
      source_repo: src.repo ?? basename(src.dir),
      source_revision: src.revision,
      managed: true,
      operation: "convert",
      convert: { mode: data.mode, source: src.id, bits: data.bits, group_size: data.group_size, q_mode: data.q_mode, dtype: data.dtype },
    };
    data.content_hash = recalcHash(staging, sentinel).content_hash as string;
    if (data.health_check) {
      const h = workspaceHealth(staging, sentinel);
      data.health_status = h.healthy ? "healthy" : "unhealthy";
      data.health_reason = h.reason;
      if (!h.healthy) throw new MlxkError("HealthCheckFailed", `Converted files are unhealthy (${h.reason}); nothing was written to ${target}`, { data: { ...data, message: h.reason } });
    }
    if (existsSync(target)) rmdirSync(target);
    renameSync(staging, target);
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    throw e;
  }
  const what = repair ? "rebuilt the index of" : quantizing ? `quantized (${data.bits}-bit ${qMode}, group ${groupSize})` : `cast to ${data.dtype}`;
  data.message = `Converted ${src.id} → ${target}: ${what} ${data.shards} shard(s)`;
  return data;
}

/** Float dtype to cast to: --dtype, else config `torch_dtype` / text_config `dtype` (mlx-lm's rule), else none. */
function castDtype(opts: ConvertOptions, config: Record<string, unknown>): string | null {
  const tc = config.text_config as Record<string, unknown> | undefined;
  const d = opts.dtype ?? (config.torch_dtype as string | undefined) ?? (tc?.dtype as string | undefined);
  return d === "float16" || d === "bfloat16" || d === "float32" ? d : null;
}

async function writeWeights(src: Source, config: Record<string, unknown>, out: string, opts: ConvertOptions, data: ConvertData, groupSize: number, qMode: "affine" | "mxfp4"): Promise<void> {
  const mx = await import("../mlx/index.ts");
  const { QuantConfig, parseConfig } = await import("../models/base.ts");
  const { hasModelType, loadModelModule } = await import("../models/registry.ts");
  const mt = typeof config.model_type === "string" ? config.model_type : "";
  const quantizing = opts.quantize !== undefined;
  if (quantizing && !hasModelType(mt)) {
    throw new MlxkError("unsupported_model", `convert --quantize handles the text model types mlxk runs; '${mt || "?"}' is not one of them`);
  }
  const mod = hasModelType(mt) ? await loadModelModule(mt) : null;
  const dtype = castDtype(opts, config);
  data.dtype = dtype;
  const outConfig: Record<string, unknown> = { ...config };
  delete outConfig._name_or_path;
  delete outConfig.vision_config;
  mx.scope(() => {
    // what each derived array was made from, so a written shard frees its source bytes too
    const origin = new Map<MX.Array, MX.Array[]>();
    const derive = (a: MX.Array, from: (MX.Array | null)[]): MX.Array => {
      origin.set(a, from.filter((x): x is MX.Array => x !== null));
      return a;
    };
    const free = (a: MX.Array): void => {
      for (const o of origin.get(a) ?? []) free(o);
      a.dispose();
    };
    let w = new Map<string, MX.Array>();
    for (const f of weightFiles(src.dir)) for (const [k, a] of mx.loadSafetensors(f).weights) w.set(k, a);
    // an already-quantized source: back to floats first (re-quantizing packed words would be nonsense)
    const srcQuant = QuantConfig.from(config);
    const packed = [...w.keys()].filter((k) => k.endsWith(".scales") && w.has(k.replace(/\.scales$/, ".weight")));
    if (packed.length > 0) {
      const q = srcQuant ?? new QuantConfig({ groupSize: 64, bits: 4, mode: "affine" }, new Map());
      for (const sk of packed) {
        const p = sk.slice(0, -".scales".length);
        const wq = w.get(`${p}.weight`)!;
        const scales = w.get(sk)!;
        const params = q.paramsFor(p, wq, scales);
        const fdtype = scales.dtype === mx.Dtype.uint8 ? mx.Dtype.bfloat16 : scales.dtype;
        const biases = w.get(`${p}.biases`) ?? null;
        w.set(`${p}.weight`, derive(mx.dequantize(wq, scales, biases, { ...params, mode: params.mode as MlxQuantMode, dtype: fdtype }), [wq, scales, biases]));
        w.delete(sk);
        w.delete(`${p}.biases`);
      }
      delete outConfig.quantization;
      delete outConfig.quantization_config;
      const was = srcQuant?.defaults.bits;
      if (quantizing && was !== undefined) {
        data.warning = opts.quantize! > was ? `Source already ${was}-bit. Quantizing to ${opts.quantize}-bit does not increase precision.` : `Source was ${was}-bit; it is dequantized and quantized again.`;
      }
    }
    if (mod?.sanitize) w = mod.sanitize(w, parseConfig(mod.configSchema, config, mt, mod.configOptions));
    if (dtype) {
      const dt = mx.Dtype[dtype as "float16"];
      for (const [k, a] of w) if (mx.isFloating(a.dtype) && a.dtype !== dt) w.set(k, derive(a.astype(dt), [a]));
    }
    const outputs = new Map<string, MX.Array>();
    if (quantizing) {
      const defaults: QuantParamsOut = { group_size: groupSize, bits: opts.quantize!, mode: qMode };
      const quantization: Record<string, unknown> = { group_size: groupSize, bits: opts.quantize!, mode: qMode };
      for (const k of [...w.keys()].sort()) {
        const a = w.get(k)!;
        const d = quantDecision(mt, k, a.shape, defaults);
        if (!d.quantize || !mx.isFloating(a.dtype)) {
          outputs.set(k, a);
          continue;
        }
        const p = k.slice(0, -".weight".length);
        const q = mx.quantize(a, { groupSize: d.params.group_size, bits: d.params.bits, mode: d.params.mode ?? "affine" });
        outputs.set(`${p}.weight`, derive(q.wq, [a]));
        outputs.set(`${p}.scales`, q.scales);
        if (q.biases) outputs.set(`${p}.biases`, q.biases);
        data.quantized_tensors++;
        if (d.override) {
          quantization[p] = d.params;
          data.overrides[p] = d.params;
        }
      }
      outConfig.quantization = quantization;
      outConfig.quantization_config = quantization;
    } else for (const k of [...w.keys()].sort()) outputs.set(k, w.get(k)!);
    const entries = [...outputs].map(([key, a]) => ({ key, nbytes: a.nbytes }));
    const shards = planShards(entries, opts.maxShardBytes ?? MAX_SHARD);
    const total = entries.reduce((s, e) => s + e.nbytes, 0);
    shards.forEach((s, i) => {
      const arrays = new Map(s.keys.map((k) => [k, outputs.get(k)!]));
      mx.saveSafetensors(join(out, s.name), arrays, { format: "mlx" });
      // written: drop this shard's results (and, through them, the source bytes they were made from)
      for (const a of arrays.values()) free(a);
      opts.onShard?.(i + 1, shards.length);
    });
    const index = indexFor(shards, total);
    writeIndex(out, index);
    data.shards = shards.length;
    data.bytes = total;
  });
  writeFileSync(join(out, "config.json"), sortedConfig(outConfig));
}

/**
 * Loading weights into a LanguageModel: an MLX/HF model dir (config.json + safetensors shards) or a
 * llama-family GGUF file (tensor names mapped to HF names, q/k rows un-permuted, config from metadata).
 * Float tensors (weights, quantization scales/biases, norms) are cast to the compute dtype at load. The
 * backend profile (device, dtype, streams, kernels: src/mlx/backend.ts) is chosen here, once per load.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Env } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { type BackendProfile, loadBackend } from "../mlx/backend.ts";
import * as mx from "../mlx/index.ts";
import { type LanguageModel, type ModelModule, parseConfig, QuantConfig, WeightStore } from "../models/base.ts";
import { loadModelModule } from "../models/registry.ts";
import { attachPipeline, attachTensorStage, type RankPlan, rankPlanFor, reportLoad, type StepState } from "../distributed/pipeline.ts";
import { attachTensorParallel, tensorPlanFor } from "../distributed/tensor.ts";
import type { Group } from "../mlx/distributed.ts";

export interface LoadOptions {
  env?: Env;
  /**
   * Compute dtype; default from MLXK_DTYPE, else float32 on the CPU and "half" on a GPU (float32 tensors to
   * bfloat16, bfloat16/float16 checkpoints kept). "auto" keeps the checkpoint's float dtype.
   */
  dtype?: "float32" | "float16" | "bfloat16" | "auto" | "half";
  /** CPU streams for split matmuls; default from MLXK_STREAMS, else 1 with our AVX2 kernels and 2 without. */
  streams?: number;
  onProgress?: (fraction: number) => void;
  /** This rank's pipeline slice; default from the launched world (src/distributed/pipeline.ts), null = whole model. */
  rank?: RankPlan | null;
  /** Float Linears pack their weights on first use for the packed GEMM (embedders: many rows per call). */
  packLinears?: boolean;
}

export interface LoadedModel extends Disposable {
  model: LanguageModel;
  modelType: string;
  /** Parsed config (schema defaults applied). */
  config: Record<string, unknown>;
  contextLength: number;
  /** What it runs on (device, dtype, streams, kernels). */
  backend: BackendProfile;
  /** Set on a pipeline follower rank: what `follow()` needs to serve rank 0. */
  follower?: { step: StepState; group: Group };
}

/** Safetensors files of a model dir: the index's shards, else every model*.safetensors. */
export function weightFiles(dir: string): string[] {
  const index = join(dir, "model.safetensors.index.json");
  if (existsSync(index)) {
    const map = (JSON.parse(readFileSync(index, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
    return [...new Set(Object.values(map))].sort().map((f) => join(dir, f));
  }
  const files = readdirSync(dir).filter((f) => /^model.*\.safetensors$/.test(f)).sort();
  if (files.length === 0) throw new MlxkError("execution_error", `No model*.safetensors files in ${dir}`);
  return files.map((f) => join(dir, f));
}

/** Cast float tensors to the backend's compute dtype (uint8 fp scales and packed weights stay as they are). */
function castFloats(w: Map<string, mx.Array>, backend: BackendProfile, keep?: (key: string) => boolean): void {
  for (const [k, a] of w) {
    if (!mx.isFloating(a.dtype)) continue;
    const dtype = backend.target(a.dtype);
    if (dtype !== null && a.dtype !== dtype && keep?.(k) !== false) {
      w.set(k, mx.keep(a.astype(dtype)));
      a.dispose();
    }
  }
}

/** Evaluate every tensor in batches, reporting the fraction of bytes done. */
function materialize(arrays: mx.Array[], onProgress?: (f: number) => void): void {
  const total = arrays.reduce((s, a) => s + a.nbytes, 0) || 1;
  let done = 0;
  let batch: mx.Array[] = [];
  let batchBytes = 0;
  const flush = () => {
    if (batch.length === 0) return;
    mx.eval(batch);
    done += batchBytes;
    onProgress?.(Math.min(1, done / total));
    batch = [];
    batchBytes = 0;
  };
  for (const a of arrays) {
    batch.push(a);
    batchBytes += a.nbytes;
    if (batchBytes > 64 * 1024 * 1024) flush();
  }
  flush();
  onProgress?.(1);
}

/** Build the model from config + tensors (owned by the result from here on). */
export async function build(config: Record<string, unknown>, tensors: Map<string, mx.Array>, opts: LoadOptions): Promise<LoadedModel> {
  const modelType = typeof config.model_type === "string" ? config.model_type : undefined;
  let mod: ModelModule;
  try {
    mod = await loadModelModule(modelType);
  } catch (e) {
    mx.disposeAll(tensors);
    throw e;
  }
  try {
    const backend = loadBackend({ env: opts.env, dtype: opts.dtype, streams: opts.streams });
    // under `mlxk launch --tensor-parallel`: this rank's shard of every layer, built with its share of the heads
    const tp = opts.rank === undefined ? tensorPlanFor(config) : null;
    let parsed = parseConfig(mod.configSchema, config, modelType!, mod.configOptions);
    const w0 = mod.sanitize ? mod.sanitize(tensors, parsed) : tensors;
    if (tp) {
      tp.shard(w0);
      parsed = tp.config(parsed);
    }
    castFloats(w0, backend, mod.castPredicate);
    const store = new WeightStore(w0, QuantConfig.from(config), backend, { packLinears: opts.packLinears });
    const built = mx.scope(() => mod.createModel(parsed, store, { backend }));
    store.disposeUnused();
    // under `mlxk launch`: this rank materialises only its pipeline slice (the rest stays lazy, never read)
    const plan = tp ? tp.plan : opts.rank === undefined ? rankPlanFor(config, built) : opts.rank;
    const mine = plan ? store.entries().filter(([k]) => plan.keep(k)).map(([, a]) => a) : store.all();
    materialize(mine, opts.onProgress);
    const staged = tp ? attachTensorStage(built, tp.plan.group, attachTensorParallel(built, tp.plan.group)) : plan ? attachPipeline(built, plan) : null;
    if (plan) reportLoad(plan, mine.reduce((s, a) => s + a.nbytes, 0));
    const model = staged?.model ?? built;
    return {
      model,
      ...(staged && plan ? { follower: plan.group.rank > 0 ? { step: staged.step, group: plan.group } : undefined } : {}),
      modelType: modelType!,
      config: parsed,
      contextLength: mod.contextLength(parsed),
      backend,
      [Symbol.dispose]() {
        model[Symbol.dispose]();
        mx.disposeAll(store.all());
      },
    };
  } catch (e) {
    mx.disposeAll(tensors);
    throw e;
  }
}

/** Load an MLX / HF model directory. */
export async function loadModelDir(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new MlxkError("execution_error", `Cannot read config.json in ${dir}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const tensors = new Map<string, mx.Array>();
  try {
    for (const f of weightFiles(dir)) {
      for (const [k, a] of mx.loadSafetensors(f).weights) {
        tensors.get(k)?.dispose();
        tensors.set(k, mx.keep(a));
      }
    }
  } catch (e) {
    mx.disposeAll(tensors);
    throw e;
  }
  return build(config, tensors, opts);
}

/** Load a GGUF file's tensors as a model (see gguf.ts for the mapping). */
export async function loadGgufModel(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const { ggufToModel, kquantsPacked } = await import("./gguf.ts");
  // K-quants stay packed where the backend profile will run our CPU kernels (else widened to MLX layouts)
  const { config, tensors } = ggufToModel(path, {
    packed: kquantsPacked({ env: opts.env, dtype: opts.dtype, streams: opts.streams }),
    keepFor: (c) => {
      const plan = opts.rank === undefined ? rankPlanFor(c) : opts.rank;
      if (plan) opts = { ...opts, rank: plan };
      return plan ? plan.keep : null;
    },
  });
  return build(config, tensors, opts);
}

/**
 * Pipeline parallel over a launched ring (src/distributed/world.ts), for every architecture without touching
 * the model files: rank r owns a contiguous slice of the decoder layers and only its slice is read and
 * materialised (rank 0 also the embedding, final norm and head). Every model's `hidden()` loops over
 * `this.layers`; the layers outside the slice are made pass-throughs and the slice's edges exchange hidden states
 * with the ring neighbours — rank 0 → 1 → … → N-1 → 0 (the ring backend only talks to neighbours) — so the
 * architecture's own embedding, masks and per-layer inputs stay as they are. Rank 0 runs the engine (sampling,
 * the token loop); the others follow its control messages (protocol below) until it shuts the group down.
 *
 * Control message (int32[4], passed along the chain 0 → 1 → … → N-1): [op, L, cacheId, 0].
 *   FORWARD: then the token ids [1, L] follow the same way; every rank runs its slice.
 *   NEW / FREE: a cache (one per sequence) is created / dropped on every rank.   SHUTDOWN: followers return.
 */
import { freemem } from "node:os";
import { appendFileSync } from "node:fs";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import type { Group } from "../mlx/distributed.ts";
import type { LanguageModel, LayerCache } from "../models/base.ts";
import { waitReadable } from "../mlx/process.ts";
import { currentWorld, type LaunchInfo, launchInfo, leftSocketFd } from "./world.ts";

export interface Slice {
  start: number;
  end: number;
}

/**
 * Contiguous layer ranges proportional to `weights` (one per rank, in rank order), each at least one layer.
 * `canCut(c)` false: layers c-1 and c must stay on one rank (a KV-shared layer and its source); such a cut
 * moves to the nearest allowed one.
 */
export function splitLayers(numLayers: number, weights: readonly number[], canCut: (c: number) => boolean = () => true): Slice[] {
  const k = weights.length;
  if (numLayers < k) throw new MlxkError("InvalidArgumentError", `a model with ${numLayers} layers cannot be split over ${k} ranks`);
  if (weights.some((w) => !(w > 0))) throw new MlxkError("InvalidArgumentError", "every split weight must be positive");
  const total = weights.reduce((a, b) => a + b, 0);
  const out: Slice[] = [];
  let start = 0;
  let cum = 0;
  for (let i = 0; i < k; i++) {
    cum += weights[i]!;
    let end = i === k - 1 ? numLayers : Math.round((numLayers * cum) / total);
    end = Math.min(Math.max(end, start + 1), numLayers - (k - 1 - i));
    if (i < k - 1 && !canCut(end)) {
      const ok = (c: number) => c > start && c <= numLayers - (k - 1 - i) && canCut(c);
      let d = 1;
      while (!ok(end - d) && !ok(end + d) && d < numLayers) d++;
      if (ok(end - d)) end -= d;
      else if (ok(end + d)) end += d;
      else throw new MlxkError("InvalidArgumentError", `this model's layers cannot be split over ${k} ranks (its KV-shared layers must stay with their source)`);
    }
    out.push({ start, end });
    start = end;
  }
  return out;
}

/** `--split` as weights: "layers" (even), "memory" (free memory of each rank, gathered at load) or "2,1,…". */
export function parseSplit(spec: string, size: number): number[] | "memory" {
  if (spec === "layers" || spec === "") return Array.from({ length: size }, () => 1);
  if (spec === "memory") return "memory";
  const w = spec.split(",").map((s) => Number(s.trim()));
  if (w.length !== size || w.some((x) => !Number.isFinite(x) || x <= 0)) {
    throw new MlxkError("InvalidArgumentError", `--split must be 'layers', 'memory' or ${size} positive weights like '2,1' (got '${spec}')`);
  }
  return w;
}

/** The decoder layer a checkpoint key belongs to (`model.layers.7.mlp…` → 7), null for embedding/norm/head. */
export function layerIndex(key: string): number | null {
  const m = /(?:^|\.)layers\.(\d+)\./.exec(key);
  return m ? Number(m[1]) : null;
}

/** Followers that also need the embedding: gemma4's per-layer inputs are computed from it inside `hidden()`. */
const FOLLOWERS_EMBED: ReadonlySet<string> = new Set(["gemma4", "gemma4_text"]);
/** Layers whose forward returns [hidden, kv] instead of the hidden state. */
const TUPLE_LAYERS: ReadonlySet<string> = new Set(["gemma4", "gemma4_text"]);

export interface RankPlan {
  group: Group;
  info: LaunchInfo;
  slices: Slice[];
  slice: Slice;
  modelType: string;
  /** Whether this rank reads and materialises the checkpoint tensor `key`. */
  keep(key: string): boolean;
}

/** This rank's share of a `numLayers`-layer model (a collective: every rank calls it at the same point). */
export function planRank(group: Group, info: LaunchInfo, numLayers: number, modelType: string, canCut?: (c: number) => boolean): RankPlan {
  const parsed = parseSplit(info.split, group.size);
  let weights: number[];
  if (parsed === "memory") {
    // each rank's free MiB, gathered so that every rank computes the same split
    const mine = mx.array(Int32Array.from([Math.max(1, Math.floor(freemem() / 2 ** 20))]), { shape: [1], dtype: mx.Dtype.int32 });
    weights = [...mx.distributed.allGather(mine, group).toInt32Array()];
  } else weights = parsed;
  const slices = splitLayers(numLayers, weights, canCut);
  const slice = slices[group.rank]!;
  const top = group.rank === 0 || FOLLOWERS_EMBED.has(modelType);
  return {
    group,
    info,
    slices,
    slice,
    modelType,
    keep: (key) => {
      const i = layerIndex(key);
      return i === null ? top : i >= slice.start && i < slice.end;
    },
  };
}

/**
 * The plan for loading a model of `config` in this process, or null outside `mlxk launch` / in tensor mode.
 * Given the (still lazy) model, cuts that would separate a KV-shared layer from its source are avoided.
 */
export function rankPlanFor(config: Record<string, unknown>, model?: LanguageModel): RankPlan | null {
  const group = currentWorld();
  const info = launchInfo();
  if (!group || !info || info.mode !== "pipeline") return null;
  const n = config.num_hidden_layers ?? (config.text_config as Record<string, unknown> | undefined)?.num_hidden_layers;
  if (typeof n !== "number") throw new MlxkError("unsupported_model", "pipeline parallel needs num_hidden_layers in config.json");
  let canCut: ((c: number) => boolean) | undefined;
  if (model) {
    const src = layersOf(model).map((l, i) => l.spec?.kvSource ?? i);
    canCut = (c) => src.every((s, i) => i < c || s >= c);
  }
  return planRank(group, info, n, String(config.model_type), canCut);
}

const OP = { FORWARD: 1, NEW: 2, FREE: 3, SHUTDOWN: 4 } as const;

let leftFd: number | null | undefined;
/** Wait in the kernel until the left neighbour's next bytes arrive (MLX's own recv would spin a core meanwhile). */
function awaitLeft(): void {
  if (leftFd === undefined) leftFd = leftSocketFd();
  if (leftFd !== null) waitReadable(leftFd);
}

type Forward = (...args: unknown[]) => unknown;
interface Layer {
  forward: Forward;
  spec?: { kvSource?: number };
}

/** Where a follower's slice leaves its output until the step is evaluated. */
export interface StepState {
  pending: mx.Array | null;
  /** Tensor parallel: the step starts computing at once (its collectives come later). */
  noWait?: boolean;
}

function layersOf(model: LanguageModel): Layer[] {
  const layers = (model as unknown as { layers?: Layer[] }).layers;
  if (!Array.isArray(layers) || layers.length !== model.numLayers) {
    throw new MlxkError("unsupported_model", "this architecture has no decoder layer list that pipeline parallel can split");
  }
  return layers;
}

/**
 * Make `model` run only `plan.slice` and exchange hidden states at its edges (see the file comment).
 * Returns what the caller evaluates to finish a follower's step.
 */
function installSlice(model: LanguageModel, plan: RankPlan): StepState {
  const { group, slice } = plan;
  const tuple = TUPLE_LAYERS.has(plan.modelType);
  const layers = layersOf(model);
  if (slice.end > layers.length) throw new MlxkError("execution_error", `layer slice ${slice.start}–${slice.end} is past the model's ${layers.length} layers`);
  const state: StepState = { pending: null };
  const first = (r: unknown) => (tuple ? (r as [mx.Array, unknown])[0] : (r as mx.Array));
  const withFirst = (r: unknown, h: mx.Array) => (tuple ? [h, (r as [mx.Array, unknown])[1]] : h);
  layers.forEach((layer, i) => {
    const own = i >= slice.start && i < slice.end;
    if (!own) {
      layer.forward = (...args: unknown[]) => (tuple ? [args[0], null] : args[0]);
      return;
    }
    const src = layer.spec?.kvSource;
    if (src !== undefined && (src < slice.start || src >= slice.end)) {
      throw new MlxkError("unsupported_model", `layer ${i} reads the KV of layer ${src}, which another rank holds: choose a --split that keeps them together`);
    }
    const f = layer.forward.bind(layer);
    const isFirst = i === slice.start && group.rank > 0;
    const isLast = i === slice.end - 1;
    if (!isFirst && !isLast) return;
    layer.forward = (...args: unknown[]) => {
      if (isFirst) args[0] = mx.distributed.recvLike(args[0] as mx.Array, group.left, group);
      const r = f(...args);
      if (!isLast) return r;
      const sent = mx.distributed.send(mx.contiguous(first(r)), group.right, group);
      if (group.rank > 0) {
        state.pending = sent;
        return r;
      }
      // rank 0: its slice's output goes round the ring; the last rank's output comes back from the left.
      // Evaluated here, in order, so a step whose result the caller never reads (a prefill chunk) still
      // completes its exchange.
      mx.eval([sent]);
      awaitLeft();
      const back = mx.distributed.recvLike(first(r), group.left, group);
      mx.eval([back]);
      return withFirst(r, back);
    };
  });
  return state;
}

function header(op: number, L: number, id: number): mx.Array {
  return mx.array(Int32Array.from([op, L, id, 0]), { shape: [4], dtype: mx.Dtype.int32 });
}

/** Rank 0's model: the engine's calls become control messages to the followers, then run the local slice. */
class PipelineHead implements LanguageModel {
  readonly #inner: LanguageModel;
  readonly #group: Group;
  readonly #ids = new WeakMap<LayerCache[], number>();
  #next = 1;
  #closed = false;

  readonly #evalHidden: boolean;

  /** evalHidden: evaluate each forward at once (tensor parallel: its last all_sum must run in step with the others'). */
  constructor(inner: LanguageModel, group: Group, evalHidden = false) {
    this.#inner = inner;
    this.#group = group;
    this.#evalHidden = evalHidden;
  }

  get numLayers(): number {
    return this.#inner.numLayers;
  }

  #send(a: mx.Array): void {
    mx.scope(() => mx.eval([mx.distributed.send(a, this.#group.right, this.#group)]));
  }

  #control(op: number, L: number, id: number): void {
    if (this.#closed) throw new MlxkError("execution_error", "the distributed group is gone (a rank was lost or it was shut down)");
    mx.scope(() => this.#send(header(op, L, id)));
  }

  makeCache(): LayerCache[] {
    const id = this.#next++;
    this.#control(OP.NEW, 0, id);
    const cache = this.#inner.makeCache();
    this.#ids.set(cache, id);
    const c0 = cache[0];
    if (c0) {
      const dispose = c0[Symbol.dispose].bind(c0);
      c0[Symbol.dispose] = () => {
        dispose();
        if (!this.#closed) this.#control(OP.FREE, 0, id);
      };
    }
    return cache;
  }

  hidden(inputs: mx.Array, cache: LayerCache[]): mx.Array {
    const id = this.#ids.get(cache);
    if (id === undefined) throw new MlxkError("execution_error", "pipeline parallel: a cache that makeCache did not make");
    const L = inputs.shape[1]!;
    try {
      this.#control(OP.FORWARD, L, id);
      mx.scope(() => this.#send(mx.contiguous(inputs.astype(mx.Dtype.int32))));
      const h = this.#inner.hidden(inputs, cache);
      if (this.#evalHidden) mx.eval([h]);
      return h;
    } catch (e) {
      // MLX's ring fails the pending exchange when a neighbour is gone: this request ends with that error, and
      // the group is unusable from here on (launch is stopping every rank)
      this.#closed = true;
      // ... and this rank leaves soon after (the answer carrying the error goes out first), so a server's
      // /health fails and launch stops the group instead of serving a group that cannot compute
      setTimeout(() => process.exit(1), 1000).unref();
      const msg = e instanceof Error ? e.message : String(e);
      throw new MlxkError("execution_error", `the distributed group lost a rank: ${msg}`);
    }
  }

  logits(h: mx.Array): mx.Array {
    return this.#inner.logits(h);
  }

  [Symbol.dispose](): void {
    if (!this.#closed) {
      try {
        this.#control(OP.SHUTDOWN, 0, 0);
      } catch {
        // a follower already gone: launch tears the group down anyway
      }
      this.#closed = true;
    }
    this.#inner[Symbol.dispose]();
  }
}

/** Make a loaded model this rank's pipeline stage: rank 0 gets the engine-facing head, followers their step state. */
export function attachPipeline(model: LanguageModel, plan: RankPlan): { model: LanguageModel; step: StepState } {
  const step = installSlice(model, plan);
  return { model: plan.group.rank === 0 ? new PipelineHead(model, plan.group) : model, step };
}

/** The same for a tensor-parallel model whose collectives are already in place (tensor.ts). */
export function attachTensorStage(model: LanguageModel, group: Group, step: StepState): { model: LanguageModel; step: StepState } {
  return { model: group.rank === 0 ? new PipelineHead(model, group, true) : model, step };
}

/** Append this rank's slice and resident bytes to the launch report file (JSON lines), when asked for. */
export function reportLoad(plan: RankPlan, weightBytes: number): void {
  if (!plan.info.report) return;
  const line = { rank: plan.group.rank, size: plan.group.size, pid: process.pid, start: plan.slice.start, end: plan.slice.end, weightBytes, activeBytes: mx.memory.active() };
  appendFileSync(plan.info.report, `${JSON.stringify(line)}\n`);
}

/** Receive a control message (and pass it on down the chain); returns its [op, L, cacheId]. */
function recvForward(group: Group, shape: number[]): Int32Array {
  return mx.scope(() => {
    awaitLeft();
    const got = mx.distributed.recv(shape, mx.Dtype.int32, group.left, group);
    mx.eval([got]);
    if (group.rank < group.size - 1) mx.eval([mx.distributed.send(got, group.right, group)]);
    return got.toInt32Array();
  });
}

/** A follower's life: run rank 0's requests on this slice until it shuts the group down. */
export function follow(model: LanguageModel, step: StepState, group: Group): void {
  const caches = new Map<number, LayerCache[]>();
  const drop = (id: number) => {
    for (const c of caches.get(id) ?? []) c[Symbol.dispose]();
    caches.delete(id);
  };
  try {
    for (;;) {
      const [op, L, id] = recvForward(group, [4]) as unknown as [number, number, number];
      if (op === OP.SHUTDOWN) return;
      if (op === OP.NEW) caches.set(id, model.makeCache());
      else if (op === OP.FREE) drop(id);
      else if (op === OP.FORWARD) {
        const cache = caches.get(id);
        if (!cache) throw new MlxkError("execution_error", `pipeline: rank 0 ran cache ${id}, which this rank does not have`);
        const ids = recvForward(group, [1, L]);
        // pipeline: the left neighbour's hidden state comes once it has computed; wait for it before building the
        // step (a model may read values back while building it, e.g. MoE routing). Tensor parallel: no wait.
        if (!step.noWait) awaitLeft();
        mx.scope(() => {
          step.pending = null;
          model.hidden(mx.array(ids, { shape: [1, L], dtype: mx.Dtype.int32 }), cache);
          if (!step.pending) throw new MlxkError("execution_error", "pipeline: this rank's slice produced nothing to send");
          mx.eval([step.pending, ...cache.flatMap((c) => c.state())]);
          step.pending = null;
        });
      } else throw new MlxkError("execution_error", `pipeline: unknown control message ${op}`);
    }
  } finally {
    for (const id of [...caches.keys()]) drop(id);
  }
}

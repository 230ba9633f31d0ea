/**
 * Owns the resident models. Requests lease one through a bounded FIFO (one generation at a time: MLX is
 * single-threaded); a request for a model that is not resident loads it inside its turn, after evicting
 * least-recently-used idle models only as far as the memory budget and `maxModels` need, so a load never
 * races a running generation and never starts when it cannot fit (507 naming the sizes).
 *
 * The served-model policy lives here too (issue #12): a pinned model (`--model`) answers requests that omit
 * `model` or name one of its aliases; other names switch only when switching is allowed.
 */
import type { ModelRef } from "../cache/ref.ts";
import type { Engine } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import { SerialQueue } from "./queue.ts";

/**
 * A model the server can load: its one reference (src/cache/ref.ts), resolved once, plus what the
 * Ollama surface describes without loading it.
 */
export type ModelTarget = ModelRef & {
  /** e.g. "4bit" from config.json `quantization.bits` when known. */
  quantization?: string | null;
  /** What the chat template supports, when it could be read without loading: rendering `tools`, a thinking switch. */
  template?: { tools: boolean; thinking: boolean } | null;
};

export type EngineLoader = (target: ModelTarget) => Promise<Engine>;

/** How a lease ended: an engine failure counts towards the poisoned-backend rule; keepAliveMs overrides the TTL. */
export interface ReleaseOptions {
  /** The engine failed this request (not a client error). */
  error?: unknown;
  /** Idle time before this model is unloaded: 0 = right away, null = never, undefined = the server default. */
  keepAliveMs?: number | null;
}

export interface Lease {
  engine: Engine;
  target: ModelTarget;
  /** The name to report to the client: the alias it asked for, else the served name. */
  name: string;
  /** Give the model back to the queue; idempotent. */
  release: (opts?: ReleaseOptions) => void;
}

/** A model resolved for a request, before its turn: `name` is what responses call it. */
export interface Resolved {
  target: ModelTarget;
  name: string;
}

export interface ModelManagerOptions {
  /** Client model ids → target (cache/workspace names; paths only when the server allows them). */
  resolve: (spec: string) => ModelTarget;
  load: EngineLoader;
  /** Free memory in bytes (os.freemem by default; tests inject). */
  freeMemory: () => number;
  /** Requests allowed to wait behind the running one. @default 32 */
  maxQueue?: number;
  /** Bytes needed per weight byte (KV cache, activations). @default 1.2 */
  memoryFactor?: number;
  /** Models resident at once; undefined = as many as the memory budget holds. */
  maxModels?: number;
  /** Idle time before a non-pinned model is unloaded; null = never. @default null */
  keepAliveMs?: number | null;
  /** The model this server serves (`--model`), already resolved; it never idles out. */
  pinned?: ModelTarget;
  /** Extra names of the pinned model (`--served-model-name`); the first is the name reported. */
  aliases?: string[];
  /** Let clients load models other than the pinned one. Always true without a pinned model. */
  allowSwitch?: boolean;
  /** Consecutive engine failures (no success between) after which the backend counts as poisoned. @default 3 */
  poisonAfter?: number;
  /** Called once when the backend is poisoned (the worker exits so the supervisor restarts it). */
  onPoisoned?: (message: string) => void;
  now?: () => number;
}

interface Resident {
  target: ModelTarget;
  engine: Engine;
  /** Use order (higher = more recent). */
  lastUsed: number;
  /** Epoch ms after which an idle model is unloaded; null = never. */
  expiresAt: number | null;
  timer: ReturnType<typeof setTimeout> | null;
}

export type ModelState = "loading" | "ready" | "failed";

export interface ManagerStatus {
  /** The pinned model's state, or null without a pinned model. */
  pinned: { id: string; state: ModelState | "unloaded"; error?: string } | null;
  loading: string | null;
  resident: { id: string; expiresAt: number | null; weightBytes: number }[];
  /** Last load failure per model id (cleared by a successful load). */
  failed: Record<string, string>;
  poisoned: string | null;
}

const GB = 1024 ** 3;

export function gb(n: number): string {
  return `${(n / GB).toFixed(1)} GB`;
}

export class ModelManager {
  readonly queue: SerialQueue;
  /** Keyed by the file/dir loaded: two names of one file (`org/x-GGUF`, `org/x-GGUF:Q4_1`) share one engine. */
  private readonly residents = new Map<string, Resident>();
  private loadingId: string | null = null;
  private readonly failures = new Map<string, string>();
  private closed = false;
  private consecutiveFailures = 0;
  private poisoned: string | null = null;
  private readonly now: () => number;
  /** Orders uses for LRU (several requests can share one millisecond). */
  private useCounter = 0;

  constructor(private readonly opts: ModelManagerOptions) {
    this.queue = new SerialQueue(opts.maxQueue ?? 32);
    this.now = opts.now ?? Date.now;
  }

  /** Id of the model being loaded right now, else null. */
  get loading(): string | null {
    return this.loadingId;
  }

  /** The most recently used resident model. */
  get loaded(): ModelTarget | null {
    let best: Resident | null = null;
    for (const r of this.residents.values()) if (!best || r.lastUsed > best.lastUsed) best = r;
    return best?.target ?? null;
  }

  /** Resident models, most recently used first. */
  get resident(): ModelTarget[] {
    return [...this.residents.values()].sort((a, b) => b.lastUsed - a.lastUsed).map((r) => r.target);
  }

  /** The loaded engine of a resident model (for its info), else null. */
  residentEngine(id: string): Engine | null {
    return this.byId(id)?.engine ?? null;
  }

  private byId(id: string): Resident | undefined {
    for (const r of this.residents.values()) if (r.target.id === id) return r;
    return this.residents.get(id);
  }

  get pinned(): ModelTarget | null {
    return this.opts.pinned ?? null;
  }

  /** Names the pinned model answers to, reported name first. */
  get servedNames(): string[] {
    const p = this.opts.pinned;
    if (!p) return [];
    return [...new Set([...(this.opts.aliases ?? []), p.id])];
  }

  get switchAllowed(): boolean {
    return !this.opts.pinned || this.opts.allowSwitch === true;
  }

  status(): ManagerStatus {
    const p = this.opts.pinned;
    let pinned: ManagerStatus["pinned"] = null;
    if (p) {
      const failed = this.failures.get(p.id);
      const state = this.loadingId === p.id ? "loading" : this.residents.has(p.path) ? "ready" : failed !== undefined ? "failed" : "unloaded";
      pinned = { id: p.id, state, ...(failed !== undefined && state === "failed" ? { error: failed } : {}) };
    }
    return {
      pinned,
      loading: this.loadingId,
      resident: this.resident.map((t) => ({ id: t.id, expiresAt: this.residents.get(t.path)!.expiresAt, weightBytes: t.weightBytes })),
      failed: Object.fromEntries(this.failures),
      poisoned: this.poisoned,
    };
  }

  /**
   * The served-model policy: a request's `model` (or none) → the target and the name to report.
   * Resolve before queueing so an unknown model is a 4xx at once, not after the wait.
   */
  resolve(spec: string | null | undefined): Resolved {
    const asked = (spec ?? "").trim();
    // `name:latest` is how Ollama-speaking clients (VS Code Copilot, Open WebUI) name what /api/tags listed, on every route
    const name = asked.toLowerCase().endsWith(":latest") && !(this.opts.aliases ?? []).includes(asked) ? asked.slice(0, -":latest".length) : asked;
    const pinned = this.opts.pinned;
    if (name === "") {
      if (pinned) return { target: pinned, name: this.servedNames[0]! };
      const mru = this.loaded;
      if (mru) return { target: mru, name: mru.id };
      throw new MlxkError("validation_error", "Parameter 'model' is required: this server was started without --model and no model is loaded", {
        extra: { param: "model", code: "missing_required_parameter" },
      });
    }
    if (pinned && (name === pinned.id || (this.opts.aliases ?? []).includes(name))) return { target: pinned, name };
    if (!this.switchAllowed) {
      const names = this.servedNames.map((n) => `'${n}'`).join(", ");
      throw new MlxkError("model_not_found", `Model '${name}' is not served here: this server serves ${names}. Omit 'model', use one of those names, or start the server with --allow-switch.`, {
        extra: { param: "model", code: "model_not_found" },
      });
    }
    const resident = this.byId(name);
    if (resident) return { target: resident.target, name };
    const target = this.opts.resolve(name);
    return { target, name: target.id };
  }

  /** Wait for our turn, make the model resident, and hand it out until `release()`. */
  async lease(spec: string | null | undefined | Resolved, signal?: AbortSignal): Promise<Lease> {
    const resolved = typeof spec === "object" && spec !== null ? spec : this.resolve(spec);
    if (this.closed) throw shuttingDown();
    // a resident model that batches runs up to its --parallel requests together; anything else takes the turn alone
    const path = resolved.target.path;
    const slots = this.residents.get(path)?.engine.parallel ?? 1;
    const share = slots > 1 ? { key: path, slots, ok: () => this.residents.has(path) } : undefined;
    const releaseQueue = await this.queue.acquire(signal, share);
    let r: Resident;
    try {
      if (this.closed) throw shuttingDown();
      r = await this.ensure(resolved.target);
    } catch (e) {
      releaseQueue();
      throw e;
    }
    r.lastUsed = ++this.useCounter;
    this.clearTimer(r);
    let done = false;
    const release = (o: ReleaseOptions = {}) => {
      if (done) return;
      done = true;
      r.lastUsed = ++this.useCounter;
      this.outcome(o.error);
      this.schedule(r, o.keepAliveMs);
      releaseQueue();
    };
    // the requested target: another name of the same file keeps its own id
    return { engine: r.engine, target: resolved.target, name: resolved.name, release };
  }

  /** Load a model at startup (health says loading until it is in). */
  async preload(spec: string | ModelTarget): Promise<ModelTarget> {
    const resolved = typeof spec === "string" ? this.resolve(spec) : { target: spec, name: spec.id };
    const lease = await this.lease(resolved);
    lease.release();
    return lease.target;
  }

  /** Unload a model now (Ollama's keep_alive 0 with no prompt); waits for its turn. False when not resident. */
  async unload(id: string): Promise<boolean> {
    const release = await this.queue.acquire();
    try {
      const r = this.byId(id);
      return r ? this.drop(r.target.path) : false;
    } finally {
      release();
    }
  }

  private outcome(error: unknown): void {
    if (error === undefined) {
      this.consecutiveFailures = 0;
      return;
    }
    // Client mistakes (4xx) say nothing about the backend.
    if (error instanceof MlxkError && error.httpStatus < 500) return;
    this.consecutiveFailures++;
    const limit = this.opts.poisonAfter ?? 3;
    if (this.consecutiveFailures >= limit && this.poisoned === null) {
      const why = error instanceof Error ? error.message : String(error);
      this.poisoned = `the backend failed ${this.consecutiveFailures} requests in a row (last: ${why})`;
      this.opts.onPoisoned?.(this.poisoned);
    }
  }

  private async ensure(target: ModelTarget): Promise<Resident> {
    const hit = this.residents.get(target.path);
    if (hit) return hit;
    const need = target.weightBytes * (this.opts.memoryFactor ?? 1.2);
    const evict = this.planEviction(target, need);
    const evicted = evict.map((r) => r.target);
    for (const r of evict) this.drop(r.target.path);
    this.loadingId = target.id;
    try {
      const engine = await this.opts.load(target);
      this.failures.delete(target.id);
      const r: Resident = { target, engine, lastUsed: ++this.useCounter, expiresAt: null, timer: null };
      this.residents.set(target.path, r);
      return r;
    } catch (e) {
      const err =
        e instanceof MlxkError ? e : new MlxkError("execution_error", `Model '${target.id}' failed to load: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      this.failures.set(target.id, err.message);
      this.loadingId = null;
      await this.restore(evicted);
      throw err;
    } finally {
      this.loadingId = null;
    }
  }

  /**
   * Which idle models must go for `target` to fit: least recently used first, only as many as needed.
   * Throws 507 without touching anything when even evicting every evictable model would not make room.
   */
  private planEviction(target: ModelTarget, need: number): Resident[] {
    const pinnedPath = this.opts.pinned?.path;
    // The pinned model leaves only when clients may switch: otherwise it is what the server is for.
    const candidates = [...this.residents.values()].filter((r) => r.target.path !== pinnedPath || this.opts.allowSwitch === true).sort((a, b) => a.lastUsed - b.lastUsed);
    const free = this.opts.freeMemory();
    const max = this.opts.maxModels;
    const plan: Resident[] = [];
    let available = free;
    let count = this.residents.size;
    for (const r of candidates) {
      if (available >= need && (max === undefined || count < max)) break;
      plan.push(r);
      available += r.target.weightBytes;
      count--;
    }
    if (max !== undefined && count >= max) {
      throw new MlxkError("insufficient_memory", `Cannot load '${target.id}': ${max} model(s) are resident (--max-models ${max}) and none of them may be unloaded.`, {
        extra: { code: "insufficient_memory" },
      });
    }
    if (need > available) {
      const resident = [...this.residents.values()];
      const kept = resident.filter((r) => !plan.includes(r));
      const keptNote = kept.length > 0 ? `; kept resident: ${kept.map((r) => `${r.target.id} (${gb(r.target.weightBytes)})`).join(", ")}` : "";
      const idle = plan.length > 0 ? ` including ${gb(available - free)} from unloading idle models` : "";
      throw new MlxkError(
        "insufficient_memory",
        `Not enough memory to load '${target.id}': needs about ${gb(need)} (${gb(target.weightBytes)} of weights), ${gb(available)} available${idle}${keptNote}. Use a smaller (more quantized) model or free memory.`,
        { extra: { code: "insufficient_memory", needed_bytes: Math.round(need), available_bytes: Math.round(available) } },
      );
    }
    return plan;
  }

  /** A failed switch leaves the previous models as they were: reload what was evicted for it. */
  private async restore(evicted: ModelTarget[]): Promise<void> {
    for (const t of evicted) {
      try {
        const engine = await this.opts.load(t);
        this.residents.set(t.path, { target: t, engine, lastUsed: ++this.useCounter, expiresAt: null, timer: null });
        this.schedule(this.residents.get(t.path)!, undefined);
      } catch (e) {
        this.failures.set(t.id, e instanceof Error ? e.message : String(e));
      }
    }
  }

  private clearTimer(r: Resident): void {
    if (r.timer) clearTimeout(r.timer);
    r.timer = null;
    r.expiresAt = null;
  }

  private schedule(r: Resident, keepAliveMs: number | null | undefined): void {
    this.clearTimer(r);
    const pinned = r.target.id === this.opts.pinned?.id;
    const ttl = keepAliveMs === undefined ? (pinned ? null : (this.opts.keepAliveMs ?? null)) : keepAliveMs;
    if (ttl === null || this.closed) return;
    r.expiresAt = this.now() + ttl;
    r.timer = setTimeout(() => void this.expire(r), Math.max(0, ttl));
    r.timer.unref?.();
  }

  /** The idle timer fired: unload inside the queue, unless the model was used again meanwhile. */
  private async expire(r: Resident): Promise<void> {
    let release: () => void;
    try {
      release = await this.queue.acquire();
    } catch {
      return;
    }
    try {
      if (this.residents.get(r.target.path) === r && r.expiresAt !== null && r.expiresAt <= this.now()) this.drop(r.target.path);
    } finally {
      release();
    }
  }

  private drop(path: string): boolean {
    const r = this.residents.get(path);
    if (!r) return false;
    this.residents.delete(path);
    if (r.timer) clearTimeout(r.timer);
    r.engine[Symbol.dispose]();
    return true;
  }

  /** Refuse new work, fail the waiting requests and free idle models (running work keeps its lease). */
  close(): void {
    this.closed = true;
    this.queue.rejectAll(shuttingDown());
    if (!this.queue.active) this.dispose();
  }

  /** Free every model after the running request finished (shutdown path). */
  dispose(): void {
    for (const path of [...this.residents.keys()]) this.drop(path);
  }
}

function shuttingDown(): MlxkError {
  return new MlxkError("server_shutdown", "Server is shutting down");
}

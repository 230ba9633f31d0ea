/**
 * Owns the one resident model. Requests lease it through a bounded FIFO (one generation at a time: MLX is
 * single-threaded), and a request for another model switches it inside its turn, after a memory check,
 * so a switch never races a running generation.
 */
import type { ModelRef } from "../cache/ref.ts";
import type { Engine } from "../engine/types.ts";
import { MlxkError } from "../errors.ts";
import { SerialQueue } from "./queue.ts";

/** A model the server can load: its one reference (src/cache/ref.ts), resolved once. */
export type ModelTarget = ModelRef;

export type EngineLoader = (target: ModelTarget) => Promise<Engine>;

export interface Lease {
  engine: Engine;
  target: ModelTarget;
  /** Give the model back to the queue; idempotent. */
  release: () => void;
}

export interface ModelManagerOptions {
  resolve: (spec: string) => ModelTarget;
  load: EngineLoader;
  /** Free memory in bytes (os.freemem by default; tests inject). */
  freeMemory: () => number;
  /** Requests allowed to wait behind the running one. @default 32 */
  maxQueue?: number;
  /** Bytes needed per weight byte (KV cache, activations). @default 1.2 */
  memoryFactor?: number;
}

const GB = 1024 ** 3;

function gb(n: number): string {
  return `${(n / GB).toFixed(1)} GB`;
}

export class ModelManager {
  readonly queue: SerialQueue;
  private current: { target: ModelTarget; engine: Engine } | null = null;
  private loadingId: string | null = null;
  private closed = false;

  constructor(private readonly opts: ModelManagerOptions) {
    this.queue = new SerialQueue(opts.maxQueue ?? 32);
  }

  /** Id of the model being loaded right now (health answers 503 meanwhile), else null. */
  get loading(): string | null {
    return this.loadingId;
  }

  get loaded(): ModelTarget | null {
    return this.current?.target ?? null;
  }

  /** Resolve before queueing so an unknown model is a 404 at once, not after the wait; the resident model by its id is not resolved again. */
  resolve(spec: string): ModelTarget {
    const cur = this.current?.target;
    if (cur && spec === cur.id) return cur;
    return this.opts.resolve(spec);
  }

  /** Wait for our turn, make `spec` the resident model, and hand it out until `release()`. */
  async lease(spec: string | ModelTarget, signal?: AbortSignal): Promise<Lease> {
    const target = typeof spec === "string" ? this.resolve(spec) : spec;
    if (this.closed) throw shuttingDown();
    const release = await this.queue.acquire(signal);
    try {
      if (this.closed) throw shuttingDown();
      const engine = await this.ensure(target);
      // the requested target: two ids naming the same file (`org/x-GGUF` and `org/x-GGUF:Q4_1`) share the model, each keeps its name
      return { engine, target, release };
    } catch (e) {
      release();
      throw e;
    }
  }

  /** Load a model at startup (health is 503 until it is in). */
  async preload(spec: string): Promise<ModelTarget> {
    const lease = await this.lease(spec);
    lease.release();
    return lease.target;
  }

  private async ensure(target: ModelTarget): Promise<Engine> {
    if (this.current && this.current.target.path === target.path) return this.current.engine;
    // Memory the switch will free counts as available: the old model goes before the new one loads.
    const freed = this.current?.target.weightBytes ?? 0;
    const need = target.weightBytes * (this.opts.memoryFactor ?? 1.2);
    const available = this.opts.freeMemory() + freed;
    if (need > available) {
      throw new MlxkError(
        "insufficient_memory",
        `Not enough memory to load '${target.id}': needs about ${gb(need)}, ${gb(available)} available. Use a smaller (more quantized) model or free memory.`,
      );
    }
    this.unload();
    this.loadingId = target.id;
    try {
      const engine = await this.opts.load(target);
      this.current = { target, engine };
      return engine;
    } catch (e) {
      if (e instanceof MlxkError) throw e;
      throw new MlxkError("execution_error", `Model '${target.id}' failed to load: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    } finally {
      this.loadingId = null;
    }
  }

  private unload(): void {
    const cur = this.current;
    this.current = null;
    cur?.engine[Symbol.dispose]();
  }

  /** Refuse new work, fail the waiting requests and free the model (running work keeps its lease). */
  close(): void {
    this.closed = true;
    this.queue.rejectAll(shuttingDown());
    if (!this.queue.active) this.unload();
  }

  /** Free the model after the running request finished (shutdown path). */
  dispose(): void {
    this.unload();
  }
}

function shuttingDown(): MlxkError {
  return new MlxkError("server_shutdown", "Server is shutting down");
}

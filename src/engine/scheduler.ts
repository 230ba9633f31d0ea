/**
 * Continuous batching: one loop owns the model's decode batch. Requests join between decode steps (their
 * prompt prefilled chunk by chunk, one chunk between two steps, so running streams keep flowing; one that
 * lacks only its last prompt token joins at once and the step takes that token) and leave
 * when done, cancelled, failed or disconnected; each row's consumer (the engine's per-request pipeline:
 * sampler, stops, detokenizer, parsers, constraint) reads its tokens through a RowStream. A step runs once
 * every lockstep row's consumer has taken its previous token (a constraint's mask for the next token depends
 * on it); other rows may leave a token untaken (AHEAD). Consumers run at engine speed (the server pushes into
 * the response stream), so nobody waits on a slow client. KV memory is reserved before admission: a request
 * that does not fit is refused with 503.
 *
 * The model side is a Batcher (src/engine/batch.ts over MLX; tests script a fake one).
 */
import { MlxkError } from "../errors.ts";
import type { LoopStats } from "./generate.ts";

export interface RowToken {
  token: number;
  logits?: Float32Array;
}

/** What the scheduler needs of the model. `J` is a newcomer's model-side state (its prompt, cache, policy). */
export interface Batcher<J> {
  /** One prefill chunk of a newcomer; its first token once the whole prompt is in, else null. Throws: that row fails. */
  prefill(j: J): RowToken | null;
  /** Between steps: keep running row i iff keep[i], then append the prefilled newcomers `add` (in order). */
  rebuild(keep: readonly boolean[], add: readonly J[]): void;
  /** One decode step: last[i] is row i's previous token; each row's next token or its own error. */
  step(last: readonly number[]): (RowToken | Error)[];
  /**
   * The same step in two halves, so the consumers run while the model computes: launch queues the work and
   * returns at once, collect waits for it. Optional (step is used without them).
   */
  launch?(last: readonly number[]): unknown;
  collect?(pending: unknown): (RowToken | Error)[];
  /**
   * Queue the step after `pending` with its greedy tokens as input, before they are read back (the solo loop's
   * pipelining: the next graph is built while the device computes). Only for rows that are all greedy.
   */
  launchNext?(pending: unknown): unknown;
  /**
   * A newcomer whose cache already holds all of its prompt but the last token (an exact prompt-cache hit): that
   * token, which the batch's next step takes as the row's input, so the row's first token comes from that step
   * (one row computed as its one-token prefill chunk alone) instead of a batch-of-one pass of its own; null =
   * prefill it. Optional.
   */
  feed?(j: J): number | null;
  /** Prompt tokens the next prefill chunk of j processes (for the per-round prefill budget); absent = a whole round. */
  prefillTokens?(j: J): number;
  /** Running row i leaves normally: its KV for whoever keeps it (the prompt cache); called before rebuild. */
  leave?(i: number, j: J): void;
  /** A newcomer that never joined the batch (finished at its first token, cancelled, failed): free or keep it. */
  discard(j: J, finished: boolean): void;
}

export interface SchedulerOptions {
  /** Rows decoded at once. */
  parallel: number;
  /** Bytes KV reservations may total (admit); undefined = unbounded. */
  kvBudgetBytes?: number;
  /** Prompt tokens prefilled per round between two decode steps. @default 512 */
  prefillTokens?: number;
  /** Free memory now (os.freemem); admission also needs this much beyond the request's KV. */
  freeMemory?: () => number;
}

export interface JoinOptions {
  maxTokens: number;
  /**
   * The row's next step needs its consumer to have taken the previous token (a constraint's mask follows the
   * grammar). Other rows may run one token ahead of their consumer (buffered), as the solo loop pipelines.
   */
  lockstep?: boolean;
  signal?: AbortSignal;
  stats?: LoopStats;
}

type State = "waiting" | "prefill" | "running" | "done";

/**
 * Tokens a row that is not lockstep may hold untaken by its consumer when a step is launched for it. A
 * consumer that asks for its next token only after the scheduler has read the following step back (its
 * promise chain through the detokenizer, output chain and SSE frame ran late) would otherwise take that step
 * out of the pipeline, the device idle while the next graph is built: a third of the steps at 8 clients before
 * this slack (and the engine's consumer no longer yielding a turn after each token). Such a row computes at most
 * one token more after its consumer stops.
 */
const AHEAD = 1;

class Row<J> {
  state: State = "waiting";
  generated = 0;
  last = -1;
  readonly queue: RowToken[] = [];
  waiter: { resolve: (r: IteratorResult<RowToken, undefined>) => void; reject: (e: unknown) => void } | null = null;
  error: unknown = null;
  /** The consumer is gone (it returned, or its signal aborted). */
  closed = false;
  readonly t0 = performance.now();
  tDecode = 0;
  constructor(
    readonly j: J,
    readonly o: JoinOptions,
  ) {}

  /** Waiting for its next token with nothing buffered: a step may run for it. */
  get ready(): boolean {
    return this.closed || (this.waiter !== null && this.queue.length === 0);
  }

  /** A step may run for this row now: lockstep rows once their consumer asks, others with at most AHEAD tokens untaken. */
  get canStep(): boolean {
    return !this.closed && this.state === "running" && (this.o.lockstep ? this.ready : this.queue.length <= AHEAD);
  }

  /** The step after the one in flight may be queued for it (greedy, at most AHEAD tokens untaken, tokens left). */
  get canStepAhead(): boolean {
    return !this.closed && this.state === "running" && !this.o.lockstep && this.queue.length <= AHEAD && this.generated + 2 < this.o.maxTokens;
  }

  deliver(t: RowToken): void {
    this.generated++;
    this.last = t.token;
    const s = this.o.stats;
    if (s) {
      if (this.generated === 1) {
        s.prefillMs = performance.now() - this.t0;
        this.tDecode = performance.now();
      }
      s.generated = this.generated;
      s.decodeMs = performance.now() - this.tDecode;
    }
    if (this.closed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: t, done: false });
    } else this.queue.push(t);
  }

  /** The row ends (normally or with an error): a waiting consumer hears it now. */
  finish(error?: unknown): void {
    this.state = "done";
    if (error !== undefined) this.error = error;
    const w = this.waiter;
    this.waiter = null;
    if (!w) return;
    if (this.error !== null && !this.closed) w.reject(this.error);
    else w.resolve({ value: undefined, done: true });
  }
}

/** A row's tokens, for its consumer. `return()` leaves the batch (cancel, stop string, disconnect). */
export interface RowStream extends AsyncIterator<RowToken, undefined> {
  next(): Promise<IteratorResult<RowToken, undefined>>;
  return(): Promise<IteratorResult<RowToken, undefined>>;
}

export class Scheduler<J> implements Disposable {
  readonly #rows: Row<J>[] = [];
  /** Running rows in batch order. */
  #running: Row<J>[] = [];
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #reserved = 0;
  #disposed = false;
  #peak = 0;
  /** A pipelined step queued on the device, not read back yet. */
  #inflight: { rows: Row<J>[]; pending: unknown } | null = null;

  constructor(
    private readonly batcher: Batcher<J>,
    readonly opts: SchedulerOptions,
  ) {}

  get parallel(): number {
    return this.opts.parallel;
  }

  /** Rows in the scheduler now (running, prefilling, waiting). */
  get active(): number {
    return this.#rows.length;
  }

  /** The most rows a step has decoded together so far. */
  get peak(): number {
    return this.#peak;
  }

  /** Rows in the decode batch now. */
  get batchSize(): number {
    return this.#running.length;
  }

  /** Resolves once the loop has nothing left to do (every row left the batch). */
  idle(): Promise<void> {
    return this.#loop ?? Promise.resolve();
  }

  get reservedBytes(): number {
    return this.#reserved;
  }

  /**
   * Reserve `bytes` of KV for a request before it starts (its whole prompt + answer); throws queue_full
   * (503 with retry-after) when the budget or the free memory cannot hold it. Returns the release.
   */
  admit(bytes: number): () => void {
    const budget = this.opts.kvBudgetBytes;
    const free = this.opts.freeMemory?.();
    if ((budget !== undefined && this.#reserved + bytes > budget && this.#reserved > 0) || (free !== undefined && bytes > free)) {
      const mb = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
      throw new MlxkError(
        "queue_full",
        `Server busy: this request needs about ${mb(bytes)} of KV cache and ${mb(Math.max(0, (budget ?? Infinity) - this.#reserved))} is left for running requests (free memory ${free === undefined ? "unknown" : mb(free)}). Retry shortly, or ask for fewer tokens.`,
        { retryable: true, extra: { code: "kv_cache_full" } },
      );
    }
    this.#reserved += bytes;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#reserved -= bytes;
    };
  }

  /** Add a request; its tokens come from the returned stream. */
  join(j: J, o: JoinOptions): RowStream {
    if (this.#disposed) throw new MlxkError("server_shutdown", "The model is being unloaded");
    const row = new Row(j, o);
    this.#rows.push(row);
    const onAbort = () => this.#close(row);
    o.signal?.addEventListener("abort", onAbort, { once: true });
    if (o.signal?.aborted) this.#close(row);
    this.#kick();
    const stream: RowStream = {
      next: () => {
        const t = row.queue.shift();
        if (t) return Promise.resolve({ value: t, done: false });
        if (row.state === "done" || row.closed) {
          if (row.error !== null && !row.closed) return Promise.reject(row.error);
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          row.waiter = { resolve, reject };
          this.#kick();
        });
      },
      return: () => {
        o.signal?.removeEventListener("abort", onAbort);
        this.#close(row);
        return Promise.resolve({ value: undefined, done: true });
      },
    };
    return stream;
  }

  #close(row: Row<J>): void {
    if (row.closed) return;
    row.closed = true;
    const w = row.waiter;
    row.waiter = null;
    w?.resolve({ value: undefined, done: true });
    this.#kick();
  }

  #kick(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
    if (!this.#loop && this.#rows.length > 0) {
      this.#loop = this.#run().finally(() => {
        this.#loop = null;
        if (this.#rows.length > 0 && !this.#disposed) this.#kick();
      });
    }
  }

  async #run(): Promise<void> {
    // rows joining in the same turn start together
    await Promise.resolve();
    while (this.#rows.length > 0 && !this.#disposed) {
      // a step in flight while the membership stays: queue the next one before reading it (pipelined)
      if (this.#inflight && !this.#membershipDue() && this.batcher.launchNext && this.#inflight.rows.every((r) => r.canStepAhead)) {
        await this.#pipelined();
        continue;
      }
      if (this.#inflight) {
        await this.#land(this.#inflight, null);
        continue;
      }
      const progressed = this.#iterate();
      if (this.#running.length > 0 && this.#running.every((r) => r.canStep)) await this.#step();
      else if (progressed) await new Promise<void>((r) => setImmediate(r));
      else await new Promise<void>((r) => (this.#wake = r));
    }
  }

  /** One round: membership changes, one prefill chunk, one decode step. False when nothing could run. */
  #iterate(): boolean {
    let progressed = false;
    // newcomers that were closed before joining the batch
    for (const r of [...this.#rows]) {
      if ((r.state === "waiting" || r.state === "prefill") && r.closed) {
        this.#drop(r);
        this.batcher.discard(r.j, false);
        r.finish();
        progressed = true;
      }
    }
    const joined: Row<J>[] = [];
    // prefill chunks for newcomers in arrival order while the batch has room: about one chunk's worth of tokens
    // per round (several short prompts join together, a long one takes rounds), so running rows keep stepping
    let budget = this.opts.prefillTokens ?? 512;
    let room = this.opts.parallel - this.#running.filter((r) => !r.closed && r.state === "running").length;
    for (const next of this.#rows.filter((r) => r.state === "prefill" || r.state === "waiting")) {
      if (budget <= 0 || room <= 0) break;
      const feed = this.batcher.feed?.(next.j) ?? null;
      budget -= feed !== null ? 1 : (this.batcher.prefillTokens?.(next.j) ?? budget);
      room--;
      next.state = "prefill";
      progressed = true;
      if (feed !== null) {
        // joins now; its first token comes from the next step
        next.last = feed;
        joined.push(next);
        continue;
      }
      let first: RowToken | null = null;
      try {
        first = this.batcher.prefill(next.j);
      } catch (e) {
        this.#drop(next);
        this.batcher.discard(next.j, false);
        next.finish(e);
        continue;
      }
      if (!first) break; // a long prompt: its next chunk in the next round
      next.deliver(first);
      if (next.generated >= next.o.maxTokens || next.closed) {
        this.#drop(next);
        this.batcher.discard(next.j, !next.closed);
        next.finish();
      } else joined.push(next);
    }
    // leavers: finished or closed running rows
    const keep = this.#running.map((r) => !r.closed && r.state === "running");
    if (joined.length > 0 || keep.some((k) => !k)) {
      this.#running.forEach((r, i) => {
        if (keep[i]) return;
        if (r.error === null) this.batcher.leave?.(i, r.j);
        this.#drop(r);
        r.finish();
      });
      try {
        this.batcher.rebuild(keep, joined.map((r) => r.j));
      } catch (e) {
        this.#failAll(e, joined);
        return true;
      }
      for (const r of joined) r.state = "running";
      this.#running = [...this.#running.filter((_, i) => keep[i]), ...joined];
      progressed = true;
    }
    return progressed;
  }

  /** Rows must join or leave before the next step (newcomers waiting with room, running rows that ended). */
  #membershipDue(): boolean {
    if (this.#running.some((r) => r.closed || r.state !== "running")) return true;
    return this.#running.length < this.opts.parallel && this.#rows.some((r) => r.state === "waiting" || r.state === "prefill");
  }

  /** One decode step for the running rows; with launch/collect the consumers run while it computes. */
  async #step(): Promise<void> {
    const rows = [...this.#running];
    const last = rows.map((r) => r.last);
    this.#peak = Math.max(this.#peak, rows.length);
    let out: (RowToken | Error)[];
    try {
      if (this.batcher.launch && this.batcher.collect) {
        const pending = this.batcher.launch(last);
        // greedy rows: keep it in flight, the next round queues the step after it before reading it
        if (this.batcher.launchNext && rows.every((r) => !r.o.lockstep)) {
          this.#inflight = { rows, pending };
          return;
        }
        await new Promise<void>((r) => setImmediate(r));
        out = this.batcher.collect(pending);
      } else {
        out = this.batcher.step(last);
        await new Promise<void>((r) => setImmediate(r));
      }
    } catch (e) {
      this.#failAll(e, []);
      return;
    }
    this.#deliver(rows, out);
  }

  /** Queue the step after the one in flight, then read the one in flight while the device computes. */
  async #pipelined(): Promise<void> {
    const cur = this.#inflight!;
    let next: unknown;
    try {
      next = this.batcher.launchNext!(cur.pending);
    } catch (e) {
      this.#inflight = null;
      this.#failAll(e, []);
      return;
    }
    await this.#land(cur, { rows: cur.rows, pending: next });
  }

  /** Read the step in flight and hand its tokens out; `then` becomes the step in flight. */
  async #land(cur: { rows: Row<J>[]; pending: unknown }, then: { rows: Row<J>[]; pending: unknown } | null): Promise<void> {
    this.#inflight = then;
    await new Promise<void>((r) => setImmediate(r));
    let out: (RowToken | Error)[];
    try {
      out = this.batcher.collect!(cur.pending);
    } catch (e) {
      if (then) {
        try {
          this.batcher.collect!(then.pending);
        } catch {
          // the batch failed already
        }
      }
      this.#inflight = null;
      this.#failAll(e, []);
      return;
    }
    this.#peak = Math.max(this.#peak, cur.rows.length);
    this.#deliver(cur.rows, out);
  }

  #deliver(rows: Row<J>[], out: (RowToken | Error)[]): void {
    if (this.#disposed) return;
    rows.forEach((r, i) => {
      // a step queued ahead may come back for a row that ended meanwhile
      if (r.state !== "running") return;
      const t = out[i]!;
      if (t instanceof Error) {
        r.error = t;
        r.state = "done";
        // leaves at the next round (rebuild), told now
        const w = r.waiter;
        r.waiter = null;
        w?.reject(t);
        return;
      }
      r.deliver(t);
      if (r.generated >= r.o.maxTokens) r.state = "done";
    });
    // rows that ended leave at the next round; their consumers hear it once they drained the queue
    for (const r of rows) if (r.state === "done") r.finish();
  }

  /** A failure of the whole batch (the model step): every running row and the joiners get it. */
  #failAll(e: unknown, joined: Row<J>[]): void {
    for (const r of [...this.#running, ...joined]) {
      this.#drop(r);
      r.finish(e);
    }
    this.#running = [];
    try {
      this.batcher.rebuild([], []);
    } catch {
      // the batch is gone either way
    }
  }

  #drop(r: Row<J>): void {
    const i = this.#rows.indexOf(r);
    if (i >= 0) this.#rows.splice(i, 1);
  }

  [Symbol.dispose](): void {
    this.#disposed = true;
    for (const r of this.#rows) r.finish(new MlxkError("server_shutdown", "The model was unloaded"));
    this.#rows.length = 0;
    this.#running = [];
    this.#wake?.();
  }
}

/**
 * A bounded FIFO of work on the model. By default a turn is exclusive (MLX is single-threaded: loads, unloads,
 * one-at-a-time generation); a turn that names a share key (a resident model that batches) runs beside other
 * turns of the same key, up to its slots (the engine's --parallel), strictly in arrival order. `acquire`
 * resolves with a release function once it is the caller's turn; waiting callers beyond the bound get
 * `queue_full` (503 + retry-after), and a caller whose signal aborts while waiting leaves the line.
 */
import { MlxkError } from "../errors.ts";

/** Turns of one key may run together, up to `slots`, while `ok()` holds (the model is still resident). */
export interface Share {
  key: string;
  slots: number;
  ok: () => boolean;
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  share?: Share;
}

export class SerialQueue {
  private holders = 0;
  /** The key the current holders share; null while the turn is exclusive or nobody holds. */
  private sharedKey: string | null = null;
  private readonly waiting: Waiter[] = [];

  /** @param maxWaiting requests allowed to wait behind the running one. */
  constructor(readonly maxWaiting: number) {}

  get pending(): number {
    return this.waiting.length;
  }

  get active(): boolean {
    return this.holders > 0;
  }

  /** Turns running now. */
  get running(): number {
    return this.holders;
  }

  /** Take the turn if `share` (or an exclusive turn) can run now. */
  private tryGrant(share: Share | undefined): boolean {
    if (this.holders === 0) {
      this.sharedKey = share && share.slots > 1 && share.ok() ? share.key : null;
      this.holders = 1;
      return true;
    }
    if (share && this.sharedKey === share.key && this.holders < share.slots && share.ok()) {
      this.holders++;
      return true;
    }
    return false;
  }

  acquire(signal?: AbortSignal, share?: Share): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(abortError());
    if (this.waiting.length === 0 && this.tryGrant(share)) return Promise.resolve(this.releaser());
    if (this.waiting.length >= this.maxWaiting) {
      return Promise.reject(
        new MlxkError("queue_full", `Server busy: ${this.waiting.length} requests are already waiting. Retry shortly.`, { retryable: true }),
      );
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal, share };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(abortError());
          // the head may have left: the next in line may run now
          if (i === 0) this.pump();
        };
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.waiting.push(w);
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.holders--;
      if (this.holders === 0) this.sharedKey = null;
      this.pump();
    };
  }

  /** Hand turns to the head of the line while it can run. */
  private pump(): void {
    while (this.waiting.length > 0 && this.tryGrant(this.waiting[0]!.share)) {
      const next = this.waiting.shift()!;
      if (next.onAbort) next.signal?.removeEventListener("abort", next.onAbort);
      next.resolve(this.releaser());
    }
  }

  /** Reject everyone still waiting (shutdown). */
  rejectAll(err: unknown): void {
    for (const w of this.waiting.splice(0)) {
      if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
      w.reject(err);
    }
  }
}

function abortError(): MlxkError {
  return new MlxkError("client_closed_request", "Request cancelled by the client", { extra: { code: "client_closed_request" } });
}

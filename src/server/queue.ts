/**
 * A bounded FIFO of work that must run one at a time (MLX is single-threaded and there is one model).
 * `acquire` resolves with a release function once it is the caller's turn; waiting callers beyond the bound
 * get `queue_full` (503 + retry-after), and a caller whose signal aborts while waiting leaves the line.
 */
import { MlxkError } from "../errors.ts";

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class SerialQueue {
  private busy = false;
  private readonly waiting: Waiter[] = [];

  /** @param maxWaiting requests allowed to wait behind the running one. */
  constructor(readonly maxWaiting: number) {}

  get pending(): number {
    return this.waiting.length;
  }

  get active(): boolean {
    return this.busy;
  }

  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(abortError());
    if (!this.busy) {
      this.busy = true;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.maxWaiting) {
      return Promise.reject(
        new MlxkError("queue_full", `Server busy: ${this.waiting.length} requests are already waiting. Retry shortly.`, { retryable: true }),
      );
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(abortError());
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
      const next = this.waiting.shift();
      if (!next) {
        this.busy = false;
        return;
      }
      if (next.onAbort) next.signal?.removeEventListener("abort", next.onAbort);
      next.resolve(this.releaser());
    };
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

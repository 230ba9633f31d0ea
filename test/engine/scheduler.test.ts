/**
 * The continuous-batching scheduler with a scripted model (no MLX): rows join between steps, a newcomer's
 * prefill is chunked between decode steps, rows leave when done, cancelled or disconnected, an error in one
 * row leaves the others running, a failed step fails the batch, and KV admission refuses with queue_full.
 */
import { describe, expect, test } from "bun:test";
import { MlxkError } from "../../src/errors.ts";
import { type Batcher, type RowToken, Scheduler } from "../../src/engine/scheduler.ts";

/** A scripted row: `chunks` prefill chunks, then tokens start+1, start+2, ... ; `failAt` makes step n of this row fail. */
interface Fake {
  name: string;
  chunks: number;
  start: number;
  failAt?: number;
  prefillError?: boolean;
  done: number;
}

class FakeBatcher implements Batcher<Fake> {
  rows: Fake[] = [];
  readonly log: string[] = [];
  stepFails = false;
  left: string[] = [];
  discarded: string[] = [];

  prefill(j: Fake): RowToken | null {
    if (j.prefillError) throw new Error(`prefill of ${j.name} failed`);
    this.log.push(`prefill ${j.name}`);
    if (++j.done < j.chunks) return null;
    return { token: j.start };
  }

  rebuild(keep: readonly boolean[], add: readonly Fake[]): void {
    this.rows = [...this.rows.filter((_, i) => keep[i]), ...add];
    this.log.push(`batch ${this.rows.map((r) => r.name).join(",")}`);
  }

  step(last: readonly number[]): (RowToken | Error)[] {
    if (this.stepFails) throw new Error("device lost");
    this.log.push(`step ${this.rows.map((r) => r.name).join(",")}`);
    return this.rows.map((r, i) => {
      const n = last[i]! - r.start + 1;
      return r.failAt === n ? new Error(`row ${r.name} failed`) : { token: last[i]! + 1 };
    });
  }

  leave(i: number, j: Fake): void {
    expect(this.rows[i]).toBe(j);
    this.left.push(j.name);
  }

  discard(j: Fake): void {
    this.discarded.push(j.name);
  }
}

const fake = (name: string, o: Partial<Fake> = {}): Fake => ({ name, chunks: 1, start: 100, done: 0, ...o });

async function drain(s: AsyncIterator<RowToken, undefined>, stopAfter = Infinity): Promise<number[]> {
  const out: number[] = [];
  for (;;) {
    const r = await s.next();
    if (r.done) return out;
    out.push(r.value.token);
    if (out.length >= stopAfter) {
      await s.return!();
      return out;
    }
  }
}

describe("scheduler", () => {
  test("rows decode together and each gets exactly its own tokens", async () => {
    const b = new FakeBatcher();
    const s = new Scheduler(b, { parallel: 4 });
    const [x, y] = await Promise.all([drain(s.join(fake("a", { start: 10 }), { maxTokens: 4 })), drain(s.join(fake("b", { start: 50 }), { maxTokens: 6 }))]);
    expect(x).toEqual([10, 11, 12, 13]);
    expect(y).toEqual([50, 51, 52, 53, 54, 55]);
    expect(b.log).toContain("step a,b");
    await s.idle();
    expect(b.left.sort()).toEqual(["a", "b"]);
    expect(s.active).toBe(0);
  });

  test("a newcomer's prefill is chunked between the running rows' steps", async () => {
    const b = new FakeBatcher();
    const s = new Scheduler(b, { parallel: 4 });
    const first = s.join(fake("a"), { maxTokens: 8 });
    const t0 = await first.next();
    expect(t0.value?.token).toBe(100);
    const late = drain(s.join(fake("b", { chunks: 3 }), { maxTokens: 2 }));
    const rest = await drain(first);
    expect(rest).toEqual([101, 102, 103, 104, 105, 106, 107]);
    expect(await late).toEqual([100, 101]);
    // a's steps go on while b prefills: a step between b's first and last chunk
    const chunks = b.log.flatMap((l, i) => (l === "prefill b" ? [i] : []));
    expect(chunks).toHaveLength(3);
    expect(b.log.slice(chunks[0], chunks[2]).some((l) => l === "step a")).toBe(true);
    expect(b.log).toContain("step a,b");
  });

  test("short prompts arriving together are prefilled in one round and join in one rebuild", async () => {
    const b = new (class extends FakeBatcher {
      prefillTokens(): number {
        return 100;
      }
    })();
    const s = new Scheduler(b, { parallel: 8, prefillTokens: 512 });
    const outs = await Promise.all(["a", "b", "c"].map((n) => drain(s.join(fake(n), { maxTokens: 3 }))));
    expect(outs).toEqual([[100, 101, 102], [100, 101, 102], [100, 101, 102]]);
    expect(b.log.slice(0, 4)).toEqual(["prefill a", "prefill b", "prefill c", "batch a,b,c"]);
  });

  test("a newcomer that lacks only its last prompt token joins without a prefill; the step gives its first token", async () => {
    const fed = new Set(["f"]);
    const b = new (class extends FakeBatcher {
      feed(j: Fake): number | null {
        // the fake's step answers last + 1: feeding start - 1 makes the first token start, as a prefill would
        return fed.has(j.name) ? j.start - 1 : null;
      }
    })();
    const s = new Scheduler(b, { parallel: 4 });
    const a = s.join(fake("a", { start: 10 }), { maxTokens: 5 });
    expect((await a.next()).value?.token).toBe(10);
    const [f, rest] = await Promise.all([drain(s.join(fake("f", { start: 50 }), { maxTokens: 3 })), drain(a)]);
    expect(f).toEqual([50, 51, 52]);
    expect(rest).toEqual([11, 12, 13, 14]);
    expect(b.log).not.toContain("prefill f");
    expect(b.log).toContain("step a,f");
    await s.idle();
    expect(b.left.sort()).toEqual(["a", "f"]);
  });

  test("the batch never exceeds --parallel; the rest waits its turn", async () => {
    const b = new FakeBatcher();
    const s = new Scheduler(b, { parallel: 2 });
    const outs = await Promise.all(["a", "b", "c"].map((n) => drain(s.join(fake(n), { maxTokens: 3 }))));
    expect(outs).toEqual([[100, 101, 102], [100, 101, 102], [100, 101, 102]]);
    for (const l of b.log) if (l.startsWith("batch ") || l.startsWith("step ")) expect(l.split(" ")[1]!.split(",").length).toBeLessThanOrEqual(2);
  });

  test("a row that stops early (stop string, cancel) leaves; the others continue", async () => {
    const b = new FakeBatcher();
    const s = new Scheduler(b, { parallel: 4 });
    const [x, y] = await Promise.all([drain(s.join(fake("a"), { maxTokens: 10 }), 2), drain(s.join(fake("b"), { maxTokens: 6 }))]);
    expect(x).toEqual([100, 101]);
    expect(y).toEqual([100, 101, 102, 103, 104, 105]);
    await s.idle();
    expect(b.log).toContain("batch b");
    expect(b.left).toContain("a");
  });

  test("a client that disconnects (signal) leaves, also while still waiting", async () => {
    const b = new FakeBatcher();
    const s = new Scheduler(b, { parallel: 1 });
    const gone = new AbortController();
    const running = s.join(fake("a"), { maxTokens: 5 });
    const waiting = s.join(fake("w"), { maxTokens: 5, signal: gone.signal });
    const first = await running.next();
    gone.abort();
    expect(await waiting.next()).toEqual({ value: undefined, done: true });
    expect(await drain(running)).toEqual([101, 102, 103, 104]);
    expect(first.value?.token).toBe(100);
    expect(b.log.some((l) => l.includes("w"))).toBe(false);
  });

  test("an error in one row ends that row only", async () => {
    const b = new FakeBatcher();
    const s = new Scheduler(b, { parallel: 4 });
    const caught = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => (e instanceof Error ? e.message : String(e)));
    const bad = caught(drain(s.join(fake("bad", { failAt: 2 }), { maxTokens: 8 })));
    const good = drain(s.join(fake("good"), { maxTokens: 5 }));
    const badPre = caught(drain(s.join(fake("pre", { prefillError: true }), { maxTokens: 5 })));
    expect(await bad).toBe("row bad failed");
    expect(await badPre).toBe("prefill of pre failed");
    expect(await good).toEqual([100, 101, 102, 103, 104]);
    expect(b.left).not.toContain("bad");
    expect(b.discarded).toContain("pre");
  });

  test("a failed step fails every running row, and the scheduler keeps serving", async () => {
    const b = new FakeBatcher();
    const s = new Scheduler(b, { parallel: 4 });
    const x = s.join(fake("a"), { maxTokens: 8 });
    const y = s.join(fake("b"), { maxTokens: 8 });
    await x.next();
    await y.next();
    b.stepFails = true;
    const caught = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => (e instanceof Error ? e.message : String(e)));
    expect(await Promise.all([caught(drain(x)), caught(drain(y))])).toEqual(["device lost", "device lost"]);
    b.stepFails = false;
    expect(await drain(s.join(fake("c"), { maxTokens: 2 }))).toEqual([100, 101]);
  });

  test("a row that ends at its first token never joins the batch", async () => {
    const b = new FakeBatcher();
    const s = new Scheduler(b, { parallel: 4 });
    expect(await drain(s.join(fake("one"), { maxTokens: 1 }))).toEqual([100]);
    expect(b.discarded).toEqual(["one"]);
    expect(b.log.some((l) => l.startsWith("step"))).toBe(false);
  });

  test("KV admission: within the budget, else queue_full (503, retryable) until a release", () => {
    const s = new Scheduler(new FakeBatcher(), { parallel: 4, kvBudgetBytes: 1000 });
    const r1 = s.admit(600);
    let err: unknown;
    try {
      s.admit(600);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MlxkError);
    expect((err as MlxkError).type).toBe("queue_full");
    expect((err as MlxkError).httpStatus).toBe(503);
    expect((err as MlxkError).retryable).toBe(true);
    const r2 = s.admit(400);
    r1();
    r1(); // idempotent
    expect(s.reservedBytes).toBe(400);
    s.admit(600);
    r2();
    // a request larger than the whole budget still runs alone, but never beyond free memory
    const solo = new Scheduler(new FakeBatcher(), { parallel: 4, kvBudgetBytes: 10, freeMemory: () => 500 });
    solo.admit(400)();
    expect(() => solo.admit(600)).toThrow("Server busy");
  });
});

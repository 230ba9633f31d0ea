/**
 * The model queue's turns: exclusive by default (one at a time), shared by the requests of one batching
 * model up to its slots, strictly in arrival order (an exclusive turn — a model switch — waits for the shared
 * ones and holds back those behind it), bounded waiting (queue_full), aborted waiters leave the line.
 */
import { expect, test } from "bun:test";
import { MlxkError } from "../../src/errors.ts";
import { SerialQueue } from "../../src/server/queue.ts";

const share = (slots: number, ok = () => true) => ({ key: "m", slots, ok });

test("shared turns run together up to the slots; the rest wait in order", async () => {
  const q = new SerialQueue(8);
  const order: string[] = [];
  const take = (name: string, s?: ReturnType<typeof share>) => q.acquire(undefined, s).then((release) => (order.push(name), release));
  const a = await take("a", share(2));
  const b = await take("b", share(2));
  expect(q.running).toBe(2);
  const c = take("c", share(2));
  const x = take("x"); // exclusive: waits for a, b and c
  const d = take("d", share(2)); // behind x: never overtakes it
  expect(q.pending).toBe(3);
  a();
  const rc = await c;
  expect(order).toEqual(["a", "b", "c"]);
  b();
  rc();
  const rx = await x;
  expect(q.running).toBe(1);
  rx();
  (await d)();
  expect(order).toEqual(["a", "b", "c", "x", "d"]);
  expect(q.active).toBe(false);
});

test("a share whose model is gone runs alone; waiting is bounded; aborted waiters leave", async () => {
  const q = new SerialQueue(1);
  const gone = share(4, () => false);
  const a = await q.acquire(undefined, gone);
  const ab = new AbortController();
  const w = q.acquire(ab.signal, gone);
  await expect(q.acquire(undefined, gone)).rejects.toBeInstanceOf(MlxkError);
  ab.abort();
  await expect(w).rejects.toThrow("cancelled");
  expect(q.pending).toBe(0);
  a();
  expect(q.active).toBe(false);
});

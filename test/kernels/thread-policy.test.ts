/**
 * The kernel thread policy's use of the machine's load (mlx-c/src/kernels/pool.cpp): ops big enough to split
 * run on the cores other processes leave free, and MLXK_THREADS-style pins win over that.
 * The load is pinned here (pinOthersLoad), so nothing depends on what else runs on the machine.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { kernelInfo, kernelThreadsFor, othersLoad, pinKernelThreads, pinOthersLoad } from "../../src/mlx/kernels.ts";

const info = kernelInfo();
afterAll(() => {
  pinOthersLoad(null);
  pinKernelThreads(0);
});

const DECODE = 576 * 1536; // a SmolLM2 q/o projection: ~0.9M multiply-adds
const PREFILL = 512 * 576 * 1536;

describe.skipIf(info.level === "none")("thread policy under other processes' load", () => {
  test("the measured load is a core count between 0 and the machine's", () => {
    const l = othersLoad();
    expect(l).toBeGreaterThanOrEqual(0);
    expect(l).toBeLessThanOrEqual(info.threads + 0.5);
  });

  test("others keeping every core busy: every op inline; an idle machine: prefill-sized ops on the whole pool", () => {
    pinOthersLoad(info.threads);
    try {
      expect(othersLoad()).toBe(info.threads);
      expect(kernelThreadsFor(DECODE)).toBe(1);
      expect(kernelThreadsFor(PREFILL)).toBe(1);
      expect(kernelThreadsFor(10_000)).toBe(1);
      pinOthersLoad(0);
      expect(kernelThreadsFor(PREFILL)).toBe(info.threads);
      expect(kernelThreadsFor(10_000)).toBe(1);
    } finally {
      pinOthersLoad(null);
    }
  });

  test.skipIf(info.threads < 2)("a pin overrides the load: 2 threads for a decode op on a busy machine", () => {
    pinOthersLoad(info.threads);
    pinKernelThreads(2);
    try {
      expect(kernelThreadsFor(DECODE)).toBe(2);
    } finally {
      pinKernelThreads(0);
      pinOthersLoad(null);
    }
  });

  test.skipIf(info.threads < 4)("a partly busy machine: ops get at most the free cores", () => {
    pinOthersLoad(info.threads - 2);
    try {
      expect(kernelThreadsFor(DECODE)).toBeLessThanOrEqual(2);
      expect(kernelThreadsFor(PREFILL)).toBe(2);
    } finally {
      pinOthersLoad(null);
    }
  });
});

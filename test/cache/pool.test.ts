import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { repoHealth } from "../../src/cache/health.ts";
import { listRepoNames, repoDirFor } from "../../src/cache/layout.ts";
import { listModelsParallel, scanRepos } from "../../src/cache/pool.ts";
import { listModels } from "../../src/cache/scan.ts";
import { generateCache } from "../../bench/cache-gen.ts";
import { runCliCapture } from "../support/cli.ts";
import { type TempHub, makeTempHub } from "../support/hf-cache.ts";

// 120 repos of every kind the benchmark makes (healthy, sharded, broken, GGUF, PyTorch): enough for chunks on both threads
let hub: TempHub;
let names: string[];
beforeAll(() => {
  hub = makeTempHub({ create: false });
  generateCache(hub.root, 120);
  names = listRepoNames(hub.hubDir);
});
afterAll(() => hub.cleanup());

describe("parallel cache scan", () => {
  test("list: workers give exactly the one-thread result, in name order", async () => {
    const seq = listModels({ hubDir: hub.hubDir }).models;
    expect(seq.length).toBe(120);
    expect(seq.some((m) => m.health === "unhealthy")).toBe(true);
    for (const workers of [0, 1, 2]) {
      const { models } = await listModelsParallel({ hubDir: hub.hubDir, workers });
      expect(models).toEqual(seq);
    }
  });

  test("list: all chunks done by workers when the main thread leaves them", async () => {
    const seq = listModels({ hubDir: hub.hubDir }).models;
    for (const workers of [1, 2]) {
      const stats = { byWorkers: -1 };
      const models = await scanRepos({ hubDir: hub.hubDir, names, kind: "list", workers, mainThread: false, stats });
      expect(stats.byWorkers).toBe(names.length);
      expect(models).toEqual(seq);
    }
  });

  test("a scan shorter than a worker's start-up needs no worker and gives the same result", async () => {
    const few = names.slice(0, 3);
    const models = await scanRepos({ hubDir: hub.hubDir, names: few, kind: "list", workers: 1 });
    expect(models).toEqual(listModels({ hubDir: hub.hubDir }).models.slice(0, 3));
  });

  test("list with a pattern scans only the matching repos", async () => {
    const { models } = await listModelsParallel({ hubDir: hub.hubDir, pattern: "ORG3", workers: 1 });
    expect(models.length).toBeGreaterThan(0);
    expect(models).toEqual(listModels({ hubDir: hub.hubDir, pattern: "ORG3" }).models);
  });

  test("health: summaries match repoHealth for every repo", async () => {
    const stats = { byWorkers: -1 };
    const sums = await scanRepos({ hubDir: hub.hubDir, names, kind: "health", workers: 1, mainThread: false, stats });
    expect(stats.byWorkers).toBe(names.length);
    expect(sums.map((s) => s.name)).toEqual(names);
    for (const s of sums) {
      const r = repoHealth(repoDirFor(hub.hubDir, s.name), { name: s.name });
      expect(s).toEqual({ name: s.name, healthy: r.healthy, reason: r.reason, runtime_compatible: r.runtime_compatible, runtime_reason: r.runtime_reason });
    }
    expect(new Set(sums.map((s) => s.reason)).size).toBeGreaterThan(3);
  });

  test("CLI output does not depend on MLXK_SCAN_WORKERS", async () => {
    for (const cmd of [["list", "--json"], ["health", "--json"], ["health"]]) {
      const one = await runCliCapture(cmd, { env: { ...hub.env, MLXK_SCAN_WORKERS: "0" } });
      const two = await runCliCapture(cmd, { env: { ...hub.env, MLXK_SCAN_WORKERS: "1" } });
      expect(one.code).toBe(0);
      expect(two.stdout).toBe(one.stdout);
    }
  });
});

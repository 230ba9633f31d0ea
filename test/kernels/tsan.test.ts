/**
 * The kernel pool under ThreadSanitizer: test/kernels/native/tsan.sh builds qmm + pool with -fsanitize=thread
 * and runs two concurrent callers (like two MLX CPU streams) against bit-exact reference results.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

const hasCxx = Bun.spawnSync([process.env.CXX ?? "g++", "--version"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;

test.skipIf(!hasCxx || process.arch !== "x64")("no data race and identical results under ThreadSanitizer", () => {
  const p = Bun.spawnSync(["sh", join(import.meta.dir, "native", "tsan.sh"), "30"], { stdout: "pipe", stderr: "pipe" });
  const out = p.stdout.toString() + p.stderr.toString();
  expect(out).not.toContain("ThreadSanitizer");
  expect(out).toContain("mismatches 0");
  expect(p.exitCode).toBe(0);
}, 120_000);

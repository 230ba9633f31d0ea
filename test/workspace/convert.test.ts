/**
 * `convert` against mlx-lm's own convert: every tensor byte-identical to what mlx_lm.convert writes for the same
 * source and settings (goldens from scripts/gen-convert-goldens.py, no Python needed), and — where the reference
 * venv exists — mlx-lm loading our output and generating the same greedy tokens.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { checkClean, computeContentHash } from "../../src/cache/content-hash.ts";
import { readSentinel, workspaceHealth } from "../../src/cache/workspace.ts";
import * as mx from "../../src/mlx/index.ts";
import { ConvertDataSchema } from "../../src/schemas/workspace.ts";
import { convert } from "../../src/workspace/convert.ts";
import { runCliCapture } from "../support/cli.ts";

const ROOT = join(import.meta.dir, "..", "..");
const PY = "/work/main/.cache/py-ref/bin/python";
const GOLDEN = JSON.parse(readFileSync(join(ROOT, "test", "fixtures", "goldens", "convert.json"), "utf8")) as {
  cases: Record<string, { args: { q_bits?: number; q_group_size?: number; q_mode?: "mxfp4"; dtype?: "float16" }; quantization: unknown; tensors: Record<string, [string, number[], string]>; tokens: number[] }>;
};
let tmp: string;
let sources: Record<string, string>;
const env = () => ({ HOME: tmp, HF_HOME: join(tmp, "hf") });

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "mlxk-convert-"));
  // committed sources: the goldens are of these exact bytes (tiny-models.ts changes as architectures land)
  sources = { llama: join(ROOT, "test", "fixtures", "convert", "mlx_llama"), hf_qwen3: join(ROOT, "test", "fixtures", "convert", "hf_qwen3") };
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function tensorHashes(dir: string): Record<string, [number[], string]> {
  const out: Record<string, [number[], string]> = {};
  mx.scope(() => {
    for (const f of readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort()) {
      for (const [k, a] of mx.loadSafetensors(join(dir, f)).weights) out[k] = [[...a.shape], new Bun.CryptoHasher("sha256").update(a.eval().toBytes()).digest("hex")];
    }
  });
  return out;
}

describe("convert vs mlx_lm.convert", () => {
  for (const [name, c] of Object.entries(GOLDEN.cases)) {
    test(`${name}: every tensor byte-identical, same quantization config`, async () => {
      const [src] = name.split("/");
      const target = join(tmp, `out-${name.replace("/", "-")}`);
      const d = await convert({
        source: sources[src!]!,
        target,
        env: env(),
        quantize: c.args.q_bits,
        groupSize: c.args.q_group_size,
        qMode: c.args.q_mode,
        dtype: c.args.dtype,
      });
      expect(d.health_status).toBe("healthy");
      const want = Object.fromEntries(Object.entries(c.tensors).map(([k, [, shape, h]]) => [k, [shape, h] as [number[], string]]));
      expect(tensorHashes(target)).toEqual(want);
      const cfg = JSON.parse(readFileSync(join(target, "config.json"), "utf8"));
      expect(cfg.quantization ?? null).toEqual(c.quantization);
      expect(cfg.quantization_config ?? null).toEqual(c.quantization);
    });
  }

  test.skipIf(!existsSync(PY))("mlx-lm loads our output and generates the same greedy tokens (needs the py-ref venv)", async () => {
    const names = ["llama/q4_g64", "llama/mxfp4", "hf_qwen3/q4_g64", "hf_qwen3/f16"];
    const dirs = names.map((n) => join(tmp, `out-${n.replace("/", "-")}`));
    const p = Bun.spawnSync([PY, join(ROOT, "scripts", "gen-convert-goldens.py"), "--check", ...dirs], { stderr: "pipe" });
    expect(p.exitCode).toBe(0);
    expect(JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!)).toEqual(names.map((n) => GOLDEN.cases[n]!.tokens));
  }, 120_000);
});

describe("convert: workspace rules", () => {
  test("output is a managed workspace (sentinel, clean v2 hash); CLI --json validates", async () => {
    const target = join(tmp, "cli-q4");
    const r = await runCliCapture(["convert", sources.llama!, target, "--quantize", "4", "--json"], { env: env() });
    expect(r.code).toBe(0);
    const d = v.parse(ConvertDataSchema, r.json().data);
    expect(d).toMatchObject({ mode: "quantize", bits: 4, group_size: 64, q_mode: "affine", shards: 1, health_status: "healthy" });
    const s = readSentinel(target)!;
    expect(s).toMatchObject({ managed: true, operation: "convert", hash_algorithm: "v2", content_hash: d.content_hash });
    expect(checkClean(target, s).clean).toBe(true);
    expect(readdirSync(target).sort()).toEqual([".mlxk_workspace.json", "config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"]);
  });

  test("bad flags, existing non-empty target refused, nothing overwritten", async () => {
    const busy = join(tmp, "busy");
    mkdirSync(busy);
    writeFileSync(join(busy, "keep"), "x");
    const cases: [string[], string][] = [
      [[sources.llama!, busy, "--quantize", "4"], "InvalidTargetError"],
      [[sources.llama!, join(tmp, "n1"), "--quantize", "7"], "InvalidArgumentError"],
      [[sources.llama!, join(tmp, "n1"), "--quantize", "4", "--q-group-size", "48"], "InvalidArgumentError"],
      [[sources.llama!, join(tmp, "n1"), "--quantize", "8", "--q-mode", "mxfp4"], "InvalidArgumentError"],
      [[sources.llama!, join(tmp, "n1"), "--quantize", "4", "--repair-index"], "InvalidArgumentError"],
      [[sources.llama!, join(tmp, "n1")], "InvalidArgumentError"],
    ];
    for (const [args, type] of cases) {
      const r = await runCliCapture(["convert", ...args, "--json"], { env: env() });
      expect(r.json().error?.type).toBe(type);
    }
    expect(readdirSync(busy)).toEqual(["keep"]);
    expect(existsSync(join(tmp, "n1"))).toBe(false);
  });

  test("a failure midway leaves no target and no temp dir; shards stay within --max-shard-size", async () => {
    const parent = join(tmp, "mid");
    mkdirSync(parent);
    const target = join(parent, "out");
    let shards = 0;
    await expect(
      convert({ source: sources.llama!, target, env: env(), dtype: "float32", maxShardBytes: 64 * 1024, onShard: (i, n) => {
        shards = n;
        if (i === 2) throw new Error("disk full (simulated)");
      } }),
    ).rejects.toThrow("disk full");
    expect(shards).toBeGreaterThan(2);
    expect(readdirSync(parent)).toEqual([]);
    const d = await convert({ source: sources.llama!, target, env: env(), dtype: "float32", maxShardBytes: 64 * 1024 });
    expect(d.shards).toBe(shards);
    const index = JSON.parse(readFileSync(join(target, "model.safetensors.index.json"), "utf8"));
    expect(new Set(Object.values(index.weight_map)).size).toBe(shards);
    expect(workspaceHealth(target).healthy).toBe(true);
  });

  test("--repair-index rebuilds a stale index from the shard headers (mlx-vlm #624) and the hash sees it (#52)", async () => {
    const sharded = join(tmp, "sharded");
    await convert({ source: sources.llama!, target: sharded, env: env(), dtype: "float32", maxShardBytes: 200 * 1024 });
    const broken = join(tmp, "broken");
    cpSync(sharded, broken, { recursive: true });
    const idx = JSON.parse(readFileSync(join(broken, "model.safetensors.index.json"), "utf8"));
    for (const k of Object.keys(idx.weight_map)) idx.weight_map[k] = "model-00001-of-00009.safetensors";
    writeFileSync(join(broken, "model.safetensors.index.json"), JSON.stringify(idx));
    expect(workspaceHealth(broken).reason).toContain("Index/shard mismatch");
    const fixed = join(tmp, "fixed");
    const d = await convert({ source: broken, target: fixed, env: env(), repairIndex: true });
    expect(d).toMatchObject({ mode: "repair-index", health_status: "healthy" });
    expect(JSON.parse(readFileSync(join(fixed, "model.safetensors.index.json"), "utf8"))).toEqual(JSON.parse(readFileSync(join(sharded, "model.safetensors.index.json"), "utf8")));
    // the index is hashed: the repaired workspace differs from the broken one and equals the original
    expect(d.content_hash).not.toBe(computeContentHash(broken).content_hash);
    expect(d.content_hash).toBe(readSentinel(sharded)!.content_hash as string);
  });
});

/**
 * Inference benchmark: prefill (512-token prompt) and decode (128 tokens) tokens/s and peak RSS, for
 * SmolLM2-135M-Instruct (Q4_1 GGUF) and a Qwen2.5-0.5B-shaped random 4-bit model (Q4_1 GGUF with the
 * llama architecture), side by side in one run with mlx-lm (`.cache/py-ref`, on an MLX dir converted
 * from the same GGUF, f32 scales so both run f32) and llama.cpp (node-llama-cpp 3.21.1, installed under
 * .cache/llama-bench, on the same GGUF). Each run is its own process (clean peak RSS).
 *
 * Usage: bun bench/generate.ts [--prompt 512] [--gen 128] [--rounds 2] [--only smollm2|qwen05] [--all-variants]
 *        [--skip-mlx-lm] [--skip-llama]
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const CACHE = join(ROOT, ".cache", "bench");
const PY = join(ROOT, ".cache", "py-ref", "bin", "python");
const LLAMA_DIR = join(ROOT, ".cache", "llama-bench");

export interface Result {
  prefill_tps: number;
  decode_tps: number;
  peak_rss_mb: number;
  /** Our runs: whether the AVX2 kernels were in use (a shim/TS mismatch silently falls back to MLX's ops). */
  kernels?: string;
  /** The greedy tokens generated (bench/llama.ts compares engines on them). */
  tokens?: number[];
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}
const has = (name: string) => process.argv.includes(`--${name}`);

/** Seeded prompt ids (< 49152: valid SmolLM2 tokens, ordinary text pieces). */
export function promptIds(n: number): number[] {
  let s = 12345;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out.push(200 + (s % 40000));
  }
  return out;
}

// ---------- worker: our engine ----------
/** Greedy decode of `prompt` + `nGen` tokens through the real token loop: prefill and decode tok/s, peak RSS. */
export async function timeGreedy(model: import("../src/models/base.ts").LanguageModel, prompt: number[], nGen: number): Promise<Result> {
  const { tokenLoop } = await import("../src/engine/generate.ts");
  const { kernelInfo } = await import("../src/mlx/kernels.ts");
  const stats = { prefillMs: 0, decodeMs: 0, generated: 0 };
  const tokens: number[] = [];
  for (const step of tokenLoop({ model, prompt, maxTokens: nGen, stats })) tokens.push(step.token);
  const k = kernelInfo();
  return {
    prefill_tps: (prompt.length / stats.prefillMs) * 1000,
    decode_tps: ((stats.generated - 1) / stats.decodeMs) * 1000,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    kernels: k.enabled ? k.level : "off",
    tokens,
  };
}

async function runOurs(gguf: string, nPrompt: number, nGen: number, streams: number): Promise<Result> {
  const { loadGgufModel } = await import("../src/engine/load.ts");
  using m = await loadGgufModel(gguf, { dtype: "float32", streams });
  return await timeGreedy(m.model, promptIds(nPrompt), nGen);
}

// ---------- model preparation ----------
/** An MLX model dir (f32 scales) with the same weights as `gguf`, for mlx-lm. */
async function mlxDirFrom(gguf: string, dir: string): Promise<string> {
  if (existsSync(join(dir, "config.json"))) return dir;
  const mx = await import("../src/mlx/index.ts");
  const { ggufToModel } = await import("../src/engine/gguf.ts");
  const { config, tensors } = ggufToModel(gguf, { packed: false });
  mkdirSync(dir, { recursive: true });
  const out = new Map<string, InstanceType<typeof mx.Array>>();
  for (const [k, a] of tensors) out.set(k, mx.isFloating(a.dtype) ? a.astype(mx.Dtype.float32) : a);
  mx.saveSafetensors(join(dir, "model.safetensors"), out, { format: "mlx" });
  mx.disposeAll(out);
  mx.disposeAll(tensors);
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  return dir;
}

/** A llama-architecture layout for shapedGguf: hidden, layers, heads, KV heads, FF width, vocab (tied embeddings). */
export interface GgufShape {
  file: string;
  name: string;
  H: number;
  L: number;
  NH: number;
  KV: number;
  FF: number;
  V: number;
  /** Every layer reuses the first layer's random blocks: a 7B-shaped file without generating 4 GB of randomness. */
  shareLayers?: boolean;
}
export type ModelShape = GgufShape;

export const QWEN05_SHAPE: GgufShape = { file: "qwen05-shaped.Q4_1.gguf", name: "qwen2.5-0.5b-shaped-random", H: 896, L: 24, NH: 14, KV: 2, FF: 4864, V: 151936 };
export const QWEN15_SHAPE: GgufShape = { file: "qwen15-shaped.Q4_1.gguf", name: "qwen2.5-1.5b-shaped-random", H: 1536, L: 28, NH: 12, KV: 2, FF: 8960, V: 151936 };

/** Qwen2.5-0.5B shapes (hidden 896, 24 layers, 14/2 heads, FF 4864, vocab 151936, tied) as a Q4_1 llama GGUF. */
export function qwenShapedGguf(smollm2: string): Promise<string> {
  return shapedGguf(smollm2, QWEN05_SHAPE);
}

/** Random Q4_1 weights in `shape` as a llama GGUF under .cache/bench (SmolLM2's tokenizer, padded to V); cached. */
export async function shapedGguf(smollm2: string, shape: GgufShape): Promise<string> {
  const path = join(CACHE, shape.file);
  if (existsSync(path)) return path;
  const { readGguf } = await import("../src/gguf/reader.ts");
  const { writeGguf } = await import("../test/support/gguf-writer.ts");
  const src = readGguf(smollm2);
  const { H, L, NH, KV, FF, V } = shape;
  const D = H / NH;
  let seed = 7;
  const rnd = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 4294967296;
  };
  const q41 = (rows: number, cols: number): Uint8Array => {
    const blocks = (rows * cols) / 32;
    const out = new Uint8Array(blocks * 20);
    const dv = new DataView(out.buffer);
    for (let b = 0; b < blocks; b++) {
      const d = (0.5 + rnd()) * (1 / Math.sqrt(cols)) * 0.25;
      dv.setFloat16(b * 20, d, true);
      dv.setFloat16(b * 20 + 2, -7.5 * d, true);
      for (let j = 0; j < 16; j++) out[b * 20 + 4 + j] = Math.floor(rnd() * 256);
    }
    return out;
  };
  const ones = (n: number) => new Uint8Array(Float32Array.from({ length: n }, () => 1).buffer);
  const tensors: { name: string; shape: number[]; type: "F32" | "Q4_1"; data: Uint8Array }[] = [
    { name: "token_embd.weight", shape: [V, H], type: "Q4_1", data: q41(V, H) },
    { name: "output_norm.weight", shape: [H], type: "F32", data: ones(H) },
  ];
  const first = new Map<string, Uint8Array>();
  const q41Layer = (key: string, rows: number, cols: number): Uint8Array => {
    if (!shape.shareLayers) return q41(rows, cols);
    let d = first.get(key);
    if (!d) first.set(key, (d = q41(rows, cols)));
    return d;
  };
  for (let i = 0; i < L; i++) {
    const p = `blk.${i}`;
    tensors.push(
      { name: `${p}.attn_norm.weight`, shape: [H], type: "F32", data: ones(H) },
      { name: `${p}.ffn_norm.weight`, shape: [H], type: "F32", data: ones(H) },
      { name: `${p}.attn_q.weight`, shape: [NH * D, H], type: "Q4_1", data: q41Layer("attn_q", NH * D, H) },
      { name: `${p}.attn_k.weight`, shape: [KV * D, H], type: "Q4_1", data: q41Layer("attn_k", KV * D, H) },
      { name: `${p}.attn_v.weight`, shape: [KV * D, H], type: "Q4_1", data: q41Layer("attn_v", KV * D, H) },
      { name: `${p}.attn_output.weight`, shape: [H, NH * D], type: "Q4_1", data: q41Layer("attn_output", H, NH * D) },
      { name: `${p}.ffn_gate.weight`, shape: [FF, H], type: "Q4_1", data: q41Layer("ffn_gate", FF, H) },
      { name: `${p}.ffn_up.weight`, shape: [FF, H], type: "Q4_1", data: q41Layer("ffn_up", FF, H) },
      { name: `${p}.ffn_down.weight`, shape: [H, FF], type: "Q4_1", data: q41Layer("ffn_down", H, FF) },
    );
  }
  // SmolLM2's tokenizer padded with placeholder pieces to the Qwen vocabulary size.
  const tokens = [...(src.metadata.get("tokenizer.ggml.tokens")!.value as string[])];
  const types = Array.from(src.metadata.get("tokenizer.ggml.token_type")!.value as ArrayLike<number>);
  for (let i = tokens.length; i < V; i++) {
    tokens.push(`<pad_${i}>`);
    types.push(4);
  }
  const str = (k: string) => String(src.metadata.get(k)!.value);
  const u32 = (value: number) => ({ type: "u32" as const, value });
  const meta = {
    "general.architecture": "llama",
    "general.name": shape.name,
    "llama.block_count": u32(L),
    "llama.context_length": u32(32768),
    "llama.embedding_length": u32(H),
    "llama.feed_forward_length": u32(FF),
    "llama.attention.head_count": u32(NH),
    "llama.attention.head_count_kv": u32(KV),
    "llama.attention.layer_norm_rms_epsilon": { type: "f32" as const, value: 1e-6 },
    "llama.rope.freq_base": { type: "f32" as const, value: 1000000 },
    "llama.rope.dimension_count": u32(D),
    "llama.vocab_size": u32(V),
    "tokenizer.ggml.model": str("tokenizer.ggml.model"),
    "tokenizer.ggml.pre": str("tokenizer.ggml.pre"),
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.token_type": { type: "i32" as const, value: types },
    "tokenizer.ggml.merges": src.metadata.get("tokenizer.ggml.merges")!.value as string[],
    "tokenizer.ggml.bos_token_id": u32(Number(src.metadata.get("tokenizer.ggml.bos_token_id")!.value)),
    "tokenizer.ggml.eos_token_id": u32(Number(src.metadata.get("tokenizer.ggml.eos_token_id")!.value)),
  };
  mkdirSync(CACHE, { recursive: true });
  writeGguf(path, meta, tensors);
  return path;
}

// ---------- references ----------
/** Python dict text of the Qwen3.5-0.8B layer sizes (hybrid: Gated DeltaNet + every 4th layer full attention) for
 * the random models the benches make with mlx-lm; `layers` and `vocab` are Python expressions. */
export function qwen35PyConfig(layers: string, vocab: string): string {
  return `{"model_type": "qwen3_5", "hidden_size": 1024, "num_hidden_layers": ${layers}, "intermediate_size": 3584,
  "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256, "rms_norm_eps": 1e-6, "vocab_size": ${vocab},
  "max_position_embeddings": 32768, "linear_num_key_heads": 16, "linear_num_value_heads": 16,
  "linear_key_head_dim": 128, "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "full_attention_interval": 4,
  "tie_word_embeddings": True,
  "rope_parameters": {"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25, "mrope_section": [11, 11, 10]}}`;
}

/** Python lines that build `arch`'s model from `cfg`, quantize it to 4-bit group 64 and save both under `path`. */
export const PY_SAVE_Q4 = `mx.random.seed(0)
model = arch.Model(arch.ModelArgs.from_dict(cfg))
nn.quantize(model, group_size=64, bits=4)
cfg["quantization"] = {"group_size": 64, "bits": 4, "mode": "affine"}
save_model(path, model)
(path / "config.json").write_text(json.dumps(cfg, indent=2))`;

export const MLX_LM_SCRIPT = `
import sys, time, json, resource
import mlx.core as mx
from pathlib import Path
from mlx_lm.utils import load_model
from mlx_lm.generate import generate_step
path, ids, n_gen = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], int(sys.argv[3])
model, _ = load_model(Path(path))
t0 = time.perf_counter(); t_first = None; n = 0
for tok, _ in generate_step(mx.array(ids), model, max_tokens=n_gen, sampler=lambda x: mx.argmax(x, axis=-1)):
    n += 1
    if t_first is None: t_first = time.perf_counter()
t_end = time.perf_counter()
print(json.dumps({"prefill_tps": len(ids) / (t_first - t0), "decode_tps": (n - 1) / (t_end - t_first),
  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
`;

// The one node-llama-cpp greedy child of every benchmark: argv = GGUF path, prompt ids (comma list), tokens to
// generate, threads (0 = llama.cpp's default), gpu (cpu | cuda | metal). The first token marks the end of prefill
// (as in timeGreedy).
const LLAMA_GREEDY_JS = `
import { getLlama } from "node-llama-cpp";
const [path, idsArg, nGen, threadsArg = "0", gpu = "cpu"] = process.argv.slice(2);
const ids = idsArg.split(",").map(Number);
const threads = Number(threadsArg);
const llama = await getLlama(gpu === "cpu" ? { gpu: false } : { gpu, build: "never" });
const model = await llama.loadModel({ modelPath: path, gpuLayers: gpu === "cpu" ? 0 : "max" });
const ctx = await model.createContext({ contextSize: 1024, batchSize: 512, ...(threads > 0 ? { threads } : {}) });
const seq = ctx.getSequence();
const t0 = performance.now(); let tFirst = 0; let n = 0; const tokens = [];
for await (const tok of seq.evaluate(ids, { temperature: 0 })) {
  n++; tokens.push(tok);
  if (n === 1) tFirst = performance.now();
  if (n >= Number(nGen)) break;
}
const tEnd = performance.now();
console.log(JSON.stringify({ prefill_tps: ids.length / ((tFirst - t0) / 1000), decode_tps: (n - 1) / ((tEnd - tFirst) / 1000),
  peak_rss_mb: process.resourceUsage().maxRSS / 1024, tokens,
  kernels: llama.gpu ? String(llama.gpu) : llama.buildType + "/" + (llama.cpuMathCores ?? "") }));
process.exit(0);
`;

/**
 * Writes the greedy child into `dir` (node resolves node-llama-cpp from the script's own folder) and returns the
 * command that runs it on a GGUF (run it with runJson(cmd, dir)).
 */
export function llamaGreedyCommand(dir: string): (gguf: string, ids: string, nGen: number, o?: { threads?: number; gpu?: string }) => string[] {
  const script = join(dir, "mlxk-greedy.mjs");
  writeFileSync(script, LLAMA_GREEDY_JS);
  return (gguf, ids, nGen, o = {}) => ["node", script, gguf, ids, String(nGen), String(o.threads ?? 0), o.gpu ?? "cpu"];
}

/** Runs `cmd` and parses the JSON object on its last stdout line (a Result unless the caller names another shape). */
export function runJson<T = Result>(cmd: string[], cwd = ROOT, env: Record<string, string> = {}): T {
  const p = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const out = p.stdout.toString().trim().split("\n").at(-1) ?? "";
  if (p.exitCode !== 0 || !out.startsWith("{")) throw new Error(`${cmd.slice(0, 3).join(" ")} failed (${p.exitCode}): ${p.stderr.toString().slice(-1500)}`);
  return JSON.parse(out) as T;
}

async function main(): Promise<void> {
  if (has("worker")) {
    const r = await runOurs(arg("model", ""), Number(arg("prompt", "512")), Number(arg("gen", "128")), Number(arg("streams", "1")));
    console.log(JSON.stringify(r));
    return;
  }
  // A private copy of the shim (two levels below the repo root, so its $ORIGIN runpath still finds libmlx):
  // a rebuild of mlx-c/build during the long run cannot break the workers.
  const { findShim } = await import("../src/mlx/paths.ts");
  const shim = join(ROOT, ".cache", "shim-bench", "libmlxk.so");
  mkdirSync(join(ROOT, ".cache", "shim-bench"), { recursive: true });
  copyFileSync(findShim()!, shim);
  process.env.MLXK_SHIM = shim;
  const nPrompt = Number(arg("prompt", "512"));
  const nGen = Number(arg("gen", "128"));
  const only = arg("only", "");
  const { smollm2Gguf } = await import("../test/support/smollm2.ts");
  const smol = await smollm2Gguf();
  const models: { name: string; gguf: string }[] = [];
  if (only !== "qwen05") models.push({ name: "SmolLM2-135M-Instruct Q4_1", gguf: smol });
  if (only !== "smollm2") models.push({ name: "Qwen2.5-0.5B-shaped random Q4_1", gguf: await qwenShapedGguf(smol) });
  const ids = promptIds(nPrompt).join(",");
  const llamaCmd = has("skip-llama") ? null : llamaGreedyCommand(LLAMA_DIR);
  const rows: string[] = [];
  const fmt = (r: Result) => `${r.prefill_tps.toFixed(1)} | ${r.decode_tps.toFixed(2)} | ${r.peak_rss_mb.toFixed(0)}`;
  const rounds = Number(arg("rounds", "2"));
  const best = (a: Result | undefined, b: Result): Result =>
    a === undefined
      ? b
      : { prefill_tps: Math.max(a.prefill_tps, b.prefill_tps), decode_tps: Math.max(a.decode_tps, b.decode_tps), peak_rss_mb: Math.max(a.peak_rss_mb, b.peak_rss_mb) };
  for (const m of models) {
    const self = ["bun", join(ROOT, "bench", "generate.ts"), "--worker", "--model", m.gguf, "--prompt", String(nPrompt), "--gen", String(nGen)];
    const variants: [string, () => Result][] = [
      ["mlxk (AVX2 kernels, 1 stream)", () => runJson([...self, "--streams", "1"])],
      ["mlxk (AVX2 kernels, 2 streams)", () => runJson([...self, "--streams", "2"])],
    ];
    // MLX's own qmm is ~10x slower; on the big model only with --all-variants (minutes per run).
    if (m.gguf === smol || has("all-variants")) {
      variants.push(["mlxk (MLX qmm, 1 stream)", () => runJson([...self, "--streams", "1"], ROOT, { MLXK_KERNELS: "0" })]);
      variants.push(["mlxk (MLX qmm, 2 streams)", () => runJson([...self, "--streams", "2"], ROOT, { MLXK_KERNELS: "0" })]);
    }
    const REF = "mlx-lm 0.32.2 (mlx 0.32.4 cpu)";
    if (!has("skip-mlx-lm")) {
      const dir = await mlxDirFrom(m.gguf, join(CACHE, `${m.name.split(" ")[0]}-mlx-f32`));
      variants.push([REF, () => runJson([PY, "-c", MLX_LM_SCRIPT, dir, ids, String(nGen)])]);
    }
    if (llamaCmd && existsSync(join(LLAMA_DIR, "node_modules", "node-llama-cpp"))) {
      variants.push(["llama.cpp (node-llama-cpp 3.21.1, 2 threads)", () => runJson(llamaCmd(m.gguf, ids, nGen, { threads: 2 }), LLAMA_DIR)]);
    }
    // Rounds interleave every engine (order reversed each round) and keep each one's best: the VM is shared.
    const results = new Map<string, Result>();
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? variants : [...variants].reverse();
      for (const [name, fn] of order) {
        const res = fn();
        console.error(`${m.name} / ${name} / round ${r + 1}: ${JSON.stringify(res)}`);
        results.set(name, best(results.get(name), res));
      }
    }
    const ref = results.get(REF) ?? null;
    for (const [name] of variants) {
      const r = results.get(name)!;
      const ratio = ref ? ` | ${(r.prefill_tps / ref.prefill_tps).toFixed(2)}× | ${(r.decode_tps / ref.decode_tps).toFixed(2)}×` : " | – | –";
      rows.push(`| ${m.name} | ${name} | ${fmt(r)}${ratio} |`);
    }
  }
  const table = [
    `Prompt ${nPrompt} tokens, ${nGen} generated (greedy), ${navigator.hardwareConcurrency} CPUs, best of ${rounds} interleaved rounds.`,
    "",
    "| model | engine | prefill tok/s | decode tok/s | peak RSS MB | prefill vs mlx-lm | decode vs mlx-lm |",
    "|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
  console.log(table);
  writeFileSync(join(CACHE, "last-run.md"), `${table}\n`);
  void readFileSync;
}

// Only as a script: bench/moe.ts and bench/hybrid.ts import the prompt ids and the mlx-lm runner from here.
if (import.meta.main) await main();

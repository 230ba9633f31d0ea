/**
 * Qwen3-MoE-shaped benchmark: prefill and greedy decode tokens/s of a random 4-bit Qwen3-MoE model (Qwen3-30B-A3B's
 * layout scaled to fit this machine: hidden 1024, 8 layers, 16/4 heads of 64, 32 experts of 384, top 4, vocab 32768),
 * mlxk vs mlx-lm 0.32.2 on the same MLX dir (written by mlx-lm itself: random init, nn.quantize 4-bit group 64,
 * f32 scales so both run f32). Each engine runs in its own process, interleaved, best of N rounds.
 *
 * Usage: bun bench/moe.ts [--prompt 256] [--gen 64] [--rounds 2]
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { MLX_LM_SCRIPT as MLX_LM, promptIds, timeGreedy } from "./generate.ts";

const ROOT = resolve(import.meta.dir, "..");
const PY = join(ROOT, ".cache", "py-ref", "bin", "python");
const DIR = join(ROOT, ".cache", "bench", "qwen3moe-shaped-4bit");

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};

const MAKE = `
import sys, json, mlx.core as mx, mlx.nn as nn
from pathlib import Path
from mlx_lm.models import qwen3_moe
from mlx_lm.utils import save_model, save_config
cfg = dict(model_type="qwen3_moe", hidden_size=1024, num_hidden_layers=8, intermediate_size=2048, num_attention_heads=16,
  num_key_value_heads=4, head_dim=64, num_experts=32, num_experts_per_tok=4, decoder_sparse_step=1, mlp_only_layers=[],
  moe_intermediate_size=384, rms_norm_eps=1e-6, vocab_size=32768, rope_theta=1e6, tie_word_embeddings=False,
  max_position_embeddings=32768, norm_topk_prob=True)
mx.random.seed(0)
model = qwen3_moe.Model(qwen3_moe.ModelArgs.from_dict(cfg))
nn.quantize(model, group_size=64, bits=4)
mx.eval(model.parameters())
path = Path(sys.argv[1]); path.mkdir(parents=True, exist_ok=True)
save_model(path, model)
cfg["quantization"] = {"group_size": 64, "bits": 4, "mode": "affine"}
save_config(cfg, path / "config.json")
`;

interface R {
  prefill_tps: number;
  decode_tps: number;
}

async function ours(nPrompt: number, nGen: number): Promise<R> {
  const { loadModelDir } = await import("../src/engine/load.ts");
  using m = await loadModelDir(DIR, { dtype: "float32" });
  return await timeGreedy(m.model, promptIds(nPrompt).map((t) => t % 32768), nGen);
}

function runJson(cmd: string[]): R {
  const p = Bun.spawnSync(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const out = p.stdout.toString().trim().split("\n").at(-1) ?? "";
  if (p.exitCode !== 0 || !out.startsWith("{")) throw new Error(`${cmd.slice(0, 2).join(" ")} failed: ${p.stderr.toString().slice(-1200)}`);
  return JSON.parse(out) as R;
}

if (process.argv.includes("--worker")) {
  console.log(JSON.stringify(await ours(Number(arg("prompt", "256")), Number(arg("gen", "64")))));
} else {
  const nPrompt = Number(arg("prompt", "256"));
  const nGen = Number(arg("gen", "64"));
  const rounds = Number(arg("rounds", "2"));
  if (!existsSync(join(DIR, "config.json"))) {
    mkdirSync(DIR, { recursive: true });
    runJson([PY, "-c", `${MAKE}\nprint("{}")`, DIR]);
  }
  const ids = promptIds(nPrompt).map((t) => t % 32768).join(",");
  const best = { mlxk: { prefill_tps: 0, decode_tps: 0 }, mlxlm: { prefill_tps: 0, decode_tps: 0 } };
  const keep = (k: keyof typeof best, r: R) => {
    best[k] = { prefill_tps: Math.max(best[k].prefill_tps, r.prefill_tps), decode_tps: Math.max(best[k].decode_tps, r.decode_tps) };
  };
  for (let i = 0; i < rounds; i++) {
    const order: (keyof typeof best)[] = i % 2 === 0 ? ["mlxk", "mlxlm"] : ["mlxlm", "mlxk"];
    for (const e of order) {
      const r =
        e === "mlxk"
          ? runJson([process.execPath, join(ROOT, "bench", "moe.ts"), "--worker", "--prompt", String(nPrompt), "--gen", String(nGen)])
          : runJson([PY, "-c", MLX_LM, DIR, ids, String(nGen)]);
      console.error(`round ${i + 1} ${e}: prefill ${r.prefill_tps.toFixed(1)} decode ${r.decode_tps.toFixed(2)}`);
      keep(e, r);
    }
  }
  const { mlxk, mlxlm } = best;
  console.log("| engine | prefill tok/s | decode tok/s | prefill vs mlx-lm | decode vs mlx-lm |\n|---|---|---|---|---|");
  console.log(`| **mlxk** | ${mlxk.prefill_tps.toFixed(1)} | ${mlxk.decode_tps.toFixed(2)} | **${(mlxk.prefill_tps / mlxlm.prefill_tps).toFixed(2)}×** | **${(mlxk.decode_tps / mlxlm.decode_tps).toFixed(2)}×** |`);
  console.log(`| mlx-lm 0.32.2 | ${mlxlm.prefill_tps.toFixed(1)} | ${mlxlm.decode_tps.toFixed(2)} | 1.00× | 1.00× |`);
}

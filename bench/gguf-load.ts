/**
 * GGUF tensor reading: mlxk's own reader (src/engine/gguf-tensors.ts, used for K-quant/IQ4/BF16 files) against
 * MLX's C++ reader (used for F32/F16/Q4_0/Q4_1/Q8_0 files) on the same file, SmolLM2-135M Q4_1 (Q4_1 + Q8_0 +
 * F32 tensors, the types both read). Interleaved rounds, best of each; prints the ratio.
 *
 *   node_modules/.bin/bun bench/gguf-load.ts [--rounds 5]
 */
import { loadTensors } from "../src/engine/gguf-tensors.ts";
import { readGguf } from "../src/gguf/reader.ts";
import * as mx from "../src/mlx/index.ts";
import { smollm2Gguf } from "../test/support/smollm2.ts";

const rounds = Number(process.argv[process.argv.indexOf("--rounds") + 1]) || 5;
const path = await smollm2Gguf();
const infos = readGguf(path).tensors;
let ours = Infinity;
let theirs = Infinity;
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? ["ours", "mlx"] : ["mlx", "ours"];
  for (const who of order) {
    const t0 = performance.now();
    const w = who === "ours" ? loadTensors(path, infos) : mx.loadGguf(path).weights;
    mx.eval([...w.values()]);
    const ms = performance.now() - t0;
    mx.disposeAll(w);
    if (who === "ours") ours = Math.min(ours, ms);
    else theirs = Math.min(theirs, ms);
  }
}
const weights = infos.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
console.log(`SmolLM2-135M Q4_1 (${(weights / 1e6).toFixed(0)}M weights): ours ${ours.toFixed(0)} ms, MLX ${theirs.toFixed(0)} ms, ours/MLX ${(ours / theirs).toFixed(2)}x`);

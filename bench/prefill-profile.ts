/**
 * Where a prefill's time goes: wall time of prefilling the prompt, and (MLXK_KERNEL_PROFILE=1) how much of it
 * the quantized matmul took, with the dequantized-panel GEMM (qgemm.cpp) on (the default) and off
 * (MLXK_QGEMM_ROWS=0's per-row kernels), alternating in one process.
 *
 *   MLXK_KERNEL_PROFILE=1 bun bench/prefill-profile.ts [--model path.gguf] [--prompt 658] [--rounds 3]
 */
import * as mx from "../src/mlx/index.ts";
import { loadGgufModel } from "../src/engine/load.ts";
import { prefill } from "../src/engine/generate.ts";
import { qmmProfile, setQgemmRows } from "../src/mlx/kernels.ts";
import { promptIds } from "./generate.ts";
import { smollm2Gguf } from "../test/support/smollm2.ts";

const arg = (n: string, f: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : f;
};
using m = await loadGgufModel(arg("model", "") || (await smollm2Gguf()), { dtype: "float32" });
const ids = promptIds(Number(arg("prompt", "658")));
const rounds = Number(arg("rounds", "3"));
const load = async () => (await Bun.file("/proc/loadavg").text()).split(" ")[0];
for (let r = -1; r < rounds; r++) {
  for (const on of r % 2 === 0 ? [true, false] : [false, true]) {
    setQgemmRows(on ? null : 0);
    const cache = m.model.makeCache();
    const q0 = qmmProfile();
    const t0 = performance.now();
    const logits = prefill(m.model, cache, ids);
    mx.eval([logits]); // the last chunk is lazy until read
    logits.dispose();
    const ms = performance.now() - t0;
    const q1 = qmmProfile();
    for (const c of cache) (c as unknown as Disposable)[Symbol.dispose]?.();
    if (r < 0) continue; // warm-up
    const qms = q1.ms - q0.ms;
    console.log(
      `${on ? "qgemm   " : "per-row "} prefill ${ms.toFixed(0)} ms (${((ids.length / ms) * 1000).toFixed(1)} tok/s), qmm ${qms.toFixed(0)} ms` +
        ` (${q1.calls - q0.calls} calls, ${(((q1.macs - q0.macs) / qms) * 1e-6).toFixed(1)} GMAC/s), load ${await load()}`,
    );
  }
}
setQgemmRows(null);

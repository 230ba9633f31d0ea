/**
 * CPU time of a prefill (and optionally a few decode steps at the end of it) in this process, for A/B runs of two
 * shims (MLXK_SHIM=old/libmlxk.so vs the repo build) interleaved by the caller; with MLXK_THREADS=1 the CPU time
 * is the work itself. Prints one line per round: prefill ms CPU (wall), decode ms CPU per step, load average.
 *
 *   MLXK_THREADS=1 bun bench/attn-ab.ts --model path.gguf [--prompt 256] [--rounds 3] [--steps 0]
 */
import * as mx from "../src/mlx/index.ts";
import { loadGgufModel } from "../src/engine/load.ts";
import { prefill } from "../src/engine/generate.ts";
import { promptIds } from "./generate.ts";
import { smollm2Gguf } from "../test/support/smollm2.ts";

const arg = (n: string, f: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1]! : f;
};
using m = await loadGgufModel(arg("model", "") || (await smollm2Gguf()), { dtype: "float32" });
const ids = promptIds(Number(arg("prompt", "256")));
const rounds = Number(arg("rounds", "3"));
const steps = Number(arg("steps", "0"));
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const load = async () => (await Bun.file("/proc/loadavg").text()).split(" ")[0];
for (let r = -1; r < rounds; r++) {
  const cache = m.model.makeCache();
  const c0 = cpu();
  const t0 = performance.now();
  const logits = prefill(m.model, cache, ids);
  mx.eval([logits]);
  const pc = cpu() - c0;
  const pw = performance.now() - t0;
  const d0 = cpu();
  let tok = mx.scope(() => mx.argmax(logits, -1));
  mx.eval([tok]);
  for (let s = 0; s < steps; s++) {
    const id = tok.item();
    tok.dispose();
    tok = mx.scope(() => {
      const h = m.model.hidden(mx.array(Int32Array.from([id]), { shape: [1, 1], dtype: mx.Dtype.int32 }), cache);
      return mx.argmax(mx.reshape(m.model.logits(h), [-1]), -1);
    });
    mx.eval([tok]);
  }
  tok.dispose();
  const dc = steps > 0 ? (cpu() - d0) / steps : 0;
  logits.dispose();
  for (const c of cache) (c as unknown as Disposable)[Symbol.dispose]?.();
  if (r < 0) continue;
  console.log(`prefill ${pc.toFixed(0)} ms cpu (${pw.toFixed(0)} wall)${steps ? `, decode ${dc.toFixed(2)} ms cpu/step` : ""}, load ${await load()}`);
}

/**
 * Greedy agreement with llama.cpp on K-quant files (issue #17 item 5): node-llama-cpp 3.22.1 (1 thread) tokenizes a
 * chat prompt and generates greedily; mlxk runs the same ids with its K-quant kernels (f32 activations, and the
 * opt-in int8 path), and reports how many leading tokens agree and, where they part, the logit margin there
 * (llama.cpp computes K-quant dots with int8 activations, so a near-tie may go either way; a real decoding bug
 * shows as a large margin). Not part of `npm test`: node-llama-cpp is a reference, not a dependency.
 *
 * Usage: bun bench/kquant-agree.ts [--gen 64] [--llama-dir /work/main/.cache/llama-ref]
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { qwen3MoeShapedQ4KM, qwen3ShapedQ4KM, smollm2Q4K } from "./kquant-models.ts";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

const PROMPT = "<|im_start|>user\nWrite three sentences about the history of Paris.<|im_end|>\n<|im_start|>assistant\n";

const LLAMA_GREEDY = `
import { getLlama } from "node-llama-cpp";
const [path, text, nGen] = process.argv.slice(2);
const llama = await getLlama({ gpu: false });
const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
const ids = [...model.tokenize(text, true)];
const ctx = await model.createContext({ contextSize: 1024, threads: 1, batchSize: 512 });
const seq = ctx.getSequence();
const tokens = [];
for await (const tok of seq.evaluate(ids, { temperature: 0 })) {
  tokens.push(tok);
  if (tokens.length >= Number(nGen)) break;
}
console.log(JSON.stringify({ ids, tokens }));
process.exit(0);
`;

async function main(): Promise<void> {
  const llamaDir = arg("llama-dir", "/work/main/.cache/llama-ref");
  if (!existsSync(join(llamaDir, "node_modules", "node-llama-cpp"))) {
    console.error(`node-llama-cpp not found under ${llamaDir}: npm install --prefix ${llamaDir} node-llama-cpp@3.22.1`);
    process.exit(2);
  }
  const script = join(llamaDir, "mlxk-kquant-greedy.mjs");
  writeFileSync(script, LLAMA_GREEDY);
  const nGen = Number(arg("gen", "64"));
  const mx = await import("../src/mlx/index.ts");
  const { loadGgufModel } = await import("../src/engine/load.ts");
  const { tokenLoop } = await import("../src/engine/generate.ts");
  const { kquantInt8 } = await import("../src/mlx/kquant.ts");
  const { smollm2Gguf } = await import("../test/support/smollm2.ts");
  const smol = await smollm2Gguf();
  const files: [string, string][] = [
    ["SmolLM2-135M (real weights), ffn_down Q4_K/Q6_K", await smollm2Q4K(smol)],
    ["Qwen3-0.6B-shaped random Q4_K_M", await qwen3ShapedQ4KM(smol)],
    ["Qwen3-30B-A3B-like MoE random Q4_K_M", await qwen3MoeShapedQ4KM(smol)],
  ];
  const rows: string[] = [];
  for (const [name, gguf] of files) {
    const p = Bun.spawnSync(["node", script, gguf, PROMPT, String(nGen)], { cwd: llamaDir, stdout: "pipe", stderr: "pipe" });
    const line = p.stdout.toString().trim().split("\n").at(-1) ?? "";
    if (p.exitCode !== 0 || !line.startsWith("{")) throw new Error(`llama.cpp failed on ${gguf}: ${p.stderr.toString().slice(-800)}`);
    const ref = JSON.parse(line) as { ids: number[]; tokens: number[] };
    using m = await loadGgufModel(gguf, { dtype: "float32" });
    for (const int8 of [false, true]) {
      const prev = kquantInt8(int8);
      try {
        const ours = [...tokenLoop({ model: m.model, prompt: ref.ids, maxTokens: nGen })].map((s) => s.token);
        let n = 0;
        while (n < nGen && ours[n] === ref.tokens[n]) n++;
        let where = "–";
        if (n < nGen) {
          // logits at the first difference, after the agreed prefix: our top-1 minus llama.cpp's choice
          const ids = [...ref.ids, ...ref.tokens.slice(0, n)];
          const gap = mx.scope(() => {
            const cache = m.model.makeCache();
            const h = m.model.hidden(mx.array(Int32Array.from(ids), { shape: [1, ids.length], dtype: mx.Dtype.int32 }), cache);
            const lg = m.model.logits(mx.sliceAxis(h, 1, ids.length - 1, ids.length)).toFloat32Array();
            return lg[ours[n]!]! - lg[ref.tokens[n]!]!;
          });
          where = `token ${n}: ours ${ours[n]} vs ${ref.tokens[n]}, logit gap ${gap.toFixed(3)}`;
        }
        rows.push(`| ${name} | ${int8 ? "int8 activations (MLXK_INT8_ACT=1)" : "f32 activations (default)"} | ${n}/${nGen} | ${where} |`);
        console.error(rows.at(-1));
      } finally {
        kquantInt8(prev);
      }
    }
  }
  console.log(
    [
      `Greedy agreement with llama.cpp (node-llama-cpp 3.22.1, 1 thread), chat prompt, ${nGen} tokens.`,
      "",
      "| file | mlxk | leading tokens equal | first difference |",
      "|---|---|---|---|",
      ...rows,
    ].join("\n"),
  );
}

if (import.meta.main) await main();

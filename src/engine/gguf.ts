/**
 * A GGUF file (or split set) as an MLX model, undoing what llama.cpp's convert_hf_to_gguf.py did:
 * - tensor names back to HF names (per architecture: gemma3's four norms, phi3's fused qkv / gate_up, qwen3's
 *   q/k norms, qwen3moe's stacked experts);
 * - llama/mistral only: the q/k rows its converter permuted for llama.cpp's rope layout are put back (a pure
 *   row permutation, so it applies to packed quantized rows too); qwen2/qwen3/gemma3/phi3 use NEOX rope, unpermuted;
 * - gemma3: every norm weight was stored as HF value + 1 (llama.cpp's norm has no built-in +1), so 1 is subtracted;
 * - phi3: longrope factors stored as `rope_factors_long/short` tensors go back into config.rope_scaling.
 * Files of F32/F16/Q4_0/Q4_1/Q8_0 tensors are read by MLX (Q4_0/Q4_1/Q8_0 as affine triples, group 32; Q4_1 =
 * scale·q + min is exactly affine); any other file by our reader (gguf-tensors.ts), which maps every block type
 * onto the same affine layouts — except Q4_K/Q5_K/Q6_K, which stay packed (the file's blocks, run by our CPU
 * kernels, quantization mode q4_k/q5_k/q6_k per module) wherever those kernels run; config.json comes from the
 * metadata (src/gguf/config.ts).
 *
 * Exports: hfName(name, arch?), unpermute(a, nHead), kquantsPacked(settings), ggufToModel(path, { packed? })
 */
import { splitSiblings } from "../cache/gguf.ts";
import { MlxkError } from "../errors.ts";
import { GGUF_ARCHS, ggufModelConfig, ggufRuntimeProblem } from "../gguf/config.ts";
import { metaString, readGguf } from "../gguf/reader.ts";
import * as mx from "../mlx/index.ts";
import { type BackendSettings, deviceFacts, planBackend } from "../mlx/backend.ts";
import { kquantPackable } from "../mlx/kquant.ts";
import { K_PACKED, loadTensors } from "./gguf-tensors.ts";

/**
 * Files of only these types go through MLX's C++ reader (fast, exact for them). Any other type sends the whole
 * file to our reader: MLX refuses Q5_*, decodes Q4_K wrongly and Q6_K/BF16 lossily, and would first build fp16
 * copies of every K tensor (a 7B Q4_K_M would need ~14 GB for that alone).
 */
const MLX_READS: ReadonlySet<string> = new Set(["F32", "F16", "Q4_0", "Q4_1", "Q8_0"]);

const LAYER_NAMES: Record<string, string> = {
  attn_norm: "input_layernorm",
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_qkv: "self_attn.qkv_proj",
  attn_output: "self_attn.o_proj",
  attn_q_norm: "self_attn.q_norm",
  attn_k_norm: "self_attn.k_norm",
  ffn_norm: "post_attention_layernorm",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
  ffn_gate_inp: "mlp.gate",
  ffn_gate_exps: "mlp.switch_mlp.gate_proj",
  ffn_up_exps: "mlp.switch_mlp.up_proj",
  ffn_down_exps: "mlp.switch_mlp.down_proj",
};
/** Where an architecture's names differ from the llama ones above. */
const ARCH_NAMES: Record<string, Record<string, string>> = {
  gemma3: {
    post_attention_norm: "post_attention_layernorm",
    ffn_norm: "pre_feedforward_layernorm",
    post_ffw_norm: "post_feedforward_layernorm",
  },
  // phi3 keeps HF's fused gate_up_proj as one `ffn_up` (gate = first half, as HF and mlx-lm split it)
  phi3: { ffn_up: "mlp.gate_up_proj" },
};
const TOP_NAMES: Record<string, string> = { token_embd: "model.embed_tokens", output_norm: "model.norm", output: "lm_head" };

/** `blk.3.attn_q.scales` → `model.layers.3.self_attn.q_proj.scales`; null for tensors we don't use. */
export function hfName(name: string, arch = "llama"): string | null {
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|scales|biases|bias)$/.exec(name);
  if (m) {
    const mapped = ARCH_NAMES[arch]?.[m[2]!] ?? LAYER_NAMES[m[2]!];
    return mapped ? `model.layers.${m[1]}.${mapped}.${m[3]}` : null;
  }
  const t = /^([a-z_]+)\.(weight|scales|biases|bias)$/.exec(name);
  const top = t ? TOP_NAMES[t[1]!] : undefined;
  return top ? `${top}.${t![2]}` : null;
}

/** Undo llama.cpp's q/k row permutation (a pure row permutation, so it applies to packed rows too). */
export function unpermute(a: mx.Array, nHead: number): mx.Array {
  const [rows, cols] = a.shape as [number, number];
  const r = mx.reshape(a, [nHead, rows / nHead / 2, 2, cols]);
  return mx.contiguous(mx.reshape(mx.swapaxes(r, 1, 2), [rows, cols]));
}

function hostFloats(a: mx.Array): number[] {
  using f = a.astype(mx.Dtype.float32);
  return Array.from(f.toTypedArray() as Float32Array);
}

/** Whether K-quants stay packed for a load with these settings: the backend profile runs our CPU kernels. */
export function kquantsPacked(s: BackendSettings = {}): boolean {
  return kquantPackable() && planBackend(deviceFacts(s.env), s).kernels === "ours";
}

/**
 * Tensors (HF names, owned by the caller) and a config.json for a GGUF file (all parts of a split set).
 * `packed`: keep K-quants as blocks (default: kquantsPacked(); false for MLX layouts only, e.g. to save an MLX dir).
 * `keepFor`: given the config, which HF keys to read (a pipeline rank's slice; the rest become placeholders), null = all.
 */
export function ggufToModel(
  path: string,
  o: { packed?: boolean; keepFor?: (config: Record<string, unknown>) => ((key: string) => boolean) | null } = {},
): { config: Record<string, unknown>; tensors: Map<string, mx.Array> } {
  const parts = splitSiblings(path);
  const headers = parts.map((p) => readGguf(p));
  const header = headers[0]!;
  const arch = metaString(header, "general.architecture") ?? "";
  const problem = ggufRuntimeProblem(header, headers.flatMap((h) => h.tensors.map((t) => t.typeName)));
  if (problem) throw new MlxkError("unsupported_model", problem);
  if (!GGUF_ARCHS[arch]) throw new MlxkError("unsupported_model", `GGUF architecture '${arch}' is not supported`);
  const config = ggufModelConfig(header);
  const heads = config.num_attention_heads as number;
  const kvHeads = (config.num_key_value_heads as number | undefined) ?? heads;
  const permuted = arch === "llama" || arch === "mistral";
  const keep = o.keepFor?.(config) ?? null;
  const tensors = new Map<string, mx.Array>();
  const raw = new Map<string, mx.Array>();
  // K-quants stay packed where our kernels run (MLXK_KERNELS=0 at load keeps the widened MLX layouts)
  const packed = o.packed ?? kquantsPacked();
  const kmodes = new Map<string, string>(); // HF module → q4_k | q5_k | q6_k
  const rawMode = new Map<string, string>();
  if (packed) for (const h of headers) for (const t of h.tensors) if (K_PACKED[t.typeName]) rawMode.set(t.name, K_PACKED[t.typeName]!);
  try {
    parts.forEach((p, i) => {
      const infos = headers[i]!.tensors;
      if (keep || !infos.every((t) => MLX_READS.has(t.typeName))) {
        // MLX's reader reads every tensor: a slice goes through ours, which reads only what it keeps
        const read = keep
          ? (t: { name: string }) => {
              const hf = hfName(t.name, arch);
              return hf === null || keep(hf); // unmapped extras (phi3's rope factors) are read on every rank
            }
          : undefined;
        for (const [k, a] of loadTensors(p, infos, { packed, read })) raw.set(k, a);
        return;
      }
      for (const [k, a] of mx.loadGguf(p).weights) raw.set(k, a);
    });
    const long = raw.get("rope_factors_long.weight");
    const short = raw.get("rope_factors_short.weight");
    if (arch === "phi3" && long && short) {
      config.rope_scaling = { type: "longrope", long_factor: hostFloats(long), short_factor: hostFloats(short) };
    }
    for (const [name, a] of raw) {
      const hf = hfName(name, arch);
      if (hf === null) {
        a.dispose();
        continue;
      }
      let t = a;
      if (permuted && /\.self_attn\.(q|k)_proj\.(weight|scales|biases)$/.test(hf)) {
        t = mx.keep(unpermute(a, hf.includes(".q_proj.") ? heads : kvHeads));
        a.dispose();
      } else if (arch === "gemma3" && /norm\.weight$/.test(hf)) {
        t = mx.keep(mx.subtract(a, 1));
        a.dispose();
      }
      tensors.set(hf, t);
      const km = rawMode.get(name);
      if (km) kmodes.set(hf.replace(/\.weight$/, ""), km);
    }
    raw.clear();
    if (arch === "qwen3moe") {
      // llama.cpp has no mlp_only_layers key: a layer without a router is a dense one
      const layers = (config.num_hidden_layers as number | undefined) ?? 0;
      config.mlp_only_layers = Array.from({ length: layers }, (_, i) => i).filter((i) => !tensors.has(`model.layers.${i}.mlp.gate.weight`));
    }
    // Quantized modules: bits from the packed width (Q8_0 embeddings next to Q4 matrices are common).
    const overrides: Record<string, unknown> = {};
    for (const [k, s] of tensors) {
      if (!k.endsWith(".scales")) continue;
      const base = k.slice(0, -".scales".length);
      const bits = tensors.get(`${base}.weight`)!.shape.at(-1)! / s.shape.at(-1)!;
      overrides[base] = { group_size: 32, bits };
    }
    for (const [base, mode] of kmodes) overrides[base] = { group_size: 256, bits: mode === "q4_k" ? 4 : mode === "q5_k" ? 5 : 6, mode };
    if (Object.keys(overrides).length > 0) config.quantization = { group_size: 32, bits: 4, ...overrides };
  } catch (e) {
    mx.disposeAll(raw);
    mx.disposeAll(tensors);
    throw e;
  }
  return { config, tensors };
}

/**
 * `show` for GGUF repos: the metadata block from the chosen variant's header (same fields as for MLX models)
 * and the additive `gguf` block (every quant with its health, the chosen file, tensor types, chat template…).
 *
 * Exports: ggufShowMetadata(v), ggufShowBlock(ins, chosen)
 */
import { ggufModelType } from "../gguf/config.ts";
import { type GgufFile, metaArrayLength, metaNumber, metaString } from "../gguf/reader.ts";
import type { GgufShow, ShowMetadata } from "../schemas/cli-output.ts";
import { defaultVariant, type GgufInspection, type GgufVariant, variantContextLength, variantHasChatTemplate, variantIntegrity, variantRuntime } from "./gguf.ts";

function tensorTypes(v: GgufVariant): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of v.parts) for (const t of p.header?.tensors ?? []) out[t.typeName] = (out[t.typeName] ?? 0) + 1;
  return out;
}

function parameters(v: GgufVariant): number | null {
  if (v.parts.some((p) => p.header === null)) return null;
  let n = 0;
  for (const p of v.parts) for (const t of p.header!.tensors) n += t.dims.reduce((a, b) => a * b, 1);
  return n;
}

/** `Q4_K_M` → 4, `IQ3_XXS` → 3, `F16` → null (a float file is not quantized). */
function quantBits(label: string): number | null {
  const m = /^(?:UD-)?I?Q(\d)/.exec(label);
  return m ? Number(m[1]) : null;
}

export function ggufShowMetadata(v: GgufVariant): ShowMetadata | null {
  const h: GgufFile | null | undefined = v.parts[0]?.header;
  if (!h) return null;
  const arch = metaString(h, "general.architecture") ?? null;
  const n = (k: string) => (arch ? (metaNumber(h, `${arch}.${k}`) ?? null) : null);
  const bits = quantBits(v.label);
  return {
    model_type: ggufModelType(h),
    architecture: arch,
    quantization: bits !== null ? `${bits}bit` : null,
    quantization_bits: bits,
    // legacy quants (Q4_0/Q4_1/Q8_0…) use blocks of 32, k-quants super-blocks of 256
    quantization_group_size: bits === null ? null : /_K/.test(v.label) ? 256 : 32,
    quantization_mode: bits !== null ? `gguf:${v.label}` : null,
    context_length: variantContextLength(v),
    vocab_size: metaArrayLength(h, "tokenizer.ggml.tokens") ?? n("vocab_size"),
    hidden_size: n("embedding_length"),
    num_attention_heads: n("attention.head_count"),
    num_hidden_layers: n("block_count"),
    parameters: parameters(v),
    dtypes: Object.keys(tensorTypes(v)).sort(),
  };
}

export function ggufShowBlock(ins: GgufInspection, chosen: GgufVariant): GgufShow {
  const h = chosen.parts[0]?.header ?? null;
  const def = defaultVariant(ins);
  return {
    file: chosen.rel,
    quant: chosen.label,
    version: h?.version ?? null,
    name: h ? (metaString(h, "general.name") ?? null) : null,
    architecture: h ? (metaString(h, "general.architecture") ?? null) : null,
    tokenizer: h ? (metaString(h, "tokenizer.ggml.model") ?? null) : null,
    chat_template: variantHasChatTemplate(chosen),
    tensor_count: h ? chosen.parts.reduce((s, p) => s + (p.header?.tensors.length ?? 0), 0) : null,
    tensor_types: tensorTypes(chosen),
    quants: ins.variants.map((v) => {
      const broken = variantIntegrity(v);
      return {
        quant: v.label,
        files: v.parts.map((p) => p.file.rel),
        parts: v.total,
        size_bytes: v.bytes,
        healthy: broken === null,
        reason: broken,
        runtime_compatible: broken === null && variantRuntime(v) === null,
        runtime_reason: broken === null ? variantRuntime(v) : null,
        default: v === def,
        selected: v === chosen,
      };
    }),
  };
}

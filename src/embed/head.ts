/**
 * The sentence-transformers modules after pooling, as arrays: Dense projections (weights from `N_Dense/
 * model.safetensors`, `linear.weight` [out, in] and `linear.bias`) and Normalize, applied in modules.json order.
 * Shapes are checked against the model when loading, so a mismatched head is refused before any input is read.
 *
 * Exports: EmbedHead, loadHead(recipe, hidden)
 */
import { join } from "node:path";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { layerOps } from "../mlx/backend.ts";
import type { DenseActivation, EmbedRecipe } from "./st-config.ts";

type Step = { kind: "dense"; weight: mx.Array; bias: mx.Array | null; act: DenseActivation } | { kind: "normalize" };

const ACT: Record<DenseActivation, (x: mx.Array) => mx.Array> = {
  identity: (x) => x,
  tanh: mx.tanh,
  relu: mx.relu,
  sigmoid: mx.sigmoid,
  gelu: mx.gelu,
  silu: mx.silu,
};

export function l2Normalize(x: mx.Array): mx.Array {
  return mx.divide(x, mx.maximum(mx.sqrt(mx.sum(mx.square(x), -1, true)), 1e-12));
}

export class EmbedHead implements Disposable {
  constructor(
    private readonly steps: Step[],
    /** Width of the vectors the head returns. */
    readonly dims: number,
  ) {}

  /** pooled [B, hidden] → [B, dims]. */
  apply(pooled: mx.Array): mx.Array {
    let x = pooled;
    for (const s of this.steps) {
      if (s.kind === "normalize") x = l2Normalize(x);
      else {
        const y = layerOps().linear(x, s.weight);
        x = ACT[s.act](s.bias ? mx.add(y, s.bias) : y);
      }
    }
    return x;
  }

  [Symbol.dispose](): void {
    for (const s of this.steps) if (s.kind === "dense") mx.disposeAll([s.weight, ...(s.bias ? [s.bias] : [])]);
  }
}

export function loadHead(recipe: EmbedRecipe, hidden: number): EmbedHead {
  const steps: Step[] = [];
  let width = hidden;
  try {
    for (const p of recipe.post) {
      if (p.kind === "normalize") {
        steps.push(p);
        continue;
      }
      const file = join(p.dir, "model.safetensors");
      const w = mx.loadSafetensors(file).weights;
      const weight = w.get("linear.weight") ?? null;
      const bias = p.bias ? (w.get("linear.bias") ?? null) : null;
      const problem = !weight
        ? "no linear.weight"
        : p.bias && !bias
          ? "the config says bias but there is no linear.bias"
          : p.inFeatures !== width
            ? `Dense in_features ${p.inFeatures} does not match the ${width}-wide vector it gets`
            : weight.shape.length !== 2 || weight.shape[0] !== p.outFeatures || weight.shape[1] !== p.inFeatures
              ? `linear.weight is [${weight.shape}], the config says [${p.outFeatures}, ${p.inFeatures}]`
              : bias && (bias.shape.length !== 1 || bias.shape[0] !== p.outFeatures)
                ? `linear.bias is [${bias.shape}], the config says [${p.outFeatures}]`
                : null;
      for (const a of w.values()) if (problem || (a !== weight && a !== bias)) a.dispose();
      if (problem) throw new MlxkError("unsupported_model", `${file}: ${problem}`);
      const f32 = (a: mx.Array) => {
        if (a.dtype === mx.Dtype.float32) return mx.keep(a);
        const c = mx.keep(a.astype(mx.Dtype.float32));
        a.dispose();
        return c;
      };
      steps.push({ kind: "dense", weight: f32(weight!), bias: bias ? f32(bias) : null, act: p.activation });
      width = p.outFeatures;
    }
  } catch (e) {
    new EmbedHead(steps, width)[Symbol.dispose]();
    throw e;
  }
  mx.eval(steps.flatMap((s) => (s.kind === "dense" ? [s.weight, ...(s.bias ? [s.bias] : [])] : [])));
  return new EmbedHead(steps, width);
}

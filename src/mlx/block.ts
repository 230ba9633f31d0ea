/**
 * The dense decoder block as two fused CPU primitives (mlx-c/src/kernels/block.cpp): `blockQkv` (RMSNorm,
 * q/k/v quantized matmuls, rope) and `blockAttnMlp` (attention over the KV cache buffers, o_proj, residual,
 * RMSNorm, SwiGLU MLP, residual). Bit-identical to the op-by-op graph, with 4 graph nodes per block instead of
 * ~27 (the cache write between them stays MLX's slice_update). Each returns null when it cannot run (kernels
 * off, MLXK_FUSED_BLOCKS=0, a shim without them, or a case the kernel declines) and the caller builds the graph.
 * The linears are affine-quantized or GGUF K-quant blocks (kquant.ts's kernel); `blockQkv` also takes qwen3's
 * per-head q/k RMSNorms, and `blockAttn` is the attention half alone (attention, o_proj, residual) for blocks
 * whose MLP stays a graph (MoE).
 */
import { FFIType, ptr } from "bun:ffi";
import { fusedBlocksEnabled } from "../env.ts";
import { Array, Dtype } from "./array.ts";
import { fail, handles, ints, laterSymbols } from "./ffi.ts";
import { kernelsEnabled } from "./kernels.ts";
import type { KQuantMode } from "./kquant.ts";
import { currentStream as S } from "./stream.ts";

/** A quantized Linear as the kernels take it (affine 4/8-bit; float32 scales and biases). */
export interface BlockLinear {
  weight: Array;
  scales: Array;
  biases: Array;
  bias: Array | null;
  bits: number;
  groupSize: number;
}

/** A GGUF K-quant Linear (uint8 rows of blocks, no scales), as the K-quant kernel takes it. */
export interface KQuantBlockLinear {
  weight: Array;
  kquant: KQuantMode;
  bias: Array | null;
}

export type AnyBlockLinear = BlockLinear | KQuantBlockLinear;
const KTYPES: Record<KQuantMode, number> = { q4_k: 0, q5_k: 1, q6_k: 2 };

export interface BlockRope {
  dims: number;
  traditional: boolean;
  /** base, or explicit per-dimension frequencies (dims/2 of them). */
  base: number;
  scale: number;
  freqs: Array | null;
}

export interface QkvOptions {
  heads: number;
  kvHeads: number;
  headDim: number;
  valueDim: number;
  rope: BlockRope | null;
  /** Position of x's first row: one per batch entry (a decode batch: each entry's own length so far). */
  offsets: readonly number[];
  eps: number;
  /** Per-head RMSNorm weights [headDim] of q / k before rope (qwen3), with their eps. */
  qNorm?: Array | null;
  kNorm?: Array | null;
  qkEps?: number;
}

// Bound apart from ffi.ts's table so a shim built before them still loads (bench --baseline-shim).
const DEFS = {
  mlxk_block_qkv: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  mlxk_block_attn_mlp: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
} as const;
const symbols = laterSymbols(DEFS);
// Came with q/k norms, K-quant linears and the attention-only half: a shim without it would ignore the norms.
const DEFS2 = { mlxk_block_attn: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } } as const;
const later2 = laterSymbols(DEFS2);
const symbols2 = () => (symbols() ? later2() : null);
let override: boolean | null = null;
let fromEnv: boolean | undefined;
let built = 0;
let attnBuilt = 0;

/** Whether the fused block runs (our kernels on, MLXK_FUSED_BLOCKS not 0, unless setFusedBlocks overrode it). */
export function fusedBlocks(): boolean {
  if (override !== null) return override && kernelsEnabled();
  fromEnv ??= fusedBlocksEnabled();
  return fromEnv && kernelsEnabled();
}

/** Fused qkv halves built so far (tests check the fused path really ran). */
export function fusedBlocksBuilt(): number {
  return built;
}

/** Attention-only halves built so far (blockAttn: MoE blocks). */
export function fusedAttnBuilt(): number {
  return attnBuilt;
}

/** Tests and benchmarks: switch the fused block in process (null: back to MLXK_FUSED_BLOCKS). */
export function setFusedBlocks(on: boolean | null): void {
  override = on;
}

// Backed by their own ArrayBuffers: a small inline typed array can move, its pointer would not.
const OUTS = new Uint32Array(new ArrayBuffer(24));
const OUTS_PTR = ptr(OUTS);
const FLOATS = new Float32Array(new ArrayBuffer(32));
const FLOATS_PTR = ptr(FLOATS);
const out = (i: number) => OUTS[2 * i]! + OUTS[2 * i + 1]! * 4294967296;

const isKQuant = (l: AnyBlockLinear): l is KQuantBlockLinear => "kquant" in l;

function linearHandles(l: AnyBlockLinear): number[] {
  if (isKQuant(l)) return l.bias ? [l.weight.handle, l.bias.handle] : [l.weight.handle];
  const h = [l.weight.handle, l.scales.handle, l.biases.handle];
  if (l.bias) h.push(l.bias.handle);
  return h;
}

/** The (bits, group size) ints of a linear: K-quants as bits 0 and their type in the group slot. */
const format = (l: AnyBlockLinear): [number, number] => (isKQuant(l) ? [0, KTYPES[l.kquant]] : [l.bits, l.groupSize]);

const f32 = (l: AnyBlockLinear) =>
  isKQuant(l) ? !l.bias || l.bias.dtype === Dtype.float32 : f32Affine(l);
const f32Affine = (l: BlockLinear) => l.scales.dtype === Dtype.float32 && l.biases.dtype === Dtype.float32 && (!l.bias || l.bias.dtype === Dtype.float32);

/**
 * x [B, L, Dm] → [q [B, H, L, D], k [B, Hkv, L, D] (entry b rotated from offsets[b]), v [B, Hkv, L, Dv]], or
 * null. B > 1 takes one row per entry (a decode batch).
 */
export function blockQkv(x: Array, norm: Array, lin: readonly [AnyBlockLinear, AnyBlockLinear, AnyBlockLinear], o: QkvOptions): [Array, Array, Array] | null {
  const s = fusedBlocks() ? symbols() : null;
  if (!s || !lin.every(f32)) return null;
  if ((o.qNorm || o.kNorm || lin.some(isKQuant)) && !symbols2()) return null;
  const r = o.rope;
  const hs = [x.handle, norm.handle, ...lin.flatMap(linearHandles)];
  if (r?.freqs) hs.push(r.freqs.handle);
  if (o.qNorm) hs.push(o.qNorm.handle);
  if (o.kNorm) hs.push(o.kNorm.handle);
  const [q, k, v] = lin;
  const ic = ints([...format(q), ...format(k), ...format(v), o.heads, o.kvHeads, o.headDim, o.valueDim,
    r ? 1 : 0, r?.traditional ? 1 : 0, r?.dims ?? 0, r?.freqs ? 1 : 0, o.offsets[0] ?? 0, q.bias ? 1 : 0, k.bias ? 1 : 0, v.bias ? 1 : 0,
    o.qNorm ? 1 : 0, o.kNorm ? 1 : 0, o.offsets.length, ...o.offsets]);
  FLOATS[0] = o.eps;
  FLOATS[1] = r?.base ?? 1;
  FLOATS[2] = r?.scale ?? 1;
  FLOATS[3] = o.qkEps ?? o.eps;
  if (s.mlxk_block_qkv(OUTS_PTR as never, handles(hs) as never, ic as never, FLOATS_PTR as never, S() as never) !== 0) fail("block_qkv");
  if (out(0) === 0) return null;
  built++;
  return [new Array(out(0)), new Array(out(1)), new Array(out(2))];
}

export interface MlpLinears {
  o: AnyBlockLinear;
  gate: AnyBlockLinear;
  up: AnyBlockLinear;
  down: AnyBlockLinear;
}

/** Which positions of the cache buffers each batch entry attends to: [starts[b], length). */
export interface KeySpan {
  length: number;
  /** One per batch entry: its first key (the left padding of a decode batch before it); [0] for one sequence. */
  starts: readonly number[];
}

/**
 * q [B, H, L, D] attending to its entry's positions (span) of the cache buffers keys/values [B, Hkv, cap, ·],
 * then o_proj, + x, RMSNorm(norm), SwiGLU MLP, + residual → [B, L, Dm]; or null. B > 1: one query per entry.
 */
export function blockAttnMlp(q: Array, keys: Array, values: Array, span: KeySpan, x: Array, norm: Array, l: MlpLinears, o: { scale: number; eps: number }): Array | null {
  const s = fusedBlocks() ? symbols() : null;
  const all = [l.o, l.gate, l.up, l.down];
  if (!s || !all.every(f32)) return null;
  if (all.some(isKQuant) && !symbols2()) return null;
  const hs = [q.handle, keys.handle, values.handle, x.handle, ...linearHandles(l.o), norm.handle, ...linearHandles(l.gate),
    ...linearHandles(l.up), ...linearHandles(l.down)];
  const ic = ints([...all.flatMap(format), ...all.map((a) => (a.bias ? 1 : 0)), span.length, span.starts.length, ...span.starts]);
  FLOATS[0] = o.scale;
  FLOATS[1] = o.eps;
  if (s.mlxk_block_attn_mlp(OUTS_PTR as never, handles(hs) as never, ic as never, FLOATS_PTR as never, S() as never) !== 0) fail("block_attn_mlp");
  return out(0) === 0 ? null : new Array(out(0));
}

/**
 * The attention half alone: q [B, H, L, D] over its entry's positions (span) of the cache buffers, o_proj, + x →
 * h [B, L, Dm] (the block's MLP then runs as a graph); or null. B > 1: one query per entry.
 */
export function blockAttn(q: Array, keys: Array, values: Array, span: KeySpan, x: Array, oProj: AnyBlockLinear, o: { scale: number }): Array | null {
  const s = fusedBlocks() ? symbols2() : null;
  if (!s || !f32(oProj)) return null;
  const hs = [q.handle, keys.handle, values.handle, x.handle, ...linearHandles(oProj)];
  const ic = ints([...format(oProj), oProj.bias ? 1 : 0, span.length, span.starts.length, ...span.starts]);
  FLOATS[0] = o.scale;
  if (s.mlxk_block_attn(OUTS_PTR as never, handles(hs) as never, ic as never, FLOATS_PTR as never, S() as never) !== 0) fail("block_attn");
  if (out(0) === 0) return null;
  attnBuilt++;
  return new Array(out(0));
}

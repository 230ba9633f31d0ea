/**
 * safetensors headers, read without touching the weights: 8 bytes little-endian u64 header length,
 * then that many bytes of JSON `{ "__metadata__"?: {...}, "<tensor>": { dtype, shape, data_offsets } }`.
 *
 * Exports: readSafetensorsHeader(path), readSafetensorsHeaderBytes(path), parseSafetensorsHeader(bytes, path), readExact(fd, len, pos),
 *          SafetensorsHeader, TensorInfo
 */
import { closeSync, openSync, readSync } from "node:fs";
import { MlxkError } from "../errors.ts";

export interface TensorInfo {
  dtype: string;
  shape: number[];
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: Record<string, TensorInfo>;
}

/** Headers larger than this are refused: real ones are at most a few MB even for 1000-shard models. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** `len` bytes at `pos` (fewer at end of file). */
export function readExact(fd: number, len: number, pos: number): Buffer {
  const buf = Buffer.alloc(len);
  let off = 0;
  while (off < len) {
    const n = readSync(fd, buf, off, len - off, pos + off);
    if (n === 0) break;
    off += n;
  }
  return buf.subarray(0, off);
}

/** The raw header JSON bytes (after the 8-byte length). */
export function readSafetensorsHeaderBytes(path: string): Buffer {
  const fd = openSync(path, "r");
  try {
    const lenBuf = readExact(fd, 8, 0);
    if (lenBuf.length < 8) throw new MlxkError("show_operation_failed", `Not a safetensors file (too short): ${path}`);
    const len = lenBuf.readBigUInt64LE(0);
    if (len < 2n || len > BigInt(MAX_HEADER_BYTES)) {
      throw new MlxkError("show_operation_failed", `Not a safetensors file (header length ${len}): ${path}`);
    }
    const body = readExact(fd, Number(len), 8);
    if (body.length < Number(len)) throw new MlxkError("show_operation_failed", `Truncated safetensors header: ${path}`);
    return body;
  } finally {
    closeSync(fd);
  }
}

export function readSafetensorsHeader(path: string): SafetensorsHeader {
  return parseSafetensorsHeader(readSafetensorsHeaderBytes(path), path);
}

export function parseSafetensorsHeader(body: Buffer, path: string): SafetensorsHeader {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    throw new MlxkError("show_operation_failed", `Invalid safetensors header JSON: ${path}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new MlxkError("show_operation_failed", `Invalid safetensors header: ${path}`);
  }
  const metadata: Record<string, string> = {};
  const tensors: Record<string, TensorInfo> = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (k === "__metadata__") {
      if (v && typeof v === "object") for (const [mk, mv] of Object.entries(v)) metadata[mk] = String(mv);
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown };
    if (typeof t?.dtype === "string" && Array.isArray(t.shape)) tensors[k] = { dtype: t.dtype, shape: t.shape.map(Number) };
  }
  return { metadata, tensors };
}

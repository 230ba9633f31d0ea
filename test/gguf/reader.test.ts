import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MlxkError } from "../../src/errors.ts";
import { GgufValueType, metaNumbers, metaString, metaStrings, readGguf } from "../../src/gguf/reader.ts";
import { smollm2Gguf } from "../support/smollm2.ts";

interface HeaderGolden {
  metadata: Record<string, { type: number; value?: unknown; array_type?: number; length?: number; head?: unknown[]; tail?: unknown[] }>;
  tensors: { name: string; shape: number[]; type: number; offset: number; n_bytes: number }[];
  data_offset: number;
}

const golden: HeaderGolden = JSON.parse(
  readFileSync(join(import.meta.dir, "../fixtures/tokenizers/smollm2-gguf-header.json"), "utf8"),
);

describe("readGguf on SmolLM2 (vs gguf-py golden)", () => {
  let path = "";
  beforeAll(async () => {
    path = await smollm2Gguf();
  }, 300_000);

  test("metadata keys, types and values match gguf-py", () => {
    const f = readGguf(path);
    expect(f.version).toBe(3);
    expect([...f.metadata.keys()]).toEqual(Object.keys(golden.metadata));
    for (const [key, want] of Object.entries(golden.metadata)) {
      const got = f.metadata.get(key)!;
      expect({ key, type: got.type as number }).toEqual({ key, type: want.type });
      if (want.type === GgufValueType.ARRAY) {
        expect(got.arrayType as number).toBe(want.array_type!);
        const arr = Array.from(got.value as ArrayLike<unknown>);
        expect(arr.length).toBe(want.length!);
        expect(arr.slice(0, 3)).toEqual(want.head!);
        expect(arr.slice(-2)).toEqual(want.tail!);
      } else if (want.type === GgufValueType.FLOAT32) {
        expect(got.value as number).toBeCloseTo(want.value as number, 12);
      } else {
        expect(got.value).toEqual(want.value as never);
      }
    }
  });

  test("tensor infos (row-major shape, type, offsets, sizes) match gguf-py", () => {
    const f = readGguf(path);
    expect(f.dataOffset).toBe(golden.data_offset);
    expect(f.tensors.map((t) => ({ name: t.name, shape: t.shape, type: t.type, offset: t.fileOffset, n_bytes: t.byteSize })))
      .toEqual(golden.tensors);
    const last = f.tensors.at(-1)!;
    expect(last.fileOffset + last.byteSize!).toBe(Bun.file(path).size);
  });

  test("typed accessors", () => {
    const f = readGguf(path);
    expect(metaString(f, "tokenizer.ggml.model")).toBe("gpt2");
    expect(metaStrings(f, "tokenizer.ggml.tokens")?.length).toBe(49152);
    expect(metaNumbers(f, "tokenizer.ggml.token_type")?.[0]).toBe(3);
    expect(metaString(f, "llama.block_count")).toBeUndefined();
  });
});

/** Minimal GGUF writer for the value types SmolLM2 does not use. */
function writeGguf(entries: [string, number, (b: Builder) => void][], tensors: [string, number[], number, number][] = []): Uint8Array {
  const b = new Builder();
  b.raw([0x47, 0x47, 0x55, 0x46]);
  b.u32(3);
  b.u64(BigInt(tensors.length));
  b.u64(BigInt(entries.length));
  for (const [k, t, w] of entries) {
    b.str(k);
    b.u32(t);
    w(b);
  }
  for (const [name, dims, type, off] of tensors) {
    b.str(name);
    b.u32(dims.length);
    for (const d of dims) b.u64(BigInt(d));
    b.u32(type);
    b.u64(BigInt(off));
  }
  return b.bytes();
}

class Builder {
  private parts: number[] = [];
  raw(x: number[]) {
    this.parts.push(...x);
  }
  private view(n: number, f: (v: DataView) => void) {
    const a = new Uint8Array(n);
    f(new DataView(a.buffer));
    this.raw([...a]);
  }
  u8 = (x: number) => this.view(1, (v) => v.setUint8(0, x));
  i8 = (x: number) => this.view(1, (v) => v.setInt8(0, x));
  u16 = (x: number) => this.view(2, (v) => v.setUint16(0, x, true));
  i16 = (x: number) => this.view(2, (v) => v.setInt16(0, x, true));
  u32 = (x: number) => this.view(4, (v) => v.setUint32(0, x, true));
  i32 = (x: number) => this.view(4, (v) => v.setInt32(0, x, true));
  f32 = (x: number) => this.view(4, (v) => v.setFloat32(0, x, true));
  f64 = (x: number) => this.view(8, (v) => v.setFloat64(0, x, true));
  u64 = (x: bigint) => this.view(8, (v) => v.setBigUint64(0, x, true));
  i64 = (x: bigint) => this.view(8, (v) => v.setBigInt64(0, x, true));
  str(s: string) {
    const e = new TextEncoder().encode(s);
    this.u64(BigInt(e.length));
    this.raw([...e]);
  }
  bytes() {
    return new Uint8Array(this.parts);
  }
}

describe("readGguf on a synthetic file with every value type", () => {
  const T = GgufValueType;
  const dir = mkdtempSync(join(tmpdir(), "mlxk-gguf-"));
  const path = join(dir, "all.gguf");
  writeFileSync(
    path,
    writeGguf(
      [
        ["u8", T.UINT8, (b) => b.u8(200)],
        ["i8", T.INT8, (b) => b.i8(-5)],
        ["u16", T.UINT16, (b) => b.u16(65000)],
        ["i16", T.INT16, (b) => b.i16(-30000)],
        ["u32", T.UINT32, (b) => b.u32(4_000_000_000)],
        ["i32", T.INT32, (b) => b.i32(-2_000_000_000)],
        ["f32", T.FLOAT32, (b) => b.f32(0.5)],
        ["bool", T.BOOL, (b) => b.u8(1)],
        ["str", T.STRING, (b) => b.str("héllo 🦙")],
        ["u64", T.UINT64, (b) => b.u64(42n)],
        ["u64big", T.UINT64, (b) => b.u64(2n ** 63n)],
        ["i64", T.INT64, (b) => b.i64(-7n)],
        ["f64", T.FLOAT64, (b) => b.f64(1e300)],
        ["general.alignment", T.UINT32, (b) => b.u32(64)],
        ["arr.str", T.ARRAY, (b) => (b.u32(T.STRING), b.u64(3n), b.str("a"), b.str(""), b.str("ç"))],
        ["arr.f32", T.ARRAY, (b) => (b.u32(T.FLOAT32), b.u64(2n), b.f32(-1.5), b.f32(2))],
        ["arr.i32", T.ARRAY, (b) => (b.u32(T.INT32), b.u64(2n), b.i32(-1), b.i32(7))],
        ["arr.bool", T.ARRAY, (b) => (b.u32(T.BOOL), b.u64(2n), b.u8(0), b.u8(1))],
        ["arr.i64", T.ARRAY, (b) => (b.u32(T.INT64), b.u64(1n), b.i64(-3n))],
        ["arr.nested", T.ARRAY, (b) => (b.u32(T.ARRAY), b.u64(2n), b.u32(T.UINT8), b.u64(1n), b.u8(9), b.u32(T.STRING), b.u64(1n), b.str("x"))],
      ],
      [["w", [32, 2], 8, 0], ["b", [4], 0, 68]],
    ),
  );

  test("scalars, strings, arrays, nested arrays; alignment; tensor sizes", () => {
    const f = readGguf(path);
    const v = (k: string) => f.metadata.get(k)?.value;
    expect([v("u8"), v("i8"), v("u16"), v("i16"), v("u32"), v("i32"), v("f32"), v("bool"), v("str")]).toEqual([
      200, -5, 65000, -30000, 4_000_000_000, -2_000_000_000, 0.5, true, "héllo 🦙",
    ]);
    expect([v("u64"), v("u64big"), v("i64"), v("f64")]).toEqual([42, 2n ** 63n, -7, 1e300]);
    expect(v("arr.str")).toEqual(["a", "", "ç"]);
    expect(Array.from(v("arr.f32") as Float32Array)).toEqual([-1.5, 2]);
    expect(v("arr.i32")).toBeInstanceOf(Int32Array);
    expect(Array.from(v("arr.i32") as Int32Array)).toEqual([-1, 7]);
    expect(v("arr.bool")).toEqual([false, true]);
    expect(Array.from(v("arr.i64") as BigInt64Array)).toEqual([-3n]);
    expect(v("arr.nested")).toEqual([new Uint8Array([9]), ["x"]]);
    expect(f.alignment).toBe(64);
    expect(f.dataOffset % 64).toBe(0);
    expect(f.tensors.map((t) => [t.name, t.shape, t.typeName, t.byteSize, t.fileOffset - f.dataOffset])).toEqual([
      ["w", [2, 32], "Q8_0", 68, 0],
      ["b", [4], "F32", 16, 68],
    ]);
  });

  test("truncated and foreign files raise unsupported_model", () => {
    const whole = readFileSync(path);
    const cut = join(dir, "cut.gguf");
    writeFileSync(cut, whole.subarray(0, 60));
    expect(() => readGguf(cut)).toThrow(MlxkError);
    const foreign = join(dir, "x.gguf");
    writeFileSync(foreign, "not a gguf file at all");
    expect(() => readGguf(foreign)).toThrow(/bad magic/);
  });
});

describe("ggufModelConfig", () => {
  test("SmolLM2: llama config from metadata, tied embeddings", async () => {
    const { ggufModelConfig } = await import("../../src/gguf/config.ts");
    const cfg = ggufModelConfig(readGguf(await smollm2Gguf()));
    expect(cfg).toMatchObject({
      model_type: "llama",
      num_hidden_layers: 30,
      hidden_size: 576,
      intermediate_size: 1536,
      num_attention_heads: 9,
      num_key_value_heads: 3,
      rope_theta: 100000,
      max_position_embeddings: 8192,
      vocab_size: 49152,
      tie_word_embeddings: true,
      bos_token_id: 1,
      eos_token_id: 2,
    });
    expect(cfg.rms_norm_eps as number).toBeCloseTo(1e-5, 9);
  }, 300_000);
});

describe("readGguf skipArrays", () => {
  test("same scalars and tensors, arrays keep only their length", async () => {
    const p = await smollm2Gguf();
    const full = readGguf(p);
    const lean = readGguf(p, { skipArrays: true });
    expect(lean.tensors).toEqual(full.tensors);
    expect(lean.dataOffset).toBe(full.dataOffset);
    for (const [k, e] of full.metadata) {
      const l = lean.metadata.get(k)!;
      if (e.type === 9) {
        expect(l.length).toBe((e.value as ArrayLike<unknown>).length);
        expect((l.value as unknown[]).length).toBe(0);
      } else expect(l.value).toEqual(e.value);
    }
    expect(lean.metadata.get("tokenizer.ggml.tokens")!.length).toBe(49152);
  });
});

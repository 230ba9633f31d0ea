/**
 * ggml's Q4_K and Q6_K blocks (256 values) for tests: a simple quantizer (not llama.cpp's search, any valid block
 * will do) and the reference dequantizer of ggml-quants.c, so what MLX's GGUF reader decodes can be checked.
 *
 * Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins for 8 sub-blocks of 32, 128 bytes of nibbles;
 *       value = d·sc·q − dmin·m (q 0..15).
 * Q6_K: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8 scales (sub-blocks of 16), f16 d;
 *       value = d·sc·(q − 32) (q 0..63).
 *
 * Q5_K: as Q4_K plus 32 bytes of fifth bits (bit 2k / 2k+1 of qh[l] for sub-blocks 2k / 2k+1), q 0..31.
 *
 * IQ4_NL / IQ4_XS: llama.cpp's non-linear codebook IQ4_VALUES, value = d·kvalues[q] (IQ4_XS: 6-bit sub-block scales).
 *
 * Exports: quantizeQ4K / dequantizeQ4K, quantizeQ5K / dequantizeQ5K, quantizeQ6K / dequantizeQ6K,
 *          quantizeIQ4NL / dequantizeIQ4NL, quantizeIQ4XS / dequantizeIQ4XS, IQ4_VALUES
 */
const dv = new DataView(new ArrayBuffer(2));
const f16 = (x: number) => (dv.setFloat16(0, x, true), dv.getFloat16(0, true));
const f32 = Math.fround;

function putF16(b: Uint8Array, off: number, x: number): void {
  new DataView(b.buffer, b.byteOffset).setFloat16(off, x, true);
}
function getF16(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getFloat16(off, true);
}

function scaleMin(j: number, q: Uint8Array): [number, number] {
  if (j < 4) return [q[j]! & 63, q[j + 4]! & 63];
  return [(q[j + 4]! & 0xf) | ((q[j - 4]! >> 6) << 4), (q[j + 4]! >> 4) | ((q[j]! >> 6) << 4)];
}

/** Q4_K (levels 15, 144-byte blocks) or Q5_K (levels 31, 176-byte blocks with qh before qs). */
function quantizeK(x: Float32Array, five: boolean): Uint8Array {
  const size = five ? 176 : 144;
  const levels = five ? 31 : 15;
  const out = new Uint8Array((x.length / 256) * size);
  for (let b = 0; b < x.length / 256; b++) {
    const v = x.subarray(b * 256, (b + 1) * 256);
    const blk = out.subarray(b * size, (b + 1) * size);
    const scale: number[] = [];
    const mins: number[] = [];
    for (let j = 0; j < 8; j++) {
      let lo = 0;
      let hi = -Infinity;
      for (let l = 0; l < 32; l++) {
        lo = Math.min(lo, v[j * 32 + l]!);
        hi = Math.max(hi, v[j * 32 + l]!);
      }
      scale.push((hi - lo) / levels);
      mins.push(-lo);
    }
    const d = f16(Math.max(...scale) / 63 || 1e-8);
    const dmin = f16(Math.max(...mins) / 63 || 1e-8);
    const sc = scale.map((s) => Math.min(63, Math.round(s / d)));
    const m = mins.map((s) => Math.min(63, Math.round(s / dmin)));
    putF16(blk, 0, d);
    putF16(blk, 2, dmin);
    const q = blk.subarray(4, 16);
    for (let j = 0; j < 4; j++) {
      q[j] = (sc[j]! & 63) | ((sc[j + 4]! >> 4) << 6);
      q[j + 4] = (m[j]! & 63) | ((m[j + 4]! >> 4) << 6);
      q[j + 8] = (sc[j + 4]! & 0xf) | ((m[j + 4]! & 0xf) << 4);
    }
    const qh = blk.subarray(16, 48);
    const qs = blk.subarray(five ? 48 : 16);
    for (let j = 0; j < 8; j++) {
      const [s, mm] = scaleMin(j, q);
      const step = d * s || 1;
      for (let l = 0; l < 32; l++) {
        const code = Math.max(0, Math.min(levels, Math.round((v[j * 32 + l]! + dmin * mm) / step)));
        const byte = Math.floor(j / 2) * 32 + l;
        const lo4 = code & 15;
        qs[byte] = j % 2 === 0 ? (qs[byte]! & 0xf0) | lo4 : (qs[byte]! & 0x0f) | (lo4 << 4);
        if (five && code & 16) qh[l] = qh[l]! | (1 << j);
      }
    }
  }
  return out;
}

export function quantizeQ4K(x: Float32Array): Uint8Array {
  return quantizeK(x, false);
}

export function quantizeQ5K(x: Float32Array): Uint8Array {
  return quantizeK(x, true);
}

/** ggml's dequantize_row_q5_K. */
export function dequantizeQ5K(bytes: Uint8Array): Float32Array {
  const n = (bytes.length / 176) * 256;
  const y = new Float32Array(n);
  for (let b = 0; b < n / 256; b++) {
    const blk = bytes.subarray(b * 176, (b + 1) * 176);
    const d = getF16(blk, 0);
    const dmin = getF16(blk, 2);
    const q = blk.subarray(4, 16);
    const qh = blk.subarray(16, 48);
    const ql = blk.subarray(48);
    for (let j = 0; j < 8; j++) {
      const [s, m] = scaleMin(j, q);
      const d1 = f32(d * s);
      const m1 = f32(dmin * m);
      for (let l = 0; l < 32; l++) {
        const byte = ql[Math.floor(j / 2) * 32 + l]!;
        const code = (j % 2 === 0 ? byte & 0xf : byte >> 4) + (qh[l]! & (1 << j) ? 16 : 0);
        y[b * 256 + j * 32 + l] = f32(f32(d1 * code) - m1);
      }
    }
  }
  return y;
}

export function dequantizeQ4K(bytes: Uint8Array): Float32Array {
  const n = (bytes.length / 144) * 256;
  const y = new Float32Array(n);
  for (let b = 0; b < n / 256; b++) {
    const blk = bytes.subarray(b * 144, (b + 1) * 144);
    const d = getF16(blk, 0);
    const dmin = getF16(blk, 2);
    const q = blk.subarray(4, 16);
    const qs = blk.subarray(16);
    for (let j = 0; j < 8; j++) {
      const [s, m] = scaleMin(j, q);
      const d1 = f32(d * s);
      const m1 = f32(dmin * m);
      for (let l = 0; l < 32; l++) {
        const byte = qs[Math.floor(j / 2) * 32 + l]!;
        const code = j % 2 === 0 ? byte & 0xf : byte >> 4;
        y[b * 256 + j * 32 + l] = f32(f32(d1 * code) - m1);
      }
    }
  }
  return y;
}

export function quantizeQ6K(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * 210);
  for (let b = 0; b < x.length / 256; b++) {
    const v = x.subarray(b * 256, (b + 1) * 256);
    const blk = out.subarray(b * 210, (b + 1) * 210);
    const sub: number[] = [];
    for (let j = 0; j < 16; j++) {
      let amax = 0;
      for (let l = 0; l < 16; l++) amax = Math.max(amax, Math.abs(v[j * 16 + l]!));
      sub.push(amax / 31);
    }
    const d = f16(Math.max(...sub) / 127 || 1e-8);
    const sc = sub.map((s) => Math.max(-128, Math.min(127, Math.round(s / d))));
    const ql = blk.subarray(0, 128);
    const qh = blk.subarray(128, 192);
    const scales = new Int8Array(blk.buffer, blk.byteOffset + 192, 16);
    sc.forEach((s, i) => (scales[i] = s));
    putF16(blk, 208, d);
    const codes = new Uint8Array(256);
    for (let i = 0; i < 256; i++) {
      const step = d * sc[Math.floor(i / 16)]! || 1;
      codes[i] = Math.max(0, Math.min(63, Math.round(v[i]! / step) + 32));
    }
    // inverse of the dequantizer's layout: per half (128 values), l in 0..31 → positions l, l+32, l+64, l+96
    for (let h = 0; h < 2; h++) {
      for (let l = 0; l < 32; l++) {
        const [c1, c2, c3, c4] = [0, 32, 64, 96].map((o) => codes[h * 128 + l + o]!);
        ql[h * 64 + l] = (c1! & 0xf) | ((c3! & 0xf) << 4);
        ql[h * 64 + l + 32] = (c2! & 0xf) | ((c4! & 0xf) << 4);
        qh[h * 32 + l] = (c1! >> 4) | ((c2! >> 4) << 2) | ((c3! >> 4) << 4) | ((c4! >> 4) << 6);
      }
    }
  }
  return out;
}

export function dequantizeQ6K(bytes: Uint8Array): Float32Array {
  const n = (bytes.length / 210) * 256;
  const y = new Float32Array(n);
  for (let b = 0; b < n / 256; b++) {
    const blk = bytes.subarray(b * 210, (b + 1) * 210);
    const d = getF16(blk, 208);
    const sc = new Int8Array(blk.buffer, blk.byteOffset + 192, 16);
    for (let h = 0; h < 2; h++) {
      const ql = blk.subarray(h * 64, h * 64 + 64);
      const qh = blk.subarray(128 + h * 32, 128 + h * 32 + 32);
      const s = sc.subarray(h * 8, h * 8 + 8);
      for (let l = 0; l < 32; l++) {
        const is = Math.floor(l / 16);
        const q1 = ((ql[l]! & 0xf) | (((qh[l]! >> 0) & 3) << 4)) - 32;
        const q2 = ((ql[l + 32]! & 0xf) | (((qh[l]! >> 2) & 3) << 4)) - 32;
        const q3 = ((ql[l]! >> 4) | (((qh[l]! >> 4) & 3) << 4)) - 32;
        const q4 = ((ql[l + 32]! >> 4) | (((qh[l]! >> 6) & 3) << 4)) - 32;
        const o = b * 256 + h * 128;
        y[o + l] = f32(f32(d * s[is]!) * q1);
        y[o + l + 32] = f32(f32(d * s[is + 2]!) * q2);
        y[o + l + 64] = f32(f32(d * s[is + 4]!) * q3);
        y[o + l + 96] = f32(f32(d * s[is + 6]!) * q4);
      }
    }
  }
  return y;
}

/** llama.cpp's non-linear 4-bit codebook (kvalues_iq4nl). */
export const IQ4_VALUES = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

function nearestIq4(v: number, d: number): number {
  let best = 0;
  for (let i = 1; i < 16; i++) if (Math.abs(IQ4_VALUES[i]! * d - v) < Math.abs(IQ4_VALUES[best]! * d - v)) best = i;
  return best;
}

/** IQ4_NL blocks of 32: f16 d, 16 bytes of nibbles (low = values 0..15, high = 16..31); value = d·kvalues[q]. */
export function quantizeIQ4NL(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 18);
  for (let b = 0; b < x.length / 32; b++) {
    const v = x.subarray(b * 32, b * 32 + 32);
    let amax = 0;
    for (const e of v) amax = Math.max(amax, Math.abs(e));
    const d = f16(amax / 127 || 1e-8);
    putF16(out, b * 18, d);
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = nearestIq4(v[j]!, d) | (nearestIq4(v[j + 16]!, d) << 4);
  }
  return out;
}

export function dequantizeIQ4NL(bytes: Uint8Array): Float32Array {
  const y = new Float32Array((bytes.length / 18) * 32);
  for (let b = 0; b < bytes.length / 18; b++) {
    const d = getF16(bytes, b * 18);
    for (let j = 0; j < 16; j++) {
      const q = bytes[b * 18 + 2 + j]!;
      y[b * 32 + j] = f32(d * IQ4_VALUES[q & 15]!);
      y[b * 32 + j + 16] = f32(d * IQ4_VALUES[q >> 4]!);
    }
  }
  return y;
}

/** IQ4_XS blocks of 256: f16 d, u16 scales_h, 4 bytes scales_l, 128 bytes of nibbles (16 per sub-block of 32). */
export function quantizeIQ4XS(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * 136);
  for (let b = 0; b < x.length / 256; b++) {
    const v = x.subarray(b * 256, b * 256 + 256);
    const blk = out.subarray(b * 136, b * 136 + 136);
    const sub: number[] = [];
    for (let ib = 0; ib < 8; ib++) {
      let amax = 0;
      for (let l = 0; l < 32; l++) amax = Math.max(amax, Math.abs(v[ib * 32 + l]!));
      sub.push(amax / 127);
    }
    const d = f16(Math.max(...sub) / 31 || 1e-8);
    putF16(blk, 0, d);
    let scalesH = 0;
    for (let ib = 0; ib < 8; ib++) {
      const ls = Math.max(0, Math.min(63, Math.round(sub[ib]! / d) + 32));
      blk[4 + (ib >> 1)] = blk[4 + (ib >> 1)]! | ((ls & 15) << (4 * (ib % 2)));
      scalesH |= (ls >> 4) << (2 * ib);
      const dl = d * (ls - 32);
      for (let j = 0; j < 16; j++) {
        blk[8 + ib * 16 + j] = nearestIq4(v[ib * 32 + j]!, dl) | (nearestIq4(v[ib * 32 + j + 16]!, dl) << 4);
      }
    }
    new DataView(blk.buffer, blk.byteOffset).setUint16(2, scalesH, true);
  }
  return out;
}

/** ggml's dequantize_row_iq4_xs. */
export function dequantizeIQ4XS(bytes: Uint8Array): Float32Array {
  const y = new Float32Array((bytes.length / 136) * 256);
  for (let b = 0; b < bytes.length / 136; b++) {
    const blk = bytes.subarray(b * 136, b * 136 + 136);
    const d = getF16(blk, 0);
    const scalesH = new DataView(blk.buffer, blk.byteOffset).getUint16(2, true);
    for (let ib = 0; ib < 8; ib++) {
      const ls = ((blk[4 + (ib >> 1)]! >> (4 * (ib % 2))) & 15) | (((scalesH >> (2 * ib)) & 3) << 4);
      const dl = f32(d * (ls - 32));
      for (let j = 0; j < 16; j++) {
        const q = blk[8 + ib * 16 + j]!;
        y[b * 256 + ib * 32 + j] = f32(dl * IQ4_VALUES[q & 15]!);
        y[b * 256 + ib * 32 + j + 16] = f32(dl * IQ4_VALUES[q >> 4]!);
      }
    }
  }
  return y;
}

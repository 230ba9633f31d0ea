/**
 * Streaming detokenizers: token ids in, text out as soon as it is complete UTF-8.
 *
 * Each token is turned into bytes (byte-level BPE: the GPT-2 byte↔unicode table; SentencePiece:
 * "▁"→" " and `<0xNN>` byte-fallback pieces; added tokens: their literal text), and the bytes go
 * through a streaming TextDecoder, which holds back an incomplete trailing sequence, so a character
 * split across tokens (emoji, CJK) is emitted whole and U+FFFD never appears mid-stream. Models whose
 * decoder is neither falls back to re-decoding the sequence and emitting the stable new suffix.
 */
import type { TextTokenizer } from "./tokenizer.ts";

export interface StreamingDetokenizer {
  /** Feed one token; returns the newly completed text (possibly ""). */
  add(tokenId: number): string;
  /** End of stream: returns whatever was held back (a dangling partial sequence becomes U+FFFD). */
  flush(): string;
  /** All text emitted so far (including by flush). */
  readonly text: string;
}

export interface DetokenizerOptions {
  /** Drop special added tokens (e.g. `<|im_end|>`) from the text. @default false */
  skipSpecialTokens?: boolean;
}

/** GPT-2 byte-level table: printable bytes map to themselves, the rest to U+0100 upwards; returns char code → byte. */
function byteDecoderTable(): Int16Array {
  const table = new Int16Array(0x200).fill(-1);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[printable ? b : 256 + extra++] = b;
  }
  return table;
}

let BYTE_DECODER: Int16Array | undefined;
const encoder = new TextEncoder();
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** Converts one token id to its bytes; cached per id because decode loops see the same ids again and again. */
class PieceBytes {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly added = new Map<number, { content: string; special: boolean }>();

  constructor(
    private readonly tok: TextTokenizer,
    private readonly kind: "bytelevel" | "spm",
    private readonly skipSpecial: boolean,
  ) {
    for (const t of tok.addedTokens) this.added.set(t.id, t);
  }

  get(id: number): Uint8Array {
    let b = this.cache.get(id);
    if (b === undefined) {
      b = this.compute(id);
      this.cache.set(id, b);
    }
    return b;
  }

  // Added tokens go through the same decoder steps as vocabulary pieces, as in HF tokenizers
  // (Gemma's whitespace-run tokens "▁▁▁" are added tokens that must decode to spaces).
  private compute(id: number): Uint8Array {
    const added = this.added.get(id);
    if (added?.special && this.skipSpecial) return new Uint8Array(0);
    const piece = added?.content ?? this.tok.idToToken(id);
    if (piece === undefined) return new Uint8Array(0);
    if (this.kind === "spm") {
      const m = BYTE_PIECE.exec(piece);
      if (m) return new Uint8Array([Number.parseInt(m[1] as string, 16)]);
      return encoder.encode(piece.replaceAll("▁", " "));
    }
    BYTE_DECODER ??= byteDecoderTable();
    const bytes = new Uint8Array(piece.length);
    let n = 0;
    for (let i = 0; i < piece.length; i++) {
      const c = piece.charCodeAt(i);
      const b = c < BYTE_DECODER.length ? (BYTE_DECODER[c] as number) : -1;
      // A piece with any character outside the byte table is taken as literal text (HF ByteLevel decoder rule).
      if (b < 0) return encoder.encode(piece);
      bytes[n++] = b;
    }
    return bytes.subarray(0, n);
  }
}

/** Byte-based streaming detokenizer for byte-level BPE and SentencePiece (byte fallback) vocabularies. */
class ByteStreamDetokenizer implements StreamingDetokenizer {
  private readonly decoder = new TextDecoder("utf-8");
  private readonly pieces: PieceBytes;
  private out = "";
  private stripPending: boolean;

  constructor(tok: TextTokenizer, kind: "bytelevel" | "spm", opts: DetokenizerOptions, stripLeadingSpace: boolean) {
    this.pieces = new PieceBytes(tok, kind, opts.skipSpecialTokens ?? false);
    this.stripPending = stripLeadingSpace;
  }

  add(tokenId: number): string {
    return this.emit(this.decoder.decode(this.pieces.get(tokenId), { stream: true }));
  }

  flush(): string {
    return this.emit(this.decoder.decode());
  }

  get text(): string {
    return this.out;
  }

  private emit(s: string): string {
    // SentencePiece's decoder strips the one space its normalizer prepended to the first word.
    if (this.stripPending && s.length > 0) {
      this.stripPending = false;
      if (s.startsWith(" ")) s = s.slice(1);
    }
    this.out += s;
    return s;
  }
}

/** Fallback: re-decode the ids and emit the new suffix once it no longer ends in U+FFFD (an unfinished character). */
class RedecodeDetokenizer implements StreamingDetokenizer {
  private ids: number[] = [];
  private out = "";

  constructor(
    private readonly tok: TextTokenizer,
    private readonly opts: DetokenizerOptions,
  ) {}

  add(tokenId: number): string {
    this.ids.push(tokenId);
    const full = this.tok.decode(this.ids, { skipSpecialTokens: this.opts.skipSpecialTokens });
    if (full.endsWith("\uFFFD") || !full.startsWith(this.out)) return "";
    const s = full.slice(this.out.length);
    this.out = full;
    return s;
  }

  flush(): string {
    const full = this.tok.decode(this.ids, { skipSpecialTokens: this.opts.skipSpecialTokens });
    const s = full.startsWith(this.out) ? full.slice(this.out.length) : "";
    this.out += s;
    return s;
  }

  get text(): string {
    return this.out;
  }
}

/** A new streaming detokenizer suited to the tokenizer's decoder (see TextTokenizer.decoderKind). */
export function createDetokenizer(tok: TextTokenizer, opts: DetokenizerOptions = {}): StreamingDetokenizer {
  if (tok.decoderKind === "bytelevel") return new ByteStreamDetokenizer(tok, "bytelevel", opts, false);
  if (tok.decoderKind === "spm") return new ByteStreamDetokenizer(tok, "spm", opts, tok.stripsLeadingSpace);
  return new RedecodeDetokenizer(tok, opts);
}

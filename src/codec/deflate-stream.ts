/**
 * Streaming deflate and inflate for files: chunks in, output out as it is
 * produced (node:zlib's shape, synchronous). Each stream owns one fixed region
 * of the shared memory — its kernel scratch (window, chains, tables), an input
 * staging buffer and an output buffer — so its memory is constant whatever the
 * stream's length. Chunks of any size and boundary work, 1-byte chunks
 * included; the compressed bytes do not depend on the chunking (a stream equals
 * the one-shot `deflate.compress` of its concatenated input).
 */
import { FlashpackError } from '../errors.js';
import { runtime, type Runtime } from '../wasm/runtime.js';
import { deflateOptionsArg, formatName, inflateError, inflateOptionsArg, usedIn, usedOut, type DeflateOptions, type InflateOptions } from './deflate.js';
import { readU32le } from './byte-writer.js';
import { bytesOf } from './input.js';
import { ScratchRegion } from './scratch-pool.js';

/** Input is staged in pieces of this size. */
const STREAM_IN_BYTES = 64 << 10;
/** A compressor call's output room (more than one block's worst case, 64 KiB). */
const COMPRESS_OUT_BYTES = 128 << 10;
/** A decompressor's output buffer: the 32 KiB window, then room for new output. */
const WINDOW_BYTES = 32 << 10;
const DECOMPRESS_OUT_BYTES = WINDOW_BYTES + (224 << 10);

// Kernel results (assembly/layout.ts).
const DEFLATE_DONE = 0;
const DEFLATE_NEED_OUTPUT = 2;
const INFLATE_NEED_OUTPUT = 2;

function concat(pieces: Uint8Array[], total: number): Uint8Array {
  if (pieces.length === 1) return pieces[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A deflate stream: `push` chunks, then `finish`; each returns the output
 * produced so far. Errors: EINVAL for bad options or a chunk that is not
 * bytes; ENXIO for a call after finish().
 */
export class DeflateCompressor {
  readonly level: number;
  readonly format: 'raw' | 'zlib' | 'gzip';
  private readonly rt: Runtime;
  private readonly region: ScratchRegion;
  private readonly formatCode: number;
  private readonly inAt: number;
  private readonly outAt: number;
  private check: number;
  private length = 0;
  private started = false;

  constructor(opts?: DeflateOptions) {
    const { level, format } = deflateOptionsArg(opts, 'deflate.createCompressor');
    this.level = level;
    this.formatCode = format;
    this.format = opts?.format ?? 'raw';
    this.rt = runtime();
    const scratchBytes = this.rt.exports.DEFLATE_SCRATCH_BYTES.value as number;
    this.region = new ScratchRegion(this.rt, scratchBytes + STREAM_IN_BYTES + COMPRESS_OUT_BYTES, this);
    this.inAt = this.region.ptr + scratchBytes;
    this.outAt = this.inAt + STREAM_IN_BYTES;
    this.check = this.formatCode === 1 ? 1 : 0;
    this.rt.exports.deflateInit(this.region.ptr, this.level);
  }

  /** Compresses a chunk; returns the compressed bytes this produced (maybe none yet). */
  push(chunk: ArrayBufferView | ArrayBuffer): Uint8Array {
    const input = bytesOf(chunk, 'DeflateCompressor.push: chunk');
    this.live('push');
    const pieces: Uint8Array[] = [];
    let total = this.start(pieces);
    const ex = this.rt.exports;
    for (let off = 0; off < input.length; off += STREAM_IN_BYTES) {
      const n = Math.min(STREAM_IN_BYTES, input.length - off);
      this.rt.u8.set(input.subarray(off, off + n), this.inAt);
      // The footer's checksum, taken alongside the payload.
      if (this.formatCode === 1) this.check = ex.adler32(this.inAt, n, this.check) >>> 0;
      else if (this.formatCode === 2) this.check = ex.crc32(this.inAt, n, this.check) >>> 0;
      this.length += n;
      let used = 0;
      for (;;) {
        const r = ex.deflate(this.region.ptr, this.inAt + used, n - used, this.outAt, COMPRESS_OUT_BYTES, ex.DEFLATE_NO_FLUSH.value as number);
        total += this.collect(pieces);
        used += readU32le(this.rt.u8, this.region.ptr + (ex.DEFLATE_IN_USED.value as number));
        if (r !== DEFLATE_NEED_OUTPUT) break;
      }
    }
    return concat(pieces, total);
  }

  /** Ends the stream: the last compressed bytes and the footer. The stream's memory is released. */
  finish(): Uint8Array {
    this.live('finish');
    const pieces: Uint8Array[] = [];
    let total = this.start(pieces);
    const ex = this.rt.exports;
    for (;;) {
      const r = ex.deflate(this.region.ptr, this.inAt, 0, this.outAt, COMPRESS_OUT_BYTES, ex.DEFLATE_FINISH.value as number);
      total += this.collect(pieces);
      if (r === DEFLATE_DONE) break;
    }
    const at = this.rt.stage(16);
    const n = ex.deflateFooter(at, this.formatCode, this.check, this.length % 2 ** 32);
    if (n > 0) {
      pieces.push(this.rt.u8.slice(at, at + n));
      total += n;
    }
    this.region.release();
    return concat(pieces, total);
  }

  private live(what: string): void {
    if (this.region.released) throw new FlashpackError('ENXIO', `DeflateCompressor.${what}: the stream is finished`);
  }

  /** The header goes out with the first output. */
  private start(pieces: Uint8Array[]): number {
    if (this.started) return 0;
    this.started = true;
    const at = this.rt.stage(16);
    const n = this.rt.exports.deflateHeader(at, this.formatCode, this.level);
    if (n > 0) pieces.push(this.rt.u8.slice(at, at + n));
    return n;
  }

  private collect(pieces: Uint8Array[]): number {
    const n = readU32le(this.rt.u8, this.region.ptr + (this.rt.exports.DEFLATE_OUT_USED.value as number));
    if (n > 0) pieces.push(this.rt.u8.slice(this.outAt, this.outAt + n));
    return n;
  }
}

/**
 * An inflate stream: `push` chunks of compressed input, then `finish`, which
 * throws ECORRUPT if the stream was cut short. Output comes back as it is
 * decoded; for gzip, every member of a multi-member file. Errors: ECORRUPT
 * (the stream is finished by it), ENOTSUP for a preset dictionary, EINVAL for
 * bad options or a chunk that is not bytes, ENXIO for a call after finish()
 * or an error.
 */
export class DeflateDecompressor {
  readonly format: 'raw' | 'zlib' | 'gzip';
  private readonly rt: Runtime;
  private readonly region: ScratchRegion;
  private readonly formatCode: number;
  private readonly inAt: number;
  private readonly outAt: number;
  private outPos = 0;

  constructor(opts?: InflateOptions) {
    this.formatCode = inflateOptionsArg(opts, 'deflate.createDecompressor');
    this.format = opts?.format ?? 'raw';
    this.rt = runtime();
    const scratchBytes = this.rt.exports.INFLATE_SCRATCH_BYTES.value as number;
    this.region = new ScratchRegion(this.rt, scratchBytes + STREAM_IN_BYTES + DECOMPRESS_OUT_BYTES, this);
    this.inAt = this.region.ptr + scratchBytes;
    this.outAt = this.inAt + STREAM_IN_BYTES;
    this.rt.exports.inflateInit(this.region.ptr, this.formatCode);
  }

  /** Decodes a chunk; returns the bytes it decoded to (maybe none yet). ECORRUPT on a bad stream. */
  push(chunk: ArrayBufferView | ArrayBuffer): Uint8Array {
    const input = bytesOf(chunk, 'DeflateDecompressor.push: chunk');
    this.live('push');
    const pieces: Uint8Array[] = [];
    let total = 0;
    for (let off = 0; off < input.length; off += STREAM_IN_BYTES) {
      const n = Math.min(STREAM_IN_BYTES, input.length - off);
      this.rt.u8.set(input.subarray(off, off + n), this.inAt);
      let used = 0;
      for (;;) {
        const r = this.run(this.inAt + used, n - used, 0);
        total += this.collect(pieces);
        used += usedIn(this.rt, this.region.ptr);
        if (r !== INFLATE_NEED_OUTPUT) break;
        this.slide();
      }
    }
    return concat(pieces, total);
  }

  /** Ends the stream; ECORRUPT if it is incomplete. The stream's memory is released. */
  finish(): Uint8Array {
    this.live('finish');
    try {
      this.run(this.inAt, 0, 1);
    } finally {
      this.region.release();
    }
    return new Uint8Array(0);
  }

  private live(what: string): void {
    if (this.region.released) throw new FlashpackError('ENXIO', `DeflateDecompressor.${what}: the stream is finished`);
  }

  private run(src: number, len: number, final: number): number {
    const s = this.region.ptr;
    const r = this.rt.exports.inflate(s, src, len, this.outAt, this.outPos, DECOMPRESS_OUT_BYTES, final);
    if (r < 0) {
      const error = inflateError(this.rt, s, formatName(this.formatCode));
      this.region.release();
      throw error;
    }
    return r;
  }

  private collect(pieces: Uint8Array[]): number {
    const end = usedOut(this.rt, this.region.ptr);
    const n = end - this.outPos;
    if (n > 0) pieces.push(this.rt.u8.slice(this.outAt + this.outPos, this.outAt + end));
    this.outPos = end;
    return n;
  }

  /** The output buffer is full: keep its last 32 KiB as the window. */
  private slide(): void {
    if (this.outPos < WINDOW_BYTES) throw new FlashpackError('EINTERNAL', `inflate stream: output buffer full at ${this.outPos} bytes`);
    this.rt.u8.copyWithin(this.outAt, this.outAt + this.outPos - WINDOW_BYTES, this.outAt + this.outPos);
    this.outPos = WINDOW_BYTES;
  }
}

export function createCompressor(opts?: DeflateOptions): DeflateCompressor {
  return new DeflateCompressor(opts);
}

export function createDecompressor(opts?: InflateOptions): DeflateDecompressor {
  return new DeflateDecompressor(opts);
}

/**
 * LZ4 frame format (lz4/doc/lz4_Frame_format.md), interoperable with the `lz4`
 * command-line tool both ways.
 *
 * Writes: magic, FLG/BD descriptor (version 01, independent blocks), optional
 * content size, header checksum, blocks (stored raw when compression would not
 * shrink them), optional block checksums, EndMark, optional content checksum.
 * Reads: any number of concatenated frames, skippable frames, linked or
 * independent blocks, block and content checksums, content size, and the legacy
 * format (`lz4 -l`, the Linux kernel's). Frames that need a dictionary are
 * ENOTSUP. Input is staged block by block, so memory use is bounded by the block
 * size (4 MiB at most, 8 MiB for legacy frames), not by the frame size.
 */
import { FlashpackError, badArgument, checkBoolean, checkOptions, corrupt, hex32 } from '../errors.js';
import { runtime, type Runtime } from '../wasm/runtime.js';
import { ByteWriter, readU32le } from './byte-writer.js';
import { bytesOf } from './input.js';
import { accelerationArg, lz4BlockError, type Lz4CompressOptions } from './lz4.js';

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const LEGACY_MAGIC = 0x184c2102;
const LEGACY_BLOCK_BYTES = 8 << 20;
const LEGACY_MAX_COMPRESSED_BYTES = LEGACY_BLOCK_BYTES + Math.floor(LEGACY_BLOCK_BYTES / 255) + 16;
const UNCOMPRESSED_BIT = 0x80000000;
const WINDOW_BYTES = 65536;
/** Largest up-front output allocation trusted from a frame's content-size field. */
const PREALLOCATE_MAX_BYTES = 1 << 30;

const FLG_VERSION_01 = 0x40;
const FLG_BLOCK_INDEPENDENT = 0x20;
const FLG_BLOCK_CHECKSUM = 0x10;
const FLG_CONTENT_SIZE = 0x08;
const FLG_CONTENT_CHECKSUM = 0x04;
const FLG_RESERVED = 0x02;
const FLG_DICT_ID = 0x01;

/** BD block-max-size codes 4..7. */
const BLOCK_SIZES: Record<number, number> = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };

export type Lz4FrameBlockSize = 65536 | 262144 | 1048576 | 4194304;

export interface Lz4FrameOptions extends Lz4CompressOptions {
  /** Block maximum size: 64 KiB, 256 KiB, 1 MiB or 4 MiB (default, as `lz4`). */
  blockSize?: Lz4FrameBlockSize;
  /** xxHash32 of each stored block (default false, as `lz4`). */
  blockChecksum?: boolean;
  /** xxHash32 of the whole content (default true, as `lz4`). */
  contentChecksum?: boolean;
  /** Record the content size in the header (default true). */
  contentSize?: boolean;
}

function xxh32Of(rt: Runtime, bytes: Uint8Array): number {
  const at = rt.stage(bytes.length);
  rt.u8.set(bytes, at);
  return rt.exports.xxh32(at, bytes.length, 0) >>> 0;
}

/**
 * Compresses `src` into one LZ4 frame. Errors: EINVAL for src that is not
 * bytes, options that are not an object, or an option of the wrong type or
 * out of range (the message names it: options.blockSize, …).
 */
export function compressFrame(src: ArrayBufferView | ArrayBuffer, opts?: Lz4FrameOptions): Uint8Array {
  const input = bytesOf(src, 'lz4.compressFrame: src');
  const o = checkOptions('lz4.compressFrame: options', opts);
  const blockSize = o.blockSize ?? 4 << 20;
  const code = Number(Object.keys(BLOCK_SIZES).find((k) => BLOCK_SIZES[Number(k)] === blockSize));
  if (!code) throw badArgument('lz4.compressFrame: options.blockSize', 'one of 65536, 262144, 1048576, 4194304', blockSize);
  const accel = accelerationArg(o, 'lz4.compressFrame');
  const blockChecksum = checkBoolean('lz4.compressFrame: options.blockChecksum', o.blockChecksum, false);
  const contentChecksum = checkBoolean('lz4.compressFrame: options.contentChecksum', o.contentChecksum, true);
  const contentSize = checkBoolean('lz4.compressFrame: options.contentSize', o.contentSize, true);

  const rt = runtime();
  const out = new ByteWriter(64 + input.length + 8 * Math.ceil(input.length / blockSize));
  out.u32le(FRAME_MAGIC);
  const desc: number[] = [
    FLG_VERSION_01 | FLG_BLOCK_INDEPENDENT | (blockChecksum ? FLG_BLOCK_CHECKSUM : 0) |
      (contentSize ? FLG_CONTENT_SIZE : 0) | (contentChecksum ? FLG_CONTENT_CHECKSUM : 0),
    code << 4,
  ];
  if (contentSize) {
    let n = input.length;
    for (let i = 0; i < 8; i++) {
      desc.push(n % 256);
      n = Math.floor(n / 256);
    }
  }
  const descBytes = Uint8Array.from(desc);
  out.write(descBytes);
  out.u8((xxh32Of(rt, descBytes) >>> 8) & 0xff);

  const inAt = rt.stage(2 * blockSize);
  const outAt = inAt + blockSize;
  const ex = rt.exports;
  if (contentChecksum) ex.xxh32Init(rt.ctx, 0);
  for (let off = 0; off < input.length; off += blockSize) {
    const len = Math.min(blockSize, input.length - off);
    rt.u8.set(input.subarray(off, off + len), inAt);
    if (contentChecksum) ex.xxh32Update(rt.ctx, inAt, len);
    // A block that would not shrink is stored raw: compress into len - 1 bytes.
    const size = ex.lz4Compress(inAt, len, outAt, len - 1, rt.ctx, accel);
    const storedAt = size > 0 ? outAt : inAt;
    const storedLen = size > 0 ? size : len;
    out.u32le(size > 0 ? size : (len | UNCOMPRESSED_BIT) >>> 0);
    out.write(rt.u8.subarray(storedAt, storedAt + storedLen));
    if (blockChecksum) out.u32le(ex.xxh32(storedAt, storedLen, 0));
  }
  out.u32le(0); // EndMark
  if (contentChecksum) out.u32le(ex.xxh32Digest(rt.ctx));
  return out.bytes();
}

function need(src: Uint8Array, pos: number, n: number, what: string): void {
  if (src.length - pos < n) throw corrupt(`lz4 frame: truncated ${what} at byte ${pos}: needs ${n} bytes, ${src.length - pos} left`);
}

/**
 * Decompresses every frame in `src` (LZ4 frames, skippable frames, legacy
 * frames). Errors: ECORRUPT for a bad frame (or a block that decodes past its
 * frame's block maximum); ENOTSUP for a frame that needs a dictionary; ENOMEM
 * for a content size over 2^53; EINVAL for src that is not bytes.
 */
export function decompressFrame(src: ArrayBufferView | ArrayBuffer): Uint8Array {
  const input = bytesOf(src, 'lz4.decompressFrame: src');
  if (input.length === 0) throw corrupt('lz4 frame: empty input (expected the magic number 0x184d2204 at byte 0)');
  const rt = runtime();
  const out = new ByteWriter(0);
  let pos = 0;
  while (pos < input.length) {
    need(input, pos, 4, 'magic number');
    const magic = readU32le(input, pos);
    if (magic === FRAME_MAGIC) {
      pos = decodeFrame(rt, input, pos, out);
    } else if (((magic & SKIPPABLE_MAGIC_MASK) >>> 0) === SKIPPABLE_MAGIC) {
      need(input, pos, 8, 'skippable frame header');
      const size = readU32le(input, pos + 4);
      need(input, pos + 8, size, 'skippable frame');
      pos += 8 + size;
    } else if (magic === LEGACY_MAGIC) {
      pos = decodeLegacy(rt, input, pos, out);
    } else {
      throw corrupt(`lz4 frame: unknown magic number ${hex32(magic)} at byte ${pos}`);
    }
  }
  return out.bytes();
}

function decodeFrame(rt: Runtime, src: Uint8Array, start: number, out: ByteWriter): number {
  const ex = rt.exports;
  let pos = start + 4;
  need(src, pos, 3, 'frame descriptor');
  const flg = src[pos];
  const bd = src[pos + 1];
  if (flg >> 6 !== 1) throw corrupt(`lz4 frame: version ${flg >> 6} in FLG byte ${pos} (only version 01 exists)`);
  if (flg & FLG_RESERVED) throw corrupt(`lz4 frame: reserved bit set in FLG ${hex32(flg)} at byte ${pos}`);
  if (bd & 0x8f) throw corrupt(`lz4 frame: reserved bits set in BD ${hex32(bd)} at byte ${pos + 1}`);
  const blockMax = BLOCK_SIZES[(bd >> 4) & 7];
  if (!blockMax) throw corrupt(`lz4 frame: block maximum size code ${(bd >> 4) & 7} at byte ${pos + 1} (valid: 4 to 7)`);
  const independent = (flg & FLG_BLOCK_INDEPENDENT) !== 0;
  const blockChecksum = (flg & FLG_BLOCK_CHECKSUM) !== 0;
  const hasContentSize = (flg & FLG_CONTENT_SIZE) !== 0;
  const contentChecksum = (flg & FLG_CONTENT_CHECKSUM) !== 0;
  const descLen = 2 + (hasContentSize ? 8 : 0) + (flg & FLG_DICT_ID ? 4 : 0);
  need(src, pos, descLen + 1, 'frame descriptor');
  const hc = (xxh32Of(rt, src.subarray(pos, pos + descLen)) >>> 8) & 0xff;
  if (hc !== src[pos + descLen]) {
    throw corrupt(`lz4 frame: header checksum ${hex32(src[pos + descLen])} at byte ${pos + descLen} does not match the descriptor's ${hex32(hc)}`);
  }
  let contentSize = -1;
  if (hasContentSize) {
    const lo = readU32le(src, pos + 2);
    const hi = readU32le(src, pos + 6);
    if (hi >= 0x200000) throw new FlashpackError('ENOMEM', `lz4 frame: content size ${hi * 2 ** 32 + lo} at byte ${pos + 2} exceeds 2^53 bytes`);
    contentSize = hi * 2 ** 32 + lo;
  }
  if (flg & FLG_DICT_ID) {
    throw new FlashpackError('ENOTSUP', `lz4 frame: dictionary ${hex32(readU32le(src, pos + descLen - 4))} at byte ${pos + descLen - 4} is required; flashpack has no dictionary support`);
  }
  pos += descLen + 1;

  const frameStartLength = out.length;
  if (contentSize > 0) {
    // Trust the declared size only as far as LZ4's 255:1 maximum ratio allows.
    const plausible = Math.min(contentSize, 255 * (src.length - pos) + blockMax, PREALLOCATE_MAX_BYTES);
    out.ensureSpare(plausible);
  }
  const inAt = rt.stage(blockMax + WINDOW_BYTES + blockMax + 16);
  const histAt = inAt + blockMax;
  const outAt = histAt + WINDOW_BYTES;
  let prefixLen = 0;
  if (contentChecksum) ex.xxh32Init(rt.ctx, 0);
  for (;;) {
    need(src, pos, 4, 'block size');
    const word = readU32le(src, pos);
    if (word === 0) {
      pos += 4;
      break;
    }
    const raw = (word & UNCOMPRESSED_BIT) !== 0;
    const size = word & 0x7fffffff;
    if (size > blockMax) throw corrupt(`lz4 frame: block size ${size} at byte ${pos} exceeds the frame's block maximum ${blockMax}`);
    need(src, pos + 4, size + (blockChecksum ? 4 : 0), 'block');
    const dataPos = pos + 4;
    rt.u8.set(src.subarray(dataPos, dataPos + size), inAt);
    if (blockChecksum) {
      const want = readU32le(src, dataPos + size);
      const got = ex.xxh32(inAt, size, 0) >>> 0;
      if (got !== want) throw corrupt(`lz4 frame: block checksum ${hex32(want)} at byte ${dataPos + size} does not match the block's ${hex32(got)}`);
    }
    let decoded: number;
    if (raw) {
      rt.u8.copyWithin(outAt, inAt, inAt + size);
      decoded = size;
    } else {
      decoded = ex.lz4Decompress(inAt, size, outAt, blockMax, independent ? 0 : prefixLen, rt.ctx);
      if (decoded < 0) throw lz4BlockError(rt, rt.ctx, `lz4 frame: block at byte ${pos}`, dataPos, 'ECORRUPT', "the frame's block maximum");
    }
    if (contentChecksum) ex.xxh32Update(rt.ctx, outAt, decoded);
    out.write(rt.u8.subarray(outAt, outAt + decoded));
    if (!independent) {
      // Keep the last 64 KiB of output right below outAt for the next block's matches.
      const keep = Math.min(WINDOW_BYTES, prefixLen + decoded);
      rt.u8.copyWithin(outAt - keep, outAt + decoded - keep, outAt + decoded);
      prefixLen = keep;
    }
    pos = dataPos + size + (blockChecksum ? 4 : 0);
  }
  const produced = out.length - frameStartLength;
  if (contentSize >= 0 && produced !== contentSize) {
    throw corrupt(`lz4 frame: content size field says ${contentSize} bytes, the blocks decode to ${produced}`);
  }
  if (contentChecksum) {
    need(src, pos, 4, 'content checksum');
    const want = readU32le(src, pos);
    const got = ex.xxh32Digest(rt.ctx) >>> 0;
    if (got !== want) throw corrupt(`lz4 frame: content checksum ${hex32(want)} at byte ${pos} does not match the content's ${hex32(got)}`);
    pos += 4;
  }
  return pos;
}

function decodeLegacy(rt: Runtime, src: Uint8Array, start: number, out: ByteWriter): number {
  let pos = start + 4;
  const inAt = rt.stage(LEGACY_MAX_COMPRESSED_BYTES + 16 + LEGACY_BLOCK_BYTES);
  const outAt = inAt + LEGACY_MAX_COMPRESSED_BYTES + 16;
  while (pos < src.length) {
    need(src, pos, 4, 'legacy block size');
    const size = readU32le(src, pos);
    // The legacy format has no end mark: the next frame's magic ends it.
    if (size === FRAME_MAGIC || size === LEGACY_MAGIC || ((size & SKIPPABLE_MAGIC_MASK) >>> 0) === SKIPPABLE_MAGIC) break;
    if (size > LEGACY_MAX_COMPRESSED_BYTES) throw corrupt(`lz4 legacy frame: block size ${size} at byte ${pos} exceeds ${LEGACY_MAX_COMPRESSED_BYTES}`);
    need(src, pos + 4, size, 'legacy block');
    rt.u8.set(src.subarray(pos + 4, pos + 4 + size), inAt);
    const decoded = rt.exports.lz4Decompress(inAt, size, outAt, LEGACY_BLOCK_BYTES, 0, rt.ctx);
    if (decoded < 0) throw lz4BlockError(rt, rt.ctx, `lz4 legacy frame: block at byte ${pos}`, pos + 4, 'ECORRUPT', 'the legacy block maximum');
    out.write(rt.u8.subarray(outAt, outAt + decoded));
    pos += 4 + size;
  }
  return pos;
}

/** Synchronous codecs on the caller's thread: Uint8Array in, Uint8Array out. */
export {
  crc32, crc32c, adler32, xxh32, crc32Combine, crc32cCombine, adler32Combine, crc32At, crc32cAt, adler32At,
} from './checksum.js';
export { fingerprint, fingerprintAt, FINGERPRINT_BYTES } from './fingerprint.js';
import {
  compressBlock, decompressBlock, compressBlockInto, decompressBlockInto, compressBound, compressBlockAt, decompressBlockAt,
  LZ4_MAX_BLOCK_BYTES,
} from './lz4.js';
import { compressFrame, decompressFrame } from './lz4-frame.js';
export type { Lz4CompressOptions } from './lz4.js';
export type { Lz4FrameOptions, Lz4FrameBlockSize } from './lz4-frame.js';

/** LZ4: raw blocks (no size prefix), frames (the `lz4` tool's format), pointer-level entry points. */
export const lz4 = Object.freeze({
  compressBlock,
  decompressBlock,
  compressBlockInto,
  decompressBlockInto,
  compressBound,
  compressFrame,
  decompressFrame,
  compressBlockAt,
  decompressBlockAt,
  MAX_BLOCK_BYTES: LZ4_MAX_BLOCK_BYTES,
});
import {
  compress as deflateCompress, compressInto as deflateInto, compressAt as deflateAt, compressBound as deflateBound,
  header as deflateHeader, footer as deflateFooter, decompress as inflateStream, decompressAt as inflateAt,
  decompressInto as inflateInto,
} from './deflate.js';
import { createCompressor, createDecompressor } from './deflate-stream.js';
export type { DeflateFormat, DeflateOptions, InflateOptions, FooterFields } from './deflate.js';
export { DeflateCompressor, DeflateDecompressor } from './deflate-stream.js';

/** Deflate with raw, zlib or gzip framing: one-shot, header/footer, pointer-level entry points. */
export const deflate = Object.freeze({
  compress: deflateCompress,
  compressInto: deflateInto,
  compressAt: deflateAt,
  compressBound: deflateBound,
  decompress: inflateStream,
  decompressInto: inflateInto,
  decompressAt: inflateAt,
  header: deflateHeader,
  footer: deflateFooter,
  createCompressor,
  createDecompressor,
});

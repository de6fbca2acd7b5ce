// zlib (RFC 1950) and gzip (RFC 1952) framing around a raw deflate payload, in
// the shape of an offload engine: the header is written before the payload
// exists and the footer after it completes, from a checksum computed alongside
// (Adler-32 for zlib, CRC-32 for gzip; assembly/adler32.ts, assembly/crc32.ts).
//
// The bytes are zlib's: 78 01 / 78 5E / 78 9C / 78 DA for levels 0-1 / 2-5 / 6
// / 7-9 (FLEVEL as deflate.c sets it), and gzip's 1f 8b 08 with no flags,
// MTIME 0, XFL 2 at level 9 and 4 below level 2, OS 3 (Unix, zlib's OS_CODE).
import { FORMAT_ZLIB, FORMAT_GZIP } from "./layout";

export const ZLIB_HEADER_BYTES: usize = 2;
export const GZIP_HEADER_BYTES: usize = 10;
const GZIP_OS_UNIX: u8 = 3;

/** Writes the header of `format` for `level` at dst; returns its length (0 for raw). */
export function deflateHeader(dst: usize, format: u32, level: u32): usize {
  if (format == FORMAT_ZLIB) {
    const flevel: u32 = level < 2 ? 0 : level < 6 ? 1 : level == 6 ? 2 : 3;
    let header: u32 = (0x78 << 8) | (flevel << 6);
    header += 31 - header % 31;
    store<u8>(dst, <u8>(header >> 8));
    store<u8>(dst, <u8>header, 1);
    return ZLIB_HEADER_BYTES;
  }
  if (format == FORMAT_GZIP) {
    store<u32>(dst, 0x00088b1f); // ID1 ID2 CM FLG
    store<u32>(dst, 0, 4); // MTIME
    store<u8>(dst, level == 9 ? 2 : level < 2 ? 4 : 0, 8);
    store<u8>(dst, GZIP_OS_UNIX, 9);
    return GZIP_HEADER_BYTES;
  }
  return 0;
}

/**
 * Writes the footer of `format` at dst: Adler-32 big-endian (zlib), or CRC-32
 * then ISIZE = length mod 2^32, little-endian (gzip). Returns its length.
 */
export function deflateFooter(dst: usize, format: u32, check: u32, length: u32): usize {
  if (format == FORMAT_ZLIB) {
    store<u32>(dst, bswap<u32>(check));
    return 4;
  }
  if (format == FORMAT_GZIP) {
    store<u32>(dst, check);
    store<u32>(dst, length, 4);
    return 8;
  }
  return 0;
}

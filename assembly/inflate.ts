// Inflate (RFC 1951) with zlib (RFC 1950) and gzip (RFC 1952) framing: a
// resumable decoder whose whole state lives in the caller's scratch
// (layout.ts INFLATE_*), so a call may stop at any byte of input or output and
// the next call continues — chunk boundaries anywhere, 1-byte chunks included.
//
// Acceptance follows zlib 1.3's inflate (what node:zlib runs): the same code
// length, code completeness, distance and header checks. Where zlib's answer
// depends on how its caller sized the output buffers — a distance past the
// window a zlib header declares (CINFO < 7) — this decoder always rejects it,
// as zlib built with INFLATE_STRICT does. Unlike node:zlib, bytes after the end
// of a raw or zlib stream are an error, and after the last gzip member only
// zero padding is allowed.
//
// Decoding is table driven (zlib's inflate_fast shape): a 10-bit root table for
// literal/length codes and an 8-bit one for distances, with subtables for
// longer codes (entry format: scripts/gen-deflate-tables.mjs). The fast loop
// runs while 8 input bytes are left, refilling a 64-bit bit buffer with one
// unaligned load per symbol, and copies matches with 16-byte stores wherever
// the output has room for the overrun; everything near either end goes through
// the byte-at-a-time path. Every read stays in [src, src+srcLen), every write
// in [dst+dstPos, dst+dstCap) (bytes past the decoded end may be overwritten).
import {
  fail, FORMAT_RAW, FORMAT_ZLIB, FORMAT_GZIP, WINDOW_BYTES,
  INFLATE_ERROR_POS_HIGH, INFLATE_MODE, INFLATE_FORMAT, INFLATE_BITCOUNT, INFLATE_BITBUF, INFLATE_IN_TOTAL,
  INFLATE_CHECK, INFLATE_MEMBER_OUT, INFLATE_LAST, INFLATE_LENGTH, INFLATE_DIST, INFLATE_HOLD, INFLATE_HAVE,
  INFLATE_FLAGS, INFLATE_HCRC, INFLATE_NLEN, INFLATE_NDIST, INFLATE_NCODE, INFLATE_TABLES, INFLATE_REACH,
  INFLATE_IN_USED, INFLATE_OUT_USED, INFLATE_FIELD_POS, INFLATE_IP, INFLATE_IEND, INFLATE_OP, INFLATE_OEND,
  INFLATE_LOWEST, INFLATE_CHECK_FROM, INFLATE_SRC, INFLATE_BYTE, INFLATE_HEADER, INFLATE_LENS, INFLATE_WORK,
  INFLATE_PRECODE_TABLE, INFLATE_DYNAMIC_TABLES, INFLATE_WINDOW,
  M_ZLIB_HEADER, M_GZIP_HEADER, M_GZIP_XLEN, M_GZIP_EXTRA, M_GZIP_NAME, M_GZIP_COMMENT, M_GZIP_HCRC, M_BLOCK,
  M_STORED, M_STORED_COPY, M_DYN_COUNTS, M_DYN_PRECODE, M_DYN_LENS, M_DECODE, M_DIST, M_COPY, M_TRAILER,
  M_MEMBER_END, M_ZEROS, M_DONE,
  INFLATE_COMPLETE, INFLATE_NEED_INPUT, INFLATE_NEED_OUTPUT,
  E_INFLATE_TRUNCATED, E_INFLATE_ZLIB_CHECK_BITS, E_INFLATE_ZLIB_METHOD, E_INFLATE_ZLIB_WINDOW,
  E_INFLATE_ZLIB_DICTIONARY, E_INFLATE_GZIP_MAGIC, E_INFLATE_GZIP_METHOD, E_INFLATE_GZIP_FLAGS,
  E_INFLATE_GZIP_HEADER_CRC, E_INFLATE_BLOCK_TYPE, E_INFLATE_STORED_LENGTH, E_INFLATE_TOO_MANY_CODES,
  E_INFLATE_PRECODE, E_INFLATE_REPEAT_NO_PREVIOUS, E_INFLATE_REPEAT_OVERFLOW, E_INFLATE_MISSING_EOB,
  E_INFLATE_LITLEN_CODE, E_INFLATE_DIST_CODE, E_INFLATE_BAD_LITLEN, E_INFLATE_BAD_DIST,
  E_INFLATE_DISTANCE_TOO_FAR, E_INFLATE_CHECKSUM, E_INFLATE_LENGTH, E_INFLATE_TRAILING, E_INFLATE_INTERNAL,
  E_INFLATE_DISTANCE_BEYOND_WINDOW,
} from "./layout";
import {
  LIT, SUB, EOB, BAD, DSUB, DBAD, LITLEN_ROOT_BITS, DIST_ROOT_BITS, LITLEN_TABLE_ENTRIES, DIST_TABLE_ENTRIES,
  DIST_TABLE_OFFSET, LITLEN_TEMPLATE, DIST_TEMPLATE, FIXED_TABLES, PATTERN_INDEX, PATTERN_ROTATE, BL_ORDER,
} from "./generated/deflate-tables";
import { crc32 } from "./crc32";
import { adler32 } from "./adler32";

/** Internal handler result: the mode changed, keep going. */
const CONTINUE: i32 = 3;
/** decodeFast result: the block's end-of-block code was consumed. */
const END_OF_BLOCK: i32 = 4;
const ERROR: i32 = -1;
const LITLEN_MASK: u32 = (1 << LITLEN_ROOT_BITS) - 1;
const DIST_MASK: u32 = (1 << DIST_ROOT_BITS) - 1;
/** A length/distance pair needs at most 15+5+15+13 bits; a refill leaves >= 56. */
const FAST_INPUT_MARGIN: usize = 8;
/** 16-byte match copies overrun the match by up to 15 bytes. */
const COPY_OVERRUN: u32 = 16;
const GZIP_FHCRC: u32 = 2;
const GZIP_FEXTRA: u32 = 4;
const GZIP_FNAME: u32 = 8;
const GZIP_FCOMMENT: u32 = 16;
const GZIP_FRESERVED: u32 = 0xe0;
const CODE_OVERSUBSCRIBED: u32 = 1;
const CODE_INCOMPLETE: u32 = 2;
const CODE_EMPTY: u32 = 3;

/** Starts a stream of `format` (FORMAT_*) in scratch `s`. */
export function inflateInit(s: usize, format: u32): void {
  memory.fill(s, 0, INFLATE_LENS);
  store<u32>(s + INFLATE_FORMAT, format);
  store<u32>(s + INFLATE_MODE, format == FORMAT_GZIP ? M_GZIP_HEADER : format == FORMAT_ZLIB ? M_ZLIB_HEADER : M_BLOCK);
  store<u32>(s + INFLATE_CHECK, format == FORMAT_ZLIB ? 1 : 0);
  store<u32>(s + INFLATE_WINDOW, <u32>WINDOW_BYTES);
}

/**
 * Decodes input [src, src+srcLen) into [dst+dstPos, dst+dstCap); the dstPos
 * bytes before are this stream's previous output (the window), as far back as
 * it reaches. Returns INFLATE_COMPLETE, INFLATE_NEED_INPUT, INFLATE_NEED_OUTPUT
 * (INFLATE_IN_USED / INFLATE_OUT_USED say how far it got), or -1 with the error
 * record filled. With `final`, input that ends before the stream does is an
 * error instead of INFLATE_NEED_INPUT.
 */
export function inflate(s: usize, src: usize, srcLen: usize, dst: usize, dstPos: usize, dstCap: usize, final: u32): i32 {
  const op = dst + dstPos;
  const reach = <usize>load<u32>(s + INFLATE_REACH);
  store<u32>(s + INFLATE_SRC, <u32>src);
  store<u32>(s + INFLATE_IP, <u32>src);
  store<u32>(s + INFLATE_IEND, <u32>(src + srcLen));
  store<u32>(s + INFLATE_OP, <u32>op);
  store<u32>(s + INFLATE_OEND, <u32>(dst + dstCap));
  store<u32>(s + INFLATE_LOWEST, <u32>(op - (reach < dstPos ? reach : dstPos)));
  store<u32>(s + INFLATE_CHECK_FROM, <u32>op);
  let r: i32 = CONTINUE;
  while (r == CONTINUE) r = step(s);
  if (r == ERROR) return ERROR;
  const mode = load<u32>(s + INFLATE_MODE);
  const accepting = mode == M_DONE || mode == M_MEMBER_END || mode == M_ZEROS;
  if (r == INFLATE_NEED_INPUT && final && !accepting) return failAt(s, E_INFLATE_TRUNCATED, bytePos(s), mode, 0);
  updateCheck(s);
  const ip = <usize>load<u32>(s + INFLATE_IP);
  const opEnd = <usize>load<u32>(s + INFLATE_OP);
  const seen = opEnd - <usize>load<u32>(s + INFLATE_LOWEST);
  store<u32>(s + INFLATE_REACH, <u32>(seen < WINDOW_BYTES ? seen : WINDOW_BYTES));
  store<u32>(s + INFLATE_IN_USED, <u32>(ip - src));
  store<u32>(s + INFLATE_OUT_USED, <u32>(opEnd - dst));
  store<u64>(s + INFLATE_IN_TOTAL, load<u64>(s + INFLATE_IN_TOTAL) + <u64>(ip - src));
  return r == INFLATE_NEED_INPUT && accepting ? INFLATE_COMPLETE : r;
}

/** Runs the handler of the current mode. */
function step(s: usize): i32 {
  switch (load<u32>(s + INFLATE_MODE)) {
    case M_ZLIB_HEADER: return zlibHeader(s);
    case M_GZIP_HEADER: return gzipHeader(s);
    case M_GZIP_XLEN: return gzipXlen(s);
    case M_GZIP_EXTRA: return gzipExtra(s);
    case M_GZIP_NAME:
    case M_GZIP_COMMENT: return gzipString(s);
    case M_GZIP_HCRC: return gzipHcrc(s);
    case M_BLOCK: return blockHeader(s);
    case M_STORED: return storedHeader(s);
    case M_STORED_COPY: return storedCopy(s);
    case M_DYN_COUNTS: return dynamicCounts(s);
    case M_DYN_PRECODE: return dynamicPrecode(s);
    case M_DYN_LENS: return dynamicLengths(s);
    case M_DECODE: return decode(s);
    case M_DIST: return decodeDistance(s);
    case M_COPY: return copyPending(s);
    case M_TRAILER: return trailer(s);
    case M_MEMBER_END: return memberEnd(s);
    case M_ZEROS: return zeros(s);
    case M_DONE: return done(s);
  }
  return failAt(s, E_INFLATE_INTERNAL, 0, load<u32>(s + INFLATE_MODE), 0);
}

// --- positions, errors, checksums --------------------------------------------

/** Input byte holding the next unread bit. */
function bytePos(s: usize): u64 {
  const consumed = load<u64>(s + INFLATE_IN_TOTAL) + <u64>(load<u32>(s + INFLATE_IP) - load<u32>(s + INFLATE_SRC));
  return (consumed * 8 - <u64>load<u32>(s + INFLATE_BITCOUNT)) >> 3;
}

/** Input byte holding bit `bitsBack` bits before the next unread bit. */
function bitPos(s: usize, ip: usize, bitcount: u32, bitsBack: u32): u64 {
  const consumed = load<u64>(s + INFLATE_IN_TOTAL) + <u64>(ip - <usize>load<u32>(s + INFLATE_SRC));
  return (consumed * 8 - <u64>bitcount - <u64>bitsBack) >> 3;
}

function failAt(s: usize, kind: u32, pos: u64, value: u32, value2: u32): i32 {
  fail(s, kind, <usize>pos, value, value2);
  store<u32>(s + INFLATE_ERROR_POS_HIGH, <u32>(pos >> 32));
  return ERROR;
}

/** Folds the output since INFLATE_CHECK_FROM into the member's check value and length. */
function updateCheck(s: usize): void {
  const from = <usize>load<u32>(s + INFLATE_CHECK_FROM);
  const to = <usize>load<u32>(s + INFLATE_OP);
  if (to == from) return;
  const format = load<u32>(s + INFLATE_FORMAT);
  if (format == FORMAT_ZLIB) store<u32>(s + INFLATE_CHECK, adler32(from, to - from, load<u32>(s + INFLATE_CHECK)));
  else if (format == FORMAT_GZIP) store<u32>(s + INFLATE_CHECK, crc32(from, to - from, load<u32>(s + INFLATE_CHECK)));
  store<u32>(s + INFLATE_MEMBER_OUT, load<u32>(s + INFLATE_MEMBER_OUT) + <u32>(to - from));
  store<u32>(s + INFLATE_CHECK_FROM, <u32>to);
}

function setMode(s: usize, mode: u32): i32 {
  store<u32>(s + INFLATE_MODE, mode);
  store<u32>(s + INFLATE_HAVE, 0);
  store<u32>(s + INFLATE_HOLD, 0);
  return CONTINUE;
}

/** After a block: the next block, or the stream's end. */
function endBlock(s: usize): i32 {
  if (!load<u32>(s + INFLATE_LAST)) return setMode(s, M_BLOCK);
  return setMode(s, load<u32>(s + INFLATE_FORMAT) == FORMAT_RAW ? M_DONE : M_TRAILER);
}

// --- bit and byte input for the header states ---------------------------------

/** Ensures `n` (<= 56) bits in the bit buffer; false when the input runs out first. */
function needBits(s: usize, n: u32): bool {
  let bitcount = load<u32>(s + INFLATE_BITCOUNT);
  if (bitcount >= n) return true;
  let ip = <usize>load<u32>(s + INFLATE_IP);
  const iend = <usize>load<u32>(s + INFLATE_IEND);
  let bitbuf = load<u64>(s + INFLATE_BITBUF);
  while (bitcount < n && ip < iend) {
    bitbuf |= <u64>load<u8>(ip) << <u64>bitcount;
    ip++;
    bitcount += 8;
  }
  store<u64>(s + INFLATE_BITBUF, bitbuf);
  store<u32>(s + INFLATE_BITCOUNT, bitcount);
  store<u32>(s + INFLATE_IP, <u32>ip);
  return bitcount >= n;
}

/**
 * Removes and returns the low `n` bits (the caller ensured them). Clears the
 * bits above the count: the fast loop leaves read-ahead input there, which
 * stops being the next input once a stored block or header field reads the
 * input directly.
 */
function takeBits(s: usize, n: u32): u32 {
  const bitbuf = load<u64>(s + INFLATE_BITBUF);
  const left = load<u32>(s + INFLATE_BITCOUNT) - n;
  store<u64>(s + INFLATE_BITBUF, (bitbuf >> <u64>n) & ((<u64>1 << <u64>left) - 1));
  store<u32>(s + INFLATE_BITCOUNT, left);
  return <u32>bitbuf & ((1 << n) - 1);
}

/** Drops the bits up to the next byte boundary. */
function alignToByte(s: usize): void {
  const extra = load<u32>(s + INFLATE_BITCOUNT) & 7;
  if (extra) takeBits(s, extra);
}

/** The next input byte (byte-aligned states), or -1 when the input is used up. */
function readByte(s: usize): i32 {
  if (load<u32>(s + INFLATE_BITCOUNT) >= 8) return <i32>takeBits(s, 8);
  const ip = <usize>load<u32>(s + INFLATE_IP);
  if (ip >= <usize>load<u32>(s + INFLATE_IEND)) return -1;
  store<u32>(s + INFLATE_IP, <u32>(ip + 1));
  return <i32>load<u8>(ip);
}

/** The next input byte without consuming it, or -1. */
function peekByte(s: usize): i32 {
  if (load<u32>(s + INFLATE_BITCOUNT) >= 8) return <i32>(<u32>load<u64>(s + INFLATE_BITBUF) & 0xff);
  const ip = <usize>load<u32>(s + INFLATE_IP);
  if (ip >= <usize>load<u32>(s + INFLATE_IEND)) return -1;
  return <i32>load<u8>(ip);
}

/** Reads a byte of the current multi-byte field; records where the field began. */
function fieldByte(s: usize): i32 {
  if (load<u32>(s + INFLATE_HAVE) == 0) store<u64>(s + INFLATE_FIELD_POS, bytePos(s));
  return readByte(s);
}

function fieldPos(s: usize): u64 {
  return load<u64>(s + INFLATE_FIELD_POS);
}

function hcrcByte(s: usize, b: i32): void {
  if (!(load<u32>(s + INFLATE_FLAGS) & GZIP_FHCRC)) return;
  store<u8>(s + INFLATE_BYTE, <u8>b);
  store<u32>(s + INFLATE_HCRC, crc32(s + INFLATE_BYTE, 1, load<u32>(s + INFLATE_HCRC)));
}

// --- zlib and gzip headers and trailers ----------------------------------------

function zlibHeader(s: usize): i32 {
  while (load<u32>(s + INFLATE_HAVE) < 2) {
    const b = fieldByte(s);
    if (b < 0) return INFLATE_NEED_INPUT;
    store<u32>(s + INFLATE_HOLD, (load<u32>(s + INFLATE_HOLD) << 8) | <u32>b);
    store<u32>(s + INFLATE_HAVE, load<u32>(s + INFLATE_HAVE) + 1);
  }
  const hold = load<u32>(s + INFLATE_HOLD);
  const pos = fieldPos(s);
  // zlib's order: check bits, method, window size, preset dictionary.
  if (hold % 31 != 0) return failAt(s, E_INFLATE_ZLIB_CHECK_BITS, pos, hold, 0);
  if (((hold >> 8) & 15) != 8) return failAt(s, E_INFLATE_ZLIB_METHOD, pos, (hold >> 8) & 15, 0);
  if ((hold >> 12) > 7) return failAt(s, E_INFLATE_ZLIB_WINDOW, pos, hold >> 12, 0);
  if (hold & 0x20) return failAt(s, E_INFLATE_ZLIB_DICTIONARY, pos + 1, hold & 0xff, 0);
  store<u32>(s + INFLATE_WINDOW, 1 << ((hold >> 12) + 8));
  return setMode(s, M_BLOCK);
}

function gzipHeader(s: usize): i32 {
  let have = load<u32>(s + INFLATE_HAVE);
  while (have < 10) {
    const b = fieldByte(s);
    if (b < 0) return INFLATE_NEED_INPUT;
    store<u8>(s + INFLATE_HEADER + have, <u8>b);
    const pos = fieldPos(s);
    // Each byte is checked as it arrives, so garbage fails at its first byte.
    if (have == 1) {
      const magic = (<u32>load<u8>(s + INFLATE_HEADER) << 8) | <u32>b;
      if (magic != 0x1f8b) return failAt(s, E_INFLATE_GZIP_MAGIC, pos, magic, 0);
    } else if (have == 2 && b != 8) {
      return failAt(s, E_INFLATE_GZIP_METHOD, pos + 2, <u32>b, 0);
    } else if (have == 3 && (<u32>b & GZIP_FRESERVED)) {
      return failAt(s, E_INFLATE_GZIP_FLAGS, pos + 3, <u32>b, 0);
    }
    have++;
    store<u32>(s + INFLATE_HAVE, have);
  }
  const flags = <u32>load<u8>(s + INFLATE_HEADER + 3);
  store<u32>(s + INFLATE_FLAGS, flags);
  store<u32>(s + INFLATE_HCRC, flags & GZIP_FHCRC ? crc32(s + INFLATE_HEADER, 10, 0) : 0);
  return afterGzipField(s, M_GZIP_HEADER);
}

/** The gzip header's next optional field after `field`, in RFC 1952 order. */
function afterGzipField(s: usize, field: u32): i32 {
  const flags = load<u32>(s + INFLATE_FLAGS);
  if (field < M_GZIP_XLEN && (flags & GZIP_FEXTRA)) return setMode(s, M_GZIP_XLEN);
  if (field < M_GZIP_NAME && (flags & GZIP_FNAME)) return setMode(s, M_GZIP_NAME);
  if (field < M_GZIP_COMMENT && (flags & GZIP_FCOMMENT)) return setMode(s, M_GZIP_COMMENT);
  if (field < M_GZIP_HCRC && (flags & GZIP_FHCRC)) return setMode(s, M_GZIP_HCRC);
  return setMode(s, M_BLOCK);
}

function gzipXlen(s: usize): i32 {
  while (load<u32>(s + INFLATE_HAVE) < 2) {
    const b = fieldByte(s);
    if (b < 0) return INFLATE_NEED_INPUT;
    hcrcByte(s, b);
    const have = load<u32>(s + INFLATE_HAVE);
    store<u32>(s + INFLATE_HOLD, load<u32>(s + INFLATE_HOLD) | (<u32>b << (8 * have)));
    store<u32>(s + INFLATE_HAVE, have + 1);
  }
  const xlen = load<u32>(s + INFLATE_HOLD);
  setMode(s, M_GZIP_EXTRA);
  store<u32>(s + INFLATE_LENGTH, xlen);
  return CONTINUE;
}

function gzipExtra(s: usize): i32 {
  let left = load<u32>(s + INFLATE_LENGTH);
  const hcrc = (load<u32>(s + INFLATE_FLAGS) & GZIP_FHCRC) != 0;
  while (left > 0) {
    if (!hcrc && load<u32>(s + INFLATE_BITCOUNT) == 0) {
      // Skip straight through the input.
      const ip = <usize>load<u32>(s + INFLATE_IP);
      const avail = <usize>load<u32>(s + INFLATE_IEND) - ip;
      const n = <usize>left < avail ? <usize>left : avail;
      if (n == 0) break;
      store<u32>(s + INFLATE_IP, <u32>(ip + n));
      left -= <u32>n;
      continue;
    }
    const b = readByte(s);
    if (b < 0) break;
    hcrcByte(s, b);
    left--;
  }
  store<u32>(s + INFLATE_LENGTH, left);
  if (left > 0) return INFLATE_NEED_INPUT;
  return afterGzipField(s, M_GZIP_XLEN);
}

/** FNAME or FCOMMENT: bytes up to and including a zero byte. */
function gzipString(s: usize): i32 {
  while (true) {
    const b = readByte(s);
    if (b < 0) return INFLATE_NEED_INPUT;
    hcrcByte(s, b);
    if (b == 0) return afterGzipField(s, load<u32>(s + INFLATE_MODE));
  }
  return ERROR; // unreachable
}

function gzipHcrc(s: usize): i32 {
  while (load<u32>(s + INFLATE_HAVE) < 2) {
    const b = fieldByte(s);
    if (b < 0) return INFLATE_NEED_INPUT;
    const have = load<u32>(s + INFLATE_HAVE);
    store<u32>(s + INFLATE_HOLD, load<u32>(s + INFLATE_HOLD) | (<u32>b << (8 * have)));
    store<u32>(s + INFLATE_HAVE, have + 1);
  }
  const stored = load<u32>(s + INFLATE_HOLD);
  const computed = load<u32>(s + INFLATE_HCRC) & 0xffff;
  if (stored != computed) return failAt(s, E_INFLATE_GZIP_HEADER_CRC, fieldPos(s), stored, computed);
  return setMode(s, M_BLOCK);
}

/** Adler-32 (zlib, big-endian) or CRC-32 and ISIZE (gzip, little-endian). */
function trailer(s: usize): i32 {
  const gzip = load<u32>(s + INFLATE_FORMAT) == FORMAT_GZIP;
  const size: u32 = gzip ? 8 : 4;
  if (load<u32>(s + INFLATE_HAVE) == 0) {
    alignToByte(s);
    updateCheck(s);
  }
  while (load<u32>(s + INFLATE_HAVE) < size) {
    const b = fieldByte(s);
    if (b < 0) return INFLATE_NEED_INPUT;
    const have = load<u32>(s + INFLATE_HAVE);
    if (gzip && have == 4) {
      // CRC complete: check it before reading ISIZE.
      const stored = load<u32>(s + INFLATE_HOLD);
      const computed = load<u32>(s + INFLATE_CHECK);
      if (stored != computed) return failAt(s, E_INFLATE_CHECKSUM, fieldPos(s), stored, computed);
      store<u32>(s + INFLATE_HOLD, 0);
      store<u64>(s + INFLATE_FIELD_POS, bytePos(s) - 1);
    }
    const hold = load<u32>(s + INFLATE_HOLD);
    store<u32>(s + INFLATE_HOLD, gzip ? hold | (<u32>b << (8 * (have & 3))) : (hold << 8) | <u32>b);
    store<u32>(s + INFLATE_HAVE, have + 1);
  }
  const stored = load<u32>(s + INFLATE_HOLD);
  if (!gzip) {
    const computed = load<u32>(s + INFLATE_CHECK);
    if (stored != computed) return failAt(s, E_INFLATE_CHECKSUM, fieldPos(s), stored, computed);
    return setMode(s, M_DONE);
  }
  const length = load<u32>(s + INFLATE_MEMBER_OUT);
  if (stored != length) return failAt(s, E_INFLATE_LENGTH, fieldPos(s), stored, length);
  return setMode(s, M_MEMBER_END);
}

/** gzip: after a member, another member (gzip -d decodes them all) or zero padding. */
function memberEnd(s: usize): i32 {
  const b = peekByte(s);
  if (b < 0) return INFLATE_NEED_INPUT;
  if (b == 0) return setMode(s, M_ZEROS);
  if (b != 0x1f) return failAt(s, E_INFLATE_TRAILING, bytePos(s), <u32>b, 0);
  // A new member: its own window, check value and length.
  store<u32>(s + INFLATE_LAST, 0);
  store<u32>(s + INFLATE_CHECK, 0);
  store<u32>(s + INFLATE_MEMBER_OUT, 0);
  store<u32>(s + INFLATE_LOWEST, load<u32>(s + INFLATE_OP));
  store<u32>(s + INFLATE_FLAGS, 0);
  return setMode(s, M_GZIP_HEADER);
}

function zeros(s: usize): i32 {
  while (true) {
    const pos = bytePos(s);
    const b = readByte(s);
    if (b < 0) return INFLATE_NEED_INPUT;
    if (b != 0) return failAt(s, E_INFLATE_TRAILING, pos, <u32>b, 0);
  }
  return ERROR; // unreachable
}

/** Raw and zlib streams end here: the last byte's padding bits, then nothing. */
function done(s: usize): i32 {
  alignToByte(s);
  const b = peekByte(s);
  if (b < 0) return INFLATE_NEED_INPUT;
  return failAt(s, E_INFLATE_TRAILING, bytePos(s), <u32>b, 0);
}

// --- block headers ---------------------------------------------------------------

function blockHeader(s: usize): i32 {
  if (!needBits(s, 3)) return INFLATE_NEED_INPUT;
  const pos = bytePos(s);
  const bits = takeBits(s, 3);
  store<u32>(s + INFLATE_LAST, bits & 1);
  switch (bits >> 1) {
    case 0:
      alignToByte(s);
      return setMode(s, M_STORED);
    case 1:
      store<u32>(s + INFLATE_TABLES, <u32>FIXED_TABLES);
      return setMode(s, M_DECODE);
    case 2:
      return setMode(s, M_DYN_COUNTS);
  }
  return failAt(s, E_INFLATE_BLOCK_TYPE, pos, 3, 0);
}

function storedHeader(s: usize): i32 {
  while (load<u32>(s + INFLATE_HAVE) < 4) {
    const b = fieldByte(s);
    if (b < 0) return INFLATE_NEED_INPUT;
    const have = load<u32>(s + INFLATE_HAVE);
    store<u32>(s + INFLATE_HOLD, load<u32>(s + INFLATE_HOLD) | (<u32>b << (8 * have)));
    store<u32>(s + INFLATE_HAVE, have + 1);
  }
  const hold = load<u32>(s + INFLATE_HOLD);
  const len = hold & 0xffff;
  const nlen = hold >> 16;
  if (len != (~nlen & 0xffff)) return failAt(s, E_INFLATE_STORED_LENGTH, fieldPos(s), len, nlen);
  setMode(s, M_STORED_COPY);
  store<u32>(s + INFLATE_LENGTH, len);
  return CONTINUE;
}

function storedCopy(s: usize): i32 {
  let left = load<u32>(s + INFLATE_LENGTH);
  while (left > 0) {
    const op = <usize>load<u32>(s + INFLATE_OP);
    const oend = <usize>load<u32>(s + INFLATE_OEND);
    if (op == oend) {
      store<u32>(s + INFLATE_LENGTH, left);
      return INFLATE_NEED_OUTPUT;
    }
    if (load<u32>(s + INFLATE_BITCOUNT) >= 8) {
      // Whole bytes the bit buffer read ahead come first.
      store<u8>(op, <u8>takeBits(s, 8));
      store<u32>(s + INFLATE_OP, <u32>(op + 1));
      left--;
      continue;
    }
    const ip = <usize>load<u32>(s + INFLATE_IP);
    const iend = <usize>load<u32>(s + INFLATE_IEND);
    let n = <usize>left;
    if (n > iend - ip) n = iend - ip;
    if (n > oend - op) n = oend - op;
    if (n == 0) {
      store<u32>(s + INFLATE_LENGTH, left);
      return INFLATE_NEED_INPUT;
    }
    memory.copy(op, ip, n);
    store<u32>(s + INFLATE_IP, <u32>(ip + n));
    store<u32>(s + INFLATE_OP, <u32>(op + n));
    left -= <u32>n;
  }
  store<u32>(s + INFLATE_LENGTH, 0);
  return endBlock(s);
}

function dynamicCounts(s: usize): i32 {
  if (!needBits(s, 14)) return INFLATE_NEED_INPUT;
  const pos = bytePos(s);
  const nlen = takeBits(s, 5) + 257;
  const ndist = takeBits(s, 5) + 1;
  const ncode = takeBits(s, 4) + 4;
  if (nlen > 286 || ndist > 30) return failAt(s, E_INFLATE_TOO_MANY_CODES, pos, nlen, ndist);
  store<u32>(s + INFLATE_NLEN, nlen);
  store<u32>(s + INFLATE_NDIST, ndist);
  store<u32>(s + INFLATE_NCODE, ncode);
  return setMode(s, M_DYN_PRECODE);
}

function dynamicPrecode(s: usize): i32 {
  const ncode = load<u32>(s + INFLATE_NCODE);
  const lens = s + INFLATE_LENS;
  let have = load<u32>(s + INFLATE_HAVE);
  if (have == 0) store<u64>(s + INFLATE_FIELD_POS, bytePos(s));
  while (have < ncode) {
    if (!needBits(s, 3)) {
      store<u32>(s + INFLATE_HAVE, have);
      return INFLATE_NEED_INPUT;
    }
    store<u8>(lens + <usize>load<u8>(BL_ORDER + have), <u8>takeBits(s, 3));
    have++;
  }
  for (; have < 19; have++) store<u8>(lens + <usize>load<u8>(BL_ORDER + have), 0);
  const why = buildPrecode(lens, s + INFLATE_PRECODE_TABLE, s + INFLATE_WORK);
  if (why) return failAt(s, E_INFLATE_PRECODE, fieldPos(s), why, 0);
  return setMode(s, M_DYN_LENS);
}

/**
 * The code-length code: a 7-bit direct table of (symbol | length << 8). Any
 * code that is not complete is rejected, as zlib does (its all-zero case is
 * accepted by inflate_table but can only end in "missing end-of-block").
 */
function buildPrecode(lens: usize, table: usize, count: usize): u32 {
  memory.fill(count, 0, 16 * 2);
  for (let sym: usize = 0; sym < 19; sym++) {
    const l = <usize>load<u8>(lens + sym);
    store<u16>(count + l * 2, load<u16>(count + l * 2) + 1);
  }
  let left: i32 = 1;
  let used: u32 = 0;
  for (let len: usize = 1; len <= 7; len++) {
    const c = <i32>load<u16>(count + len * 2);
    left = (left << 1) - c;
    used += <u32>c;
    if (left < 0) return CODE_OVERSUBSCRIBED;
  }
  if (used == 0) return CODE_EMPTY;
  if (left > 0) return CODE_INCOMPLETE;
  // Canonical codes, bit-reversed, replicated over the unused high bits.
  let code: u32 = 0;
  for (let len: usize = 1; len <= 7; len++) {
    const c = <u32>load<u16>(count + len * 2);
    store<u16>(count + len * 2, <u16>code); // next code of this length
    code = (code + c) << 1;
  }
  for (let sym: u32 = 0; sym < 19; sym++) {
    const len = <u32>load<u8>(lens + sym);
    if (!len) continue;
    const slot = count + <usize>len * 2;
    const c = <u32>load<u16>(slot);
    store<u16>(slot, <u16>(c + 1));
    for (let i = reverseBits(c, len); i < 128; i += 1 << len) store<u16>(table + (<usize>i << 1), <u16>(sym | (len << 8)));
  }
  return 0;
}

/** The low `len` bits of `code`, reversed (deflate sends codes MSB first into an LSB-first stream). */
function reverseBits(code: u32, len: u32): u32 {
  let x = code;
  x = ((x >> 1) & 0x55555555) | ((x & 0x55555555) << 1);
  x = ((x >> 2) & 0x33333333) | ((x & 0x33333333) << 2);
  x = ((x >> 4) & 0x0f0f0f0f) | ((x & 0x0f0f0f0f) << 4);
  return bswap<u32>(x) >> (32 - len);
}

function dynamicLengths(s: usize): i32 {
  const lens = s + INFLATE_LENS;
  const pre = s + INFLATE_PRECODE_TABLE;
  const total = load<u32>(s + INFLATE_NLEN) + load<u32>(s + INFLATE_NDIST);
  let have = load<u32>(s + INFLATE_HAVE);
  while (have < total) {
    // Peek the symbol, then make sure it and its repeat bits are all here.
    let entry: u32 = 0;
    let need: u32 = 0;
    while (true) {
      const bitcount = load<u32>(s + INFLATE_BITCOUNT);
      entry = <u32>load<u16>(pre + ((<usize>load<u64>(s + INFLATE_BITBUF) & 127) << 1));
      const sym = entry & 0xff;
      need = (entry >> 8) + (sym == 16 ? 2 : sym == 17 ? 3 : sym == 18 ? 7 : 0);
      if (bitcount >= need) break;
      if (!needBits(s, bitcount + 8)) {
        store<u32>(s + INFLATE_HAVE, have);
        return INFLATE_NEED_INPUT;
      }
    }
    const pos = bytePos(s);
    const sym = entry & 0xff;
    takeBits(s, entry >> 8);
    if (sym < 16) {
      store<u8>(lens + have, <u8>sym);
      have++;
      continue;
    }
    let value: u32 = 0;
    let n: u32;
    if (sym == 16) {
      if (have == 0) return failAt(s, E_INFLATE_REPEAT_NO_PREVIOUS, pos, 0, 0);
      value = <u32>load<u8>(lens + have - 1);
      n = 3 + takeBits(s, 2);
    } else if (sym == 17) {
      n = 3 + takeBits(s, 3);
    } else {
      n = 11 + takeBits(s, 7);
    }
    if (have + n > total) return failAt(s, E_INFLATE_REPEAT_OVERFLOW, pos, have + n, total);
    memory.fill(lens + have, <u8>value, n);
    have += n;
  }
  store<u32>(s + INFLATE_HAVE, have);
  const nlen = load<u32>(s + INFLATE_NLEN);
  const pos = bytePos(s);
  if (load<u8>(lens + 256) == 0) return failAt(s, E_INFLATE_MISSING_EOB, pos, 0, 0);
  const tables = s + INFLATE_DYNAMIC_TABLES;
  const work = s + INFLATE_WORK;
  let why = buildTable(lens, nlen, LITLEN_TEMPLATE, tables, LITLEN_ROOT_BITS, LITLEN_TABLE_ENTRIES, work, SUB);
  if (why) return failAt(s, why == CODE_EMPTY ? E_INFLATE_INTERNAL : E_INFLATE_LITLEN_CODE, pos, why, 0);
  why = buildTable(lens + nlen, total - nlen, DIST_TEMPLATE, tables + DIST_TABLE_OFFSET, DIST_ROOT_BITS, DIST_TABLE_ENTRIES, work, DSUB);
  if (why == CODE_EMPTY) return failAt(s, E_INFLATE_INTERNAL, pos, why, 1);
  if (why) return failAt(s, E_INFLATE_DIST_CODE, pos, why, 0);
  store<u32>(s + INFLATE_TABLES, <u32>tables);
  return setMode(s, M_DECODE);
}

/**
 * zlib's inflate_table for literal/length (sub = SUB) and distance (sub = DSUB)
 * codes, emitting this decoder's entries. Rejects over-subscribed codes and
 * incomplete ones except a single 1-bit code (zlib's rule); a code with no
 * symbols at all (only for distances) decodes every distance as BAD.
 * Returns 0, CODE_OVERSUBSCRIBED, CODE_INCOMPLETE, or CODE_EMPTY when the
 * table outgrows `entries` (a bug).
 */
function buildTable(lens: usize, n: u32, template: usize, table: usize, root: u32, entries: usize, work: usize, sub: u32): u32 {
  const count = work + 320 * 2 - 64; // 16 u16 counts + 16 u16 offsets after the sorted symbols
  const offs = count + 32;
  memory.fill(count, 0, 32);
  for (let sym: u32 = 0; sym < n; sym++) {
    const l = <usize>load<u8>(lens + sym);
    store<u16>(count + l * 2, load<u16>(count + l * 2) + 1);
  }
  let max: u32 = 15;
  while (max >= 1 && load<u16>(count + <usize>max * 2) == 0) max--;
  const badEntry = sub == SUB ? BAD : DBAD;
  if (max == 0) {
    // No codes (a block without matches): any distance code is an error.
    const bad = badEntry + 1 + (1 << 8);
    for (let i: usize = 0; i < (<usize>1 << root); i++) store<u32>(table + i * 4, bad);
    return 0;
  }
  let min: u32 = 1;
  while (load<u16>(count + <usize>min * 2) == 0) min++;
  let left: i32 = 1;
  for (let len: usize = 1; len <= 15; len++) {
    left = (left << 1) - <i32>load<u16>(count + len * 2);
    if (left < 0) return CODE_OVERSUBSCRIBED;
  }
  if (left > 0 && max != 1) return CODE_INCOMPLETE;
  store<u16>(offs + 2, 0);
  for (let len: usize = 1; len < 15; len++) store<u16>(offs + (len + 1) * 2, load<u16>(offs + len * 2) + load<u16>(count + len * 2));
  for (let sym: u32 = 0; sym < n; sym++) {
    const l = <usize>load<u8>(lens + sym);
    if (!l) continue;
    const o = <usize>load<u16>(offs + l * 2);
    store<u16>(work + o * 2, <u16>sym);
    store<u16>(offs + l * 2, <u16>(o + 1));
  }

  // Fill the root table and subtables in order of code length (zlib's loop).
  let huff: u32 = 0; // current code, bit-reversed
  let sym: usize = 0;
  let len = min;
  let next = table; // current (sub)table
  let curr = root; // index bits of the current table
  let drop: u32 = 0; // code bits the current table's index skips
  let low: u32 = 0xffffffff; // root index the current subtable hangs from
  let used: usize = <usize>1 << root;
  const mask = (<u32>1 << root) - 1;
  while (true) {
    const here = load<u32>(template + (<usize>load<u16>(work + sym * 2) << 2)) + (len - drop) * 0x101;
    const incr = <u32>1 << (len - drop);
    let fill = <u32>1 << curr;
    const tableSize = fill;
    do {
      fill -= incr;
      store<u32>(next + (<usize>((huff >> drop) + fill) << 2), here);
    } while (fill != 0);
    let step = <u32>1 << (len - 1);
    while (huff & step) step >>= 1;
    huff = step != 0 ? (huff & (step - 1)) + step : 0;
    sym++;
    const remaining = load<u16>(count + <usize>len * 2) - 1;
    store<u16>(count + <usize>len * 2, remaining);
    if (remaining == 0) {
      if (len == max) break;
      len = <u32>load<u8>(lens + <usize>load<u16>(work + sym * 2));
    }
    if (len > root && (huff & mask) != low) {
      if (drop == 0) drop = root;
      next += <usize>tableSize << 2;
      curr = len - drop;
      let room: i32 = 1 << curr;
      while (curr + drop < max) {
        room -= <i32>load<u16>(count + <usize>(curr + drop) * 2);
        if (room <= 0) break;
        curr++;
        room <<= 1;
      }
      used += <usize>1 << curr;
      if (used > entries) return CODE_EMPTY;
      low = huff & mask;
      store<u32>(table + (<usize>low << 2), sub | (<u32>((next - table) >> 2) << 16) | (curr << 8) | root);
    }
  }
  // The one incomplete code allowed (a single 1-bit code): its twin is a hole.
  if (huff != 0) {
    const bad = badEntry + (len - drop) * 0x101;
    for (let i = huff; i < (<u32>1 << root); i += <u32>1 << len) store<u32>(table + (<usize>i << 2), bad);
  }
  return 0;
}

// --- symbol decoding --------------------------------------------------------------

/**
 * Copies a match of `len` bytes from `dist` back, in 16-byte stores that may
 * run 15 bytes past op + len. Distances under 16 replicate their pattern with
 * swizzles, so no store reads bytes it has not written.
 */
@inline function copyMatch(op: usize, dist: u32, len: u32): void {
  const end = op + len;
  let from = op - dist;
  if (dist >= 16) {
    do {
      v128.store(op, v128.load(from));
      op += 16;
      from += 16;
    } while (op < end);
  } else {
    let pattern = i8x16.swizzle(v128.load(from), v128.load(PATTERN_INDEX + (<usize>dist << 4)));
    const rotate = v128.load(PATTERN_ROTATE + (<usize>dist << 4));
    do {
      v128.store(op, pattern);
      pattern = i8x16.swizzle(pattern, rotate);
      op += 16;
    } while (op < end);
  }
}

/**
 * The fast loop: while 8 input bytes and some output are left. Returns 0 when
 * a margin ran out (the careful path takes over), END_OF_BLOCK, CONTINUE when
 * a match needs the careful copy (mode M_COPY), ERROR on a bad code.
 */
function decodeFast(s: usize): i32 {
  let ip = <usize>load<u32>(s + INFLATE_IP);
  const ilimit = <usize>load<u32>(s + INFLATE_IEND) - FAST_INPUT_MARGIN;
  let op = <usize>load<u32>(s + INFLATE_OP);
  const oend = <usize>load<u32>(s + INFLATE_OEND);
  const lowest = <usize>load<u32>(s + INFLATE_LOWEST);
  const tab = <usize>load<u32>(s + INFLATE_TABLES);
  const window = load<u32>(s + INFLATE_WINDOW);
  let bitbuf = load<u64>(s + INFLATE_BITBUF);
  let bitcount = load<u32>(s + INFLATE_BITCOUNT);
  let status: i32 = 0;
  while (ip <= ilimit && op < oend) {
    // Refill to 56..63 bits; bits above the count are the next input bits.
    bitbuf |= load<u64>(ip) << <u64>bitcount;
    ip += (63 - bitcount) >> 3;
    bitcount |= 56;
    let e = load<u32>(tab + ((<usize>bitbuf & LITLEN_MASK) << 2));
    let rootDropped: u32 = 0; // for error positions: where the code began
    if (e & SUB) {
      bitbuf >>= <u64>LITLEN_ROOT_BITS;
      bitcount -= LITLEN_ROOT_BITS;
      rootDropped = LITLEN_ROOT_BITS;
      e = load<u32>(tab + (<usize>(((e >> 16) & 0xfff) + (<u32>bitbuf & ((1 << ((e >> 8) & 15)) - 1))) << 2));
    }
    if (<i32>e < 0) {
      bitbuf >>= <u64>(e & 63);
      bitcount -= e & 63;
      store<u8>(op, <u8>(e >> 16));
      op++;
      continue;
    }
    if (e & (EOB | BAD)) {
      if (e & BAD) {
        status = failAt(s, E_INFLATE_BAD_LITLEN, bitPos(s, ip, bitcount, rootDropped), 0, 0);
        break;
      }
      bitbuf >>= <u64>(e & 63);
      bitcount -= e & 63;
      status = END_OF_BLOCK;
      break;
    }
    let total = e & 63;
    let cw = (e >> 8) & 31;
    const len = (e >> 16) + (<u32>(bitbuf >> <u64>cw) & ((1 << (total - cw)) - 1));
    bitbuf >>= <u64>total;
    bitcount -= total;
    let d = load<u32>(tab + DIST_TABLE_OFFSET + ((<usize>bitbuf & DIST_MASK) << 2));
    rootDropped = 0;
    if (d & DSUB) {
      bitbuf >>= <u64>DIST_ROOT_BITS;
      bitcount -= DIST_ROOT_BITS;
      rootDropped = DIST_ROOT_BITS;
      d = load<u32>(tab + DIST_TABLE_OFFSET + (<usize>((d >> 16) + (<u32>bitbuf & ((1 << ((d >> 8) & 15)) - 1))) << 2));
    }
    if (d & DBAD) {
      status = failAt(s, E_INFLATE_BAD_DIST, bitPos(s, ip, bitcount, rootDropped), 0, 0);
      break;
    }
    total = d & 63;
    cw = (d >> 8) & 31;
    const dist = (d >> 16) + (<u32>(bitbuf >> <u64>cw) & ((1 << (total - cw)) - 1));
    bitbuf >>= <u64>total;
    bitcount -= total;
    if (<usize>dist > op - lowest || dist > window) {
      status = distanceError(s, dist, <u32>(op - lowest), bitPos(s, ip, bitcount, total + rootDropped));
      break;
    }
    if (<usize>(len + COPY_OVERRUN) > oend - op) {
      // Too close to the output end for wide stores: the careful copy finishes it.
      store<u32>(s + INFLATE_LENGTH, len);
      store<u32>(s + INFLATE_DIST, dist);
      store<u32>(s + INFLATE_MODE, M_COPY);
      status = CONTINUE;
      break;
    }
    copyMatch(op, dist, len);
    op += len;
  }
  store<u32>(s + INFLATE_IP, <u32>ip);
  store<u32>(s + INFLATE_OP, <u32>op);
  store<u64>(s + INFLATE_BITBUF, bitbuf);
  store<u32>(s + INFLATE_BITCOUNT, bitcount);
  return status;
}

/**
 * Peeks the next code of a table (literal/length if `dist` is false) and
 * returns its final entry once every bit of it, extra bits included, is in the
 * bit buffer; 0 when the input runs out first. Consumes nothing.
 */
function peekCode(s: usize, tab: usize, dist: bool): u32 {
  const rootBits = dist ? DIST_ROOT_BITS : LITLEN_ROOT_BITS;
  const rootMask = dist ? DIST_MASK : LITLEN_MASK;
  const subFlag = dist ? DSUB : SUB;
  while (true) {
    const bitbuf = load<u64>(s + INFLATE_BITBUF);
    const bitcount = load<u32>(s + INFLATE_BITCOUNT);
    let e = load<u32>(tab + ((<usize>bitbuf & rootMask) << 2));
    let need = e & 63;
    if (e & subFlag) {
      const offset = dist ? e >> 16 : (e >> 16) & 0xfff;
      e = load<u32>(tab + (<usize>(offset + (<u32>(bitbuf >> <u64>rootBits) & ((1 << ((e >> 8) & 15)) - 1))) << 2));
      need = rootBits + (e & 63);
      if (bitcount >= need) return withRoot(e, rootBits);
    } else if (bitcount >= need) {
      return e;
    }
    // A code longer than the bits here (bits above the count read as the next
    // input, or zero): pull a byte and look again.
    if (!needBits(s, bitcount + 8)) return 0;
  }
  return 0; // unreachable
}

/** A subtable entry with the root bits folded into its drop count (fits: <= 28 + 10). */
@inline function withRoot(e: u32, rootBits: u32): u32 {
  return e + rootBits + (rootBits << 8);
}

/** Literal/length symbols near the ends of the buffers, one at a time. */
function decode(s: usize): i32 {
  while (true) {
    if (<usize>load<u32>(s + INFLATE_IP) + FAST_INPUT_MARGIN <= <usize>load<u32>(s + INFLATE_IEND) &&
        load<u32>(s + INFLATE_OP) < load<u32>(s + INFLATE_OEND)) {
      const r = decodeFast(s);
      if (r == END_OF_BLOCK) return endBlock(s);
      if (r != 0) return r;
    }
    const tab = <usize>load<u32>(s + INFLATE_TABLES);
    const e = peekCode(s, tab, false);
    if (e == 0) return INFLATE_NEED_INPUT;
    if (<i32>e < 0) {
      const op = <usize>load<u32>(s + INFLATE_OP);
      if (op == <usize>load<u32>(s + INFLATE_OEND)) return INFLATE_NEED_OUTPUT;
      takeBits(s, e & 63);
      store<u8>(op, <u8>(e >> 16));
      store<u32>(s + INFLATE_OP, <u32>(op + 1));
      continue;
    }
    if (e & BAD) return failAt(s, E_INFLATE_BAD_LITLEN, bytePos(s), 0, 0);
    if (e & EOB) {
      takeBits(s, e & 63);
      return endBlock(s);
    }
    const total = e & 63;
    const cw = (e >> 8) & 31;
    const bits = takeBits(s, total);
    store<u32>(s + INFLATE_LENGTH, (e >> 16) + (bits >> cw));
    return setMode(s, M_DIST);
  }
  return ERROR; // unreachable
}

/** The distance of a match whose length is in INFLATE_LENGTH. */
function decodeDistance(s: usize): i32 {
  const tab = <usize>load<u32>(s + INFLATE_TABLES) + DIST_TABLE_OFFSET;
  const e = peekCode(s, tab, true);
  if (e == 0) return INFLATE_NEED_INPUT;
  const pos = bytePos(s);
  if (e & DBAD) return failAt(s, E_INFLATE_BAD_DIST, pos, 0, 0);
  const total = e & 63;
  const cw = (e >> 8) & 31;
  const dist = (e >> 16) + (takeBits(s, total) >> cw);
  const available = load<u32>(s + INFLATE_OP) - load<u32>(s + INFLATE_LOWEST);
  if (dist > available || dist > load<u32>(s + INFLATE_WINDOW)) return distanceError(s, dist, available, pos);
  store<u32>(s + INFLATE_DIST, dist);
  store<u32>(s + INFLATE_MODE, M_COPY);
  return CONTINUE;
}

/** A distance past the output so far (zlib's "too far back"), or past the zlib header's window. */
function distanceError(s: usize, dist: u32, available: u32, pos: u64): i32 {
  if (dist > available) return failAt(s, E_INFLATE_DISTANCE_TOO_FAR, pos, dist, available);
  return failAt(s, E_INFLATE_DISTANCE_BEYOND_WINDOW, pos, dist, load<u32>(s + INFLATE_WINDOW));
}

/** A match (INFLATE_LENGTH bytes from INFLATE_DIST back), byte by byte, as room allows. */
function copyPending(s: usize): i32 {
  let left = load<u32>(s + INFLATE_LENGTH);
  const op = <usize>load<u32>(s + INFLATE_OP);
  const room = <usize>load<u32>(s + INFLATE_OEND) - op;
  const n = <usize>left < room ? <usize>left : room;
  const from = op - <usize>load<u32>(s + INFLATE_DIST);
  for (let i: usize = 0; i < n; i++) store<u8>(op + i, load<u8>(from + i));
  store<u32>(s + INFLATE_OP, <u32>(op + n));
  left -= <u32>n;
  store<u32>(s + INFLATE_LENGTH, left);
  if (left > 0) return INFLATE_NEED_OUTPUT;
  store<u32>(s + INFLATE_MODE, M_DECODE);
  return CONTINUE;
}

// LZ4 block format (lz4/doc/lz4_Block_format.md), compressor and bounds-checked
// decompressor.
//
// Compressor: liblz4's fast greedy parser (skip acceleration, backward catch-up,
// immediate next-match test) and its table modes: a 16 KiB hash table in the
// caller's ctx, cleared per call, of u16 offsets for inputs under 64 KiB and u32
// offsets above. (An earlier u32-only table with generation tags instead of the
// clear was 25% slower on 4 KiB blocks: twice the cache footprint.)
//
// Decompressor: accepts exactly the blocks liblz4's LZ4_decompress_safe accepts
// for a full block (including its end-of-block rules relative to the output
// capacity), except that it also rejects offset 0. Every read stays inside
// [src, src+srcLen) and every write inside [dst, dst+dstCap); wide copies run
// only where the margins allow them. A failure that the output room caused
// (it ran out, or the end-of-block rules met its end) is told apart from a bad
// block by parsing the rest with no output limit (failCapacity).
import {
  fail, CTX_LZ4_TABLE, LZ4_HASH_LOG, LZ4_TABLE_BYTES,
  E_LZ4_EMPTY_INPUT, E_LZ4_LITERAL_LENGTH_TRUNCATED, E_LZ4_LITERALS_PAST_INPUT, E_LZ4_OUTPUT_OVERFLOW,
  E_LZ4_LAST_SEQUENCE_NOT_LAST, E_LZ4_OFFSET_ZERO, E_LZ4_OFFSET_BEYOND_WINDOW,
  E_LZ4_MATCH_LENGTH_TRUNCATED, E_LZ4_MATCH_IN_LAST_LITERALS, E_LZ4_EMPTY_OUTPUT, E_LZ4_OUTPUT_TOO_SMALL,
} from "./layout";

const MINMATCH: usize = 4;
const LASTLITERALS: usize = 5;
const MFLIMIT: usize = 12;
const MIN_INPUT_BYTES: usize = MFLIMIT + 1;
const MAX_DISTANCE: u32 = 65535;
const SKIP_TRIGGER: u32 = 6;
const MAX_ACCELERATION: u32 = 65537;
/** Largest input liblz4 accepts (LZ4_MAX_INPUT_SIZE). */
export const LZ4_MAX_INPUT_BYTES: usize = 0x7e000000;
/** Inputs below this use the u16 table (liblz4's byU16 mode). */
const SMALL_INPUT_BYTES: usize = 65536;
/** Fast decode loop margins: a short sequence reads < 32 bytes and writes < 64. */
const FAST_INPUT_MARGIN: usize = 32;
const FAST_OUTPUT_MARGIN: usize = 64;
/** For offsets 1..7: the smallest multiple of the offset that is at least 8. */
const SHORT_PERIODS: usize = memory.data<u8>([0, 8, 8, 9, 8, 10, 12, 14]);

// liblz4's hashes: 4 bytes into 2^13 u16 entries, 5 bytes into 2^12 u32 entries
// (both tables 16 KiB).
@inline function hashAt<T>(p: usize): u32 {
  if (sizeof<T>() == 2) return (load<u32>(p) * 2654435761) >> (32 - LZ4_HASH_LOG);
  return <u32>(((load<u64>(p) << 24) * 889523592379) >> (64 - (LZ4_HASH_LOG - 1)));
}

/** Worst-case compressed size of `n` input bytes (LZ4_compressBound). */
export function lz4CompressBound(n: usize): usize {
  return n > LZ4_MAX_INPUT_BYTES ? 0 : n + n / 255 + 16;
}

/** Bytes equal at p and m, counting up to limit (exclusive) from p. */
@inline function countMatch(p: usize, m: usize, limit: usize): usize {
  const start = p;
  while (p + 8 <= limit) {
    const diff = load<u64>(m) ^ load<u64>(p);
    if (diff != 0) return p - start + <usize>(ctz<u64>(diff) >> 3);
    p += 8;
    m += 8;
  }
  if (p + 4 <= limit && load<u32>(m) == load<u32>(p)) { p += 4; m += 4; }
  if (p + 2 <= limit && load<u16>(m) == load<u16>(p)) { p += 2; m += 2; }
  if (p < limit && load<u8>(m) == load<u8>(p)) p++;
  return p - start;
}

/** Writes the extension bytes of a length field whose nibble was 15. */
@inline function writeLengthTail(op: usize, n: usize): usize {
  while (n >= 255) {
    store<u8>(op, 255);
    op++;
    n -= 255;
  }
  store<u8>(op, <u8>n);
  return op + 1;
}

/**
 * Compresses [src, src+srcLen) into [dst, dst+dstCap). Returns the block size, or 0
 * when the block would not fit in dstCap (the "incompressible" result when dstCap
 * is a caller's limit; never when dstCap >= lz4CompressBound(srcLen)).
 */
export function lz4Compress(src: usize, srcLen: usize, dst: usize, dstCap: usize, ctx: usize, acceleration: u32): usize {
  if (srcLen > LZ4_MAX_INPUT_BYTES) return 0;
  const table = ctx + CTX_LZ4_TABLE;
  const searchStart: u32 = (acceleration < 1 ? 1 : (acceleration > MAX_ACCELERATION ? MAX_ACCELERATION : acceleration)) << SKIP_TRIGGER;
  // As liblz4: a 16 KiB table, cleared per call, of offsets from src; u16 below
  // 64 KiB (twice the entries in the same cache footprint), u32 above.
  memory.fill(table, 0, LZ4_TABLE_BYTES);
  if (srcLen < SMALL_INPUT_BYTES) return compressCore<u16>(src, srcLen, dst, dstCap, table, searchStart);
  return compressCore<u32>(src, srcLen, dst, dstCap, table, searchStart);
}

/** Whether a table entry may be a match: u16 entries (inputs < 64 KiB) always are. */
@inline function inWindow<T>(cur: u32, ref: u32): bool {
  return sizeof<T>() == 2 ? true : cur - ref <= MAX_DISTANCE;
}

// Table entries of type T: offsets from src.
@inline function compressCore<T>(src: usize, srcLen: usize, dst: usize, dstCap: usize, table: usize, searchStart: u32): usize {
  const delta: u32 = 0 - <u32>src;
  const iend = src + srcLen;
  const oend = dst + dstCap;
  let anchor = src;
  let op = dst;

  if (srcLen >= MIN_INPUT_BYTES) {
    const mflimitPlusOne = iend - MFLIMIT + 1;
    const matchLimit = iend - LASTLITERALS;
    let ip = src;
    store<T>(table + (hashAt<T>(ip) << alignof<T>()), <T>(<u32>ip + delta));
    ip++;
    while (true) {
      // Find a match: probe forward, stepping faster the longer nothing matches
      // (liblz4's skip: step = probes >> SKIP_TRIGGER). Few live values, so V8
      // keeps the loop in registers.
      let match: usize = 0;
      let forwardIp = ip;
      let searchMatchNb = searchStart;
      while (true) {
        ip = forwardIp;
        forwardIp = ip + (searchMatchNb++ >> SKIP_TRIGGER);
        if (forwardIp > mflimitPlusOne) break;
        const slot = table + (hashAt<T>(ip) << alignof<T>());
        const ref = <u32>load<T>(slot);
        const cur = <u32>ip + delta;
        store<T>(slot, <T>cur);
        if (inWindow<T>(cur, ref)) {
          match = <usize>(ref - delta);
          if (load<u32>(match) == load<u32>(ip)) break;
          match = 0;
        }
      }
      if (match == 0) break;

      // Extend backwards over equal bytes.
      while (ip > anchor && match > src && load<u8>(ip - 1) == load<u8>(match - 1)) { ip--; match--; }

      // Literals. liblz4's room check: token, length bytes, literals, offset, and
      // the last literals' minimum.
      const litLen = ip - anchor;
      if (op + litLen + (2 + 1 + LASTLITERALS) + litLen / 255 > oend) return 0;
      let token = op++;
      if (litLen >= 15) {
        store<u8>(token, 15 << 4);
        op = writeLengthTail(op, litLen - 15);
      } else {
        store<u8>(token, <u8>(litLen << 4));
      }
      {
        // 16-byte steps overrun by up to 15 bytes: only where dst has that room
        // and src has it past the literals (ip <= iend - MFLIMIT, plus 4 read).
        const e = op + litLen;
        if (e + 16 <= oend && ip + 16 <= iend) {
          wideCopy(op, anchor, litLen);
        } else {
          memory.copy(op, anchor, litLen);
        }
        op = e;
      }

      // One or more matches that follow each other without literals.
      let done = false;
      while (true) {
        store<u16>(op, <u16>(ip - match));
        op += 2;
        const mlen = countMatch(ip + MINMATCH, match + MINMATCH, matchLimit);
        ip += mlen + MINMATCH;
        if (op + (1 + LASTLITERALS) + (mlen >> 8) > oend) return 0;
        if (mlen >= 15) {
          store<u8>(token, load<u8>(token) + 15);
          op = writeLengthTail(op, mlen - 15);
        } else {
          store<u8>(token, load<u8>(token) + <u8>mlen);
        }
        anchor = ip;
        if (ip >= mflimitPlusOne) { done = true; break; }
        const p2 = ip - 2;
        store<T>(table + (hashAt<T>(p2) << alignof<T>()), <T>(<u32>p2 + delta));
        const slot = table + (hashAt<T>(ip) << alignof<T>());
        const ref = <u32>load<T>(slot);
        const cur = <u32>ip + delta;
        store<T>(slot, <T>cur);
        if (inWindow<T>(cur, ref)) {
          const m = <usize>(ref - delta);
          if (load<u32>(m) == load<u32>(ip)) {
            match = m;
            token = op++;
            store<u8>(token, 0);
            continue;
          }
        }
        ip++;
        break;
      }
      if (done) break;
    }
  }

  // Last literals.
  const lastRun = iend - anchor;
  if (op + lastRun + 1 + (lastRun + 255 - 15) / 255 > oend) return 0;
  if (lastRun >= 15) {
    store<u8>(op++, 15 << 4);
    op = writeLengthTail(op, lastRun - 15);
  } else {
    store<u8>(op++, <u8>(lastRun << 4));
  }
  memory.copy(op, anchor, lastRun);
  op += lastRun;
  return op - dst;
}

/**
 * A match with offset 1..7 into [d, d+n): 8 bytes one by one, then 8 at a time
 * from a multiple of the period that is at least 8 back, so every 8-byte read is
 * of bytes already written (inside [d - offset, d + n)). May write up to 7 bytes
 * past d+n.
 */
@inline function copyShortPeriod(d: usize, offset: usize, n: usize): void {
  const match = d - offset;
  for (let i: usize = 0; i < 8; i++) store<u8>(d + i, load<u8>(match + i));
  const period = <usize>load<u8>(SHORT_PERIODS + offset);
  const e = d + n;
  let q = d + 8;
  while (q < e) { store<u64>(q, load<u64>(q - period)); q += 8; }
}

/** Copies n bytes forward in 16-byte steps; may write up to 15 bytes past d+n. */
@inline function wideCopy(d: usize, s: usize, n: usize): void {
  const e = d + n;
  do {
    v128.store(d, v128.load(s));
    d += 16;
    s += 16;
  } while (d < e);
}

/**
 * Decompresses the block [src, src+srcLen) into [dst, dst+dstCap). Matches may
 * reach back `prefixLen` bytes before dst (the previous blocks of a linked LZ4
 * frame, laid out contiguously before dst). Returns the decoded size, or -1 with
 * the error record in ctx filled (kind, input position, values).
 */
export function lz4Decompress(src: usize, srcLen: usize, dst: usize, dstCap: usize, prefixLen: usize, ctx: usize): isize {
  if (srcLen == 0) return fail(ctx, E_LZ4_EMPTY_INPUT, 0, 0, 0);
  if (dstCap == 0) {
    if (srcLen == 1 && load<u8>(src) == 0) return 0;
    return failCapacity(ctx, E_LZ4_EMPTY_OUTPUT, 0, <u32>srcLen, 0, src, srcLen, prefixLen, dstCap);
  }
  let ip = src;
  const iend = src + srcLen;
  let op = dst;
  const oend = dst + dstCap;
  const lowest = dst - prefixLen;
  // Pointers stay below 2 GiB (the memory's maximum), so differences fit an i32.
  const inLimit = iend - FAST_INPUT_MARGIN;
  const outLimit = oend - FAST_OUTPUT_MARGIN;

  while (true) {
    // Fast loop: while both buffers have margin, a sequence cannot be the last
    // and cannot reach the output's last 12 bytes, so it needs none of the
    // end-of-block checks and its copies may overrun by up to 15 bytes. Any error
    // or a sequence too close to an end breaks out with ip/op untouched, and the
    // general loop below decodes (or reports) that one sequence.
    // One sign test for both margins (V8 compiles `a && b` on compares, which
    // binaryen turns into `a & b`, into materialized booleans).
    while (<i32>((inLimit - ip) | (outLimit - op)) >= 0) {
      let p = ip + 1;
      const token = <usize>load<u8>(ip);
      let litLen = token >> 4;
      if (litLen == 15) {
        let s: usize;
        do {
          s = <usize>load<u8>(p++);
          litLen += s;
        } while (s == 255 && p < iend && litLen < dstCap);
        if (litLen > iend - p || iend - p - litLen < FAST_INPUT_MARGIN || oend - op < litLen + FAST_OUTPUT_MARGIN) break;
        wideCopy(op, p, litLen);
      } else {
        v128.store(op, v128.load(p));
      }
      p += litLen;
      const mop = op + litLen;
      const offset = <usize>load<u16>(p);
      p += 2;
      // offset == 0 or beyond the window, as one unsigned compare.
      if (offset - 1 >= mop - lowest) break;
      let mlen = token & 15;
      const match = mop - offset;
      if (mlen != 15) {
        mlen += MINMATCH;
        if (offset >= 16) {
          // At most 18 bytes: two 16-byte moves, the second reading what the
          // first wrote when offset < 32.
          v128.store(mop, v128.load(match));
          v128.store(mop, v128.load(match, 16), 16);
        } else if (offset >= 8) {
          store<u64>(mop, load<u64>(match));
          store<u64>(mop, load<u64>(match, 8), 8);
          store<u64>(mop, load<u64>(match, 16), 16);
        } else {
          copyShortPeriod(mop, offset, mlen);
        }
      } else {
        let s: usize;
        do {
          s = <usize>load<u8>(p++);
          mlen += s;
        } while (s == 255 && p < iend && mlen < dstCap);
        if (iend - p < FAST_INPUT_MARGIN || mlen > oend - mop || oend - mop - mlen < FAST_OUTPUT_MARGIN) break;
        mlen += MINMATCH;
        if (offset >= 16) {
          wideCopy(mop, match, mlen);
        } else if (offset >= 8) {
          let d = mop;
          const e = mop + mlen;
          do { store<u64>(d, load<u64>(d - offset)); d += 8; } while (d < e);
        } else {
          copyShortPeriod(mop, offset, mlen);
        }
      }
      ip = p;
      op = mop + mlen;
    }

    const tokenPos = ip;
    const token = <usize>load<u8>(ip++);

    // Literal length.
    let litLen = token >> 4;
    if (litLen == 15) {
      // liblz4: the first length byte must leave room for 15 literals.
      if (iend - ip <= 15) return fail(ctx, E_LZ4_LITERAL_LENGTH_TRUNCATED, ip - src, 0, 0);
      let s: usize;
      do {
        s = <usize>load<u8>(ip++);
        litLen += s;
        if (litLen > iend - ip) return fail(ctx, E_LZ4_LITERALS_PAST_INPUT, tokenPos - src, <u32>litLen, <u32>(iend - ip));
      } while (s == 255);
    }

    // Literals. A run that reaches the last 12 bytes of output or the last 8 of
    // input must be the last sequence and end exactly at the end of input.
    if (litLen + MFLIMIT > oend - op || litLen + 8 > iend - ip) {
      if (litLen > iend - ip) return fail(ctx, E_LZ4_LITERALS_PAST_INPUT, tokenPos - src, <u32>litLen, <u32>(iend - ip));
      if (litLen > oend - op) return failCapacity(ctx, E_LZ4_OUTPUT_OVERFLOW, tokenPos - src, <u32>(op - dst + litLen), <u32>dstCap, src, srcLen, prefixLen, dstCap);
      if (ip + litLen != iend) return failCapacity(ctx, E_LZ4_LAST_SEQUENCE_NOT_LAST, tokenPos - src, <u32>(op - dst), <u32>dstCap, src, srcLen, prefixLen, dstCap);
      memory.copy(op, ip, litLen);
      op += litLen;
      return <isize>(op - dst);
    }
    if (litLen <= 16 && iend - ip >= 16 && oend - op >= 16) {
      v128.store(op, v128.load(ip));
    } else if (iend - ip >= litLen + 16 && oend - op >= litLen + 16) {
      wideCopy(op, ip, litLen);
    } else {
      memory.copy(op, ip, litLen);
    }
    ip += litLen;
    op += litLen;

    // Match: offset (in bounds: the literal check left 8 input bytes), length.
    const offset = <usize>load<u16>(ip);
    ip += 2;
    if (offset == 0) return fail(ctx, E_LZ4_OFFSET_ZERO, ip - 2 - src, 0, 0);
    if (offset > op - lowest) return fail(ctx, E_LZ4_OFFSET_BEYOND_WINDOW, ip - 2 - src, <u32>offset, <u32>(op - lowest));
    let mlen = token & 15;
    if (mlen == 15) {
      let s: usize;
      do {
        s = <usize>load<u8>(ip++);
        mlen += s;
        if (mlen > dstCap) return failCapacity(ctx, E_LZ4_OUTPUT_OVERFLOW, tokenPos - src, <u32>mlen, <u32>dstCap, src, srcLen, prefixLen, dstCap);
        // liblz4: each length byte must leave 5 input bytes for the last literals.
        if (iend - ip <= 4) return fail(ctx, E_LZ4_MATCH_LENGTH_TRUNCATED, ip - 1 - src, 0, 0);
      } while (s == 255);
    }
    mlen += MINMATCH;
    if (mlen + LASTLITERALS > oend - op) {
      if (mlen > oend - op) return failCapacity(ctx, E_LZ4_OUTPUT_OVERFLOW, tokenPos - src, <u32>(op - dst + mlen), <u32>dstCap, src, srcLen, prefixLen, dstCap);
      return failCapacity(ctx, E_LZ4_MATCH_IN_LAST_LITERALS, tokenPos - src, <u32>(op - dst + mlen), <u32>dstCap, src, srcLen, prefixLen, dstCap);
    }

    const match = op - offset;
    const room = oend - op;
    if (offset >= 16 && room >= mlen + 16) {
      wideCopy(op, match, mlen);
    } else if (offset >= 8 && room >= mlen + 8) {
      let d = op;
      let s = match;
      const e = op + mlen;
      do { store<u64>(d, load<u64>(s)); d += 8; s += 8; } while (d < e);
    } else if (offset == 1) {
      memory.fill(op, load<u8>(match), mlen);
    } else if (room >= mlen + 8) {
      copyShortPeriod(op, offset, mlen);
    } else {
      for (let i: usize = 0; i < mlen; i++) store<u8>(op + i, load<u8>(match + i));
    }
    op += mlen;
  }
  return -1; // unreachable
}

/**
 * A failure the output room caused, from a block that may still be valid:
 * parses the whole block with no output limit. A valid block that decodes to
 * more than dstCap becomes E_LZ4_OUTPUT_TOO_SMALL (value: its size; value2:
 * dstCap), a bad one reports its own error, and one that fits keeps `kind`
 * (it breaks the end-of-block rules at this capacity). Cold path: lz4Decompress
 * calls it only to fail.
 */
function failCapacity(ctx: usize, kind: u32, pos: usize, value: u32, value2: u32, src: usize, srcLen: usize, prefixLen: usize, dstCap: usize): isize {
  fail(ctx, kind, pos, value, value2);
  const size = decodedSize(src, srcLen, prefixLen, dstCap, ctx);
  if (size > <i64>dstCap) return fail(ctx, E_LZ4_OUTPUT_TOO_SMALL, 0, saturateU32(<u64>size), <u32>dstCap);
  return -1;
}

@inline function saturateU32(n: u64): u32 {
  return n > 0xffffffff ? 0xffffffff : <u32>n;
}

/**
 * The size the block [src, src+srcLen) (srcLen >= 1) decodes to with no output
 * limit, checking everything that does not depend on the output room: input
 * bounds, offsets against the output so far plus prefixLen, and the last
 * sequence ending the input. Writes nothing; -1 with the error record filled
 * for a bad block (dstCap only fills the record's values as lz4Decompress would).
 */
function decodedSize(src: usize, srcLen: usize, prefixLen: usize, dstCap: usize, ctx: usize): i64 {
  let ip = src;
  const iend = src + srcLen;
  let out: u64 = 0;
  while (true) {
    const tokenPos = ip;
    const token = <usize>load<u8>(ip++);
    let litLen = token >> 4;
    if (litLen == 15) {
      if (iend - ip <= 15) return <i64>fail(ctx, E_LZ4_LITERAL_LENGTH_TRUNCATED, ip - src, 0, 0);
      let s: usize;
      do {
        s = <usize>load<u8>(ip++);
        litLen += s;
        if (litLen > iend - ip) return <i64>fail(ctx, E_LZ4_LITERALS_PAST_INPUT, tokenPos - src, <u32>litLen, <u32>(iend - ip));
      } while (s == 255);
    }
    if (litLen + 8 > iend - ip) {
      if (litLen > iend - ip) return <i64>fail(ctx, E_LZ4_LITERALS_PAST_INPUT, tokenPos - src, <u32>litLen, <u32>(iend - ip));
      if (ip + litLen != iend) return <i64>fail(ctx, E_LZ4_LAST_SEQUENCE_NOT_LAST, tokenPos - src, saturateU32(out), <u32>dstCap);
      return <i64>(out + <u64>litLen);
    }
    ip += litLen;
    out += <u64>litLen;
    const offset = <usize>load<u16>(ip);
    ip += 2;
    if (offset == 0) return <i64>fail(ctx, E_LZ4_OFFSET_ZERO, ip - 2 - src, 0, 0);
    if (<u64>offset > out + <u64>prefixLen) return <i64>fail(ctx, E_LZ4_OFFSET_BEYOND_WINDOW, ip - 2 - src, <u32>offset, saturateU32(out + <u64>prefixLen));
    let mlen: u64 = <u64>(token & 15);
    if (mlen == 15) {
      let s: usize;
      do {
        s = <usize>load<u8>(ip++);
        mlen += <u64>s;
        if (iend - ip <= 4) return <i64>fail(ctx, E_LZ4_MATCH_LENGTH_TRUNCATED, ip - 1 - src, 0, 0);
      } while (s == 255);
    }
    out += mlen + <u64>MINMATCH;
  }
  return -1; // unreachable
}

// LZ4 block format (lz4/doc/lz4_Block_format.md), compressor and bounds-checked
// decompressor.
//
// Compressor: liblz4's fast greedy parser (hash of 4 bytes, skip acceleration,
// backward catch-up, immediate next-match test) over a hash table of absolute u32
// positions kept in the caller's ctx. "Generations" replace liblz4's per-call
// memset: each call takes positions from a base that moves past the previous
// call's range by more than the 64 KiB window, so stale entries fail the distance
// test that every candidate takes anyway.
//
// Decompressor: accepts exactly the blocks liblz4's LZ4_decompress_safe accepts
// for a full block (including its end-of-block rules relative to the output
// capacity), except that it also rejects offset 0. Every read stays inside
// [src, src+srcLen) and every write inside [dst, dst+dstCap); wide copies run
// only where the margins allow them.
import {
  fail, CTX_LZ4_BASE, CTX_LZ4_TABLE, LZ4_HASH_LOG, LZ4_TABLE_BYTES,
  E_LZ4_EMPTY_INPUT, E_LZ4_LITERAL_LENGTH_TRUNCATED, E_LZ4_LITERALS_PAST_INPUT, E_LZ4_OUTPUT_OVERFLOW,
  E_LZ4_LAST_SEQUENCE_NOT_LAST, E_LZ4_OFFSET_ZERO, E_LZ4_OFFSET_BEYOND_WINDOW,
  E_LZ4_MATCH_LENGTH_TRUNCATED, E_LZ4_MATCH_IN_LAST_LITERALS, E_LZ4_EMPTY_OUTPUT,
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
/** Position base after a table reset: zeroed entries are then a window away. */
const BASE_START: u32 = 65536;
/** Fast decode loop margins: a short sequence reads < 32 bytes and writes < 64. */
const FAST_INPUT_MARGIN: usize = 32;
const FAST_OUTPUT_MARGIN: usize = 64;

@inline function hash4(seq: u32): u32 {
  return (seq * 2654435761) >> (32 - LZ4_HASH_LOG);
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

/** Resets the ctx's LZ4 table; call once when a ctx is carved. */
export function lz4CtxInit(ctx: usize): void {
  memory.fill(ctx + CTX_LZ4_TABLE, 0, LZ4_TABLE_BYTES);
  store<u32>(ctx + CTX_LZ4_BASE, BASE_START);
}

/**
 * Compresses [src, src+srcLen) into [dst, dst+dstCap). Returns the block size, or 0
 * when the block would not fit in dstCap (the "incompressible" result when dstCap
 * is a caller's limit; never when dstCap >= lz4CompressBound(srcLen)).
 */
export function lz4Compress(src: usize, srcLen: usize, dst: usize, dstCap: usize, ctx: usize, acceleration: u32): usize {
  if (srcLen > LZ4_MAX_INPUT_BYTES) return 0;
  const table = ctx + CTX_LZ4_TABLE;
  let base = load<u32>(ctx + CTX_LZ4_BASE);
  if (base < BASE_START || <u64>base + <u64>srcLen + 2 * 65536 > <u64>u32.MAX_VALUE) {
    memory.fill(table, 0, LZ4_TABLE_BYTES);
    base = BASE_START;
  }
  store<u32>(ctx + CTX_LZ4_BASE, base + <u32>srcLen + 65536);

  const iend = src + srcLen;
  const oend = dst + dstCap;
  let anchor = src;
  let op = dst;

  if (srcLen >= MIN_INPUT_BYTES) {
    const mflimitPlusOne = iend - MFLIMIT + 1;
    const matchLimit = iend - LASTLITERALS;
    const accel: u32 = acceleration < 1 ? 1 : (acceleration > MAX_ACCELERATION ? MAX_ACCELERATION : acceleration);
    let ip = src;
    store<u32>(table + (hash4(load<u32>(ip)) << 2), base);
    ip++;
    let forwardH = hash4(load<u32>(ip));
    let done = false;
    while (!done) {
      // Find a match: probe forward, stepping faster the longer nothing matches.
      let match: usize = 0;
      let forwardIp = ip;
      let step: u32 = 1;
      let searchMatchNb: u32 = accel << SKIP_TRIGGER;
      while (true) {
        const h = forwardH;
        ip = forwardIp;
        forwardIp += step;
        step = searchMatchNb++ >> SKIP_TRIGGER;
        if (forwardIp > mflimitPlusOne) { done = true; break; }
        const slot = table + (h << 2);
        const ref = load<u32>(slot);
        const cur = base + <u32>(ip - src);
        forwardH = hash4(load<u32>(forwardIp));
        store<u32>(slot, cur);
        if (cur - ref <= MAX_DISTANCE) {
          const m = src + <usize>(ref - base);
          if (load<u32>(m) == load<u32>(ip)) { match = m; break; }
        }
      }
      if (done) break;

      // Extend backwards over equal bytes.
      while (ip > anchor && match > src && load<u8>(ip - 1) == load<u8>(match - 1)) { ip--; match--; }

      // Literals. liblz4's room check: token, length bytes, literals, offset, and
      // the last literals' minimum, which also covers the 8-byte copy overrun.
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
        // 8-byte steps overrun by up to 7 bytes: only where dst has that room
        // (reads stay inside src: ip <= iend - MFLIMIT).
        const e = op + litLen;
        if (e + 8 <= oend) {
          let s = anchor;
          let d = op;
          while (d < e) { store<u64>(d, load<u64>(s)); d += 8; s += 8; }
        } else {
          memory.copy(op, anchor, litLen);
        }
        op = e;
      }

      // One or more matches that follow each other without literals.
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
        store<u32>(table + (hash4(load<u32>(p2)) << 2), base + <u32>(p2 - src));
        const h = hash4(load<u32>(ip));
        const slot = table + (h << 2);
        const ref = load<u32>(slot);
        const cur = base + <u32>(ip - src);
        store<u32>(slot, cur);
        if (cur - ref <= MAX_DISTANCE) {
          const m = src + <usize>(ref - base);
          if (load<u32>(m) == load<u32>(ip)) {
            match = m;
            token = op++;
            store<u8>(token, 0);
            continue;
          }
        }
        ip++;
        forwardH = hash4(load<u32>(ip));
        break;
      }
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
    return fail(ctx, E_LZ4_EMPTY_OUTPUT, 0, <u32>srcLen, 0);
  }
  let ip = src;
  const iend = src + srcLen;
  let op = dst;
  const oend = dst + dstCap;
  const lowest = dst - prefixLen;

  while (true) {
    // Fast loop: while a whole short sequence fits well inside both buffers, a
    // sequence with litLen < 15 and mlen < 19 needs no end-of-block checks (it
    // cannot be the last and cannot reach the output's last 12 bytes): literals are
    // one 16-byte copy and a match at offset >= 16 two. Anything else falls through
    // to the general loop for that one sequence.
    while (iend - ip >= FAST_INPUT_MARGIN && oend - op >= FAST_OUTPUT_MARGIN) {
      const token = <usize>load<u8>(ip);
      const litLen = token >> 4;
      const mlen = token & 15;
      if (litLen == 15 || mlen == 15) break;
      v128.store(op, v128.load(ip, 1));
      const offset = <usize>load<u16>(ip + 1 + litLen);
      const mop = op + litLen;
      if (offset < 16 || offset > mop - lowest) break;
      const match = mop - offset;
      v128.store(mop, v128.load(match));
      v128.store(mop, v128.load(match, 16), 16);
      ip += 3 + litLen;
      op = mop + mlen + MINMATCH;
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
      if (litLen > oend - op) return fail(ctx, E_LZ4_OUTPUT_OVERFLOW, tokenPos - src, <u32>(op - dst + litLen), <u32>dstCap);
      if (ip + litLen != iend) return fail(ctx, E_LZ4_LAST_SEQUENCE_NOT_LAST, tokenPos - src, <u32>(op - dst), <u32>dstCap);
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
        if (mlen > dstCap) return fail(ctx, E_LZ4_OUTPUT_OVERFLOW, tokenPos - src, <u32>mlen, <u32>dstCap);
        // liblz4: each length byte must leave 5 input bytes for the last literals.
        if (iend - ip <= 4) return fail(ctx, E_LZ4_MATCH_LENGTH_TRUNCATED, ip - 1 - src, 0, 0);
      } while (s == 255);
    }
    mlen += MINMATCH;
    if (mlen + LASTLITERALS > oend - op) {
      if (mlen > oend - op) return fail(ctx, E_LZ4_OUTPUT_OVERFLOW, tokenPos - src, <u32>(op - dst + mlen), <u32>dstCap);
      return fail(ctx, E_LZ4_MATCH_IN_LAST_LITERALS, tokenPos - src, <u32>(op - dst + mlen), <u32>dstCap);
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
      // Short period: write 8 bytes one by one, then copy 8 at a time from a
      // multiple of the period that is at least 8 back (every such copy reads
      // bytes already written, inside [match, op)).
      for (let i: usize = 0; i < 8; i++) store<u8>(op + i, load<u8>(match + i));
      const period = offset * ((8 + offset - 1) / offset);
      let d = op + 8;
      const e = op + mlen;
      while (d < e) { store<u64>(d, load<u64>(d - period)); d += 8; }
    } else {
      for (let i: usize = 0; i < mlen; i++) store<u8>(op + i, load<u8>(match + i));
    }
    op += mlen;
  }
  return -1; // unreachable
}

// Deflate (RFC 1951) compressor: zlib 1.3.1's deflate.c as node:zlib runs it
// (Chromium's zlib: a 4-byte multiplicative hash into 2^15 chains), so that
// its output is byte-identical to node:zlib's at levels 1-9. Level 0 writes
// stored blocks of 32 KiB.
//
// Levels 1-3 are zlib's deflate_fast (greedy, short chains), 4-9 deflate_slow
// (lazy matching, longer chains), with zlib's configuration table. The whole
// state — the 64 KiB window, the hash heads and chains, the symbol buffer, the
// trees and one block of pending output — lives in the caller's scratch
// (layout.ts DEFLATE_*); nothing is global. A call consumes input and produces
// output incrementally, and every decision depends only on the bytes, never on
// how the input was split into calls: a stream compressed in pieces is
// byte-identical to the same input compressed at once.
import {
  DEFLATE_LEVEL, DEFLATE_STRSTART, DEFLATE_BLOCK_START, DEFLATE_LOOKAHEAD, DEFLATE_INSERT, DEFLATE_MATCH_LENGTH,
  DEFLATE_PREV_LENGTH, DEFLATE_MATCH_AVAILABLE, DEFLATE_MATCH_START, DEFLATE_PREV_MATCH, DEFLATE_SYM_NEXT,
  DEFLATE_PENDING, DEFLATE_PENDING_OUT, DEFLATE_FINISHED, DEFLATE_HIGH_WATER, DEFLATE_IN_USED, DEFLATE_OUT_USED,
  DEFLATE_IP, DEFLATE_IEND, DEFLATE_OP, DEFLATE_OEND, DEFLATE_DYN_LTREE, DEFLATE_WINDOW, DEFLATE_PREV, DEFLATE_HEAD,
  DEFLATE_HASH_BITS, DEFLATE_PENDING_BUF, WINDOW_BYTES,
  DEFLATE_NO_FLUSH, DEFLATE_FINISH, DEFLATE_DONE, DEFLATE_NEED_INPUT, DEFLATE_NEED_OUTPUT,
} from "./layout";
import { initBlock, flushBlock, storedBlock, tallyLiteral, tallyMatch, SYM_END } from "./deflate-trees";

const WSIZE: u32 = <u32>WINDOW_BYTES;
const WMASK: u32 = WSIZE - 1;
const WINDOW_SIZE: u32 = 2 * WSIZE;
const MIN_MATCH: u32 = 3;
const MAX_MATCH: u32 = 258;
const MIN_LOOKAHEAD: u32 = MAX_MATCH + MIN_MATCH + 1;
const MAX_DIST: u32 = WSIZE - MIN_LOOKAHEAD;
const HASH_SIZE: u32 = 1 << DEFLATE_HASH_BITS;
const HASH_MASK: u32 = HASH_SIZE - 1;
/** deflate_slow drops 3-byte matches farther than this (zlib's TOO_FAR). */
const TOO_FAR: u32 = 4096;
/** Bytes past the data that the match routines may read, kept zeroed (zlib's WIN_INIT). */
const WIN_INIT: u32 = MAX_MATCH;

/** zlib's configuration table: good_length, max_lazy, nice_length, max_chain per level. */
const CONFIG = memory.data<u16>([
  0, 0, 0, 0, // 0: stored
  4, 4, 8, 4, // 1-3: deflate_fast, max_lazy is the longest match whose strings are all hashed
  4, 5, 16, 8,
  4, 6, 32, 32,
  4, 4, 16, 16, // 4-9: deflate_slow
  8, 16, 32, 32,
  8, 16, 128, 128,
  8, 32, 128, 256,
  32, 128, 258, 1024,
  32, 258, 258, 4096,
]);
@inline function config(level: u32, field: u32): u32 {
  return <u32>load<u16>(CONFIG + (<usize>(level * 4 + field) << 1));
}

// Block states of the level functions (zlib's block_state).
const NEED_MORE: i32 = 0;
const FINISH_DONE: i32 = 1;

/** Starts a stream at `level` (0-9) in scratch `s`. */
export function deflateInit(s: usize, level: u32): void {
  memory.fill(s, 0, DEFLATE_DYN_LTREE);
  store<u32>(s + DEFLATE_LEVEL, level);
  store<u32>(s + DEFLATE_MATCH_LENGTH, MIN_MATCH - 1);
  store<u32>(s + DEFLATE_PREV_LENGTH, MIN_MATCH - 1);
  memory.fill(s + DEFLATE_HEAD, 0, <usize>HASH_SIZE * 2);
  initBlock(s);
}

/**
 * Compresses input [src, src+srcLen) into [dst, dst+dstCap). With
 * DEFLATE_FINISH the input is the stream's last. Returns DEFLATE_DONE,
 * DEFLATE_NEED_INPUT or DEFLATE_NEED_OUTPUT; DEFLATE_IN_USED and
 * DEFLATE_OUT_USED say how much of each the call used.
 */
export function deflate(s: usize, src: usize, srcLen: usize, dst: usize, dstCap: usize, flush: u32): i32 {
  store<u32>(s + DEFLATE_IP, <u32>src);
  store<u32>(s + DEFLATE_IEND, <u32>(src + srcLen));
  store<u32>(s + DEFLATE_OP, <u32>dst);
  store<u32>(s + DEFLATE_OEND, <u32>(dst + dstCap));
  if (drainPending(s) && !load<u32>(s + DEFLATE_FINISHED)) {
    const level = load<u32>(s + DEFLATE_LEVEL);
    const state = level == 0 ? deflateStored(s, flush) : level < 4 ? deflateFast(s, flush) : deflateSlow(s, flush);
    if (state == FINISH_DONE) store<u32>(s + DEFLATE_FINISHED, 1);
    drainPending(s);
  }
  store<u32>(s + DEFLATE_IN_USED, load<u32>(s + DEFLATE_IP) - <u32>src);
  store<u32>(s + DEFLATE_OUT_USED, load<u32>(s + DEFLATE_OP) - <u32>dst);
  if (load<u32>(s + DEFLATE_PENDING) != 0) return DEFLATE_NEED_OUTPUT;
  return load<u32>(s + DEFLATE_FINISHED) ? DEFLATE_DONE : DEFLATE_NEED_INPUT;
}

/**
 * One-shot raw deflate of [src, src+srcLen) into [dst, dst+dstCap): the
 * compressed size, or 0 when it would not fit in dstCap (the "incompressible"
 * result when dstCap is a caller's limit: compression stops at the first block
 * that overflows it). Writes only inside [dst, dst+dstCap).
 */
export function deflateCompress(s: usize, src: usize, srcLen: usize, dst: usize, dstCap: usize, level: u32): usize {
  deflateInit(s, level);
  if (deflate(s, src, srcLen, dst, dstCap, DEFLATE_FINISH) != DEFLATE_DONE) return 0;
  return <usize>load<u32>(s + DEFLATE_OUT_USED);
}

/** Copies pending output to the caller's buffer as room allows; true when none is left. */
function drainPending(s: usize): bool {
  const end = load<u32>(s + DEFLATE_PENDING);
  const from = load<u32>(s + DEFLATE_PENDING_OUT);
  if (end == from) return true;
  const op = <usize>load<u32>(s + DEFLATE_OP);
  const room = <u32>(<usize>load<u32>(s + DEFLATE_OEND) - op);
  const n = end - from < room ? end - from : room;
  memory.copy(op, s + DEFLATE_PENDING_BUF + <usize>from, n);
  store<u32>(s + DEFLATE_OP, <u32>(op + n));
  if (from + n == end) {
    store<u32>(s + DEFLATE_PENDING, 0);
    store<u32>(s + DEFLATE_PENDING_OUT, 0);
    return true;
  }
  store<u32>(s + DEFLATE_PENDING_OUT, from + n);
  return false;
}

/** Emits the block since block_start (zlib's FLUSH_BLOCK_ONLY); true if its output all went out. */
function flushBlockOnly(s: usize, last: u32): bool {
  const blockStart = load<i32>(s + DEFLATE_BLOCK_START);
  const strstart = load<u32>(s + DEFLATE_STRSTART);
  const buf = blockStart >= 0 ? s + DEFLATE_WINDOW + <usize>blockStart : 0;
  flushBlock(s, buf, <u32>(<i32>strstart - blockStart), last, load<u32>(s + DEFLATE_LEVEL));
  store<i32>(s + DEFLATE_BLOCK_START, <i32>strstart);
  return drainPending(s);
}

// --- the window ---------------------------------------------------------------

/** Inserts the string at str into its hash chain; returns the previous head. */
@inline function insertString(win: usize, prev: usize, head: usize, str: u32): u32 {
  const h = ((load<u32>(win + <usize>str) * 66521 + 66521) >> 16) & HASH_MASK;
  const slot = head + (<usize>h << 1);
  const hashHead = <u32>load<u16>(slot);
  store<u16>(prev + (<usize>(str & WMASK) << 1), <u16>hashHead);
  store<u16>(slot, <u16>str);
  return hashHead;
}

/** Rebases chain heads and links by the window size; older entries become 0 (NIL). */
function slideHash(s: usize): void {
  const w = i16x8.splat(<i16>WSIZE);
  for (let p = s + DEFLATE_HEAD, end = p + <usize>HASH_SIZE * 2; p < end; p += 16) v128.store(p, i16x8.sub_sat_u(v128.load(p), w));
  for (let p = s + DEFLATE_PREV, end = p + <usize>WSIZE * 2; p < end; p += 16) v128.store(p, i16x8.sub_sat_u(v128.load(p), w));
}

/**
 * zlib's fill_window: slides the window down by WSIZE when the position nears
 * its end, reads input up to the window's end, hashes strings whose insertion
 * waited for more bytes, and zeroes WIN_INIT never-written bytes past the data
 * so the match routines' reads past it are deterministic.
 */
function fillWindow(s: usize): void {
  const win = s + DEFLATE_WINDOW;
  const prev = s + DEFLATE_PREV;
  const head = s + DEFLATE_HEAD;
  let ip = <usize>load<u32>(s + DEFLATE_IP);
  const iend = <usize>load<u32>(s + DEFLATE_IEND);
  let strstart = load<u32>(s + DEFLATE_STRSTART);
  let lookahead = load<u32>(s + DEFLATE_LOOKAHEAD);
  let insert = load<u32>(s + DEFLATE_INSERT);
  do {
    let more = WINDOW_SIZE - lookahead - strstart;
    if (strstart >= WSIZE + MAX_DIST) {
      memory.copy(win, win + WSIZE, WSIZE - more);
      store<u32>(s + DEFLATE_MATCH_START, load<u32>(s + DEFLATE_MATCH_START) - WSIZE);
      strstart -= WSIZE;
      store<i32>(s + DEFLATE_BLOCK_START, load<i32>(s + DEFLATE_BLOCK_START) - <i32>WSIZE);
      if (insert > strstart) insert = strstart;
      slideHash(s);
      more += WSIZE;
    }
    if (ip == iend) break;
    let n = <u32>(iend - ip);
    if (n > more) n = more;
    memory.copy(win + <usize>(strstart + lookahead), ip, n);
    ip += n;
    lookahead += n;
    // Strings left unhashed for lack of bytes (4-byte hash): hash them now.
    if (lookahead + insert > MIN_MATCH) {
      let str = strstart - insert;
      while (insert) {
        insertString(win, prev, head, str);
        str++;
        insert--;
        if (lookahead + insert <= MIN_MATCH) break;
      }
    }
  } while (lookahead < MIN_LOOKAHEAD && ip != iend);

  const highWater = load<u32>(s + DEFLATE_HIGH_WATER);
  if (highWater < WINDOW_SIZE) {
    const curr = strstart + lookahead;
    if (highWater < curr) {
      const init = WINDOW_SIZE - curr < WIN_INIT ? WINDOW_SIZE - curr : WIN_INIT;
      memory.fill(win + <usize>curr, 0, init);
      store<u32>(s + DEFLATE_HIGH_WATER, curr + init);
    } else if (highWater < curr + WIN_INIT) {
      let init = curr + WIN_INIT - highWater;
      if (init > WINDOW_SIZE - highWater) init = WINDOW_SIZE - highWater;
      memory.fill(win + <usize>highWater, 0, init);
      store<u32>(s + DEFLATE_HIGH_WATER, highWater + init);
    }
  }
  store<u32>(s + DEFLATE_IP, <u32>ip);
  store<u32>(s + DEFLATE_STRSTART, strstart);
  store<u32>(s + DEFLATE_LOOKAHEAD, lookahead);
  store<u32>(s + DEFLATE_INSERT, insert);
}

/** Bytes equal at a and b, up to `max` (a multiple of 8), compared 8 at a time. */
@inline function matchLength(a: usize, b: usize, max: u32): u32 {
  let n: u32 = 0;
  do {
    const diff = load<u64>(a + <usize>n) ^ load<u64>(b + <usize>n);
    if (diff != 0) return n + (<u32>ctz<u64>(diff) >> 3);
    n += 8;
  } while (n < max);
  return max;
}

/**
 * zlib's longest_match: walks the chain from curMatch for a match longer than
 * bestLen at strstart, at most maxChain links (a quarter once bestLen reaches
 * goodMatch), stopping at niceMatch. Sets DEFLATE_MATCH_START; returns the
 * length found (not beyond the lookahead). Reads up to 258 bytes past
 * strstart, as zlib does, whatever the lookahead.
 */
function longestMatch(s: usize, curMatch: u32, strstart: u32, bestLen: u32, lookahead: u32, level: u32): u32 {
  const win = s + DEFLATE_WINDOW;
  const prev = s + DEFLATE_PREV;
  let chainLength = config(level, 3);
  let niceMatch = config(level, 2);
  if (bestLen >= config(level, 0)) chainLength >>= 2;
  if (niceMatch > lookahead) niceMatch = lookahead;
  const scan = win + <usize>strstart;
  const limit = strstart > MAX_DIST ? strstart - MAX_DIST : 0;
  const scanStart = load<u16>(scan);
  let scanEnd = load<u16>(scan + <usize>bestLen - 1);
  let matchStart = load<u32>(s + DEFLATE_MATCH_START);
  do {
    const match = win + <usize>curMatch;
    // The bytes at bestLen-1 and bestLen, then the first two. The third needs
    // no check: equal hashes and equal first two bytes imply it.
    if (load<u16>(match + <usize>bestLen - 1) != scanEnd || load<u16>(match) != scanStart) continue;
    const len: u32 = 2 + matchLength(scan + 2, match + 2, MAX_MATCH - 2);
    if (len > bestLen) {
      matchStart = curMatch;
      bestLen = len;
      if (len >= niceMatch) break;
      scanEnd = load<u16>(scan + <usize>bestLen - 1);
    }
  } while ((curMatch = <u32>load<u16>(prev + (<usize>(curMatch & WMASK) << 1))) > limit && --chainLength != 0);
  store<u32>(s + DEFLATE_MATCH_START, matchStart);
  return bestLen <= lookahead ? bestLen : lookahead;
}

// --- the level functions ----------------------------------------------------------

/** Level 0: stored blocks of WSIZE bytes (the last one shorter). */
function deflateStored(s: usize, flush: u32): i32 {
  const win = s + DEFLATE_WINDOW;
  while (true) {
    const blockStart = load<i32>(s + DEFLATE_BLOCK_START);
    const strstart = load<u32>(s + DEFLATE_STRSTART);
    if (<i32>strstart - blockStart >= <i32>WSIZE) {
      storedBlock(s, win + <usize>blockStart, WSIZE, 0);
      store<i32>(s + DEFLATE_BLOCK_START, blockStart + <i32>WSIZE);
      if (!drainPending(s)) return NEED_MORE;
      continue;
    }
    fillWindow(s);
    const lookahead = load<u32>(s + DEFLATE_LOOKAHEAD);
    if (lookahead == 0) break;
    store<u32>(s + DEFLATE_STRSTART, load<u32>(s + DEFLATE_STRSTART) + lookahead);
    store<u32>(s + DEFLATE_LOOKAHEAD, 0);
  }
  if (flush == DEFLATE_NO_FLUSH) return NEED_MORE;
  const blockStart = load<i32>(s + DEFLATE_BLOCK_START);
  const strstart = load<u32>(s + DEFLATE_STRSTART);
  storedBlock(s, win + <usize>blockStart, <u32>(<i32>strstart - blockStart), 1);
  store<i32>(s + DEFLATE_BLOCK_START, <i32>strstart);
  return FINISH_DONE;
}

/**
 * Levels 1-3 (zlib's deflate_fast): take the longest match at each position,
 * without lazy evaluation; hash the strings inside a match only if it is at
 * most max_lazy long.
 */
function deflateFast(s: usize, flush: u32): i32 {
  const win = s + DEFLATE_WINDOW;
  const prev = s + DEFLATE_PREV;
  const head = s + DEFLATE_HEAD;
  const level = load<u32>(s + DEFLATE_LEVEL);
  const maxInsert = config(level, 1);
  let strstart = load<u32>(s + DEFLATE_STRSTART);
  let lookahead = load<u32>(s + DEFLATE_LOOKAHEAD);
  let symNext = load<u32>(s + DEFLATE_SYM_NEXT);
  while (true) {
    if (lookahead < MIN_LOOKAHEAD) {
      store<u32>(s + DEFLATE_STRSTART, strstart);
      store<u32>(s + DEFLATE_LOOKAHEAD, lookahead);
      fillWindow(s);
      strstart = load<u32>(s + DEFLATE_STRSTART);
      lookahead = load<u32>(s + DEFLATE_LOOKAHEAD);
      if (lookahead < MIN_LOOKAHEAD && flush == DEFLATE_NO_FLUSH) {
        store<u32>(s + DEFLATE_SYM_NEXT, symNext);
        return NEED_MORE;
      }
      if (lookahead == 0) break;
    }
    let hashHead: u32 = 0;
    if (lookahead >= MIN_MATCH) hashHead = insertString(win, prev, head, strstart);
    let matchLen: u32 = 0;
    if (hashHead != 0 && strstart - hashHead <= MAX_DIST) matchLen = longestMatch(s, hashHead, strstart, MIN_MATCH - 1, lookahead, level);
    if (matchLen >= MIN_MATCH) {
      tallyMatch(s, symNext++, strstart - load<u32>(s + DEFLATE_MATCH_START), matchLen - MIN_MATCH);
      lookahead -= matchLen;
      if (matchLen <= maxInsert && lookahead >= MIN_MATCH) {
        matchLen--;
        do {
          strstart++;
          insertString(win, prev, head, strstart);
        } while (--matchLen != 0);
        strstart++;
      } else {
        strstart += matchLen;
      }
    } else {
      tallyLiteral(s, symNext++, <u32>load<u8>(win + <usize>strstart));
      lookahead--;
      strstart++;
    }
    if (symNext == SYM_END) {
      store<u32>(s + DEFLATE_STRSTART, strstart);
      store<u32>(s + DEFLATE_LOOKAHEAD, lookahead);
      store<u32>(s + DEFLATE_SYM_NEXT, symNext);
      symNext = 0;
      if (!flushBlockOnly(s, 0)) return NEED_MORE;
    }
  }
  store<u32>(s + DEFLATE_STRSTART, strstart);
  store<u32>(s + DEFLATE_LOOKAHEAD, lookahead);
  store<u32>(s + DEFLATE_SYM_NEXT, symNext);
  store<u32>(s + DEFLATE_INSERT, strstart < MIN_MATCH - 1 ? strstart : MIN_MATCH - 1);
  // Only DEFLATE_FINISH gets here (without it, running low on input returns above).
  flushBlockOnly(s, 1);
  return FINISH_DONE;
}

/**
 * Levels 4-9 (zlib's deflate_slow): lazy evaluation — a match is taken only if
 * the next position does not start a longer one; 3-byte matches farther than
 * TOO_FAR are dropped.
 */
function deflateSlow(s: usize, flush: u32): i32 {
  const win = s + DEFLATE_WINDOW;
  const prev = s + DEFLATE_PREV;
  const head = s + DEFLATE_HEAD;
  const level = load<u32>(s + DEFLATE_LEVEL);
  const maxLazy = config(level, 1);
  let strstart = load<u32>(s + DEFLATE_STRSTART);
  let lookahead = load<u32>(s + DEFLATE_LOOKAHEAD);
  let symNext = load<u32>(s + DEFLATE_SYM_NEXT);
  let matchLen = load<u32>(s + DEFLATE_MATCH_LENGTH);
  let matchAvailable = load<u32>(s + DEFLATE_MATCH_AVAILABLE);
  while (true) {
    if (lookahead < MIN_LOOKAHEAD) {
      store<u32>(s + DEFLATE_STRSTART, strstart);
      store<u32>(s + DEFLATE_LOOKAHEAD, lookahead);
      fillWindow(s);
      strstart = load<u32>(s + DEFLATE_STRSTART);
      lookahead = load<u32>(s + DEFLATE_LOOKAHEAD);
      if (lookahead < MIN_LOOKAHEAD && flush == DEFLATE_NO_FLUSH) {
        store<u32>(s + DEFLATE_SYM_NEXT, symNext);
        store<u32>(s + DEFLATE_MATCH_LENGTH, matchLen);
        store<u32>(s + DEFLATE_MATCH_AVAILABLE, matchAvailable);
        return NEED_MORE;
      }
      if (lookahead == 0) break;
    }
    let hashHead: u32 = 0;
    if (lookahead >= MIN_MATCH) hashHead = insertString(win, prev, head, strstart);
    const prevLength = matchLen;
    const prevMatch = load<u32>(s + DEFLATE_MATCH_START);
    matchLen = MIN_MATCH - 1;
    if (hashHead != 0 && prevLength < maxLazy && strstart - hashHead <= MAX_DIST) {
      matchLen = longestMatch(s, hashHead, strstart, prevLength, lookahead, level);
      if (matchLen == MIN_MATCH && strstart - load<u32>(s + DEFLATE_MATCH_START) > TOO_FAR) matchLen = MIN_MATCH - 1;
    }
    if (prevLength >= MIN_MATCH && matchLen <= prevLength) {
      // The previous match is at least as long: emit it, hash its strings.
      const maxInsert = strstart + lookahead - MIN_MATCH;
      tallyMatch(s, symNext++, strstart - 1 - prevMatch, prevLength - MIN_MATCH);
      lookahead -= prevLength - 1;
      let n = prevLength - 2;
      do {
        if (++strstart <= maxInsert) insertString(win, prev, head, strstart);
      } while (--n != 0);
      matchAvailable = 0;
      matchLen = MIN_MATCH - 1;
      strstart++;
      if (symNext == SYM_END) {
        store<u32>(s + DEFLATE_STRSTART, strstart);
        store<u32>(s + DEFLATE_LOOKAHEAD, lookahead);
        store<u32>(s + DEFLATE_SYM_NEXT, symNext);
        store<u32>(s + DEFLATE_MATCH_LENGTH, matchLen);
        store<u32>(s + DEFLATE_MATCH_AVAILABLE, matchAvailable);
        symNext = 0;
        if (!flushBlockOnly(s, 0)) return NEED_MORE;
      }
    } else if (matchAvailable) {
      // No better match here: the previous position goes out as a literal.
      tallyLiteral(s, symNext++, <u32>load<u8>(win + <usize>strstart - 1));
      let drained = true;
      if (symNext == SYM_END) {
        store<u32>(s + DEFLATE_STRSTART, strstart);
        store<u32>(s + DEFLATE_SYM_NEXT, symNext);
        symNext = 0;
        drained = flushBlockOnly(s, 0);
      }
      strstart++;
      lookahead--;
      if (!drained) {
        store<u32>(s + DEFLATE_STRSTART, strstart);
        store<u32>(s + DEFLATE_LOOKAHEAD, lookahead);
        store<u32>(s + DEFLATE_SYM_NEXT, symNext);
        store<u32>(s + DEFLATE_MATCH_LENGTH, matchLen);
        store<u32>(s + DEFLATE_MATCH_AVAILABLE, matchAvailable);
        return NEED_MORE;
      }
    } else {
      // Wait for the next position to decide.
      matchAvailable = 1;
      strstart++;
      lookahead--;
    }
  }
  if (matchAvailable) {
    tallyLiteral(s, symNext++, <u32>load<u8>(win + <usize>strstart - 1));
    matchAvailable = 0;
  }
  store<u32>(s + DEFLATE_STRSTART, strstart);
  store<u32>(s + DEFLATE_LOOKAHEAD, lookahead);
  store<u32>(s + DEFLATE_SYM_NEXT, symNext);
  store<u32>(s + DEFLATE_MATCH_LENGTH, matchLen);
  store<u32>(s + DEFLATE_MATCH_AVAILABLE, matchAvailable);
  store<u32>(s + DEFLATE_INSERT, strstart < MIN_MATCH - 1 ? strstart : MIN_MATCH - 1);
  flushBlockOnly(s, 1);
  return FINISH_DONE;
}

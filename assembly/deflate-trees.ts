// Deflate block output: zlib's trees.c, step for step, so that blocks, code
// lengths and the stored/static/dynamic choice are zlib's exactly (the output
// is byte-identical to node:zlib's at levels 1-9). Symbols are tallied as
// u32 (distance | length-or-literal << 16) in the scratch's symbol buffer;
// bits go out through a 64-bit accumulator into the pending buffer, which is
// sized for one block and has slack for 8-byte stores.
import {
  DEFLATE_SYM_NEXT, DEFLATE_OPT_LEN, DEFLATE_STATIC_LEN, DEFLATE_BITCOUNT, DEFLATE_BITBUF, DEFLATE_PENDING,
  DEFLATE_PENDING_OUT, DEFLATE_MAX_CODE_L, DEFLATE_MAX_CODE_D, DEFLATE_MAX_CODE_BL, DEFLATE_HEAP_LEN,
  DEFLATE_HEAP_MAX, DEFLATE_BL_COUNT, DEFLATE_NEXT_CODE, DEFLATE_DYN_LTREE, DEFLATE_DYN_DTREE, DEFLATE_BL_TREE,
  DEFLATE_HEAP, DEFLATE_DEPTH, DEFLATE_SYM_BUF, DEFLATE_PENDING_BUF,
} from "./layout";
import {
  BL_ORDER, EXTRA_BLBITS, EXTRA_LBITS, EXTRA_DBITS, BASE_DIST, DIST_CODE, LENGTH_SYMBOL, STATIC_LTREE, STATIC_DTREE,
} from "./generated/deflate-tables";

const L_CODES: u32 = 286;
const D_CODES: u32 = 30;
const BL_CODES: u32 = 19;
const HEAP_SIZE: u32 = 2 * L_CODES + 1;
const MAX_BITS: u32 = 15;
const MAX_BL_BITS: u32 = 7;
const END_BLOCK: u32 = 256;
const LITERALS: u32 = 256;
const REP_3_6: u32 = 16;
const REPZ_3_10: u32 = 17;
const REPZ_11_138: u32 = 18;
const STORED_BLOCK: u32 = 0;
const STATIC_TREES: u32 = 1;
const DYN_TREES: u32 = 2;
/** The last symbol a block holds: zlib's sym_end at lit_bufsize 16384. */
export const SYM_END: u32 = 16383;

// ct_data: freq (or code) in the low u16, dad (or len) in the high u16.
@inline function freq(tree: usize, n: u32): u32 { return <u32>load<u16>(tree + (<usize>n << 2)); }
@inline function setFreq(tree: usize, n: u32, v: u32): void { store<u16>(tree + (<usize>n << 2), <u16>v); }
@inline function len(tree: usize, n: u32): u32 { return <u32>load<u16>(tree + (<usize>n << 2), 2); }
@inline function setLen(tree: usize, n: u32, v: u32): void { store<u16>(tree + (<usize>n << 2), <u16>v, 2); }
@inline function heapAt(s: usize, i: u32): u32 { return load<u32>(s + DEFLATE_HEAP + (<usize>i << 2)); }
@inline function setHeap(s: usize, i: u32, v: u32): void { store<u32>(s + DEFLATE_HEAP + (<usize>i << 2), v); }
@inline function depth(s: usize, n: u32): u32 { return <u32>load<u8>(s + DEFLATE_DEPTH + <usize>n); }
@inline function distCode(dist: u32): u32 {
  return <u32>load<u8>(DIST_CODE + <usize>(dist < 256 ? dist : <u32>256 + (dist >> 7)));
}

// --- bit output ---------------------------------------------------------------

/** Appends `n` (<= 32) bits; flushes whole bytes once 32 or more are held. */
@inline function sendBits(s: usize, value: u32, n: u32): void {
  let bitbuf = load<u64>(s + DEFLATE_BITBUF) | (<u64>value << <u64>load<u32>(s + DEFLATE_BITCOUNT));
  let bitcount = load<u32>(s + DEFLATE_BITCOUNT) + n;
  if (bitcount >= 32) {
    const pending = load<u32>(s + DEFLATE_PENDING);
    store<u64>(s + DEFLATE_PENDING_BUF + <usize>pending, bitbuf);
    store<u32>(s + DEFLATE_PENDING, pending + (bitcount >> 3));
    bitbuf >>= <u64>(bitcount & ~7);
    bitcount &= 7;
  }
  store<u64>(s + DEFLATE_BITBUF, bitbuf);
  store<u32>(s + DEFLATE_BITCOUNT, bitcount);
}

@inline function sendCode(s: usize, c: u32, tree: usize): void {
  sendBits(s, freq(tree, c), len(tree, c));
}

/** Flushes the bits held to whole bytes, padding the last with zeros (bi_windup). */
export function flushBitsAligned(s: usize): void {
  const bitcount = load<u32>(s + DEFLATE_BITCOUNT);
  const pending = load<u32>(s + DEFLATE_PENDING);
  store<u64>(s + DEFLATE_PENDING_BUF + <usize>pending, load<u64>(s + DEFLATE_BITBUF));
  store<u32>(s + DEFLATE_PENDING, pending + ((bitcount + 7) >> 3));
  store<u64>(s + DEFLATE_BITBUF, 0);
  store<u32>(s + DEFLATE_BITCOUNT, 0);
}

function putShort(s: usize, v: u32): void {
  const pending = load<u32>(s + DEFLATE_PENDING);
  store<u16>(s + DEFLATE_PENDING_BUF + <usize>pending, <u16>v);
  store<u32>(s + DEFLATE_PENDING, pending + 2);
}

// --- blocks -----------------------------------------------------------------------

export function initBlock(s: usize): void {
  for (let n: u32 = 0; n < L_CODES; n++) setFreq(s + DEFLATE_DYN_LTREE, n, 0);
  for (let n: u32 = 0; n < D_CODES; n++) setFreq(s + DEFLATE_DYN_DTREE, n, 0);
  for (let n: u32 = 0; n < BL_CODES; n++) setFreq(s + DEFLATE_BL_TREE, n, 0);
  setFreq(s + DEFLATE_DYN_LTREE, END_BLOCK, 1);
  store<u32>(s + DEFLATE_OPT_LEN, 0);
  store<u32>(s + DEFLATE_STATIC_LEN, 0);
  store<u32>(s + DEFLATE_SYM_NEXT, 0);
}

/** Records literal c as symbol number symNext. */
@inline export function tallyLiteral(s: usize, symNext: u32, c: u32): void {
  store<u32>(s + DEFLATE_SYM_BUF + (<usize>symNext << 2), c << 16);
  const f = s + DEFLATE_DYN_LTREE + (<usize>c << 2);
  store<u16>(f, load<u16>(f) + 1);
}

/** Records a match of length lc + 3 at distance dist as symbol number symNext. */
@inline export function tallyMatch(s: usize, symNext: u32, dist: u32, lc: u32): void {
  store<u32>(s + DEFLATE_SYM_BUF + (<usize>symNext << 2), dist | (lc << 16));
  const code = load<u32>(LENGTH_SYMBOL + (<usize>lc << 2)) & 0xff;
  const fl = s + DEFLATE_DYN_LTREE + (<usize>(code + LITERALS + 1) << 2);
  store<u16>(fl, load<u16>(fl) + 1);
  const fd = s + DEFLATE_DYN_DTREE + (<usize>distCode(dist - 1) << 2);
  store<u16>(fd, load<u16>(fd) + 1);
}

/** _tr_stored_block: a stored block of `storedLen` bytes at buf. */
export function storedBlock(s: usize, buf: usize, storedLen: u32, last: u32): void {
  sendBits(s, (STORED_BLOCK << 1) + last, 3);
  flushBitsAligned(s);
  putShort(s, storedLen);
  putShort(s, ~storedLen & 0xffff);
  const pending = load<u32>(s + DEFLATE_PENDING);
  memory.copy(s + DEFLATE_PENDING_BUF + <usize>pending, buf, storedLen);
  store<u32>(s + DEFLATE_PENDING, pending + storedLen);
}

/**
 * _tr_flush_block: the block of symbols tallied since initBlock, covering the
 * `storedLen` input bytes at buf (buf 0 when they left the window), as a
 * stored, static or dynamic block, whichever zlib would pick; level 0 always
 * stores.
 */
export function flushBlock(s: usize, buf: usize, storedLen: u32, last: u32, level: u32): void {
  let optLenb: u32;
  let staticLenb: u32;
  let maxBlindex: u32 = 0;
  if (level > 0) {
    buildTree(s, s + DEFLATE_DYN_LTREE, STATIC_LTREE, EXTRA_LBITS, 257, L_CODES, MAX_BITS, DEFLATE_MAX_CODE_L);
    buildTree(s, s + DEFLATE_DYN_DTREE, STATIC_DTREE, EXTRA_DBITS, 0, D_CODES, MAX_BITS, DEFLATE_MAX_CODE_D);
    maxBlindex = buildBlTree(s);
    optLenb = (load<u32>(s + DEFLATE_OPT_LEN) + 3 + 7) >> 3;
    staticLenb = (load<u32>(s + DEFLATE_STATIC_LEN) + 3 + 7) >> 3;
    if (staticLenb <= optLenb) optLenb = staticLenb;
  } else {
    optLenb = staticLenb = storedLen + 5;
  }
  if (storedLen + 4 <= optLenb && buf != 0) {
    storedBlock(s, buf, storedLen, last);
  } else if (staticLenb == optLenb) {
    sendBits(s, (STATIC_TREES << 1) + last, 3);
    compressBlock(s, STATIC_LTREE, STATIC_DTREE);
  } else {
    sendBits(s, (DYN_TREES << 1) + last, 3);
    sendAllTrees(s, load<u32>(s + DEFLATE_MAX_CODE_L) + 1, load<u32>(s + DEFLATE_MAX_CODE_D) + 1, maxBlindex + 1);
    compressBlock(s, s + DEFLATE_DYN_LTREE, s + DEFLATE_DYN_DTREE);
  }
  initBlock(s);
  if (last) flushBitsAligned(s);
}

/** Sends the tallied symbols with the given trees (static or dynamic), then end-of-block. */
function compressBlock(s: usize, ltree: usize, dtree: usize): void {
  const symEnd = s + DEFLATE_SYM_BUF + (<usize>load<u32>(s + DEFLATE_SYM_NEXT) << 2);
  let out = s + DEFLATE_PENDING_BUF + <usize>load<u32>(s + DEFLATE_PENDING);
  let bitbuf = load<u64>(s + DEFLATE_BITBUF);
  let bitcount = load<u32>(s + DEFLATE_BITCOUNT);
  // Down to at most 7 bits held, so each symbol's 48 bits fit.
  store<u64>(out, bitbuf);
  out += <usize>(bitcount >> 3);
  bitbuf >>= <u64>(bitcount & ~7);
  bitcount &= 7;
  for (let p = s + DEFLATE_SYM_BUF; p < symEnd; p += 4) {
    const sym = load<u32>(p);
    const dist = sym & 0xffff;
    const lc = sym >> 16;
    if (dist == 0) {
      const c = load<u32>(ltree + (<usize>lc << 2));
      bitbuf |= <u64>(c & 0xffff) << <u64>bitcount;
      bitcount += c >> 16;
    } else {
      // Length symbol and extra bits, distance symbol and extra bits: <= 48 bits.
      const ls = load<u32>(LENGTH_SYMBOL + (<usize>lc << 2));
      const c = load<u32>(ltree + (<usize>((ls & 0xff) + LITERALS + 1) << 2));
      bitbuf |= <u64>(c & 0xffff) << <u64>bitcount;
      bitcount += c >> 16;
      bitbuf |= <u64>(ls >> 16) << <u64>bitcount;
      bitcount += (ls >> 8) & 0xff;
      const d = dist - 1;
      const code = distCode(d);
      const dc = load<u32>(dtree + (<usize>code << 2));
      bitbuf |= <u64>(dc & 0xffff) << <u64>bitcount;
      bitcount += dc >> 16;
      bitbuf |= <u64>(d - <u32>load<u16>(BASE_DIST + (<usize>code << 1))) << <u64>bitcount;
      bitcount += <u32>load<u8>(EXTRA_DBITS + <usize>code);
    }
    store<u64>(out, bitbuf);
    out += <usize>(bitcount >> 3);
    bitbuf >>= <u64>(bitcount & ~7);
    bitcount &= 7;
  }
  store<u32>(s + DEFLATE_PENDING, <u32>(out - (s + DEFLATE_PENDING_BUF)));
  store<u64>(s + DEFLATE_BITBUF, bitbuf);
  store<u32>(s + DEFLATE_BITCOUNT, bitcount);
  sendCode(s, END_BLOCK, ltree);
}

// --- Huffman trees (zlib's build_tree, gen_bitlen, gen_codes) -----------------

/** Whether node n sorts before node m: smaller frequency, then smaller depth. */
@inline function smaller(s: usize, tree: usize, n: u32, m: u32): bool {
  const fn = freq(tree, n);
  const fm = freq(tree, m);
  return fn < fm || (fn == fm && depth(s, n) <= depth(s, m));
}

function pqDownHeap(s: usize, tree: usize, k: u32): void {
  const v = heapAt(s, k);
  const heapLen = load<u32>(s + DEFLATE_HEAP_LEN);
  let j = k << 1;
  while (j <= heapLen) {
    if (j < heapLen && smaller(s, tree, heapAt(s, j + 1), heapAt(s, j))) j++;
    if (smaller(s, tree, v, heapAt(s, j))) break;
    setHeap(s, k, heapAt(s, j));
    k = j;
    j <<= 1;
  }
  setHeap(s, k, v);
}

/**
 * Builds the Huffman tree for `tree` (elems symbols, frequencies filled in),
 * sets code lengths and codes, adds this tree's cost to opt_len (and the cost
 * of the same symbols with `stree`, when given, to static_len), and stores the
 * largest symbol with a code at maxCodeField.
 */
function buildTree(s: usize, tree: usize, stree: usize, extra: usize, base: u32, elems: u32, maxLength: u32, maxCodeField: usize): void {
  let heapLen: u32 = 0;
  let maxCode: i32 = -1;
  for (let n: u32 = 0; n < elems; n++) {
    if (freq(tree, n) != 0) {
      setHeap(s, ++heapLen, n);
      maxCode = <i32>n;
      store<u8>(s + DEFLATE_DEPTH + <usize>n, 0);
    } else {
      setLen(tree, n, 0);
    }
  }
  // The pkzip format needs at least one distance code, and at least two codes
  // of some kind: force them with frequency 1.
  while (heapLen < 2) {
    const node: u32 = maxCode < 2 ? <u32>(++maxCode) : 0;
    setHeap(s, ++heapLen, node);
    setFreq(tree, node, 1);
    store<u8>(s + DEFLATE_DEPTH + <usize>node, 0);
    store<u32>(s + DEFLATE_OPT_LEN, load<u32>(s + DEFLATE_OPT_LEN) - 1);
    if (stree) store<u32>(s + DEFLATE_STATIC_LEN, load<u32>(s + DEFLATE_STATIC_LEN) - (load<u32>(stree + (<usize>node << 2)) >> 16));
  }
  store<u32>(s + maxCodeField, <u32>maxCode);
  store<u32>(s + DEFLATE_HEAP_LEN, heapLen);
  for (let n = heapLen >> 1; n >= 1; n--) pqDownHeap(s, tree, n);

  // Combine the two least frequent nodes until one is left.
  let node = elems;
  let heapMax = HEAP_SIZE;
  do {
    const n = heapAt(s, 1);
    heapLen = load<u32>(s + DEFLATE_HEAP_LEN);
    setHeap(s, 1, heapAt(s, heapLen));
    store<u32>(s + DEFLATE_HEAP_LEN, heapLen - 1);
    pqDownHeap(s, tree, 1);
    const m = heapAt(s, 1);
    setHeap(s, --heapMax, n);
    setHeap(s, --heapMax, m);
    setFreq(tree, node, freq(tree, n) + freq(tree, m));
    const dn = depth(s, n);
    const dm = depth(s, m);
    store<u8>(s + DEFLATE_DEPTH + <usize>node, <u8>((dn >= dm ? dn : dm) + 1));
    setLen(tree, n, node); // dad
    setLen(tree, m, node);
    setHeap(s, 1, node++);
    pqDownHeap(s, tree, 1);
  } while (load<u32>(s + DEFLATE_HEAP_LEN) >= 2);
  setHeap(s, --heapMax, heapAt(s, 1));
  store<u32>(s + DEFLATE_HEAP_MAX, heapMax);

  genBitlen(s, tree, stree, extra, base, <u32>maxCode, maxLength);
  genCodes(s, tree, <u32>maxCode);
}

/** Code lengths from the tree, limited to maxLength the way zlib does it. */
function genBitlen(s: usize, tree: usize, stree: usize, extra: usize, base: u32, maxCode: u32, maxLength: u32): void {
  const blCount = s + DEFLATE_BL_COUNT;
  memory.fill(blCount, 0, (MAX_BITS + 1) * 2);
  const heapMax = load<u32>(s + DEFLATE_HEAP_MAX);
  let optLen = load<u32>(s + DEFLATE_OPT_LEN);
  let staticLen = load<u32>(s + DEFLATE_STATIC_LEN);
  // The root's length is 0; each node's is its parent's plus one.
  setLen(tree, heapAt(s, heapMax), 0);
  let overflow: i32 = 0;
  let h = heapMax + 1;
  for (; h < HEAP_SIZE; h++) {
    const n = heapAt(s, h);
    let bits = len(tree, len(tree, n)) + 1;
    if (bits > maxLength) {
      bits = maxLength;
      overflow++;
    }
    setLen(tree, n, bits);
    if (n > maxCode) continue; // not a leaf
    store<u16>(blCount + (<usize>bits << 1), load<u16>(blCount + (<usize>bits << 1)) + 1);
    const xbits: u32 = n >= base ? <u32>load<u8>(extra + <usize>(n - base)) : 0;
    const f = freq(tree, n);
    optLen += f * (bits + xbits);
    if (stree) staticLen += f * ((load<u32>(stree + (<usize>n << 2)) >> 16) + xbits);
  }
  if (overflow != 0) {
    // Move leaves down the tree until the overflowing ones fit.
    do {
      let bits = maxLength - 1;
      while (load<u16>(blCount + (<usize>bits << 1)) == 0) bits--;
      store<u16>(blCount + (<usize>bits << 1), load<u16>(blCount + (<usize>bits << 1)) - 1);
      store<u16>(blCount + (<usize>(bits + 1) << 1), load<u16>(blCount + (<usize>(bits + 1) << 1)) + 2);
      store<u16>(blCount + (<usize>maxLength << 1), load<u16>(blCount + (<usize>maxLength << 1)) - 1);
      overflow -= 2;
    } while (overflow > 0);
    // Reassign lengths in order of frequency (the heap's order).
    for (let bits = maxLength; bits != 0; bits--) {
      let n = <u32>load<u16>(blCount + (<usize>bits << 1));
      while (n != 0) {
        const m = heapAt(s, --h);
        if (m > maxCode) continue;
        const l = len(tree, m);
        if (l != bits) {
          optLen += (bits - l) * freq(tree, m);
          setLen(tree, m, bits);
        }
        n--;
      }
    }
  }
  store<u32>(s + DEFLATE_OPT_LEN, optLen);
  store<u32>(s + DEFLATE_STATIC_LEN, staticLen);
}

/** Canonical codes from the lengths, bit-reversed for LSB-first output. */
function genCodes(s: usize, tree: usize, maxCode: u32): void {
  const blCount = s + DEFLATE_BL_COUNT;
  const nextCode = s + DEFLATE_NEXT_CODE;
  let code: u32 = 0;
  for (let bits: u32 = 1; bits <= MAX_BITS; bits++) {
    code = (code + <u32>load<u16>(blCount + (<usize>(bits - 1) << 1))) << 1;
    store<u16>(nextCode + (<usize>bits << 1), <u16>code);
  }
  for (let n: u32 = 0; n <= maxCode; n++) {
    const l = len(tree, n);
    if (l == 0) continue;
    const slot = nextCode + (<usize>l << 1);
    const c = <u32>load<u16>(slot);
    store<u16>(slot, <u16>(c + 1));
    setFreq(tree, n, reverse(c, l));
  }
}

function reverse(code: u32, n: u32): u32 {
  let x = code;
  x = ((x >> 1) & 0x55555555) | ((x & 0x55555555) << 1);
  x = ((x >> 2) & 0x33333333) | ((x & 0x33333333) << 2);
  x = ((x >> 4) & 0x0f0f0f0f) | ((x & 0x0f0f0f0f) << 4);
  return bswap<u32>(x) >> (32 - n);
}

// --- the code-length code (scan_tree, send_tree, build_bl_tree) -------------------

/** Counts the run-length symbols that would send `tree`'s code lengths. */
function scanTree(s: usize, tree: usize, maxCode: u32): void {
  const bl = s + DEFLATE_BL_TREE;
  let prevlen: i32 = -1;
  let nextlen = len(tree, 0);
  let count: u32 = 0;
  let maxCount: u32 = 7;
  let minCount: u32 = 4;
  if (nextlen == 0) {
    maxCount = 138;
    minCount = 3;
  }
  setLen(tree, maxCode + 1, 0xffff); // guard
  for (let n: u32 = 0; n <= maxCode; n++) {
    const curlen = nextlen;
    nextlen = len(tree, n + 1);
    if (++count < maxCount && curlen == nextlen) continue;
    if (count < minCount) {
      setFreq(bl, curlen, freq(bl, curlen) + count);
    } else if (curlen != 0) {
      if (<i32>curlen != prevlen) setFreq(bl, curlen, freq(bl, curlen) + 1);
      setFreq(bl, REP_3_6, freq(bl, REP_3_6) + 1);
    } else if (count <= 10) {
      setFreq(bl, REPZ_3_10, freq(bl, REPZ_3_10) + 1);
    } else {
      setFreq(bl, REPZ_11_138, freq(bl, REPZ_11_138) + 1);
    }
    count = 0;
    prevlen = <i32>curlen;
    if (nextlen == 0) {
      maxCount = 138;
      minCount = 3;
    } else if (curlen == nextlen) {
      maxCount = 6;
      minCount = 3;
    } else {
      maxCount = 7;
      minCount = 4;
    }
  }
}

/** Sends `tree`'s code lengths with the code-length code. */
function sendTree(s: usize, tree: usize, maxCode: u32): void {
  const bl = s + DEFLATE_BL_TREE;
  let prevlen: i32 = -1;
  let nextlen = len(tree, 0);
  let count: u32 = 0;
  let maxCount: u32 = 7;
  let minCount: u32 = 4;
  if (nextlen == 0) {
    maxCount = 138;
    minCount = 3;
  }
  for (let n: u32 = 0; n <= maxCode; n++) {
    const curlen = nextlen;
    nextlen = len(tree, n + 1);
    if (++count < maxCount && curlen == nextlen) continue;
    if (count < minCount) {
      do sendCode(s, curlen, bl); while (--count != 0);
    } else if (curlen != 0) {
      if (<i32>curlen != prevlen) {
        sendCode(s, curlen, bl);
        count--;
      }
      sendCode(s, REP_3_6, bl);
      sendBits(s, count - 3, 2);
    } else if (count <= 10) {
      sendCode(s, REPZ_3_10, bl);
      sendBits(s, count - 3, 3);
    } else {
      sendCode(s, REPZ_11_138, bl);
      sendBits(s, count - 11, 7);
    }
    count = 0;
    prevlen = <i32>curlen;
    if (nextlen == 0) {
      maxCount = 138;
      minCount = 3;
    } else if (curlen == nextlen) {
      maxCount = 6;
      minCount = 3;
    } else {
      maxCount = 7;
      minCount = 4;
    }
  }
}

/** Builds the code-length code; returns the index in BL_ORDER of the last length to send. */
function buildBlTree(s: usize): u32 {
  scanTree(s, s + DEFLATE_DYN_LTREE, load<u32>(s + DEFLATE_MAX_CODE_L));
  scanTree(s, s + DEFLATE_DYN_DTREE, load<u32>(s + DEFLATE_MAX_CODE_D));
  buildTree(s, s + DEFLATE_BL_TREE, 0, EXTRA_BLBITS, 0, BL_CODES, MAX_BL_BITS, DEFLATE_MAX_CODE_BL);
  let maxBlindex = BL_CODES - 1;
  for (; maxBlindex >= 3; maxBlindex--) {
    if (len(s + DEFLATE_BL_TREE, <u32>load<u8>(BL_ORDER + <usize>maxBlindex)) != 0) break;
  }
  store<u32>(s + DEFLATE_OPT_LEN, load<u32>(s + DEFLATE_OPT_LEN) + 3 * (maxBlindex + 1) + 5 + 5 + 4);
  return maxBlindex;
}

function sendAllTrees(s: usize, lcodes: u32, dcodes: u32, blcodes: u32): void {
  sendBits(s, lcodes - 257, 5);
  sendBits(s, dcodes - 1, 5);
  sendBits(s, blcodes - 4, 4);
  for (let rank: u32 = 0; rank < blcodes; rank++) {
    sendBits(s, len(s + DEFLATE_BL_TREE, <u32>load<u8>(BL_ORDER + <usize>rank)), 3);
  }
  sendTree(s, s + DEFLATE_DYN_LTREE, lcodes - 1);
  sendTree(s, s + DEFLATE_DYN_DTREE, dcodes - 1);
}

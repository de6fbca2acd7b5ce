// Deflate block output: zlib's trees.c, step for step, so that blocks, code
// lengths and the stored/static/dynamic choice are zlib's exactly (the output
// is byte-identical to node:zlib's at levels 1-9). Symbols are tallied as
// u32 (distance | length-or-literal << 16) in the scratch's symbol buffer;
// bits go out through a 64-bit accumulator into the pending buffer, which is
// sized for one block and has slack for 8-byte stores.
import {
  DEFLATE_SYM_NEXT, DEFLATE_OPT_LEN, DEFLATE_STATIC_LEN, DEFLATE_BITCOUNT, DEFLATE_BITBUF, DEFLATE_PENDING,
  DEFLATE_PENDING_OUT, DEFLATE_MAX_CODE_L, DEFLATE_MAX_CODE_D, DEFLATE_MAX_CODE_BL, DEFLATE_BL_COUNT,
  DEFLATE_NEXT_CODE, DEFLATE_DYN_LTREE, DEFLATE_DYN_DTREE, DEFLATE_BL_TREE, DEFLATE_HEAP, DEFLATE_ORDER,
  DEFLATE_SYM_BUF, DEFLATE_PENDING_BUF,
} from "./layout";
import {
  BL_ORDER, EXTRA_BLBITS, EXTRA_LBITS, EXTRA_DBITS, BASE_DIST, DIST_CODE, LENGTH_SYMBOL, STATIC_LTREE, STATIC_DTREE,
} from "./generated/deflate-tables";
import { reverseBits } from "./bits";

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
@inline function orderAt(s: usize, i: u32): u32 { return <u32>load<u16>(s + DEFLATE_ORDER + (<usize>i << 1)); }
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
  // Whole entries: buildTree sets every symbol's length before it is read.
  memory.fill(s + DEFLATE_DYN_LTREE, 0, <usize>L_CODES * 4);
  memory.fill(s + DEFLATE_DYN_DTREE, 0, <usize>D_CODES * 4);
  memory.fill(s + DEFLATE_BL_TREE, 0, <usize>BL_CODES * 4);
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

/**
 * Sends the tallied symbols with the given trees (static or dynamic), then
 * end-of-block. The 64-bit accumulator goes out in 8-byte stores only when the
 * next symbol might not fit: a literal needs <= 15 bits, a match <= 48.
 */
function compressBlock(s: usize, ltree: usize, dtree: usize): void {
  const symEnd = s + DEFLATE_SYM_BUF + (<usize>load<u32>(s + DEFLATE_SYM_NEXT) << 2);
  let out = s + DEFLATE_PENDING_BUF + <usize>load<u32>(s + DEFLATE_PENDING);
  let bitbuf = load<u64>(s + DEFLATE_BITBUF);
  let bitcount = load<u32>(s + DEFLATE_BITCOUNT);
  for (let p = s + DEFLATE_SYM_BUF; p < symEnd; p += 4) {
    const sym = load<u32>(p);
    const dist = sym & 0xffff;
    const lc = sym >> 16;
    if (dist == 0) {
      if (bitcount > 64 - 15) {
        store<u64>(out, bitbuf);
        out += <usize>(bitcount >> 3);
        bitbuf >>= <u64>(bitcount & ~7);
        bitcount &= 7;
      }
      const c = load<u32>(ltree + (<usize>lc << 2));
      bitbuf |= <u64>(c & 0xffff) << <u64>bitcount;
      bitcount += c >> 16;
    } else {
      if (bitcount > 64 - 48) {
        store<u64>(out, bitbuf);
        out += <usize>(bitcount >> 3);
        bitbuf >>= <u64>(bitcount & ~7);
        bitcount &= 7;
      }
      // Length symbol and extra bits, distance symbol and extra bits.
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
  }
  // Back to sendBits' state: fewer than 32 bits held.
  store<u64>(out, bitbuf);
  out += <usize>(bitcount >> 3);
  bitbuf >>= <u64>(bitcount & ~7);
  bitcount &= 7;
  store<u32>(s + DEFLATE_PENDING, <u32>(out - (s + DEFLATE_PENDING_BUF)));
  store<u64>(s + DEFLATE_BITBUF, bitbuf);
  store<u32>(s + DEFLATE_BITCOUNT, bitcount);
  sendCode(s, END_BLOCK, ltree);
}

// --- Huffman trees (zlib's build_tree, gen_bitlen, gen_codes) -----------------

// The heap holds u64 entries freq << 40 | depth << 32 | node, so zlib's
// smaller(n, m) — smaller frequency, then smaller or equal depth — is one
// compare of the entries' high 32 bits, and a merge needs no tree loads.
const NODE_MASK: u64 = 0xffff;
@inline function key(entry: u64): u64 { return entry >> 32; }
@inline function heapAt(heap: usize, i: u32): u64 { return load<u64>(heap + (<usize>i << 3)); }
@inline function setHeap(heap: usize, i: u32, v: u64): void { store<u64>(heap + (<usize>i << 3), v); }

/** Past the heap's last entry: never picked as the smaller child. */
const SENTINEL: u64 = 0xffffffffffffffff;

/**
 * zlib's pqdownheap: sifts entry k down (ties go to the right child, as
 * zlib's). The child is chosen with a select, not a branch: which child is
 * smaller is data, and mispredicting it cost more than the rest of the sift.
 * Needs SENTINEL at heap[heapLen + 1].
 */
function pqDownHeap(heap: usize, heapLen: u32, k: u32): void {
  const v = heapAt(heap, k);
  const vk = key(v);
  let j = k << 1;
  while (j <= heapLen) {
    const left = heapAt(heap, j);
    const right = heapAt(heap, j + 1);
    const pickRight = key(right) <= key(left);
    const hj = select<u64>(right, left, pickRight);
    j += <u32>pickRight;
    if (vk <= key(hj)) break;
    setHeap(heap, k, hj);
    k = j;
    j <<= 1;
  }
  setHeap(heap, k, v);
}

/**
 * pqremove's sift of the heap's last entry, moved to the root: it is large, so
 * it sinks nearly to the bottom. Bottom-up (Floyd): move the smaller child up
 * level by level to a leaf (selects only), then climb back while the entry
 * sorts at or before the one above. Keys grow down any path, so this places it
 * exactly where zlib's pqdownheap would. Needs SENTINEL at heap[heapLen + 1].
 */
function pqSinkFromRoot(heap: usize, heapLen: u32): void {
  const v = heapAt(heap, 1);
  const vk = key(v);
  let k: u32 = 1;
  let j: u32 = 2;
  while (j <= heapLen) {
    const left = heapAt(heap, j);
    const right = heapAt(heap, j + 1);
    const pickRight = key(right) <= key(left);
    setHeap(heap, k, select<u64>(right, left, pickRight));
    k = j + <u32>pickRight;
    j = k << 1;
  }
  // The hole is at k; climb while v belongs above the entry moved up into k's parent.
  while (k > 1) {
    const up = heapAt(heap, k >> 1);
    if (vk > key(up)) break;
    setHeap(heap, k, up);
    k >>= 1;
  }
  setHeap(heap, k, v);
}

/**
 * Builds the Huffman tree for `tree` (elems symbols, frequencies filled in),
 * sets code lengths and codes, adds this tree's cost to opt_len (and the cost
 * of the same symbols with `stree`, when given, to static_len), and stores the
 * largest symbol with a code at maxCodeField.
 */
function buildTree(s: usize, tree: usize, stree: usize, extra: usize, base: u32, elems: u32, maxLength: u32, maxCodeField: usize): void {
  const heap = s + DEFLATE_HEAP;
  let heapLen: u32 = 0;
  let maxCode: i32 = -1;
  // The used symbols, in order, four entries at a time: unused entries are
  // zeroed whole (length 0), used ones go on the heap.
  const freqMask = i32x4.splat(0xffff);
  let n: u32 = 0;
  for (; n + 4 <= elems; n += 4) {
    const v = v128.load(tree + (<usize>n << 2));
    const used = i32x4.ne(v128.and(v, freqMask), i32x4.splat(0));
    v128.store(tree + (<usize>n << 2), v128.and(v, used));
    let bits = i32x4.bitmask(used);
    while (bits) {
      const i = n + ctz(bits);
      setHeap(heap, ++heapLen, (<u64>freq(tree, i) << 40) | <u64>i);
      maxCode = <i32>i;
      bits &= bits - 1;
    }
  }
  for (; n < elems; n++) {
    const f = freq(tree, n);
    if (f != 0) {
      setHeap(heap, ++heapLen, (<u64>f << 40) | <u64>n);
      maxCode = <i32>n;
    } else {
      setLen(tree, n, 0);
    }
  }
  // The pkzip format needs at least one distance code, and at least two codes
  // of some kind: force them with frequency 1.
  while (heapLen < 2) {
    const node: u32 = maxCode < 2 ? <u32>(++maxCode) : 0;
    setHeap(heap, ++heapLen, (<u64>1 << 40) | <u64>node);
    setFreq(tree, node, 1);
    store<u32>(s + DEFLATE_OPT_LEN, load<u32>(s + DEFLATE_OPT_LEN) - 1);
    if (stree) store<u32>(s + DEFLATE_STATIC_LEN, load<u32>(s + DEFLATE_STATIC_LEN) - (load<u32>(stree + (<usize>node << 2)) >> 16));
  }
  store<u32>(s + maxCodeField, <u32>maxCode);
  setHeap(heap, heapLen + 1, SENTINEL);
  for (let n = heapLen >> 1; n >= 1; n--) pqDownHeap(heap, heapLen, n);

  // Combine the two least frequent nodes until one is left; the order they
  // leave the heap in is what gen_bitlen walks.
  let node = elems;
  let orderMax = HEAP_SIZE;
  do {
    const a = heapAt(heap, 1);
    setHeap(heap, 1, heapAt(heap, heapLen));
    setHeap(heap, heapLen--, SENTINEL);
    pqSinkFromRoot(heap, heapLen);
    const b = heapAt(heap, 1);
    const n = <u32>(a & NODE_MASK);
    const m = <u32>(b & NODE_MASK);
    store<u16>(s + DEFLATE_ORDER + (<usize>--orderMax << 1), <u16>n);
    store<u16>(s + DEFLATE_ORDER + (<usize>--orderMax << 1), <u16>m);
    const dn = (a >> 32) & 0xff;
    const dm = (b >> 32) & 0xff;
    setLen(tree, n, node); // dad
    setLen(tree, m, node);
    setHeap(heap, 1, (((a >> 40) + (b >> 40)) << 40) | (((dn >= dm ? dn : dm) + 1) << 32) | <u64>node);
    node++;
    pqDownHeap(heap, heapLen, 1);
  } while (heapLen >= 2);
  store<u16>(s + DEFLATE_ORDER + (<usize>--orderMax << 1), <u16>(heapAt(heap, 1) & NODE_MASK));

  genBitlen(s, tree, stree, extra, base, <u32>maxCode, maxLength, orderMax);
  genCodes(s, tree, <u32>maxCode);
}

/** Code lengths from the tree, limited to maxLength the way zlib does it. */
function genBitlen(s: usize, tree: usize, stree: usize, extra: usize, base: u32, maxCode: u32, maxLength: u32, heapMax: u32): void {
  const blCount = s + DEFLATE_BL_COUNT;
  memory.fill(blCount, 0, (MAX_BITS + 1) * 2);
  let optLen = load<u32>(s + DEFLATE_OPT_LEN);
  let staticLen = load<u32>(s + DEFLATE_STATIC_LEN);
  // The root's length is 0; each node's is its parent's plus one.
  setLen(tree, orderAt(s, heapMax), 0);
  let overflow: i32 = 0;
  let h = heapMax + 1;
  for (; h < HEAP_SIZE; h++) {
    const n = orderAt(s, h);
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
        const m = orderAt(s, --h);
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
    setFreq(tree, n, reverseBits(c, l));
  }
}

// --- the code-length code (scan_tree, send_tree, build_bl_tree) -------------------

/**
 * zlib's scan_tree (send = false: counts the run-length symbols that would
 * send `tree`'s code lengths into the code-length tree's frequencies) and
 * send_tree (send = true: sends them with the code-length code): one walk.
 */
function walkTree(s: usize, tree: usize, maxCode: u32, send: bool): void {
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
  if (!send) setLen(tree, maxCode + 1, 0xffff); // guard
  for (let n: u32 = 0; n <= maxCode; n++) {
    const curlen = nextlen;
    nextlen = len(tree, n + 1);
    if (++count < maxCount && curlen == nextlen) continue;
    if (count < minCount) {
      if (send) {
        do sendCode(s, curlen, bl); while (--count != 0);
      } else {
        setFreq(bl, curlen, freq(bl, curlen) + count);
      }
    } else if (curlen != 0) {
      if (<i32>curlen != prevlen) {
        if (send) sendCode(s, curlen, bl);
        else setFreq(bl, curlen, freq(bl, curlen) + 1);
        count--;
      }
      if (send) {
        sendCode(s, REP_3_6, bl);
        sendBits(s, count - 3, 2);
      } else {
        setFreq(bl, REP_3_6, freq(bl, REP_3_6) + 1);
      }
    } else if (count <= 10) {
      if (send) {
        sendCode(s, REPZ_3_10, bl);
        sendBits(s, count - 3, 3);
      } else {
        setFreq(bl, REPZ_3_10, freq(bl, REPZ_3_10) + 1);
      }
    } else {
      if (send) {
        sendCode(s, REPZ_11_138, bl);
        sendBits(s, count - 11, 7);
      } else {
        setFreq(bl, REPZ_11_138, freq(bl, REPZ_11_138) + 1);
      }
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
  walkTree(s, s + DEFLATE_DYN_LTREE, load<u32>(s + DEFLATE_MAX_CODE_L), false);
  walkTree(s, s + DEFLATE_DYN_DTREE, load<u32>(s + DEFLATE_MAX_CODE_D), false);
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
  walkTree(s, s + DEFLATE_DYN_LTREE, lcodes - 1, true);
  walkTree(s, s + DEFLATE_DYN_DTREE, dcodes - 1, true);
}

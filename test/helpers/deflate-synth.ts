/**
 * Structure-aware deflate stream generator for the inflate fuzzer: random but
 * mostly well-formed blocks — stored blocks with LEN/NLEN, fixed-code blocks,
 * and dynamic blocks whose literal/length, distance and code-length codes are
 * random canonical codes (now and then incomplete, over-subscribed, missing
 * end-of-block, or with a bad repeat), with literals, lengths and distances
 * (mostly inside the output so far, sometimes beyond it or invalid) — wrapped
 * as raw, zlib (random CINFO/FLEVEL, rarely FDICT) or gzip (random optional
 * header fields, HCRC) with right or wrong trailers. Mutation of real streams
 * rarely reaches the deep validation paths; these do.
 */
import zlib from 'node:zlib';

const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const BL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

export class BitWriter {
  private out: number[] = [];
  private acc = 0;
  private count = 0;

  bits(value: number, n: number): void {
    for (let i = 0; i < n; i++) {
      this.acc |= ((value >>> i) & 1) << this.count;
      if (++this.count === 8) this.flushByte();
    }
  }

  /** A Huffman codeword: most significant bit first. */
  code(codeword: number, n: number): void {
    for (let i = n - 1; i >= 0; i--) this.bits((codeword >>> i) & 1, 1);
  }

  align(): void {
    if (this.count) this.flushByte();
  }

  byte(b: number): void {
    this.align();
    this.out.push(b & 255);
  }

  bytes(): Uint8Array {
    const tail = this.count ? [this.acc] : [];
    return Uint8Array.from([...this.out, ...tail]);
  }

  private flushByte(): void {
    this.out.push(this.acc);
    this.acc = 0;
    this.count = 0;
  }
}

/** Canonical codewords for code lengths (RFC 1951 3.2.2); 0 for unused symbols. */
export function canonical(lengths: number[]): number[] {
  const count = new Array(16).fill(0);
  for (const l of lengths) if (l) count[l]++;
  const next = new Array(16).fill(0);
  let code = 0;
  for (let bits = 1; bits < 16; bits++) {
    code = (code + count[bits - 1]) << 1;
    next[bits] = code;
  }
  return lengths.map((l) => (l ? next[l]++ : 0));
}

/**
 * Lengths of a random complete prefix code with `leaves` codewords of at most
 * maxLen bits (leaves >= 2): split random leaves until there are enough.
 */
function randomCompleteLengths(leaves: number, maxLen: number, rand: () => number): number[] {
  const lens = [1, 1];
  while (lens.length < leaves) {
    const candidates = lens.map((l, i) => [l, i]).filter(([l]) => l < maxLen);
    if (!candidates.length) break;
    // Prefer short leaves a little so codes stay shallow and varied.
    const [l, i] = candidates[(rand() * rand() * candidates.length) | 0];
    lens[i] = l + 1;
    lens.push(l + 1);
  }
  return lens;
}

type Flaw = 'none' | 'incomplete' | 'oversubscribed';

/** Lengths for `n` symbols, with the given symbols used, optionally flawed. */
function codeLengths(n: number, used: number[], maxLen: number, flaw: Flaw, rand: () => number): number[] {
  const lens = new Array(n).fill(0);
  const symbols = [...new Set(used)].filter((s) => s < n);
  if (symbols.length === 1) symbols.push(symbols[0] === 0 ? 1 : 0);
  const shape = randomCompleteLengths(symbols.length, maxLen, rand);
  symbols.forEach((s, i) => (lens[s] = shape[i] ?? maxLen));
  if (flaw === 'incomplete') {
    const s = symbols[(rand() * symbols.length) | 0];
    lens[s] = Math.min(maxLen, lens[s] + 1);
  } else if (flaw === 'oversubscribed') {
    const free = lens.findIndex((l) => l === 0);
    if (free >= 0) lens[free] = 1 + ((rand() * maxLen) | 0);
    else lens[0] = Math.max(1, lens[0] - 1);
  }
  return lens;
}

/** Code-length symbols (with repeats 16/17/18) for a sequence of lengths. */
function runLengths(lens: number[], rand: () => number): [number, number, number][] {
  const out: [number, number, number][] = []; // symbol, extra value, extra bits
  for (let i = 0; i < lens.length;) {
    const l = lens[i];
    let run = 1;
    while (i + run < lens.length && lens[i + run] === l) run++;
    if (l === 0 && run >= 11 && rand() < 0.8) {
      const n = Math.min(run, 138);
      out.push([18, n - 11, 7]);
      i += n;
    } else if (l === 0 && run >= 3 && rand() < 0.8) {
      const n = Math.min(run, 10);
      out.push([17, n - 3, 3]);
      i += n;
    } else if (l !== 0 && run >= 4 && rand() < 0.8) {
      out.push([l, 0, 0]);
      const n = Math.min(run - 1, 6);
      out.push([16, n - 3, 2]);
      i += 1 + n;
    } else {
      out.push([l, 0, 0]);
      i++;
    }
  }
  return out;
}

interface Sym {
  lit?: number;
  len?: number;
  dist?: number;
}

/** Random literals and matches; distances mostly within the `produced` bytes so far. */
function randomSymbols(rand: () => number, produced: number): { syms: Sym[]; produced: number } {
  const syms: Sym[] = [];
  const count = (rand() * (rand() < 0.1 ? 400 : 40)) | 0;
  for (let i = 0; i < count; i++) {
    if (produced === 0 || rand() < 0.5) {
      syms.push({ lit: rand() < 0.5 ? 97 + ((rand() * 4) | 0) : (rand() * 256) | 0 });
      produced++;
    } else {
      const len = rand() < 0.05 ? 258 : 3 + ((rand() * (rand() < 0.2 ? 255 : 20)) | 0);
      const dist = rand() < 0.004 ? produced + 1 + ((rand() * 100) | 0) : 1 + ((rand() * Math.min(produced, rand() < 0.2 ? 32768 : 300)) | 0);
      syms.push({ len, dist: Math.min(dist, 32768) });
      produced += len;
    }
  }
  return { syms, produced };
}

function lengthSymbol(len: number): [number, number, number] {
  let c = 28;
  while (c > 0 && LENGTH_BASE[c] > len) c--;
  if (len === 258) c = 28;
  return [257 + c, len - LENGTH_BASE[c], LENGTH_EXTRA[c]];
}

function distSymbol(dist: number): [number, number, number] {
  let c = 29;
  while (c > 0 && DIST_BASE[c] > dist) c--;
  return [c, dist - DIST_BASE[c], DIST_EXTRA[c]];
}

function writeSymbols(w: BitWriter, syms: Sym[], lcodes: number[], llens: number[], dcodes: number[], dlens: number[], rand: () => number): void {
  for (const s of syms) {
    if (s.lit !== undefined) {
      w.code(lcodes[s.lit], llens[s.lit]);
      continue;
    }
    const [ls, lx, lxb] = lengthSymbol(s.len!);
    w.code(lcodes[ls], llens[ls]);
    w.bits(lx, lxb);
    const [ds, dx, dxb] = distSymbol(s.dist!);
    w.code(dcodes[ds], dlens[ds]);
    w.bits(dx, dxb);
  }
  if (rand() < 0.02) {
    // An unused symbol: with the fixed code, 286/287 or distance 30/31.
    w.code(lcodes[286] ?? 0, llens[286] ?? 8);
  }
  w.code(lcodes[256], llens[256]);
}

const FIXED_LLENS = Array.from({ length: 288 }, (_, s) => (s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8));
const FIXED_DLENS = new Array(32).fill(5);

/** A random raw deflate stream. */
export function synthesizeDeflate(rand: () => number): Uint8Array {
  const w = new BitWriter();
  const blocks = 1 + ((rand() * 3) | 0);
  let produced = 0;
  for (let b = 0; b < blocks; b++) {
    const last = b === blocks - 1 ? (rand() < 0.97 ? 1 : 0) : rand() < 0.03 ? 1 : 0;
    const r = rand();
    const type = r < 0.2 ? 0 : r < 0.45 ? 1 : r < 0.99 ? 2 : 3;
    w.bits(last, 1);
    w.bits(type, 2);
    if (type === 0) {
      w.align();
      const len = (rand() * 300) | 0;
      const nlen = rand() < 0.95 ? ~len & 0xffff : (rand() * 65536) | 0;
      w.byte(len & 255);
      w.byte(len >> 8);
      w.byte(nlen & 255);
      w.byte(nlen >> 8);
      for (let i = 0; i < len; i++) w.byte((rand() * 256) | 0);
      produced += len;
    } else if (type === 1) {
      const { syms, produced: p } = randomSymbols(rand, produced);
      produced = p;
      writeSymbols(w, syms, canonical(FIXED_LLENS), FIXED_LLENS, canonical(FIXED_DLENS), FIXED_DLENS, rand);
    } else if (type === 2) {
      produced = writeDynamic(w, rand, produced);
    }
  }
  return w.bytes();
}

function writeDynamic(w: BitWriter, rand: () => number, produced: number): number {
  const { syms, produced: p } = randomSymbols(rand, produced);
  const usedL = syms.map((s) => (s.lit !== undefined ? s.lit : lengthSymbol(s.len!)[0]));
  if (rand() < 0.98) usedL.push(256);
  const usedD = syms.filter((s) => s.dist !== undefined).map((s) => distSymbol(s.dist!)[0]);
  const maxL = Math.max(257, ...usedL) + 1;
  const nlen = Math.min(rand() < 0.02 ? 287 + ((rand() * 2) | 0) : maxL + ((rand() * (287 - maxL)) | 0), 288);
  const maxD = usedD.length ? Math.max(...usedD) + 1 : 1;
  const ndist = rand() < 0.02 ? 31 + ((rand() * 2) | 0) : maxD + ((rand() * (31 - maxD)) | 0);
  const flaw = (): Flaw => (rand() < 0.94 ? 'none' : rand() < 0.5 ? 'incomplete' : 'oversubscribed');
  const llens = codeLengths(nlen, usedL, 15, flaw(), rand);
  // A block without matches may have an empty distance code (one zero length).
  const dlens = usedD.length || rand() < 0.5 ? codeLengths(ndist, usedD.length ? usedD : [0], 15, flaw(), rand) : new Array(ndist).fill(0);
  const rl = runLengths([...llens, ...dlens], rand);
  if (rand() < 0.02) rl.unshift([16, 0, 2]); // a repeat with nothing to repeat
  if (rand() < 0.02) rl.push([18, 127, 7]); // a repeat past the declared lengths
  const clens = codeLengths(19, rl.map(([s]) => s), 7, flaw(), rand);
  let hclen = 19;
  while (hclen > 4 && clens[BL_ORDER[hclen - 1]] === 0) hclen--;
  w.bits(Math.min(nlen, 288) - 257, 5);
  w.bits(Math.min(ndist, 32) - 1, 5);
  w.bits(hclen - 4, 4);
  for (let i = 0; i < hclen; i++) w.bits(clens[BL_ORDER[i]], 3);
  const ccodes = canonical(clens);
  for (const [s, x, xb] of rl) {
    w.code(ccodes[s], clens[s]);
    w.bits(x, xb);
  }
  writeSymbols(w, syms, canonical(llens), llens, canonical(dlens), dlens, rand);
  return p;
}

/** Wraps a raw stream as zlib or gzip with mostly right (sometimes wrong) header fields and trailer. */
export function wrap(raw: Uint8Array, format: 'raw' | 'zlib' | 'gzip', rand: () => number, crc32: (d: Uint8Array) => number, adler32: (d: Uint8Array) => number): Uint8Array {
  if (format === 'raw') return raw;
  let content: Uint8Array;
  try {
    content = new Uint8Array(zlib.inflateRawSync(raw));
  } catch {
    content = new Uint8Array(0);
  }
  const wrongTrailer = rand() < 0.05;
  if (format === 'zlib') {
    const cinfo = rand() < 0.95 ? (rand() * 8) | 0 : 8 + ((rand() * 8) | 0);
    const cmf = (cinfo << 4) | (rand() < 0.97 ? 8 : (rand() * 16) | 0);
    let flg = (((rand() * 4) | 0) << 6) | (rand() < 0.03 ? 0x20 : 0);
    flg += 31 - ((cmf * 256 + flg) % 31);
    if (rand() < 0.03) flg ^= 1 << ((rand() * 5) | 0);
    const dict = flg & 0x20 ? [1, 2, 3, 4] : [];
    const a = adler32(content) ^ (wrongTrailer ? 1 << ((rand() * 32) | 0) : 0);
    return Uint8Array.from([cmf, flg & 255, ...dict, ...raw, a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255]);
  }
  const flags = ((rand() * 32) | 0) | (rand() < 0.03 ? 0x20 << ((rand() * 3) | 0) : 0);
  const header = [0x1f, 0x8b, rand() < 0.98 ? 8 : 7, flags, 0, 0, 0, 0, 0, 3];
  if (flags & 4) {
    const x = (rand() * 20) | 0;
    header.push(x, 0, ...Array.from({ length: x }, () => (rand() * 256) | 0));
  }
  if (flags & 8) header.push(...Array.from({ length: (rand() * 10) | 0 }, () => 1 + ((rand() * 255) | 0)), 0);
  if (flags & 16) header.push(...Array.from({ length: (rand() * 10) | 0 }, () => 1 + ((rand() * 255) | 0)), 0);
  if (flags & 2) {
    const h = crc32(Uint8Array.from(header)) ^ (rand() < 0.05 ? 1 : 0);
    header.push(h & 255, (h >>> 8) & 255);
  }
  const c = crc32(content) ^ (wrongTrailer && rand() < 0.5 ? 1 : 0);
  const isize = (content.length + (wrongTrailer && rand() < 0.5 ? 1 : 0)) >>> 0;
  return Uint8Array.from([...header, ...raw, c & 255, (c >>> 8) & 255, (c >>> 16) & 255, c >>> 24, isize & 255, (isize >>> 8) & 255, (isize >>> 16) & 255, isize >>> 24]);
}

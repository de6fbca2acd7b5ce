/**
 * A plain reference inflater (RFC 1951, bit by bit) for streams node:zlib has
 * already accepted: it reports the largest match distance, which the fuzzer
 * needs to know whether a zlib stream stays inside the window its header
 * declares. No validation beyond what decoding needs.
 */
const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const BL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** Largest match distance in the raw deflate stream starting at byte `start` of `buf`. */
export function maxDistance(buf: Uint8Array, start = 0): number {
  let pos = start * 8;
  const bit = () => {
    if (pos >> 3 >= buf.length) throw new Error('model: input ends');
    return (buf[pos >> 3] >> (pos++ & 7)) & 1;
  };
  const bits = (n: number) => {
    let v = 0;
    for (let i = 0; i < n; i++) v |= bit() << i;
    return v;
  };
  const decoder = (lens: number[]) => {
    const map = new Map<number, number>();
    const count = new Array(16).fill(0);
    for (const l of lens) if (l) count[l]++;
    const next = new Array(16).fill(0);
    let code = 0;
    for (let b = 1; b < 16; b++) next[b] = code = (code + count[b - 1]) << 1;
    lens.forEach((l, s) => l && map.set((l << 16) | next[l]++, s));
    return () => {
      let c = 0;
      for (let len = 1; len < 16; len++) {
        c = (c << 1) | bit();
        const s = map.get((len << 16) | c);
        if (s !== undefined) return s;
      }
      throw new Error('model: bad code');
    };
  };
  let max = 0;
  let last = 0;
  while (!last) {
    last = bit();
    const type = bits(2);
    if (type === 0) {
      pos = (pos + 7) & ~7;
      const len = bits(16);
      bits(16);
      pos += 8 * len;
      continue;
    }
    let lit: () => number;
    let dist: () => number;
    if (type === 1) {
      lit = decoder(Array.from({ length: 288 }, (_, s) => (s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8)));
      dist = decoder(new Array(30).fill(5));
    } else {
      const nlen = bits(5) + 257;
      const ndist = bits(5) + 1;
      const ncode = bits(4) + 4;
      const cl = new Array(19).fill(0);
      for (let i = 0; i < ncode; i++) cl[BL_ORDER[i]] = bits(3);
      const clen = decoder(cl);
      const lens: number[] = [];
      while (lens.length < nlen + ndist) {
        const s = clen();
        if (s < 16) lens.push(s);
        else if (s === 16) lens.push(...new Array(bits(2) + 3).fill(lens[lens.length - 1]));
        else lens.push(...new Array(s === 17 ? bits(3) + 3 : bits(7) + 11).fill(0));
      }
      lit = decoder(lens.slice(0, nlen));
      dist = decoder(lens.slice(nlen));
    }
    for (;;) {
      const s = lit();
      if (s === 256) break;
      if (s < 256) continue;
      bits(LENGTH_EXTRA[s - 257]);
      void LENGTH_BASE;
      const d = dist();
      max = Math.max(max, DIST_BASE[d] + bits(DIST_EXTRA[d]));
    }
  }
  return max;
}

/**
 * The module's comparison kernels for the host (assembly/mem.ts): allZero and
 * bytesEqual against a byte loop, at every length 0..200 and 4 KiB, at odd
 * alignments, with the one nonzero or differing byte in the SIMD body, the
 * 16-byte steps and the tail — and never reading a byte past `len` (a
 * nonzero or differing byte right after the range does not count).
 */
import { describe, expect, it } from 'vitest';
import { Runtime } from '../dist/index.js';
import { prng } from './helpers/data.js';

describe('allZero and bytesEqual', () => {
  it('agree with a byte loop over lengths 0..200 and 4096, alignments 0..17, one odd byte anywhere or just past the end', () => {
    const rt = new Runtime();
    const a = rt.reserve(8192, 64);
    const b = rt.reserve(8192, 64);
    const { allZero, bytesEqual } = rt.exports;
    const rand = prng(21);
    const lengths = [...Array.from({ length: 201 }, (_, i) => i), 4096];
    let checks = 0;
    for (const len of lengths) {
      for (let align = 0; align < 18; align++) {
        const pa = a + align;
        const pb = b + ((align * 7) % 18);
        // Where the odd byte goes: nowhere, at a random place inside, or right past the end.
        for (const at of [-1, len === 0 ? -1 : Math.floor(rand() * len), len]) {
          rt.u8.fill(0, pa, pa + len + 1);
          const x = 1 + Math.floor(rand() * 255);
          if (at >= 0) rt.u8[pa + at] = x;
          const zero = at < 0 || at >= len;
          expect(allZero(pa, len), `allZero len ${len} align ${align} odd byte at ${at}`).toBe(zero ? 1 : 0);
          for (let i = 0; i <= len; i++) rt.u8[pb + i] = rt.u8[pa + i];
          if (at >= 0) rt.u8[pb + at] ^= 1 + Math.floor(rand() * 254);
          expect(bytesEqual(pa, pb, len), `bytesEqual len ${len} align ${align} differing byte at ${at}`).toBe(zero ? 1 : 0);
          checks++;
        }
      }
    }
    expect(checks).toBe(lengths.length * 18 * 3);
  });
});

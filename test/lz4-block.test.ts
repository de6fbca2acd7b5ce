import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { lz4, runtime, FlashpackError } from '../src/index.js';
import { corpusConcat, corpusFiles, equalBytes, pieces, prng, randomBytes } from './helpers/data.js';
import { modelDecodeBlock, parseSequences } from './helpers/lz4-model.js';
import { liblz4, liblz4Case } from './helpers/liblz4.js';

const require = createRequire(import.meta.url);
// Oracles: liblz4 1.9.2 (native, through node-lz4; null under a Node it was not built for)
// and lz4_flex (lz4-wasm's Node build).
const lz4wasm = require('lz4-wasm-nodejs') as { decompress(b: Uint8Array): Uint8Array };

function liblz4Decode(block: Uint8Array, size: number): Uint8Array | null {
  const out = Buffer.alloc(size);
  const n = liblz4!.decodeBlock(Buffer.from(block), out);
  return n === size ? new Uint8Array(out) : null;
}

/** The encoder's obligations from the LZ4 block format's end-of-block rules. */
function expectConformant(block: Uint8Array, size: number): void {
  const seqs = parseSequences(block);
  const last = seqs[seqs.length - 1];
  expect(last.matchLen, 'last sequence holds only literals').toBe(0);
  if (size >= 13 && seqs.length > 1) {
    expect(size - last.litStart, 'last 5 bytes are literals').toBeGreaterThanOrEqual(5);
    const prev = seqs[seqs.length - 2];
    const lastMatchStart = prev.litStart + prev.litLen;
    expect(size - lastMatchStart, 'last match starts >= 12 bytes before the end').toBeGreaterThanOrEqual(12);
  }
  if (size < 13) expect(seqs.length, 'blocks under 13 bytes are all literals').toBe(1);
}

function roundTrip(data: Uint8Array): Uint8Array {
  const block = lz4.compressBlock(data);
  expect(block.length).toBeLessThanOrEqual(lz4.compressBound(data.length));
  const back = lz4.decompressBlock(block, data.length);
  expect(equalBytes(back, data)).toBe(true);
  return block;
}

describe('lz4 block round trips', () => {
  it('every corpus file in 4 KiB and 1 MiB pieces, conformant and decodable by lz4_flex', () => {
    let blocks = 0;
    for (const { data } of corpusFiles()) {
      for (const size of [4096, 1 << 20]) {
        for (const piece of pieces(data, size)) {
          const block = roundTrip(piece);
          expectConformant(block, piece.length);
          const prefixed = new Uint8Array(4 + block.length);
          new DataView(prefixed.buffer).setUint32(0, piece.length, true);
          prefixed.set(block, 4);
          expect(equalBytes(lz4wasm.decompress(prefixed), piece), 'lz4_flex decodes our block').toBe(true);
          blocks++;
        }
      }
    }
    expect(blocks).toBeGreaterThan(1900);
  });

  it.skipIf(!liblz4)(liblz4Case('every corpus file in 4 KiB and 1 MiB pieces decodes with liblz4'), () => {
    let blocks = 0;
    for (const { data } of corpusFiles()) {
      for (const size of [4096, 1 << 20]) {
        for (const piece of pieces(data, size)) {
          const viaLib = liblz4Decode(lz4.compressBlock(piece), piece.length);
          expect(viaLib && equalBytes(viaLib, piece), 'liblz4 decodes our block').toBe(true);
          blocks++;
        }
      }
    }
    expect(blocks).toBeGreaterThan(1900);
  });

  it('every length 0..600 of text, random and zero data', () => {
    const rand = prng(7);
    const text = corpusFiles()[0].data;
    for (let n = 0; n <= 600; n++) {
      for (const data of [text.subarray(1000, 1000 + n), randomBytes(n, rand), new Uint8Array(n)]) {
        const block = roundTrip(data);
        expectConformant(block, n);
      }
    }
  });

  it.skipIf(!liblz4)(liblz4Case('every length 0..600 of text, random and zero data decodes with liblz4'), () => {
    const rand = prng(7);
    const text = corpusFiles()[0].data;
    for (let n = 0; n <= 600; n++) {
      for (const data of [text.subarray(1000, 1000 + n), randomBytes(n, rand), new Uint8Array(n)]) {
        const block = lz4.compressBlock(data);
        expect(equalBytes(liblz4Decode(block, n) ?? new Uint8Array(1), data)).toBe(n > 0 || block.length === 1);
      }
    }
  });

  it('random (incompressible) and zero megabytes', () => {
    const rand = prng(8);
    const random = randomBytes(1 << 20, rand);
    expect(roundTrip(random).length).toBeLessThanOrEqual(lz4.compressBound(random.length));
    const zeros = new Uint8Array(1 << 20);
    expect(roundTrip(zeros).length).toBeLessThan(5000);
  });

  it('acceleration trades ratio for speed and still round-trips', () => {
    const data = corpusConcat().subarray(0, 1 << 20);
    const sizes = [1, 4, 64, 65537].map((acceleration) => {
      const block = lz4.compressBlock(data, { acceleration });
      expect(equalBytes(lz4.decompressBlock(block, data.length), data)).toBe(true);
      return block.length;
    });
    expect(sizes[0]).toBeLessThan(sizes[3]);
  });

  it.skipIf(!liblz4)(liblz4Case('matches liblz4 compressed size on 4 KiB corpus blocks within 1%'), () => {
    let ours = 0;
    let theirs = 0;
    const out = Buffer.alloc(liblz4!.encodeBound(4096));
    for (const piece of pieces(corpusConcat(), 4096)) {
      ours += lz4.compressBlock(piece).length;
      const n = liblz4!.encodeBlock(Buffer.from(piece), out);
      theirs += n > 0 ? n : piece.length + 1 + Math.ceil((piece.length - 14) / 255);
    }
    expect(Math.abs(ours / theirs - 1)).toBeLessThan(0.01);
  });
});

describe('lz4 interop: liblz4 blocks decode with ours', () => {
  it.skipIf(!liblz4)(liblz4Case('every 4 KiB and 64 KiB corpus block liblz4 compresses'), () => {
    for (const size of [4096, 65536]) {
      for (const piece of pieces(corpusConcat(), size)) {
        const out = Buffer.alloc(liblz4!.encodeBound(piece.length));
        const n = liblz4!.encodeBlock(Buffer.from(piece), out);
        if (n === 0) continue; // liblz4 reports incompressible
        expect(equalBytes(lz4.decompressBlock(out.subarray(0, n), piece.length), piece)).toBe(true);
      }
    }
  });
});

describe('lz4 pointer-level API and the incompressible result', () => {
  it('returns 0 when the block does not fit dstCap, never writing past it', () => {
    const rt = runtime();
    const rand = prng(9);
    const text = corpusConcat();
    const src = rt.reserve(8192, 64);
    const dst = rt.reserve(8192 + 64, 64);
    for (let i = 0; i < 400; i++) {
      const n = 1 + ((rand() * 4096) | 0);
      const data = i % 3 === 0 ? randomBytes(n, rand) : text.subarray(i * 997, i * 997 + n);
      const full = lz4.compressBlock(data);
      const cap = Math.max(0, full.length - 1 - ((rand() * 40) | 0));
      rt.u8.set(data, src);
      rt.u8.fill(0xa5, dst, dst + 8192 + 64);
      const size = lz4.compressBlockAt(src, data.length, dst, cap, rt.ctx);
      if (size > 0) {
        // Fitting in a tighter cap is allowed, but must still be a valid block.
        expect(size).toBeLessThanOrEqual(cap);
        expect(equalBytes(lz4.decompressBlock(rt.u8.slice(dst, dst + size), n), data)).toBe(true);
      }
      for (let j = cap; j < cap + 64; j++) expect(rt.u8[dst + j], `canary at ${j - cap} past cap`).toBe(0xa5);
    }
  });

  it('decompressBlockAt decodes into a region and honours a prefix window', () => {
    const rt = runtime();
    const text = corpusConcat().subarray(0, 8192);
    const block = lz4.compressBlock(text);
    const src = rt.reserve(block.length, 64);
    const dst = rt.reserve(8192, 64);
    rt.u8.set(block, src);
    expect(lz4.decompressBlockAt(src, block.length, dst, 8192, rt.ctx)).toBe(8192);
    expect(equalBytes(rt.u8.subarray(dst, dst + 8192), text)).toBe(true);
  });
});

describe('lz4 into caller buffers', () => {
  it('compressBlockInto writes the same block as compressBlock, or 0 when dst is too small', () => {
    const rand = prng(10);
    const text = corpusConcat();
    for (let i = 0; i < 300; i++) {
      const n = (rand() * 5000) | 0;
      const data = i % 4 === 0 ? randomBytes(n, rand) : text.subarray(i * 331, i * 331 + n);
      const want = lz4.compressBlock(data);
      const dst = new Uint8Array(want.length + 40).fill(0x5a);
      const size = lz4.compressBlockInto(data, dst);
      expect(size).toBe(want.length);
      expect(equalBytes(dst.subarray(0, size), want)).toBe(true);
      expect(dst.subarray(size).every((b) => b === 0x5a), 'nothing written past the block').toBe(true);
      const tight = new Uint8Array(Math.max(0, want.length - 1 - ((rand() * 30) | 0)));
      const small = lz4.compressBlockInto(data, tight);
      if (small > 0) expect(equalBytes(lz4.decompressBlock(tight.subarray(0, small), n), data)).toBe(true);
    }
  });

  it('decompressBlockInto fills dst and returns the size, with liblz4 capacity semantics', () => {
    const text = corpusConcat();
    for (const n of [0, 1, 13, 100, 4096, 70_000]) {
      const data = text.subarray(5000, 5000 + n);
      const block = lz4.compressBlock(data);
      const exact = new Uint8Array(n);
      expect(lz4.decompressBlockInto(block, exact)).toBe(n);
      expect(equalBytes(exact, data)).toBe(true);
      const roomy = new Uint8Array(n + 100).fill(7);
      expect(lz4.decompressBlockInto(block, roomy)).toBe(n);
      expect(equalBytes(roomy.subarray(0, n), data)).toBe(true);
      expect(roomy.subarray(n).every((b) => b === 7)).toBe(true);
      if (n > 20) expect(() => lz4.decompressBlockInto(block, new Uint8Array(n - 1))).toThrowError(FlashpackError);
    }
  });
});

describe('lz4 decode errors are ECORRUPT with the position', () => {
  const good = lz4.compressBlock(corpusConcat().subarray(0, 4096));

  function corruptMessage(fn: () => unknown): string {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(FlashpackError);
      expect((e as FlashpackError).code).toBe('ECORRUPT');
      return (e as Error).message;
    }
    throw new Error('expected ECORRUPT');
  }

  it('names a match offset beyond the window', () => {
    // Literal 'a', then a match with offset 70 when 1 byte is decoded.
    const bad = Uint8Array.from([0x10, 0x61, 70, 0, 0x50, 1, 2, 3, 4, 5]);
    expect(corruptMessage(() => lz4.decompressBlock(bad, 100))).toMatch(/match offset 70 at byte 2 exceeds window of 1 bytes/);
  });
  it('names offset 0', () => {
    const bad = Uint8Array.from([0x10, 0x61, 0, 0, 0x50, 1, 2, 3, 4, 5]);
    expect(corruptMessage(() => lz4.decompressBlock(bad, 100))).toMatch(/match offset 0 at byte 2/);
  });
  it('reports truncation at every cut of a valid block', () => {
    for (let cut = 0; cut < good.length; cut++) {
      corruptMessage(() => lz4.decompressBlock(good.subarray(0, cut), 4096));
    }
  });
  it('reports a wrong originalSize', () => {
    expect(corruptMessage(() => lz4.decompressBlock(good, 4095))).toMatch(/4095/);
    expect(corruptMessage(() => lz4.decompressBlock(good, 5000))).toMatch(/decoded 4096 bytes, expected originalSize 5000/);
  });
  // 8 literals then a match that ends exactly at the output end.
  const matchInLastFive = Uint8Array.from([0x84, 1, 2, 3, 4, 5, 6, 7, 8, 8, 0, 0x50, 9, 9, 9, 9, 9]);
  it('rejects a match inside the last 5 bytes, as the model does', () => {
    const model = modelDecodeBlock(matchInLastFive, 16);
    expect(model.ok).toBe(false);
    corruptMessage(() => lz4.decompressBlock(matchInLastFive, 16));
  });
  it.skipIf(!liblz4)(liblz4Case('liblz4 also rejects a match inside the last 5 bytes'), () => {
    expect(liblz4Decode(matchInLastFive, 16)).toBeNull();
  });
  it('EINVAL for a bad originalSize or acceleration', () => {
    expect(() => lz4.decompressBlock(good, -1)).toThrowError(/originalSize must be an integer/);
    expect(() => lz4.compressBlock(good, { acceleration: 0 })).toThrowError(/options.acceleration must be an integer from 1 to 65537, got the number 0/);
  });
});

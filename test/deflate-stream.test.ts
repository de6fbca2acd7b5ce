import { describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { deflate, runtime, FlashpackError, type DeflateFormat } from '../src/index.js';
import { concatBytes, corpusConcat, equalBytes, prng, randomBytes } from './helpers/data.js';

const FORMATS: DeflateFormat[] = ['raw', 'zlib', 'gzip'];
const corpus = corpusConcat();

/** Chunk sizes: mostly large and random, with runs of 1-byte and tiny chunks. */
function chunker(rand: () => number): () => number {
  return () => {
    const r = rand();
    return r < 0.2 ? 1 : r < 0.35 ? 1 + ((rand() * 16) | 0) : (rand() * 150_000) | 0;
  };
}

function compressStreamed(data: Uint8Array, level: number, format: DeflateFormat, next: () => number): Uint8Array {
  const c = deflate.createCompressor({ level, format });
  const parts: Uint8Array[] = [];
  for (let off = 0; off < data.length;) {
    const n = next();
    parts.push(c.push(data.subarray(off, off + n)));
    off += n;
  }
  parts.push(c.finish());
  return concatBytes(parts);
}

function decompressStreamed(data: Uint8Array, format: DeflateFormat, next: () => number): Uint8Array {
  const d = deflate.createDecompressor({ format });
  const parts: Uint8Array[] = [];
  for (let off = 0; off < data.length;) {
    const n = next();
    parts.push(d.push(data.subarray(off, off + n)));
    off += n;
  }
  parts.push(d.finish());
  return concatBytes(parts);
}

describe('deflate streams', () => {
  it('compress in random chunks (1-byte included) to exactly the one-shot bytes, at every level and format', () => {
    const rand = prng(21);
    const data = corpus.subarray(1_000_000, 1_000_000 + 700_000);
    for (let level = 0; level <= 9; level++) {
      const format = FORMATS[level % 3];
      const streamed = compressStreamed(data, level, format, chunker(rand));
      expect(equalBytes(streamed, deflate.compress(data, { level, format })), `level ${level} ${format}`).toBe(true);
    }
  });

  it('decompress random chunks (1-byte included) of ours and node:zlib\'s streams', () => {
    const rand = prng(22);
    const data = corpus.subarray(4_000_000, 4_000_000 + 900_000);
    for (const format of FORMATS) {
      for (const level of [0, 1, 6, 9]) {
        const ours = deflate.compress(data, { level, format });
        expect(equalBytes(decompressStreamed(ours, format, chunker(rand)), data)).toBe(true);
        const node = format === 'raw' ? zlib.deflateRawSync(data, { level }) : format === 'zlib' ? zlib.deflateSync(data, { level }) : zlib.gzipSync(data, { level });
        expect(equalBytes(decompressStreamed(new Uint8Array(node), format, chunker(rand)), data)).toBe(true);
      }
    }
  });

  it('decodes a whole small stream fed one byte at a time', () => {
    const data = corpus.subarray(0, 30_000);
    for (const format of FORMATS) {
      const c = deflate.compress(data, { format, level: 6 });
      expect(equalBytes(decompressStreamed(c, format, () => 1), data)).toBe(true);
      expect(equalBytes(compressStreamed(data, 6, format, () => 1), c)).toBe(true);
    }
  });

  it('streams 24 MiB through constant memory: the shared memory does not grow', () => {
    const rand = prng(23);
    const chunk = Uint8Array.from([...corpus.subarray(0, 1 << 20)].map((b, i) => (i % 4096 < 2048 ? b : (rand() * 256) | 0)));
    // Warm up: one stream of each kind reserves its region.
    const warm = deflate.createCompressor({ level: 1, format: 'gzip' });
    const warmed = deflate.createDecompressor({ format: 'gzip' });
    warmed.push(warm.push(chunk));
    warmed.push(warm.finish());
    warmed.finish();
    const rt = runtime();
    const before = rt.memory.buffer.byteLength;
    const c = deflate.createCompressor({ level: 1, format: 'gzip' });
    const d = deflate.createDecompressor({ format: 'gzip' });
    let inBytes = 0;
    let outBytes = 0;
    for (let i = 0; i < 24; i++) {
      const back = d.push(c.push(chunk));
      outBytes += back.length;
      inBytes += chunk.length;
    }
    outBytes += d.push(c.finish()).length;
    d.finish();
    expect(outBytes).toBe(inBytes);
    expect(rt.memory.buffer.byteLength).toBe(before);
  });

  it('a truncated stream fails at finish(), a corrupt one at push(), with the stream\'s byte position', () => {
    const data = corpus.subarray(0, 100_000);
    const c = deflate.compress(data, { format: 'gzip' });
    const d = deflate.createDecompressor({ format: 'gzip' });
    const half = c.length >> 1;
    d.push(c.subarray(0, half));
    d.push(c.subarray(half, c.length - 3));
    expect(() => d.finish()).toThrowError(new RegExp(`gzip: input ends inside the trailer at byte ${c.length - 3}`));
    const bad = c.slice();
    bad[c.length - 6] ^= 0x10;
    const e = deflate.createDecompressor({ format: 'gzip' });
    e.push(bad.subarray(0, half));
    let error: unknown;
    try {
      e.push(bad.subarray(half));
    } catch (x) {
      error = x;
    }
    expect(error).toBeInstanceOf(FlashpackError);
    expect((error as FlashpackError).code).toBe('ECORRUPT');
    expect((error as Error).message).toMatch(new RegExp(`CRC-32 .* at byte ${c.length - 8}`));
  });

  it('a finished stream rejects further use (ENXIO)', () => {
    const c = deflate.createCompressor();
    c.push(randomBytes(100, prng(24)));
    c.finish();
    expect(() => c.push(new Uint8Array(1))).toThrowError(/the stream is finished/);
    const d = deflate.createDecompressor();
    d.push(deflate.compress(new Uint8Array(10)));
    d.finish();
    expect(() => d.finish()).toThrowError(/the stream is finished/);
  });
});

import { describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import * as fflate from 'fflate';
import * as pako from 'pako';
import { deflate, runtime, crc32, adler32, FlashpackError, type DeflateFormat } from '../src/index.js';
import { corpusConcat, corpusFiles, equalBytes, pieces, prng, randomBytes } from './helpers/data.js';
import { BitWriter } from './helpers/deflate-synth.js';

const FORMATS: DeflateFormat[] = ['raw', 'zlib', 'gzip'];
const corpus = corpusConcat();

function nodeCompress(data: Uint8Array, format: DeflateFormat, level: number): Uint8Array {
  const f = format === 'raw' ? zlib.deflateRawSync : format === 'zlib' ? zlib.deflateSync : zlib.gzipSync;
  return new Uint8Array(f(data, { level }));
}

function nodeDecompress(data: Uint8Array, format: DeflateFormat): Uint8Array {
  const f = format === 'raw' ? zlib.inflateRawSync : format === 'zlib' ? zlib.inflateSync : zlib.gunzipSync;
  return new Uint8Array(f(data));
}

function corruptError(fn: () => unknown, code = 'ECORRUPT'): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FlashpackError);
    expect((e as FlashpackError).code).toBe(code);
    return (e as Error).message;
  }
  throw new Error(`expected ${code}`);
}

describe('deflate matches zlib', () => {
  it('is byte-identical to node:zlib at levels 1-9 on every corpus block (4 KiB and 1 MiB), round-trips, and every level is within 1% (1 MiB) or 2% (4 KiB) of zlib\'s size', () => {
    for (const [size, tolerance] of [[4096, 0.02], [1 << 20, 0.01]]) {
      for (let level = 0; level <= 9; level++) {
        let identical = 0;
        let blocks = 0;
        let ours = 0;
        let theirs = 0;
        for (const piece of pieces(corpus, size)) {
          const mine = deflate.compress(piece, { level });
          const node = nodeCompress(piece, 'raw', level);
          if (equalBytes(mine, node)) identical++;
          expect(equalBytes(deflate.decompress(mine), piece)).toBe(true);
          blocks++;
          ours += mine.length;
          theirs += node.length;
        }
        // Level 0: 32 KiB stored blocks; zlib sizes them by its output buffer.
        if (level > 0) expect(identical, `level ${level}, ${size}-byte blocks`).toBe(blocks);
        expect(Math.abs(ours / theirs - 1), `level ${level}, ${size}-byte blocks: ${ours} vs ${theirs}`).toBeLessThan(tolerance);
      }
    }
  });

  it('zlib and gzip streams are byte-identical to deflateSync and gzipSync at every level 1-9', () => {
    const data = corpus.subarray(100_000, 300_000);
    for (const format of ['zlib', 'gzip'] as const) {
      for (let level = 1; level <= 9; level++) {
        expect(equalBytes(deflate.compress(data, { level, format }), nodeCompress(data, format, level)), `${format} level ${level}`).toBe(true);
      }
    }
  });

  it('defaults to level 6 and the raw format', () => {
    const data = corpus.subarray(0, 50_000);
    expect(equalBytes(deflate.compress(data), nodeCompress(data, 'raw', 6))).toBe(true);
  });
});

describe('deflate round trips', () => {
  it('every length 0..600 of text, random and zero data at levels 1 and 6, every format', () => {
    const rand = prng(11);
    const text = corpusFiles()[0].data;
    for (let n = 0; n <= 600; n++) {
      for (const data of [text.subarray(1000, 1000 + n), randomBytes(n, rand), new Uint8Array(n)]) {
        const level = n % 2 === 0 ? 1 : 6;
        const format = FORMATS[n % 3];
        const c = deflate.compress(data, { level, format });
        expect(equalBytes(deflate.decompress(c, { format }), data)).toBe(true);
        expect(equalBytes(nodeDecompress(c, format), data)).toBe(true);
      }
    }
  });

  it('random lengths up to 70,000 at every level, byte-identical to node:zlib from level 1', () => {
    const rand = prng(12);
    for (let i = 0; i < 120; i++) {
      const n = i < 10 ? [0, 1, 2, 3, 257, 258, 259, 32767, 32768, 70_000][i] : (rand() * 70_001) | 0;
      const level = i % 10;
      const kind = i % 3;
      const off = (rand() * (corpus.length - n)) | 0;
      const data = kind === 0 ? corpus.subarray(off, off + n) : kind === 1 ? randomBytes(n, rand) : new Uint8Array(n).fill(i);
      const c = deflate.compress(data, { level });
      if (level > 0) expect(equalBytes(c, nodeCompress(data, 'raw', level)), `length ${n} level ${level}`).toBe(true);
      expect(equalBytes(deflate.decompress(c), data)).toBe(true);
    }
  });

  it('random megabytes are stored (no growth past the bound) and zero megabytes shrink to a few KiB', () => {
    const rand = prng(13);
    const random = randomBytes(1 << 20, rand);
    for (const level of [1, 6, 9]) {
      const c = deflate.compress(random, { level });
      expect(c.length).toBeLessThanOrEqual(random.length + 5 * 64 + 5);
      expect(c.length).toBeLessThanOrEqual(deflate.compressBound(random.length));
      expect(equalBytes(deflate.decompress(c), random)).toBe(true);
      const zeros = new Uint8Array(1 << 20);
      const z = deflate.compress(zeros, { level });
      expect(z.length).toBeLessThan(8192);
      expect(equalBytes(deflate.decompress(z), zeros)).toBe(true);
    }
  });

  it('decompresses output larger than its staging region (growth, then collection in turns)', () => {
    const zeros = new Uint8Array(80 << 20);
    zeros[12345] = 7;
    const c = new Uint8Array(zlib.deflateRawSync(zeros, { level: 1 }));
    expect(equalBytes(deflate.decompress(c), zeros)).toBe(true);
  });
});

describe('deflate interop', () => {
  it('node:zlib streams of every format and level decode with ours, and ours with node:zlib', () => {
    const data = corpus.subarray(2_000_000, 2_300_000);
    for (const format of FORMATS) {
      for (let level = 0; level <= 9; level++) {
        expect(equalBytes(deflate.decompress(nodeCompress(data, format, level), { format }), data)).toBe(true);
        expect(equalBytes(nodeDecompress(deflate.compress(data, { level, format }), format), data)).toBe(true);
      }
    }
  });

  it('fflate and pako read ours and we read theirs', () => {
    const data = corpus.subarray(500_000, 700_000);
    for (const level of [0, 1, 6, 9] as const) {
      const raw = deflate.compress(data, { level });
      const z = deflate.compress(data, { level, format: 'zlib' });
      const gz = deflate.compress(data, { level, format: 'gzip' });
      expect(equalBytes(fflate.inflateSync(raw), data)).toBe(true);
      expect(equalBytes(fflate.unzlibSync(z), data)).toBe(true);
      expect(equalBytes(fflate.gunzipSync(gz), data)).toBe(true);
      expect(equalBytes(pako.inflateRaw(raw), data)).toBe(true);
      expect(equalBytes(pako.inflate(z), data)).toBe(true);
      expect(equalBytes(pako.ungzip(gz), data)).toBe(true);
      expect(equalBytes(deflate.decompress(fflate.deflateSync(data, { level })), data)).toBe(true);
      expect(equalBytes(deflate.decompress(fflate.zlibSync(data, { level }), { format: 'zlib' }), data)).toBe(true);
      expect(equalBytes(deflate.decompress(fflate.gzipSync(data, { level }), { format: 'gzip' }), data)).toBe(true);
      expect(equalBytes(deflate.decompress(pako.deflateRaw(data, { level }), { format: 'raw' }), data)).toBe(true);
      expect(equalBytes(deflate.decompress(pako.gzip(data, { level }), { format: 'gzip' }), data)).toBe(true);
    }
  });

  it('gzip -d and pigz -d read ours; we read gzip -c and pigz output at every level', () => {
    const data = corpus.subarray(3_000_000, 3_400_000);
    for (const level of [1, 6, 9]) {
      const ours = deflate.compress(data, { level, format: 'gzip' });
      expect(equalBytes(new Uint8Array(execFileSync('gzip', ['-dc'], { input: ours, maxBuffer: 1 << 26 })), data)).toBe(true);
      expect(equalBytes(new Uint8Array(execFileSync('pigz', ['-dc'], { input: ours, maxBuffer: 1 << 26 })), data)).toBe(true);
      const gz = new Uint8Array(execFileSync('gzip', ['-c', `-${level}`], { input: data, maxBuffer: 1 << 26 }));
      expect(equalBytes(deflate.decompress(gz, { format: 'gzip' }), data)).toBe(true);
      // pigz writes independent 128 KiB blocks with sync markers, and a zlib variant.
      const pz = new Uint8Array(execFileSync('pigz', ['-c', `-${level}`, '-p', '2'], { input: data, maxBuffer: 1 << 26 }));
      expect(equalBytes(deflate.decompress(pz, { format: 'gzip' }), data)).toBe(true);
      const pzz = new Uint8Array(execFileSync('pigz', ['-c', '-z', `-${level}`], { input: data, maxBuffer: 1 << 26 }));
      expect(equalBytes(deflate.decompress(pzz, { format: 'zlib' }), data)).toBe(true);
    }
  });

  it('decodes every member of a multi-member gzip file (as gzip -d does) and ignores zero padding', () => {
    const a = corpus.subarray(0, 10_000);
    const b = corpus.subarray(10_000, 25_000);
    const cat = Uint8Array.from([...deflate.compress(a, { format: 'gzip' }), ...new Uint8Array(execFileSync('gzip', ['-c'], { input: b }))]);
    const both = Uint8Array.from([...a, ...b]);
    expect(equalBytes(new Uint8Array(execFileSync('gzip', ['-dc'], { input: cat })), both)).toBe(true);
    expect(equalBytes(deflate.decompress(cat, { format: 'gzip' }), both)).toBe(true);
    const padded = Uint8Array.from([...cat, 0, 0, 0, 0]);
    expect(equalBytes(deflate.decompress(padded, { format: 'gzip' }), both)).toBe(true);
  });

  it('reads gzip headers with FTEXT, FEXTRA, FNAME, FCOMMENT and FHCRC', () => {
    const data = corpus.subarray(0, 5000);
    const payload = deflate.compress(data);
    const fixed = [0x1f, 0x8b, 8, 0x1f, 1, 2, 3, 4, 0, 3];
    const header = [...fixed, 3, 0, 9, 8, 7, ...new TextEncoder().encode('name.txt'), 0, ...new TextEncoder().encode('a comment'), 0];
    const hcrc = crc32(Uint8Array.from(header)) & 0xffff;
    const trailer = deflate.footer('gzip', { checksum: crc32(data), length: data.length });
    const file = Uint8Array.from([...header, hcrc & 255, hcrc >> 8, ...payload, ...trailer]);
    expect(equalBytes(nodeDecompress(file, 'gzip'), data)).toBe(true);
    expect(equalBytes(deflate.decompress(file, { format: 'gzip' }), data)).toBe(true);
    const badCrc = file.slice();
    badCrc[header.length] ^= 1;
    expect(corruptError(() => deflate.decompress(badCrc, { format: 'gzip' }))).toMatch(new RegExp(`gzip header: header CRC .* at byte ${header.length} does not match`));
  });
});

describe('deflate header and footer', () => {
  it('zlib headers per level are zlib\'s: 78 01, 78 5E, 78 9C, 78 DA', () => {
    const expected = ['7801', '7801', '785e', '785e', '785e', '785e', '789c', '78da', '78da', '78da'];
    for (let level = 0; level <= 9; level++) {
      const h = deflate.header('zlib', level);
      expect(Buffer.from(h).toString('hex')).toBe(expected[level]);
      expect(equalBytes(h, nodeCompress(new Uint8Array(1), 'zlib', level).subarray(0, 2))).toBe(true);
    }
  });

  it('gzip headers are node:zlib\'s (MTIME 0, XFL by level, OS 3) and raw has none', () => {
    for (let level = 0; level <= 9; level++) {
      expect(equalBytes(deflate.header('gzip', level), nodeCompress(new Uint8Array(1), 'gzip', level).subarray(0, 10))).toBe(true);
    }
    expect(Buffer.from(deflate.header('gzip', 9)).toString('hex')).toBe('1f8b0800000000000203');
    expect(deflate.header('raw', 6).length).toBe(0);
  });

  it('footers carry Adler-32 big-endian (zlib) and CRC-32 then ISIZE little-endian (gzip)', () => {
    const data = corpus.subarray(0, 12_345);
    const z = nodeCompress(data, 'zlib', 6);
    expect(equalBytes(deflate.footer('zlib', { checksum: adler32(data), length: data.length }), z.subarray(z.length - 4))).toBe(true);
    const g = nodeCompress(data, 'gzip', 6);
    expect(equalBytes(deflate.footer('gzip', { checksum: crc32(data), length: data.length }), g.subarray(g.length - 8))).toBe(true);
    expect(Buffer.from(deflate.footer('gzip', { checksum: 0xdeadbeef, length: 2 ** 32 + 7 })).toString('hex')).toBe('efbeadde07000000');
    expect(deflate.footer('raw', { checksum: 1, length: 1 }).length).toBe(0);
  });

  it('header + raw payload + footer, produced separately, is a valid stream', () => {
    const data = corpus.subarray(40_000, 90_000);
    for (const format of ['zlib', 'gzip'] as const) {
      const checksum = format === 'zlib' ? adler32(data) : crc32(data);
      const stream = Uint8Array.from([...deflate.header(format, 9), ...deflate.compress(data, { level: 9 }), ...deflate.footer(format, { checksum, length: data.length })]);
      expect(equalBytes(nodeDecompress(stream, format), data)).toBe(true);
    }
  });

  it('EINVAL for a bad level, format or footer field', () => {
    expect(() => deflate.compress(new Uint8Array(1), { level: 10 })).toThrowError(/options.level must be an integer from 0 to 9, got the number 10/);
    expect(() => deflate.compress(new Uint8Array(1), { format: 'zip' as DeflateFormat })).toThrowError(/options.format must be 'raw', 'zlib' or 'gzip', got the string "zip"/);
    expect(() => deflate.footer('gzip', { checksum: -1, length: 0 })).toThrowError(/checksum must be an integer/);
  });
});

describe('deflate pointer-level API and the incompressible result', () => {
  it('compressAt returns 0 when the stream does not fit dstCap, never writing past it', () => {
    const rt = runtime();
    const rand = prng(14);
    const src = rt.reserve(8192, 64);
    const dst = rt.reserve(8192 + 64, 64);
    for (let i = 0; i < 200; i++) {
      const n = 1 + ((rand() * 4096) | 0);
      const data = i % 3 === 0 ? randomBytes(n, rand) : corpus.subarray(i * 997, i * 997 + n);
      const format = FORMATS[i % 3];
      const level = i % 10;
      const full = deflate.compress(data, { level, format });
      const cap = Math.max(0, full.length - 1 - ((rand() * 40) | 0));
      rt.u8.set(data, src);
      rt.u8.fill(0xa5, dst, dst + 8192 + 64);
      expect(deflate.compressAt(src, n, dst, cap, rt.deflateScratch, { level, format })).toBe(0);
      for (let j = cap; j < cap + 64; j++) expect(rt.u8[dst + j], `canary at ${j - cap} past cap`).toBe(0xa5);
      const size = deflate.compressAt(src, n, dst, full.length, rt.deflateScratch, { level, format });
      expect(size).toBe(full.length);
      expect(equalBytes(rt.u8.subarray(dst, dst + size), full)).toBe(true);
    }
  });

  it('compressInto reports incompressible 4 KiB blocks for a packer limit', () => {
    const rand = prng(15);
    const out = new Uint8Array(3000);
    expect(deflate.compressInto(randomBytes(4096, rand), out, { level: 1 })).toBe(0);
    const text = corpus.subarray(0, 4096);
    const n = deflate.compressInto(text, out, { level: 1 });
    expect(n).toBeGreaterThan(0);
    expect(equalBytes(deflate.decompress(out.subarray(0, n)), text)).toBe(true);
  });

  it('decompressInto decodes into a caller buffer; output past its length is ENOSPC naming the size', () => {
    const text = corpus.subarray(10_000, 14_096);
    const out = new Uint8Array(4096);
    for (const format of FORMATS) {
      const c = deflate.compress(text, { format, level: 1 });
      expect(deflate.decompressInto(c, out, { format })).toBe(4096);
      expect(equalBytes(out, text)).toBe(true);
      expect(corruptError(() => deflate.decompressInto(c, out.subarray(0, 4000), { format }), 'ENOSPC')).toMatch(/decodes to 4096 bytes, more than dst.length 4000/);
    }
  });

  it('decompressAt decodes into an exact-size region; output past dstCap is ENOSPC', () => {
    const rt = runtime();
    const text = corpus.subarray(0, 4096);
    for (const format of FORMATS) {
      const c = deflate.compress(text, { format });
      const src = rt.reserve(c.length, 64);
      const dst = rt.reserve(4096, 64);
      rt.u8.set(c, src);
      expect(deflate.decompressAt(src, c.length, dst, 4096, rt.inflateScratch, { format })).toBe(4096);
      expect(equalBytes(rt.u8.subarray(dst, dst + 4096), text)).toBe(true);
      expect(corruptError(() => deflate.decompressAt(src, c.length, dst, 4095, rt.inflateScratch, { format }), 'ENOSPC')).toMatch(/decodes to 4096 bytes, more than dstCap 4095/);
    }
  });
});

describe('inflate errors are ECORRUPT naming the field and its position', () => {
  const text = corpus.subarray(0, 20_000);
  const raw = deflate.compress(text);
  const z = deflate.compress(text, { format: 'zlib' });
  const gz = deflate.compress(text, { format: 'gzip' });

  it('a distance beyond the output', () => {
    // Fixed block: literal 'a', then length 3 (code 257) at distance 5 (code 4 + 1 extra bit).
    const w = new BitWriter();
    w.bits(1, 1); // final
    w.bits(1, 2); // fixed codes
    w.code(0x30 + 0x61, 8); // 'a'
    w.code(1, 7); // length 3
    w.code(4, 5); // distance code 4
    w.bits(0, 1); // its extra bit: distance 5
    w.code(0, 7); // end of block
    const bytes = w.bytes();
    expect(corruptError(() => deflate.decompress(bytes))).toMatch(/deflate: distance 5 exceeds the 1 bytes of output at byte 2/);
  });

  it('block type 3, stored LEN/NLEN, and a truncation at every cut', () => {
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x07)))).toMatch(/invalid block type 3 at byte 0/);
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x01, 5, 0, 0xfa, 0xfe, 1, 2, 3, 4, 5)))).toMatch(/stored block LEN 5 and NLEN 65274 at byte 1 are not complements/);
    for (let cut = 0; cut < raw.length; cut += 97) {
      expect(corruptError(() => deflate.decompress(raw.subarray(0, cut)))).toMatch(/input ends inside/);
    }
  });

  it('zlib header fields: check bits, CM, CINFO, FDICT (ENOTSUP)', () => {
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x78, 0x9d, 3, 0), { format: 'zlib' }))).toMatch(/CMF\/FLG 0x789d at byte 0 fails its check/);
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x79, 0x18, 3, 0), { format: 'zlib' }))).toMatch(/compression method 9 at byte 0/);
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x88, 0x98, 3, 0), { format: 'zlib' }))).toMatch(/window size CINFO 8 at byte 0/);
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x78, 0xbb, 0, 0, 0, 1, 3, 0), { format: 'zlib' }), 'ENOTSUP')).toMatch(/preset dictionary/);
  });

  it('a zlib stream may not reach past the window its header declares (CINFO)', () => {
    const rand = prng(16);
    const half = randomBytes(300, rand);
    const data = Uint8Array.from([...half, ...half]);
    const raw = deflate.compress(data, { level: 1 });
    const a = adler32(data);
    const stream = (cmf: number, flg: number) => Uint8Array.from([cmf, flg, ...raw, a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255]);
    // CINFO 0: a 256-byte window, but the match is 300 bytes back.
    expect(corruptError(() => deflate.decompress(stream(0x08, 0x1d), { format: 'zlib' }))).toMatch(/zlib: distance 300 at byte \d+ exceeds the 256-byte window the zlib header declares/);
    // CINFO 1 (512 bytes) is enough.
    expect(equalBytes(deflate.decompress(stream(0x18, 0x19), { format: 'zlib' }), data)).toBe(true);
  });

  it('gzip header fields: magic, method, reserved flags', () => {
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x1f, 0x8c, 8, 0), { format: 'gzip' }))).toMatch(/magic 0x1f8c at byte 0/);
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x1f, 0x8b, 7, 0), { format: 'gzip' }))).toMatch(/compression method 7 at byte 2/);
    expect(corruptError(() => deflate.decompress(Uint8Array.of(0x1f, 0x8b, 8, 0x20), { format: 'gzip' }))).toMatch(/reserved flag bits set in FLG 0x0020 at byte 3/);
  });

  it('trailers: Adler-32, CRC-32, ISIZE', () => {
    const badAdler = z.slice();
    badAdler[badAdler.length - 1] ^= 1;
    expect(corruptError(() => deflate.decompress(badAdler, { format: 'zlib' }))).toMatch(new RegExp(`zlib trailer: Adler-32 .* at byte ${z.length - 4} does not match the data's`));
    const badCrc = gz.slice();
    badCrc[badCrc.length - 8] ^= 1;
    expect(corruptError(() => deflate.decompress(badCrc, { format: 'gzip' }))).toMatch(new RegExp(`gzip trailer: CRC-32 .* at byte ${gz.length - 8} does not match`));
    const badSize = gz.slice();
    badSize[badSize.length - 4] ^= 1;
    expect(corruptError(() => deflate.decompress(badSize, { format: 'gzip' }))).toMatch(new RegExp(`ISIZE 20001 at byte ${gz.length - 4} does not match the data's length mod 2\\^32, 20000`));
  });

  it('trailing bytes after a raw or zlib stream, and non-zero bytes after the last gzip member', () => {
    expect(corruptError(() => deflate.decompress(Uint8Array.from([...raw, 0x42])))).toMatch(new RegExp(`trailing byte 0x42 at byte ${raw.length} after the end of the stream`));
    expect(corruptError(() => deflate.decompress(Uint8Array.from([...z, 0]), { format: 'zlib' }))).toMatch(/trailing byte 0x00/);
    expect(corruptError(() => deflate.decompress(Uint8Array.from([...gz, 0x42]), { format: 'gzip' }))).toMatch(new RegExp(`byte 0x42 at byte ${gz.length} follows the last member`));
    expect(corruptError(() => deflate.decompress(Uint8Array.from([...gz, 0, 0, 1]), { format: 'gzip' }))).toMatch(new RegExp(`byte 0x01 at byte ${gz.length + 2}`));
  });

  it('code length codes: over-subscribed, incomplete, empty, repeat without a previous length, missing end-of-block', () => {
    // Final dynamic block, HLIT 0, HDIST 0, HCLEN 0: lengths of code length codes 16, 17, 18, 0.
    const dynamic = (lens: number[], more: [number, number][] = []) => {
      const w = new BitWriter();
      for (const [value, n] of [[1, 1], [2, 2], [0, 5], [0, 5], [0, 4], ...lens.map((l) => [l, 3]), ...more]) w.bits(value, n);
      for (let i = 0; i < 20; i++) w.bits(0, 16);
      return w.bytes();
    };
    expect(corruptError(() => deflate.decompress(dynamic([1, 1, 1, 0])))).toMatch(/code length code at byte 2 is over-subscribed/);
    expect(corruptError(() => deflate.decompress(dynamic([1, 0, 0, 0])))).toMatch(/code length code at byte 2 is incomplete/);
    expect(corruptError(() => deflate.decompress(dynamic([0, 0, 0, 0])))).toMatch(/code length code at byte 2 is empty/);
    // Codes: 0 -> '0', 16 -> '1'. A 16 first has nothing to repeat.
    expect(corruptError(() => deflate.decompress(dynamic([1, 0, 0, 1], [[1, 1]])))).toMatch(/code length repeat \(16\) with no previous length at byte 3/);
    // 258 zero lengths: no end-of-block code.
    expect(corruptError(() => deflate.decompress(dynamic([1, 0, 0, 1])))).toMatch(/dynamic block at byte \d+ has no end-of-block code/);
  });
});

import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { lz4, FlashpackError, xxh32 } from '../src/index.js';
import { corpusConcat, corpusFiles, equalBytes, pieces, prng, randomBytes } from './helpers/data.js';

/** The reference `lz4` command-line tool (Debian package lz4). */
function lz4cli(args: string[], input: Uint8Array): Uint8Array {
  return new Uint8Array(execFileSync('lz4', args, { input, maxBuffer: 1 << 28 }));
}

function expectCorrupt(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FlashpackError);
    expect((e as FlashpackError).code).toBe('ECORRUPT');
    expect((e as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('expected ECORRUPT');
}

const corpus = corpusConcat();
const rand = prng(11);
const samples: [string, Uint8Array][] = [
  ['empty', new Uint8Array(0)],
  ['one byte', Uint8Array.of(42)],
  ['text 100 KiB', corpus.subarray(0, 100_000)],
  ['corpus 9 MiB', corpus],
  ['random 300 KiB', randomBytes(300_000, rand)],
  ['zeros 5 MiB', new Uint8Array(5 << 20)],
];

describe('lz4 frames: ours through `lz4 -d`', () => {
  for (const [name, data] of samples) {
    it(`${name}: default options`, () => {
      const frame = lz4.compressFrame(data);
      expect(equalBytes(lz4cli(['-d', '-c'], frame), data)).toBe(true);
      expect(equalBytes(lz4.decompressFrame(frame), data)).toBe(true);
    });
  }
  it('every block size and checksum option', () => {
    const data = corpus.subarray(0, 3_000_000);
    for (const blockSize of [65536, 262144, 1048576, 4194304] as const) {
      for (const blockChecksum of [false, true]) {
        for (const contentChecksum of [false, true]) {
          for (const contentSize of [false, true]) {
            const frame = lz4.compressFrame(data, { blockSize, blockChecksum, contentChecksum, contentSize });
            expect(equalBytes(lz4cli(['-d', '-c'], frame), data), `${blockSize} ${blockChecksum} ${contentChecksum} ${contentSize}`).toBe(true);
            expect(equalBytes(lz4.decompressFrame(frame), data)).toBe(true);
          }
        }
      }
    }
  });
  it('every 4 KiB corpus block as a frame of its own', () => {
    // One frame per block, concatenated: `lz4 -d` decodes concatenated frames.
    const blocks = pieces(corpus, 4096);
    const frames = blocks.map((b) => lz4.compressFrame(b, { blockSize: 65536 }));
    const all = new Uint8Array(frames.reduce((a, f) => a + f.length, 0));
    let at = 0;
    for (const f of frames) {
      all.set(f, at);
      at += f.length;
    }
    expect(equalBytes(lz4cli(['-d', '-c'], all), corpus.subarray(0, blocks.length * 4096 - (4096 - blocks[blocks.length - 1].length)))).toBe(true);
  });
});

describe('lz4 frames: `lz4 -c` output through ours', () => {
  const data = corpus.subarray(0, 2_500_000);
  const options: string[][] = [
    [], ['-1'], ['-9'], ['-B4'], ['-B5'], ['-B6'], ['-B7'], ['-BD'], ['-B4', '-BD'], ['-BX'], ['--no-frame-crc'],
    ['--content-size'], ['-B4', '-BD', '-BX', '--content-size'], ['-l'],
  ];
  for (const opts of options) {
    it(`lz4 ${opts.join(' ') || '(defaults)'}`, () => {
      const frame = lz4cli(['-c', ...opts], data);
      expect(equalBytes(lz4.decompressFrame(frame), data)).toBe(true);
    });
  }
  it('each corpus file with linked blocks at high compression', () => {
    for (const { data: file } of corpusFiles()) {
      const frame = lz4cli(['-c', '-9', '-BD', '-B4'], file);
      expect(equalBytes(lz4.decompressFrame(frame), file)).toBe(true);
    }
  });
  it('random and zero data', () => {
    for (const d of [randomBytes(200_000, rand), new Uint8Array(3 << 20)]) {
      expect(equalBytes(lz4.decompressFrame(lz4cli(['-c'], d)), d)).toBe(true);
    }
  });
});

describe('lz4 frame structure', () => {
  it('decodes concatenated and skippable frames', () => {
    const a = corpus.subarray(0, 10_000);
    const b = corpus.subarray(10_000, 50_000);
    const skip = new Uint8Array(8 + 5);
    new DataView(skip.buffer).setUint32(0, 0x184d2a53, true);
    new DataView(skip.buffer).setUint32(4, 5, true);
    const fa = lz4.compressFrame(a);
    const fb = lz4cli(['-c', '-BD'], b);
    const all = new Uint8Array(fa.length + skip.length + fb.length);
    all.set(fa, 0);
    all.set(skip, fa.length);
    all.set(fb, fa.length + skip.length);
    const out = lz4.decompressFrame(all);
    expect(equalBytes(out, corpus.subarray(0, 50_000))).toBe(true);
  });
  it('writes the descriptor and header checksum per the spec', () => {
    const frame = lz4.compressFrame(new Uint8Array(10), { blockSize: 65536 });
    const dv = new DataView(frame.buffer, frame.byteOffset);
    expect(dv.getUint32(0, true)).toBe(0x184d2204);
    expect(frame[4]).toBe(0x40 | 0x20 | 0x08 | 0x04); // version 01, independent, content size, content checksum
    expect(frame[5]).toBe(4 << 4);
    expect(dv.getUint32(6, true)).toBe(10);
    expect(frame[14]).toBe((xxh32(frame.subarray(4, 14)) >>> 8) & 0xff);
  });
  it('stores an incompressible block raw (high bit of the block size)', () => {
    const d = randomBytes(1000, rand);
    const frame = lz4.compressFrame(d, { contentSize: false });
    const word = new DataView(frame.buffer, frame.byteOffset).getUint32(7, true);
    expect(word).toBe((0x80000000 | 1000) >>> 0);
  });
});

describe('lz4 frame errors', () => {
  const data = corpus.subarray(0, 200_000);
  const frame = lz4.compressFrame(data, { blockSize: 65536, blockChecksum: true });

  it('bad magic', () => expectCorrupt(() => lz4.decompressFrame(Uint8Array.of(1, 2, 3, 4, 5)), /unknown magic number 0x04030201 at byte 0/));
  it('empty input', () => expectCorrupt(() => lz4.decompressFrame(new Uint8Array(0)), /empty input/));
  it('header checksum', () => {
    const bad = frame.slice();
    bad[15] ^= 1; // the content-size descriptor is bytes 4..13, HC at 14; flip a content-size byte
    bad[8] ^= 1;
    expectCorrupt(() => lz4.decompressFrame(bad), /header checksum/);
  });
  it('block checksum', () => {
    const bad = frame.slice();
    bad[30] ^= 0x10;
    expectCorrupt(() => lz4.decompressFrame(bad), /block checksum|lz4 frame: block at byte/);
  });
  it('content checksum', () => {
    const f = lz4.compressFrame(data);
    const bad = f.slice();
    bad[bad.length - 1] ^= 1;
    expectCorrupt(() => lz4.decompressFrame(bad), /content checksum 0x[0-9a-f]{8} at byte \d+ does not match/);
  });
  it('content size mismatch', () => {
    const f = lz4.compressFrame(data, { contentChecksum: false });
    const bad = f.slice();
    bad[6] ^= 1; // content size low byte
    // Re-seal the header checksum so only the size is wrong.
    bad[14] = (xxh32(bad.subarray(4, 14)) >>> 8) & 0xff;
    expectCorrupt(() => lz4.decompressFrame(bad), /content size field says \d+ bytes, the blocks decode to 200000/);
  });
  it('truncation at every cut of a small frame', () => {
    const f = lz4.compressFrame(corpus.subarray(0, 3000));
    for (let cut = 1; cut < f.length; cut++) expect(() => lz4.decompressFrame(f.subarray(0, cut))).toThrowError(FlashpackError);
  });
  it('dictionary frames are ENOTSUP', () => {
    const f = lz4.compressFrame(new Uint8Array(0), { contentSize: false, contentChecksum: false });
    const withDict = new Uint8Array(f.length + 4);
    withDict.set(f.subarray(0, 6), 0);
    withDict[4] |= 0x01;
    withDict.set([1, 2, 3, 4], 6);
    withDict[10] = (xxh32(withDict.subarray(4, 10)) >>> 8) & 0xff;
    withDict.set(f.subarray(7), 11);
    try {
      lz4.decompressFrame(withDict);
      throw new Error('expected ENOTSUP');
    } catch (e) {
      expect((e as FlashpackError).code).toBe('ENOTSUP');
      expect((e as Error).message).toMatch(/dictionary 0x04030201/);
    }
  });
  it('EINVAL for a bad blockSize', () => {
    expect(() => lz4.compressFrame(data, { blockSize: 1000 as 65536 })).toThrowError(/options.blockSize must be one of 65536, 262144, 1048576, 4194304, got the number 1000/);
  });
});

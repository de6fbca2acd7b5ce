import { describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { createAdler32, createCRC32, createXXHash32 } from 'hash-wasm';
import { crc32, crc32c, adler32, xxh32, crc32Combine, crc32cCombine, adler32Combine, FlashpackError } from '../src/index.js';
import { prng, randomBytes } from './helpers/data.js';

const check = new TextEncoder().encode('123456789');
const CRC32C_POLY = 0x82f63b78;

describe('checksum check values', () => {
  it('crc32("123456789") is 0xCBF43926', () => expect(crc32(check)).toBe(0xcbf43926));
  it('crc32c("123456789") is 0xE3069283', () => expect(crc32c(check)).toBe(0xe3069283));
  it('adler32("123456789") is 0x091E01DE', () => expect(adler32(check)).toBe(0x091e01de));
  it('xxh32("123456789") matches the reference', () => expect(xxh32(check)).toBe(0x937bad67));
  it('empty input gives the initial values', () => {
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(adler32(new Uint8Array(0))).toBe(1);
    expect(xxh32(new Uint8Array(0))).toBe(0x02cc5d05);
  });
});

describe('checksums against node:zlib and hash-wasm', () => {
  it('agree on random lengths 0..1 MiB at random alignments', async () => {
    const rand = prng(1);
    const hwCrc32 = await createCRC32();
    const hwCrc32c = await createCRC32(CRC32C_POLY);
    const hwAdler = await createAdler32();
    const hwXxh = await createXXHash32(0);
    const pool = randomBytes((1 << 20) + 64, rand);
    const digest = (h: { init(): unknown; update(d: Uint8Array): unknown; digest(f: 'binary'): Uint8Array }, d: Uint8Array) => {
      h.init();
      h.update(d);
      return new DataView(h.digest('binary').buffer).getUint32(0);
    };
    const lengths = [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 4095, 4096, 4097, 5552, 5553, 8191, 1 << 20];
    for (let i = 0; i < 300; i++) lengths.push(rand() < 0.5 ? (rand() * 8192) | 0 : (rand() * (1 << 20)) | 0);
    for (const len of lengths) {
      const at = (rand() * 64) | 0;
      const d = pool.subarray(at, at + len);
      expect(crc32(d), `crc32 len ${len} at ${at}`).toBe(zlib.crc32(d));
      expect(crc32(d), `crc32 len ${len}`).toBe(digest(hwCrc32, d));
      expect(crc32c(d), `crc32c len ${len}`).toBe(digest(hwCrc32c, d));
      expect(adler32(d), `adler32 len ${len}`).toBe(digest(hwAdler, d));
      expect(xxh32(d), `xxh32 len ${len}`).toBe(digest(hwXxh, d));
    }
  });

  it('adler32 stays exact on long runs of 0xff (largest sums between reductions)', async () => {
    const hw = await createAdler32();
    for (const len of [5535, 5536, 5537, 11072, 100_000, 1 << 20]) {
      const d = new Uint8Array(len).fill(255);
      hw.init();
      hw.update(d);
      expect(adler32(d)).toBe(new DataView(hw.digest('binary').buffer).getUint32(0));
    }
  });
});

describe('seeds continue a previous value', () => {
  it('checksum(A‖B) = checksum(B, checksum(A)) for every split', () => {
    const rand = prng(2);
    const d = randomBytes(20_000, rand);
    for (const cut of [0, 1, 7, 16, 4095, 4096, 10_000, 19_999, 20_000]) {
      const a = d.subarray(0, cut);
      const b = d.subarray(cut);
      expect(crc32(b, crc32(a))).toBe(crc32(d));
      expect(crc32c(b, crc32c(a))).toBe(crc32c(d));
      expect(adler32(b, adler32(a))).toBe(adler32(d));
    }
  });
});

describe('combine', () => {
  it('combines checksums of two pieces into the checksum of both', () => {
    const rand = prng(3);
    for (let i = 0; i < 200; i++) {
      const d = randomBytes((rand() * 70_000) | 0, rand);
      const cut = (rand() * (d.length + 1)) | 0;
      const a = d.subarray(0, cut);
      const b = d.subarray(cut);
      expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(crc32(d));
      expect(crc32cCombine(crc32c(a), crc32c(b), b.length)).toBe(crc32c(d));
      expect(adler32Combine(adler32(a), adler32(b), b.length)).toBe(adler32(d));
    }
  });

  it('handles lengths beyond 4 GiB exactly (zlib takes 64-bit lengths)', () => {
    // combine(c, 0, n) is "c shifted over n zero bytes"; shifting by n then m must
    // equal shifting by n + m, including across the 2^32 boundary.
    const c = crc32(check);
    const cc = crc32c(check);
    for (const [n, m] of [[2 ** 32 - 1, 2], [2 ** 32 + 7, 2 ** 33 + 3], [2 ** 40 + 12345, 2 ** 45 + 1]]) {
      expect(crc32Combine(crc32Combine(c, 0, n), 0, m)).toBe(crc32Combine(c, 0, n + m));
      expect(crc32cCombine(crc32cCombine(cc, 0, n), 0, m)).toBe(crc32cCombine(cc, 0, n + m));
    }
    // Adler-32's combine depends on the length only modulo 65521.
    const a = adler32(check);
    const b = adler32(new Uint8Array([1, 2, 3]));
    expect(adler32Combine(a, b, 65521 * 70_000 + 3)).toBe(adler32Combine(a, b, 3));
  });
});

describe('argument errors are EINVAL naming the value', () => {
  it('rejects a non-bytes argument', () => {
    expect(() => crc32('abc' as unknown as Uint8Array)).toThrowError(FlashpackError);
    try {
      crc32(42 as unknown as Uint8Array);
    } catch (e) {
      expect((e as FlashpackError).code).toBe('EINVAL');
      expect((e as Error).message).toContain('number');
    }
  });
  it('rejects bad seeds and lengths', () => {
    expect(() => crc32(check, -1)).toThrowError(/seed must be an integer from 0 to 0xffffffff, got the number -1/);
    expect(() => crc32Combine(0, 0, -3)).toThrowError(/lengthB must be .* got the number -3/);
  });
  it('accepts Buffer, DataView and ArrayBuffer', () => {
    const want = crc32(check);
    expect(crc32(Buffer.from(check))).toBe(want);
    expect(crc32(new DataView(check.buffer))).toBe(want);
    expect(crc32(check.buffer as ArrayBuffer)).toBe(want);
  });
});

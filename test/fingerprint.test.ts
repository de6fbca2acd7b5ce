import { describe, expect, it } from 'vitest';
import { createXXHash128, xxhash128 } from 'hash-wasm';
import { fingerprint, fingerprintAt, FINGERPRINT_BYTES, FlashpackError, runtime } from '../src/index.js';
import { prng, randomBytes } from './helpers/data.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const PRIME32 = 2654435761n;
const PRIME64 = 11400714785074694797n;
const U64 = (1n << 64n) - 1n;

/** xxHash's sanity-check buffer (cli/xsum_sanity_check.c, XSUM_fillTestBuffer). */
function sanityBuffer(n: number): Uint8Array {
  const out = new Uint8Array(n);
  let gen = PRIME32;
  for (let i = 0; i < n; i++) {
    out[i] = Number(gen >> 56n);
    gen = (gen * PRIME64) & U64;
  }
  return out;
}

/** The seed as hash-wasm takes it: low and high 32 bits. */
const halves = (seed: bigint): [number, number] => [Number(seed & 0xffffffffn), Number(seed >> 32n)];

describe('fingerprint known answers', () => {
  it('the empty input with seed 0 is XXH128("") = 99aa06d3014798d86001c324468d497f', () => {
    expect(hex(fingerprint(new Uint8Array(0)))).toBe('99aa06d3014798d86001c324468d497f');
  });

  it('fingerprint("123456789") is 33119477ede5dcd5e9716427681d5860 (reference xxhash.h, XXH3_128bits_withSeed)', () => {
    expect(hex(fingerprint(new TextEncoder().encode('123456789')))).toBe('33119477ede5dcd5e9716427681d5860');
  });

  // XSUM_XXH128_testdata: { length, seed, { low64, high64 } }; one case per length class.
  const vectors: [number, bigint, bigint, bigint][] = [
    [0, 0n, 0x6001C324468D497Fn, 0x99AA06D3014798D8n],
    [0, PRIME32, 0x5444F7869C671AB0n, 0x92220AE55E14AB50n],
    [1, 0n, 0xC44BDFF4074EECDBn, 0xA6CD5E9392000F6An],
    [1, PRIME32, 0xB53D5557E7F76F8Dn, 0x89B99554BA22467Cn],
    [6, 0n, 0x3E7039BDDA43CFC6n, 0x082AFE0B8162D12An],
    [6, PRIME32, 0x269D8F70BE98856En, 0x5A865B5389ABD2B1n],
    [12, 0n, 0x061A192713F69AD9n, 0x6E3EFD8FC7802B18n],
    [12, PRIME32, 0x9BE9F9A67F3C7DFBn, 0xD7E09D518A3405D3n],
    [24, 0n, 0x1E7044D28B1B901Dn, 0x0CE966E4678D3761n],
    [24, PRIME32, 0xD7304C54EBAD40A9n, 0x3162026714A6A243n],
    [48, 0n, 0xF942219AED80F67Bn, 0xA002AC4E5478227En],
    [48, PRIME32, 0x7BA3C3E453A1934En, 0x163ADDE36C072295n],
    [81, 0n, 0x5E8BAFB9F95FB803n, 0x4952F58181AB0042n],
    [81, PRIME32, 0x703FBB3D7A5F755Cn, 0x2724EC7ADC750FB6n],
    [222, 0n, 0xF1AEBD597CEC6B3An, 0x337E09641B948717n],
    [222, PRIME32, 0xAE995BB8AF917A8Dn, 0x91820016621E97F1n],
    [403, 0n, 0xCDEB804D65C6DEA4n, 0x1B6DE21E332DD73Dn],
    [403, PRIME64, 0x6259F6ECFD6443FDn, 0xBED311971E0BE8F2n],
    [512, 0n, 0x617E49599013CB6Bn, 0x18D2D110DCC9BCA1n],
    [512, PRIME64, 0x3CE457DE14C27708n, 0x925D06B8EC5B8040n],
    [2048, 0n, 0xDD59E2C3A5F038E0n, 0xF736557FD47073A5n],
    [2048, PRIME32, 0x230D43F30206260Bn, 0x7FB03F7E7186C3EAn],
    [2240, 0n, 0x6E73A90539CF2948n, 0xCCB134FBFA7CE49Dn],
    [2240, PRIME32, 0xED385111126FBA6Fn, 0x50A1FE17B338995Fn],
    [2367, 0n, 0xCB37AEB9E5D361EDn, 0xE89C0F6FF369B427n],
    [2367, PRIME32, 0x6F5360AE69C2F406n, 0xD23AAE4B76C31ECBn],
  ];
  const buffer = sanityBuffer(2367);
  for (const [len, seed, low, high] of vectors) {
    it(`xxHash's sanity vector: ${len} bytes, seed ${seed.toString(16)}`, () => {
      const want = high.toString(16).padStart(16, '0') + low.toString(16).padStart(16, '0');
      expect(hex(fingerprint(buffer.subarray(0, len), seed))).toBe(want);
    });
  }
});

describe('fingerprint is bit-exact with hash-wasm xxhash128', () => {
  const seeds = [0n, 1n, 0x9e3779b1n, 0xdeadbeefn << 32n, 0xfedcba9876543210n, U64];
  const pool = randomBytes((1 << 20) + 64, prng(41));

  it('every length 0..300 (every length class and boundary) for every seed', async () => {
    for (const seed of seeds) {
      const h = await createXXHash128(...halves(seed));
      for (let len = 0; len <= 300; len++) {
        const d = pool.subarray(len, len + len);
        h.init();
        h.update(d);
        expect(hex(fingerprint(d, seed)), `len ${len} seed ${seed}`).toBe(hex(h.digest('binary')));
      }
    }
  });

  it('random lengths up to 1 MiB at random alignments, several seeds', async () => {
    const rand = prng(42);
    const lengths = [241, 255, 256, 1023, 1024, 1025, 1087, 1088, 4095, 4096, 4097, 16384, 65536, 1 << 20];
    for (let i = 0; i < 200; i++) lengths.push(rand() < 0.7 ? 241 + ((rand() * 16_000) | 0) : (rand() * (1 << 20)) | 0);
    for (const len of lengths) {
      const at = (rand() * 64) | 0;
      const seed = seeds[(rand() * seeds.length) | 0];
      const d = pool.subarray(at, at + len);
      expect(hex(fingerprint(d, seed)), `len ${len} at ${at} seed ${seed}`).toBe(await xxhash128(d, ...halves(seed)));
    }
  });

  it('number and bigint seeds agree, up to 2^53 - 1', () => {
    const d = pool.subarray(0, 4096);
    for (const seed of [0, 1, 0xffffffff, 2 ** 32, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]) {
      expect(hex(fingerprint(d, seed))).toBe(hex(fingerprint(d, BigInt(seed))));
    }
    expect(hex(fingerprint(d))).toBe(hex(fingerprint(d, 0n)));
    expect(hex(fingerprint(d, 1))).not.toBe(hex(fingerprint(d)));
  });
});

describe('fingerprintAt works in place in the shared memory', () => {
  it('equals fingerprint for bytes at any alignment, with any seed halves', async () => {
    const rt = runtime();
    const rand = prng(43);
    const region = rt.reserve(70_000);
    const out = rt.reserve(64);
    for (let i = 0; i < 300; i++) {
      const len = i < 100 ? i * 3 : (rand() * 65_000) | 0;
      const at = region + ((rand() * 1000) | 0);
      const data = randomBytes(len, rand);
      rt.u8.set(data, at);
      const lo = (rand() * 2 ** 32) >>> 0;
      const hi = i % 3 === 0 ? 0 : (rand() * 2 ** 32) >>> 0;
      const outAt = out + (i % 16);
      fingerprintAt(at, len, outAt, lo, hi);
      const got = rt.u8.slice(outAt, outAt + FINGERPRINT_BYTES);
      expect(hex(got), `len ${len}`).toBe(hex(fingerprint(data, (BigInt(hi) << 32n) | BigInt(lo))));
      expect(hex(got), `len ${len}`).toBe(await xxhash128(data, lo, hi));
    }
  });

  it('may write its output over its own input', () => {
    const rt = runtime();
    const at = rt.reserve(4096);
    const data = randomBytes(4096, prng(44));
    rt.u8.set(data, at);
    fingerprintAt(at, 4096, at, 5, 0);
    expect(hex(rt.u8.slice(at, at + 16))).toBe(hex(fingerprint(data, 5)));
  });

  it('uses the ctx it is given for the seeded scratch', () => {
    const rt = runtime();
    const ctx = rt.reserve(rt.ctxBytes, 64);
    const at = rt.reserve(5000);
    const out = rt.reserve(16);
    const data = randomBytes(5000, prng(45));
    rt.u8.set(data, at);
    const want = hex(fingerprint(data, (9n << 32n) | 7n));
    rt.u8.fill(0xa5, rt.ctx, rt.ctx + rt.ctxBytes);
    fingerprintAt(at, 5000, out, 7, 9, ctx);
    expect(hex(rt.u8.slice(out, out + 16))).toBe(want);
    expect(rt.u8.subarray(rt.ctx, rt.ctx + rt.ctxBytes).every((b) => b === 0xa5), 'the default ctx is untouched').toBe(true);
  });
});

describe('fingerprint argument errors are EINVAL naming the value', () => {
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(FlashpackError);
      return [(e as FlashpackError).code, (e as Error).message];
    }
    return ['none', ''];
  };
  it('rejects non-bytes and bad seeds', () => {
    expect(code(() => fingerprint('abc' as unknown as Uint8Array))[0]).toBe('EINVAL');
    for (const seed of [-1, 1.5, 2 ** 53, NaN, -1n, 1n << 64n, '7']) {
      const [c, message] = code(() => fingerprint(new Uint8Array(4), seed as bigint));
      expect(c, String(seed)).toBe('EINVAL');
      expect(message).toContain('seed must be an integer from 0 to 2^64-1');
    }
    expect(code(() => fingerprint(new Uint8Array(4), -1n))[1]).toContain('got the bigint -1n');
  });
  it('rejects regions outside the shared memory and bad seed halves', () => {
    const rt = runtime();
    const size = rt.memory.buffer.byteLength;
    const at = rt.reserve(64);
    expect(code(() => fingerprintAt(size - 8, 16, at))[1]).toMatch(/fingerprintAt: ptr: bytes .* outside the shared memory/);
    expect(code(() => fingerprintAt(at, 16, size - 4))[1]).toMatch(/fingerprintAt: outPtr/);
    expect(code(() => fingerprintAt(-1, 16, at))[1]).toMatch(/got the number -1/);
    expect(code(() => fingerprintAt(at, 1.5, at))[0]).toBe('EINVAL');
    expect(code(() => fingerprintAt(at, 16, at, 2 ** 32))[1]).toMatch(/seedLo must be .* got the number 4294967296/);
    expect(code(() => fingerprintAt(at, 16, at, 0, -1))[1]).toMatch(/seedHi/);
    expect(code(() => fingerprintAt(at, 300, at, 1, 0, size - 100))[1]).toMatch(/fingerprintAt: ctx/);
  });
  it('accepts Buffer, DataView and ArrayBuffer', () => {
    const d = randomBytes(1000, prng(46));
    const want = hex(fingerprint(d));
    expect(hex(fingerprint(Buffer.from(d)))).toBe(want);
    expect(hex(fingerprint(new DataView(d.buffer)))).toBe(want);
    expect(hex(fingerprint(d.buffer as ArrayBuffer))).toBe(want);
  });
});

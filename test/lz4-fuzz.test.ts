/**
 * Fuzzes the LZ4 decoders with mutated and random inputs. Each input must decode
 * to exactly what the model decoder produces, or throw the model's error code;
 * no other exception, no hang. FUZZ_ITERATIONS raises the count (default 100,000
 * per decoder per run).
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createXXHash32 } from 'hash-wasm';
import { lz4, FlashpackError } from '../src/index.js';
import { corpusConcat, equalBytes, prng, randomBytes } from './helpers/data.js';
import { modelDecodeBlock } from './helpers/lz4-model.js';
import { modelDecodeFrames } from './helpers/lz4-frame-model.js';
import { liblz4, liblz4Case } from './helpers/liblz4.js';

const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 100_000);
const corpus = corpusConcat();

function mutate(src: Uint8Array, rand: () => number): Uint8Array {
  let b = src.slice();
  const rounds = 1 + ((rand() * 3) | 0);
  for (let r = 0; r < rounds; r++) {
    const at = (rand() * Math.max(1, b.length)) | 0;
    switch ((rand() * 9) | 0) {
      case 0: if (b.length) b[at] ^= 1 << ((rand() * 8) | 0); break;
      case 1: if (b.length) b[at] = (rand() * 256) | 0; break;
      case 2: b = b.slice(0, at); break;
      case 3: { const x = new Uint8Array(b.length + 1 + ((rand() * 16) | 0)); x.set(b); x.set(randomBytes(x.length - b.length, rand), b.length); b = x; break; }
      case 4: if (b.length) b[at] |= 0xf0; break; // long literal run
      case 5: if (b.length) b[at] |= 0x0f; break; // long match
      case 6: if (b.length > 1) { b[at] = 0xff; b[(at + 1) % b.length] = 0xff; } break;
      case 7: { const x = new Uint8Array(b.length + 1); x.set(b.subarray(0, at)); x[at] = (rand() * 256) | 0; x.set(b.subarray(at), at + 1); b = x; break; }
      default: if (b.length > 1) b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1)]);
    }
  }
  return b;
}

/**
 * A syntactically well-formed block with random structure: short and long runs,
 * offsets near and past the window, and a final literal run of 0..8 bytes, so the
 * end-of-block rules (which mutations of real blocks rarely reach) are exercised.
 */
function synthesize(rand: () => number): { block: Uint8Array; size: number } {
  const bytes: number[] = [];
  const pick = (choices: number[]) => choices[(rand() * choices.length) | 0];
  const length = () => pick([0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 13, 14, 15, 16, 17, 30, 270, 300]);
  const writeLen = (n: number) => {
    for (n -= 15; n >= 255; n -= 255) bytes.push(255);
    bytes.push(n);
  };
  let out = 0;
  const count = (rand() * 6) | 0;
  for (let i = 0; i < count; i++) {
    const lit = length();
    const ml = 4 + length();
    bytes.push((Math.min(lit, 15) << 4) | Math.min(ml - 4, 15));
    if (lit >= 15) writeLen(lit);
    for (let j = 0; j < lit; j++) bytes.push((rand() * 256) | 0);
    out += lit;
    const offset = rand() < 0.9 ? 1 + ((rand() * Math.max(1, out)) | 0) : (rand() * 65536) | 0;
    bytes.push(offset & 255, offset >> 8);
    if (ml - 4 >= 15) writeLen(ml - 4);
    out += ml;
  }
  const last = pick([0, 1, 2, 3, 4, 5, 6, 8, 15, 16]);
  bytes.push(Math.min(last, 15) << 4);
  if (last >= 15) writeLen(last);
  for (let j = 0; j < last; j++) bytes.push((rand() * 256) | 0);
  out += last;
  return { block: Uint8Array.from(bytes), size: out };
}

function expectFlashpackError(e: unknown, code: string, input: Uint8Array): void {
  if (!(e instanceof FlashpackError) || e.code !== code) {
    throw new Error(`expected ${code}, got ${String(e)} for input ${Buffer.from(input).toString('hex').slice(0, 200)}`);
  }
}

describe('lz4 block decoder fuzz', () => {
  // Every 8th accepted input, for the liblz4 cross-check below.
  const acceptedSample: { input: Uint8Array; size: number; ours: Uint8Array }[] = [];

  it(`${ITERATIONS} mutated and random blocks (seeded with ours and liblz4's when it loads): model bytes or ECORRUPT`, () => {
    const rand = prng(0xf022);
    const seeds: { block: Uint8Array; size: number }[] = [];
    for (let i = 0; i < 300; i++) {
      const size = [16, 64, 200, 1000, 4096, 16384][i % 6];
      const off = (rand() * (corpus.length - size)) | 0;
      const data = i % 10 === 9 ? new Uint8Array(size).fill(i) : corpus.subarray(off, off + size);
      seeds.push({ block: lz4.compressBlock(data), size });
      if (!liblz4) continue;
      const out = Buffer.alloc(liblz4.encodeBound(size));
      const n = liblz4.encodeBlock(Buffer.from(data), out);
      if (n > 0) seeds.push({ block: new Uint8Array(out.subarray(0, n)), size });
    }
    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const kind = i % 10;
      const seed = kind < 4 ? synthesize(rand) : seeds[(rand() * seeds.length) | 0];
      const input = kind === 0 ? randomBytes((rand() * 64) | 0, rand) : kind < 3 ? seed.block : mutate(seed.block, rand);
      const r = rand();
      const size = r < 0.7 ? seed.size : r < 0.85 ? Math.max(0, seed.size + (((rand() * 40) | 0) - 20)) : (rand() * 300) | 0;
      const model = modelDecodeBlock(input, size);
      let ours: Uint8Array | undefined;
      try {
        ours = lz4.decompressBlock(input, size);
      } catch (e) {
        expectFlashpackError(e, 'ECORRUPT', input);
      }
      if (model.ok && model.bytes.length === size) {
        expect(ours && equalBytes(ours, model.bytes), `model decodes ${Buffer.from(input).toString('hex').slice(0, 120)}`).toBe(true);
        accepted++;
        if (i % 8 === 0) acceptedSample.push({ input, size, ours: ours! });
      } else {
        expect(ours, `model rejects (${model.ok ? 'size' : model.why}) ${Buffer.from(input).toString('hex').slice(0, 120)}`).toBeUndefined();
        rejected++;
      }
    }
    expect(accepted + rejected).toBe(ITERATIONS);
    expect(accepted).toBeGreaterThan(ITERATIONS / 100);
  });

  it.skipIf(!liblz4)(liblz4Case('liblz4 accepts the fuzzed blocks we accept, with the same bytes'), () => {
    expect(acceptedSample.length).toBeGreaterThan(ITERATIONS / 1000);
    for (const { input, size, ours } of acceptedSample) {
      const out = Buffer.alloc(size);
      expect(liblz4!.decodeBlock(Buffer.from(input), out), `liblz4 accepts ${Buffer.from(input).toString('hex').slice(0, 120)}`).toBe(size);
      expect(equalBytes(out, ours)).toBe(true);
    }
  });
});

describe('lz4 frame decoder fuzz', () => {
  it(`${ITERATIONS} mutated and random frames: model bytes or the model's error code`, async () => {
    const hasher = await createXXHash32(0);
    const xxh32 = (d: Uint8Array) => {
      hasher.init();
      hasher.update(d);
      return new DataView(hasher.digest('binary').buffer).getUint32(0);
    };
    const rand = prng(0xf7a3e);
    const seeds: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) {
      const size = (rand() * 3000) | 0;
      const off = (rand() * (corpus.length - size)) | 0;
      const data = corpus.subarray(off, off + size);
      seeds.push(lz4.compressFrame(data, { blockSize: 65536, blockChecksum: i % 2 === 0, contentChecksum: i % 3 !== 0, contentSize: i % 4 !== 0 }));
      const cli = [['-BD', '-B4'], ['-BX', '-B4', '--no-frame-crc'], ['-l'], ['--content-size', '-B4', '-BD', '--no-frame-crc']][i % 4];
      seeds.push(new Uint8Array(execFileSync('lz4', ['-c', ...cli], { input: data })));
    }
    let accepted = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const input = i % 20 === 0 ? randomBytes((rand() * 40) | 0, rand) : mutate(seeds[(rand() * seeds.length) | 0], rand);
      const model = modelDecodeFrames(input, xxh32);
      let ours: Uint8Array | undefined;
      try {
        ours = lz4.decompressFrame(input);
      } catch (e) {
        if (model.ok) throw new Error(`model decodes but ours threw ${String(e)}: ${Buffer.from(input).toString('hex').slice(0, 200)}`);
        expectFlashpackError(e, model.code, input);
      }
      if (model.ok) {
        expect(ours && equalBytes(ours, model.bytes)).toBe(true);
        accepted++;
      } else {
        expect(ours, `model rejects (${model.why})`).toBeUndefined();
      }
    }
    expect(accepted).toBeGreaterThan(ITERATIONS / 100);
  });
});

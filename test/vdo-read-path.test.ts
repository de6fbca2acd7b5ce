/**
 * The volume's read path (src/vdo/read-path.ts) through the public API: large
 * reads gathered over a fragmented layout, more of them at once than there are
 * staging buffers, 4 KiB reads racing the writes they must see, and damaged
 * packed blocks met mid-gather — each compared with a model, and every pool
 * buffer given back afterwards.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FlashpackError, Runtime, Volume, nvme } from '../dist/index.js';
import { prng, randomBytes } from './helpers/data.js';

const BS = 4096;
const STAGING = 512 * 1024;
const PACKED_MAGIC = [0x46, 0x50, 0x43, 0x42]; // "FPCB"

const live = new Set<Volume>();
afterEach(async () => {
  for (const v of [...live]) {
    live.delete(v);
    await v.close().catch(() => v.abandon().catch(() => {}));
  }
});

async function create(backend: nvme.MemoryBackend, logicalSize: number): Promise<Volume> {
  const v = await Volume.create(backend, { logicalSize, codec: 'lz4', writePolicy: 'async', workers: 1, runtime: new Runtime() });
  live.add(v);
  return v;
}

/** A block of one of four kinds: zeroes, compressible text, random bytes, or a copy of an earlier block (dedupe). */
function blockFor(i: number, rand: () => number, model: Uint8Array): Uint8Array {
  const kind = Math.floor(rand() * 4);
  if (kind === 0) return new Uint8Array(BS);
  if (kind === 1) return new TextEncoder().encode(`block ${i} `.repeat(BS).slice(0, BS));
  if (kind === 2 || i === 0) return randomBytes(BS, rand);
  const j = Math.floor(rand() * i);
  return model.slice(j * BS, (j + 1) * BS);
}

/**
 * Fills `blocks` blocks, most in a shuffled order (so consecutive LBAs land on
 * scattered PBNs, and packed blocks hold fragments of distant LBAs), the last
 * quarter in order (long runs of consecutive PBNs), then flushes.
 */
async function fill(v: Volume, blocks: number, seed: number): Promise<Uint8Array> {
  const rand = prng(seed);
  const model = new Uint8Array(blocks * BS);
  for (let i = 0; i < blocks; i++) model.set(blockFor(i, rand, model), i * BS);
  const scattered = Math.floor((blocks * 3) / 4);
  const order = Array.from({ length: scattered }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (let i = scattered; i < blocks; i++) order.push(i);
  for (let k = 0; k < order.length; k += 64) {
    await Promise.all(order.slice(k, k + 64).map((i) => v.write(i * BS, model.subarray(i * BS, (i + 1) * BS))));
  }
  await v.flush();
  return model;
}

const free = (v: Volume): [number, number] => [v.engine.pool.available(BS), v.engine.pool.available(STAGING)];

describe('vdo read path', () => {
  it('96 concurrent large reads (far more device runs than staging buffers) match the model and give every buffer back', async () => {
    const blocks = 4096;
    const v = await create(new nvme.MemoryBackend({ size: 64 << 20 }), blocks * BS);
    const model = await fill(v, blocks, 7);
    expect(v.stats().compressedBlocksWritten).toBeGreaterThan(0);
    expect(v.stats().dedupeAdviceValid + v.stats().dedupeConcurrentShared).toBeGreaterThan(0);
    // Whole volume once: every map page cached, so the counts below compare like with like.
    expect(Buffer.compare(await v.read(0, blocks * BS), model)).toBe(0);
    const before = free(v);
    const rand = prng(8);
    for (let round = 0; round < 3; round++) {
      const reqs = Array.from({ length: 96 }, () => {
        const offset = Math.floor(rand() * (blocks * BS - 16));
        const length = 1 + Math.floor(rand() * Math.min(2 << 20, blocks * BS - offset));
        return { offset, length };
      });
      const got = await Promise.all(reqs.map((r) => v.read(r.offset, r.length)));
      reqs.forEach((r, k) => expect(Buffer.compare(got[k], model.subarray(r.offset, r.offset + r.length))).toBe(0));
    }
    expect(free(v)).toEqual(before);
  });

  it('4 KiB reads issued with overwrites and discards of the same blocks see each one the moment it is accepted', async () => {
    const blocks = 1024;
    const v = await create(new nvme.MemoryBackend({ size: 32 << 20 }), blocks * BS);
    const model = await fill(v, blocks, 9);
    await v.read(0, blocks * BS);
    const rand = prng(10);
    for (let round = 0; round < 200; round++) {
      const lba = Math.floor(rand() * blocks);
      const reads: Promise<Uint8Array>[] = [v.read(lba * BS, BS)];
      const expected = [model.slice(lba * BS, (lba + 1) * BS)];
      const ops: Promise<void>[] = [];
      if (rand() < 0.7) {
        const data = blockFor(lba, rand, model);
        ops.push(v.write(lba * BS, data));
        model.set(data, lba * BS);
      } else {
        ops.push(v.discard(lba * BS, BS));
        model.fill(0, lba * BS, (lba + 1) * BS);
      }
      reads.push(v.read(lba * BS, BS));
      expected.push(model.slice(lba * BS, (lba + 1) * BS));
      await Promise.all(ops);
      const got = await Promise.all(reads);
      got.forEach((g, k) => expect(Buffer.compare(g, expected[k])).toBe(0));
    }
    await v.flush();
    expect(Buffer.compare(await v.read(0, blocks * BS), model)).toBe(0);
  });

  it('4 KiB reads reuse their in-flight records: 3,000 random reads 16 at a time make at most 16, match the model and give every buffer back', async () => {
    const blocks = 1024;
    const v = await create(new nvme.MemoryBackend({ size: 32 << 20 }), blocks * BS);
    const model = await fill(v, blocks, 12);
    await v.read(0, blocks * BS); // every map page cached: each 4 KiB read takes the one-block path
    const before = free(v);
    const spare = (v as unknown as { reads: { spareReads: unknown[] } }).reads.spareReads;
    const rand = prng(13);
    for (let k = 0; k < 3000; k += 16) {
      const lbas = Array.from({ length: 16 }, () => Math.floor(rand() * blocks));
      const got = await Promise.all(lbas.map((lba) => v.read(lba * BS, BS)));
      lbas.forEach((lba, i) => expect(Buffer.compare(got[i], model.subarray(lba * BS, (lba + 1) * BS))).toBe(0));
    }
    expect(spare.length).toBeGreaterThan(0);
    expect(spare.length).toBeLessThanOrEqual(16);
    expect(free(v)).toEqual(before);
  });

  it('a damaged packed block met by a gathered read and by 4 KiB reads: ECORRUPT for its LBAs only, every buffer back, other reads exact', async () => {
    const blocks = 512;
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    let v = await create(backend, blocks * BS);
    const model = await fill(v, blocks, 11);
    const { dataStart, physicalBlocks } = v.sb;
    await v.close();
    live.delete(v);
    const bytes = backend.bytes();
    const packed: number[] = [];
    for (let pbn = dataStart; pbn < physicalBlocks; pbn++) if (PACKED_MAGIC.every((m, k) => bytes[pbn * BS + k] === m)) packed.push(pbn);
    expect(packed.length).toBeGreaterThan(0);
    bytes[packed[0] * BS] ^= 0xff; // bad magic: every fragment of it fails to decode
    v = await Volume.open(backend, { workers: 1, runtime: new Runtime() });
    live.add(v);
    const bad: number[] = [];
    for (let lba = 0; lba < blocks; lba++) {
      try {
        expect(Buffer.compare(await v.read(lba * BS, BS), model.subarray(lba * BS, (lba + 1) * BS))).toBe(0);
      } catch (err) {
        expect(err).toBeInstanceOf(FlashpackError);
        expect((err as FlashpackError).code).toBe('ECORRUPT');
        expect((err as Error).message).toContain(`PBN ${packed[0]}`);
        bad.push(lba);
      }
    }
    expect(bad.length).toBeGreaterThan(0);
    const before = free(v);
    // Gathered reads over the damaged block fail; those that miss it are exact.
    const spans = Array.from({ length: 40 }, (_, k) => ({ offset: k * 12 * BS + 100, length: 24 * BS - 200 }))
      .filter((s) => s.offset + s.length <= blocks * BS);
    const results = await Promise.allSettled(spans.map((s) => v.read(s.offset, s.length)));
    results.forEach((r, k) => {
      const { offset, length } = spans[k];
      const hits = bad.some((lba) => (lba + 1) * BS > offset && lba * BS < offset + length);
      if (hits) {
        expect(r.status).toBe('rejected');
        expect(((r as PromiseRejectedResult).reason as FlashpackError).code).toBe('ECORRUPT');
      } else {
        expect(r.status).toBe('fulfilled');
        expect(Buffer.compare((r as PromiseFulfilledResult<Uint8Array>).value, model.subarray(offset, offset + length))).toBe(0);
      }
    });
    expect(results.some((r) => r.status === 'rejected')).toBe(true);
    expect(free(v)).toEqual(before);
  });
});

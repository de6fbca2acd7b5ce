/**
 * Fragments waiting in the packer keep only their compressed bytes
 * (src/vdo/fragment-arena.ts): the arena's page accounting, the packer's
 * placement into pages and its bound on waiting fragments, a fragment that
 * keeps its data because it will go out alone, and a volume whose
 * bins hold far more writes than its pipeline has slots — read back exactly
 * while they wait, after a flush, after reopening, and after a power cut.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as os from 'node:os';
import { Runtime, Volume, nvme } from '../dist/index.js';
import { FragmentArena } from '../dist/vdo/fragment-arena.js';
import { Packer, simulatePacking } from '../dist/vdo/packer.js';
import { prng, randomBytes } from './helpers/data.js';

const BS = 4096;
const enc = new TextEncoder();
/** A compressible block unlike every other tag's (LZ4 takes it to well under 1 KiB). */
const textBlock = (tag: string): Uint8Array => enc.encode(`${tag}|`.padEnd(BS, `${tag} all work and no play makes jack a dull boy. `));

describe('fragment arena', () => {
  it('a page is free again only when its bin gave it up and every fragment in it is released; misuse is EINTERNAL', () => {
    const a = new FragmentArena(64 * 1024, 3);
    const p = a.take();
    const q = a.take();
    expect(a.freePages).toBe(1);
    a.hold(p);
    a.hold(p);
    a.disown(p);
    expect(a.freePages).toBe(1); // still read by two waiting writes
    a.release(p);
    expect(a.freePages).toBe(1);
    a.release(p);
    expect(a.freePages).toBe(2);
    expect(() => a.release(p)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/released more often than held/) }));
    expect(() => a.disown(p)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/given up twice/) }));
    expect(() => a.hold(p)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/which no bin owns/) }));
    a.disown(q); // given up with nothing in it: free at once
    expect(a.freePages).toBe(3);
    expect([a.take(), a.take(), a.take(), a.take()].sort()).toEqual([-1, 0, 1, 2]);
    expect(a.address(2, 100)).toBe(64 * 1024 + 2 * BS + 100);
  });

  it('the packer lays fragments end to end in their bin\'s page, never past it, and never waits on more than its bound', () => {
    const rand = prng(7);
    const arena = new FragmentArena(0, 2 * 64 + 8);
    const packer = new Packer<number>('flashpack', { bins: 64, waitingMax: 200, pages: arena });
    const placed = new Map<number, { page: number; offset: number; size: number }>();
    let out = 0;
    let added = 0;
    for (let i = 0; i < 5000; i++) {
      const batches: { size: number; item: number; page?: number }[][] = [];
      const f = { size: 1 + Math.floor(rand() * 2500), item: i };
      if (rand() < 0.003) batches.push(...packer.flush());
      if (packer.add(f, batches)) {
        added++;
        const page = (f as { page?: number }).page as number;
        const offset = (f as { offset?: number }).offset as number;
        expect(page).toBeGreaterThanOrEqual(0);
        expect(offset + f.size).toBeLessThanOrEqual(4096 - 36);
        placed.set(i, { page, offset, size: f.size });
      }
      expect(packer.waiting).toBeLessThanOrEqual(200);
      for (const b of batches) {
        out += b.length;
        // A batch's fragments came from pages whose fragments do not overlap.
        for (const x of b) {
          const me = placed.get(x.item)!;
          for (const y of b) {
            const other = placed.get(y.item)!;
            if (x !== y && other.page === me.page) expect(me.offset + me.size <= other.offset || other.offset + other.size <= me.offset).toBe(true);
          }
          arena.release(me.page); // the write finished
        }
      }
    }
    for (const b of packer.flush()) {
      out += b.length;
      for (const x of b) arena.release(placed.get(x.item)!.page);
    }
    expect(out).toBe(added);
    expect(arena.freePages).toBe(arena.pages); // every page came back
  });

  it('with room to wait, the packer reaches an offline best-fit-decreasing packing; 32 bins (the old bound) do not', () => {
    const rand = prng(11);
    const sizes = Array.from({ length: 3000 }, () => 300 + Math.floor(rand() * 3000));
    const offline = simulatePacking(sizes, 'flashpack', Infinity, { bins: 4000, waitingMax: 4000 }).blocks;
    const many = simulatePacking(sizes, 'flashpack').blocks;
    const few = simulatePacking(sizes, 'flashpack', Infinity, { bins: 32 }).blocks;
    expect(many).toBeLessThanOrEqual(Math.ceil(offline * 1.03));
    expect(few).toBeGreaterThan(many);
  });
});

describe('a volume whose writes wait in the packer without holding slots', () => {
  const live: Volume[] = [];
  afterEach(async () => {
    for (const v of live.splice(0)) await v.close().catch(() => {});
  });

  for (const writePolicy of ['async', 'sync'] as const) {
    it(`${writePolicy}: 300 compressible writes through maxInflight 4 wait in bins at once, read back exactly while waiting, after flush and after reopen`, async () => {
      const backend = new nvme.MemoryBackend({ size: 16 << 20 });
      let v = await Volume.create(backend, { logicalSize: 512 * BS, codec: 'lz4', writePolicy, maxInflight: 4, workers: 1, runtime: new Runtime() });
      live.push(v);
      const model = new Uint8Array(512 * BS);
      const writes: Promise<void>[] = [];
      for (let lba = 0; lba < 300; lba++) {
        const b = textBlock(`w${lba}`);
        model.set(b, lba * BS);
        writes.push(v.write(lba * BS, b));
      }
      // Reads all along, while blocks wait in bins (decoded from the arena), are written, or are mapped.
      let settled = false;
      const all = Promise.all(writes).finally(() => (settled = true));
      const rand = prng(writePolicy === 'async' ? 5 : 6);
      let reads = 0;
      while (!settled || reads < 50) {
        const lba = Math.floor(rand() * 300);
        // The write, or nothing yet (a write still waiting for a slot has not taken effect).
        const got = Buffer.from(await v.read(lba * BS, BS));
        expect(got.equals(Buffer.from(model.subarray(lba * BS, (lba + 1) * BS))) || got.every((x) => x === 0)).toBe(true);
        reads++;
        await new Promise((r) => setImmediate(r));
      }
      await all;
      if (writePolicy === 'async') {
        expect(Buffer.from(await v.read(0, 300 * BS)).equals(Buffer.from(model.subarray(0, 300 * BS)))).toBe(true);
        expect(Buffer.from(await v.read(17 * BS + 100, 5000)).equals(Buffer.from(model.subarray(17 * BS + 100, 17 * BS + 5100)))).toBe(true);
        // Overwrite some waiting blocks (their bins go out) and write partially into others.
        for (const lba of [3, 50, 299]) {
          const b = textBlock(`o${lba}`);
          model.set(b, lba * BS);
          writes.push(v.write(lba * BS, b));
        }
        const part = randomBytes(700, prng(3));
        model.set(part, 120 * BS + 1000);
        writes.push(v.write(120 * BS + 1000, part));
      }
      await Promise.all(writes);
      await v.flush();
      const s = v.stats();
      expect(s.compressedFragmentsInPacker).toBe(0);
      expect(s.currentViosInProgress).toBe(0);
      expect(s.maxViosInProgress).toBeLessThanOrEqual(4);
      expect(s.compressedBlocksWritten).toBeGreaterThan(0);
      // More fragments to a packed block than the pipeline has slots: they waited without holding one.
      expect(s.compressedFragmentsWritten / s.compressedBlocksWritten).toBeGreaterThan(4);
      expect(s.dataBlocksUsed).toBeLessThan(300 / 5);
      expect(Buffer.from(await v.read(0, model.length)).equals(Buffer.from(model))).toBe(true);
      await v.close();
      live.pop();
      v = await Volume.open(backend, { workers: 1, runtime: new Runtime() });
      live.push(v);
      expect(Buffer.from(await v.read(0, model.length)).equals(Buffer.from(model))).toBe(true);
    });
  }

  it('identical data arriving while its first copy waits in a bin shares that copy (the bin goes out for it)', async () => {
    const v = await Volume.create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 256 * BS, codec: 'lz4', maxInflight: 8, workers: 1, runtime: new Runtime() });
    live.push(v);
    const writes: Promise<void>[] = [];
    for (let lba = 0; lba < 40; lba++) writes.push(v.write(lba * BS, textBlock(`d${lba}`)));
    await Promise.all(writes); // accepted: parked in bins
    expect(v.stats().compressedFragmentsInPacker).toBeGreaterThan(0);
    for (let lba = 0; lba < 40; lba++) writes.push(v.write((100 + lba) * BS, textBlock(`d${lba}`)));
    await Promise.all(writes);
    await v.flush();
    const s = v.stats();
    expect(s.dedupeConcurrentShared + s.dedupeAdviceValid).toBe(40);
    for (let lba = 0; lba < 40; lba++) {
      const want = Buffer.from(textBlock(`d${lba}`));
      expect(Buffer.from(await v.read(lba * BS, BS)).equals(want)).toBe(true);
      expect(Buffer.from(await v.read((100 + lba) * BS, BS)).equals(want)).toBe(true);
    }
  });

  it('a fragment too big to share its block keeps its data while it waits: alone at the flush it is written raw, not decoded back; a small one alone is decoded', async () => {
    const v = await Volume.create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 256 * BS, codec: 'lz4', maxInflight: 4, workers: 1, runtime: new Runtime() });
    live.push(v);
    const reads = (v as unknown as { reads: { decodeFragmentAt: (from: number, size: number, to: number) => string | null } }).reads;
    const decode = reads.decodeFragmentAt.bind(reads);
    let decoded = 0;
    reads.decodeFragmentAt = (from, size, to) => {
      decoded++;
      return decode(from, size, to);
    };
    // 2,600 random bytes then text: LZ4 leaves it over half a packed block, under a whole one.
    const big = textBlock('big');
    big.set(randomBytes(2600, prng(9)));
    const small = textBlock('small');
    const parked = async (): Promise<void> => {
      for (let i = 0; i < 200 && v.stats().currentViosInProgress > 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(v.stats().compressedFragmentsInPacker).toBe(1);
    };
    await v.write(0, big);
    await parked();
    expect(Buffer.from(await v.read(0, BS)).equals(Buffer.from(big))).toBe(true); // from the data it kept
    await v.flush();
    expect(decoded).toBe(0);
    let s = v.stats();
    expect([s.compressedFragmentsInPacker, s.compressedBlocksWritten, s.dataBlocksUsed]).toEqual([0, 0, 1]);
    await v.write(BS, small);
    await parked();
    await v.flush();
    expect(decoded).toBe(1); // its data went back when it parked: decoded from the arena to be written raw
    s = v.stats();
    expect([s.compressedBlocksWritten, s.dataBlocksUsed]).toEqual([0, 2]);
    expect(Buffer.from(await v.read(0, 2 * BS)).equals(Buffer.concat([big, small]))).toBe(true);
  });

  it('once every write is parked in a bin, the device workers spin again (a waiting fragment is not a busy pipeline)', async () => {
    // Spinning is turned off only on a machine with more threads than cores: make it one.
    const ioWorkers = Math.min(8, os.availableParallelism());
    const v = await Volume.create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 256 * BS, codec: 'lz4', maxInflight: 32, workers: 1, ioWorkers, runtime: new Runtime() });
    live.push(v);
    const ctrlr = (v as unknown as { ctrlr: nvme.Controller }).ctrlr;
    const idleSpin = ctrlr.spinIterations;
    expect(idleSpin).toBeGreaterThan(0);
    const writes: Promise<void>[] = [];
    for (let lba = 0; lba < 64; lba++) writes.push(v.write(lba * BS, textBlock(`s${lba}`)));
    expect(ctrlr.spinIterations).toBe(0); // 16 or more writes in the pipeline: the workers park at once
    await Promise.all(writes);
    for (let i = 0; i < 200 && v.stats().currentViosInProgress > 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(v.stats().currentViosInProgress).toBe(0);
    expect(v.stats().compressedFragmentsInPacker).toBeGreaterThan(0); // they wait in bins, until a flush
    expect(ctrlr.spinIterations).toBe(idleSpin);
    await v.flush();
    expect(ctrlr.spinIterations).toBe(idleSpin);
  });

  it('a power cut while fragments wait loses only unflushed async writes; flushed ones and the volume survive', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 16 << 20 }));
    let v = await Volume.create(fault, { logicalSize: 256 * BS, codec: 'lz4', maxInflight: 4, workers: 1, runtime: new Runtime() });
    const writes: Promise<void>[] = [];
    for (let lba = 0; lba < 100; lba++) writes.push(v.write(lba * BS, textBlock(`f${lba}`)));
    await Promise.all(writes);
    await v.flush();
    for (let lba = 0; lba < 100; lba++) writes.push(v.write(lba * BS, textBlock(`u${lba}`)));
    await Promise.all(writes); // acknowledged, waiting in bins, not flushed
    fault.powerCut({ mode: 'drop' });
    await v.abandon();
    fault.powerOn();
    v = await Volume.open(fault, { workers: 1, runtime: new Runtime() });
    live.push(v);
    for (let lba = 0; lba < 100; lba++) {
      const got = Buffer.from(await v.read(lba * BS, BS));
      // Each block reads as its flushed version or its newer one, never anything else.
      expect(got.equals(Buffer.from(textBlock(`f${lba}`))) || got.equals(Buffer.from(textBlock(`u${lba}`)))).toBe(true);
    }
  });
});

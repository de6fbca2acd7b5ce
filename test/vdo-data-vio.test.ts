/**
 * The write path's records (src/vdo/data-vio.ts): the stage graph and the
 * pool's exactly-once release are asserted (EINTERNAL), as are the slab
 * depot's PBN bounds, the packer's bin order, flush epochs and LBA states;
 * and a volume never has
 * more writes in its pipeline than maxInflight, whatever mix of aligned,
 * partial, zero and duplicate writes races for the slots.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Runtime, Volume, nvme } from '../dist/index.js';
import { DataVioPool, from } from '../dist/vdo/data-vio.js';
import { SlabDepot } from '../dist/vdo/slab-depot.js';
import { Packer } from '../dist/vdo/packer.js';
import { FlushEpochs } from '../dist/vdo/flush.js';
import { LogicalZone } from '../dist/vdo/logical-zone.js';
import { prng, randomBytes } from './helpers/data.js';

const BS = 4096;
// Stage numbers (a const enum in the source).
const FREE = 0, ACCEPTED = 1, PREPARING = 2, HASH_WAIT = 3, WRITING = 6, MAPPING = 7;
const lbaState = () => ({ key: 0, latest: 0, applied: 0, discarded: 0, inflight: 0 });

describe('data_vio pool', () => {
  it('moves only along the stage graph, releases exactly once and nothing still attached, and never hands out more than it holds', () => {
    const pool = new DataVioPool(2);
    const a = pool.acquire(7, 1, lbaState(), 3, false, null);
    expect(a.stage).toBe(ACCEPTED);
    a.move(PREPARING, from(ACCEPTED));
    expect(() => a.move(MAPPING, from(ACCEPTED, WRITING))).toThrow(expect.objectContaining({
      code: 'EINTERNAL', message: expect.stringMatching(/data_vio \d+ \(LBA 7\): PREPARING → MAPPING/),
    }));
    a.move(HASH_WAIT, from(PREPARING));
    a.out = 12;
    expect(() => pool.release(a)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/released in HASH_WAIT still holding its compressed form/) }));
    a.out = -1;
    expect(() => pool.release(a)).toThrow(expect.objectContaining({ message: expect.stringMatching(/still holding its data/) }));
    a.desc = -1;
    pool.release(a);
    expect(a.stage).toBe(FREE);
    expect(() => pool.release(a)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/finished twice/) }));
    const b = pool.acquire(1, 2, lbaState(), -1, false, null);
    pool.acquire(2, 3, lbaState(), -1, false, null);
    expect(pool.available).toBe(0);
    expect(pool.peak).toBe(2);
    expect(() => pool.acquire(3, 4, lbaState(), -1, false, null)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/none free/) }));
    // A record comes back reset: nothing of its last write is left on it.
    b.out = -1;
    b.fpLo = 99;
    b.hashed = true;
    pool.release(b);
    const c = pool.acquire(5, 6, lbaState(), -1, true, null);
    expect([c.id, c.lba, c.fpLo, c.hashed, c.reserved, c.epoch, c.mapping]).toEqual([b.id, 5, 0, false, true, -1, -1]);
  });
});

describe('slab depot and packer invariants', () => {
  it('the depot refuses a PBN outside the data region as a bug (EINTERNAL), naming it and the region', () => {
    const depot = new SlabDepot(100, 164, 16);
    const pbn = depot.allocate();
    expect(pbn).toBe(100);
    depot.written(pbn);
    depot.increment(pbn);
    expect(depot.references(pbn)).toBe(2);
    for (const bad of [0, 99, 164, -1, NaN]) {
      for (const call of [() => depot.increment(bad), () => depot.decrement(bad), () => depot.references(bad), () => depot.canShare(bad), () => depot.written(bad), () => depot.beingWritten(bad)]) {
        expect(call).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(new RegExp(`PBN ${bad} outside the data region 100\\.\\.163`)) }));
      }
    }
    expect(depot.references(pbn)).toBe(2); // nothing changed
  });

  it('the packer keeps its bins in best-fit order through 20,000 random fragments, evictions and flushes (it asserts the order itself)', () => {
    const rand = prng(41);
    for (const policy of ['flashpack', 'dm-vdo'] as const) {
      const packer = new Packer<number>(policy);
      let added = 0;
      let out = 0;
      for (let i = 0; i < 20_000; i++) {
        const batches: { size: number; item: number }[][] = [];
        const r = rand();
        if (r < 0.002) batches.push(...packer.flush());
        else if (r < 0.01) {
          const b = packer.evict(Math.floor(rand() * i));
          if (b !== null) batches.push(b);
        } else if (packer.add({ size: 1 + Math.floor(rand() * 3000), item: i }, batches)) added++;
        for (const b of batches) {
          out += b.length;
          expect(b.reduce((a, f) => a + f.size, 0)).toBeLessThanOrEqual(4096 - 36); // CB_CAPACITY: a packed block's header is 36 bytes
        }
      }
      for (const b of packer.flush()) out += b.length;
      expect(out).toBe(added);
    }
  });

  it('every fragment goes to a bin with the least free space that fits it, checked against a model of every bin', () => {
    const rand = prng(43);
    const CAP = 4096 - 36;
    type Frag = { size: number; item: number; bin?: unknown; was?: unknown };
    for (const policy of ['flashpack', 'dm-vdo'] as const) {
      const packer = new Packer<number>(policy, { waitingMax: 100_000 });
      const binCount = policy === 'dm-vdo' ? 16 : 1024;
      // The model: free space and fragment count of each bin that ever held a fragment; bins never used are empty.
      const free = new Map<unknown, number>();
      const held = new Map<unknown, number>();
      let checked = 0;
      for (let i = 0; i < 30_000; i++) {
        const size = 1 + Math.floor(rand() * 3000);
        let best = free.size < binCount ? CAP : Infinity;
        for (const [b, f] of free) if (f >= size && f < best && held.get(b)! < 14) best = f;
        const frag: Frag = { size, item: i };
        const out: Frag[][] = [];
        const added = packer.add(frag, out);
        // The bin it went to: still holding it, or written out full with it.
        const full = out.find((batch) => batch.includes(frag));
        const bin = frag.bin ?? full?.find((f) => f !== frag)?.was;
        frag.was = bin;
        if (added && out.length === (full ? 1 : 0)) {
          // Nothing went out to make room: the chosen bin had the least free space that fits.
          expect(free.get(bin) ?? CAP).toBe(best);
          checked++;
        }
        // A bin emptied for room first, then the fragment placed, then a bin it filled written out.
        for (const batch of out) {
          if (batch === full) continue;
          free.set(batch[0].was, CAP);
          held.set(batch[0].was, 0);
        }
        if (added) {
          free.set(bin, (free.get(bin) ?? CAP) - size);
          held.set(bin, (held.get(bin) ?? 0) + 1);
        }
        if (full) {
          free.set(bin, CAP);
          held.set(bin, 0);
        }
      }
      expect(checked).toBeGreaterThan(10_000);
    }
  });
});

describe('flush epochs and the logical zone', () => {
  const tick = () => new Promise((r) => setTimeout(r, 0));

  it('a flush waits for the writes of its epoch and older, not newer ones; a write leaves its epoch once', async () => {
    const f = new FlushEpochs();
    const a = f.enter();
    const b = f.enter();
    const closed = f.close();
    const c = f.enter();
    expect([a, b, closed, c]).toEqual([0, 0, 0, 1]);
    let drained = false;
    void f.drained(closed).then(() => (drained = true));
    f.leave(a);
    f.leave(c);
    await tick();
    expect(drained).toBe(false);
    f.leave(b);
    await tick();
    expect(drained).toBe(true);
    await f.drained(f.close()); // nothing in flight: at once
    expect(() => f.leave(b)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/flush epoch 0: a write left it more often/) }));
  });

  it('an LBA state is dropped once per hold, and a discard settles once', () => {
    const z = new LogicalZone();
    const st = z.hold(9);
    expect(z.busy(9)).toBe(true);
    z.drop(9, st);
    expect(z.busy(9)).toBe(false);
    expect(() => z.drop(9, st)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/LBA 9 dropped by more writes than held it/) }));
    const pd = z.discardIssued(4, 8, 1);
    expect([z.busy(5), z.pendingAt(5), z.pendingAt(8), z.mappingBarrier()]).toEqual([true, 'zero', null, 1]);
    pd.applied = true;
    expect(z.mappingBarrier()).toBe(Infinity);
    z.discardDone(pd);
    expect(() => z.discardDone(pd)).toThrow(expect.objectContaining({ code: 'EINTERNAL', message: expect.stringMatching(/LBAs 4\.\.7 settled twice/) }));
  });
});

describe('volume pipeline bound', () => {
  const live: Volume[] = [];
  afterEach(async () => {
    for (const v of live.splice(0)) await v.close().catch(() => v.abandon().catch(() => {}));
  });

  for (const writePolicy of ['async', 'sync'] as const) {
    it(`${writePolicy}: 400 racing writes (aligned, partial, zero, duplicate) through maxInflight 3 match the model, and at most 3 are in the pipeline`, async () => {
      const v = await Volume.create(new nvme.MemoryBackend({ size: 16 << 20 }), {
        logicalSize: 64 * BS, codec: 'lz4', writePolicy, maxInflight: 3, workers: 1, runtime: new Runtime(),
      });
      live.push(v);
      const rand = prng(writePolicy === 'async' ? 31 : 32);
      const model = new Uint8Array(64 * BS);
      const shared = randomBytes(BS, rand);
      const text = new TextEncoder().encode('the same compressible text '.repeat(200)).subarray(0, BS);
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 400; i++) {
        const kind = Math.floor(rand() * 5);
        const lba = Math.floor(rand() * 64);
        let offset = lba * BS;
        let data: Uint8Array;
        if (kind === 0) data = new Uint8Array(BS);
        else if (kind === 1) data = shared; // a chain of identical writes on one hash lock
        else if (kind === 2) data = text;
        else if (kind === 3) data = randomBytes(BS, rand);
        else {
          // A partial write: read-modify-write on the slow path.
          offset += Math.floor(rand() * 2048);
          data = randomBytes(1 + Math.floor(rand() * 2048), rand);
        }
        model.set(data, offset);
        writes.push(v.write(offset, data));
      }
      await Promise.all(writes);
      await v.flush();
      expect(Buffer.from(await v.read(0, model.length)).equals(Buffer.from(model))).toBe(true);
      const s = v.stats();
      expect(s.currentViosInProgress).toBe(0);
      expect(s.maxViosInProgress).toBeGreaterThan(0);
      expect(s.maxViosInProgress).toBeLessThanOrEqual(3);
      expect(s.dedupeConcurrentShared + s.dedupeAdviceValid).toBeGreaterThan(0);
    });
  }
});

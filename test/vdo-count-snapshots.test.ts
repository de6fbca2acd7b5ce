/**
 * Reference count snapshots (count-snapshots.ts): every checkpoint saves the
 * counts the block map implies, and an open — clean or after a crash —
 * takes the snapshot of the last completed checkpoint and replays only the
 * journal after it, never walking the block map to count. Checked with
 * deterministic counters (device reads at open against the tree pages on the
 * media) and with `check`, which recounts from the map and compares.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { Runtime, SlabPool, Volume, checkVolume } from '../dist/index.js';
import { COUNTS_PER_BLOCK, type Superblock } from '../dist/vdo/encodings.js';
import { CountSnapshots, decodeCountBlocks, decodeSnapshotHeader, plainSectorOps, slotBlock, wasmSectorOps } from '../dist/vdo/count-snapshots.js';
import { COUNTS_MAGIC, REFS_MAGIC, SECTOR_BYTES, SECTORS_PER_BLOCK, sealSector } from '../dist/vdo/encodings.js';
import { SlabDepot } from '../dist/vdo/slab-depot.js';
import { STAGING_BYTES } from '../dist/vdo/data-writer.js';
import type { BlockDevice } from '../dist/vdo/block-device.js';
import { leaves, fileReader } from './helpers/map-image.js';
import { prng, randomBytes } from './helpers/data.js';
import { volumeFiles } from './helpers/volume-files.js';

const BS = 4096;
const GiB = 2 ** 30;
const TiB = 2 ** 40;
const { image, track, untrack } = volumeFiles('snapshots');
const sbOf = (v: Volume): Superblock => (v as unknown as { sb: Superblock }).sb;
const loaded = (v: Volume): boolean => (v as unknown as { referencesLoaded: boolean }).referencesLoaded;
const text = (tag: string): Uint8Array => new TextEncoder().encode(`${tag} `.repeat(BS).slice(0, BS));

describe('reference count snapshots', () => {
  it('after a crash, open takes the snapshot and replays the journal: fewer device reads than the tree has leaves, counts exact', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: TiB, physicalSize: GiB, codec: 'lz4', workers: 1 }));
    const rand = prng(5);
    const blocks = TiB / BS;
    // 2,000 leaves over the volume, then a checkpoint (the close).
    const shared = randomBytes(BS, rand);
    const model = new Map<number, Uint8Array>();
    for (let i = 0; i < 2000; i++) {
      const lba = Math.floor(rand() * blocks);
      const d = i % 7 === 0 ? shared : i % 2 === 0 ? text(`a${i}`) : randomBytes(BS, rand);
      model.set(lba, d);
      await v.write(lba * BS, d);
    }
    await untrack(v, 'close');
    const sb = sbOf(v);
    const onMedia = leaves(fileReader(p), sb).length;
    expect(onMedia).toBeGreaterThan(1900);
    v = await track(Volume.open(p, { workers: 1 }));
    // Then overwrites, new places, discards and zeroes: journal entries after the snapshot.
    for (let i = 0; i < 300; i++) {
      const old = [...model.keys()][Math.floor(rand() * model.size)];
      const r = rand();
      if (r < 0.3) {
        await v.discard(old * BS, BS);
        model.delete(old);
      } else if (r < 0.4) {
        await v.write(old * BS, new Uint8Array(BS));
        model.set(old, new Uint8Array(BS));
      } else {
        const lba = r < 0.7 ? old : Math.floor(rand() * blocks);
        const d = i % 5 === 0 ? shared : randomBytes(BS, rand);
        model.set(lba, d);
        await v.write(lba * BS, d);
      }
    }
    await v.flush();
    const before = v.stats();
    await untrack(v, 'abandon');

    v = await track(Volume.open(p, { workers: 1 }));
    const s = v.stats();
    expect(loaded(v)).toBe(true);
    expect(s.logicalBlocksUsed).toBe(before.logicalBlocksUsed);
    expect(s.dataBlocksUsed).toBe(before.dataBlocksUsed);
    expect(s.overheadBlocksUsed).toBe(before.overheadBlocksUsed);
    // Journal, index, both snapshots, and per replayed entry its data block and tree path: not the ~2,000 leaves.
    expect(s.biosOut.read).toBeLessThan(onMedia / 2);
    for (const [lba, d] of model) expect(Buffer.from(await v.read(lba * BS, BS)).equals(Buffer.from(d)), `LBA ${lba}`).toBe(true);
    await untrack(v, 'close');
    // check recounts from the map and compares with the snapshot the close wrote.
    const r = await checkVolume(p);
    expect(r.problems).toEqual([]);
    expect(r.logicalBlocksUsed).toBe(before.logicalBlocksUsed);
  }, 120_000);

  it('crash after crash without a close: each open takes the newest completed snapshot; check finds the counts exact', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: 64 * GiB, physicalSize: 256 << 20, codec: 'lz4', workers: 1, journalBlocks: 16 }));
    const rand = prng(9);
    const blocks = 64 * GiB / BS;
    const hot = Array.from({ length: 64 }, () => Math.floor(rand() * (blocks - 64)));
    const model = new Map<number, Uint8Array>();
    for (let round = 0; round < 6; round++) {
      // Enough entries for checkpoints in between (16 journal blocks: one every ~960 entries).
      for (let i = 0; i < 1500; i++) {
        const lba = hot[Math.floor(rand() * hot.length)] + Math.floor(rand() * 64);
        const r = rand();
        if (r < 0.1) {
          await v.discard(lba * BS, BS);
          model.delete(lba);
          continue;
        }
        const d = r < 0.3 ? text(`r${round}.${i % 50}`) : r < 0.4 ? new Uint8Array(BS) : randomBytes(BS, rand);
        model.set(lba, d);
        await v.write(lba * BS, d);
      }
      await v.flush();
      const before = v.stats();
      await untrack(v, 'abandon');
      v = await track(Volume.open(p, { workers: 1 }));
      expect(loaded(v), `round ${round}`).toBe(true);
      const s = v.stats();
      expect({ lu: s.logicalBlocksUsed, du: s.dataBlocksUsed, ov: s.overheadBlocksUsed }, `round ${round}`).toEqual({
        lu: before.logicalBlocksUsed, du: before.dataBlocksUsed, ov: before.overheadBlocksUsed,
      });
    }
    for (const [lba, d] of model) expect(Buffer.from(await v.read(lba * BS, BS)).equals(Buffer.from(d)), `LBA ${lba}`).toBe(true);
    await untrack(v, 'close');
    const r = await checkVolume(p, { scrub: true });
    expect(r.problems).toEqual([]);
  }, 120_000);

  it('a damaged snapshot is not taken: open rebuilds the counts from the map and gets them right; check reports it', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: 16 * GiB, physicalSize: 128 << 20, codec: 'lz4', workers: 1 }));
    const rand = prng(3);
    for (let i = 0; i < 500; i++) await v.write(Math.floor(rand() * (16 * GiB / BS)) * BS, i % 3 ? randomBytes(BS, rand) : text(`d${i}`));
    await untrack(v, 'close');
    const before = await checkVolume(p);
    expect(before.problems).toEqual([]);
    const sb = sbOf(v);
    // The snapshot a clean open takes: the slot whose header is newest. Damage both slots' first count block.
    for (const slot of [0, 1]) {
      const fd = fs.openSync(p, 'r+');
      const at = slotBlock(sb, slot, 1) * BS + 200;
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, at);
      b[0] ^= 0x04;
      fs.writeSync(fd, b, 0, 1, at);
      fs.closeSync(fd);
    }
    const r = await checkVolume(p);
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      { where: expect.stringMatching(/^reference count snapshot in slot [01] \(blocks \d+–\d+, tag \d+\)$/), what: expect.stringMatching(/^count block 0 \(block \d+\) fails its checksum or belongs elsewhere: an open rebuilds the counts from the block map$/) },
    ]);
    v = await track(Volume.open(p, { workers: 1 }));
    await v.loaded; // a clean open loads the counts behind it
    expect(loaded(v)).toBe(false);
    expect({ lu: v.stats().logicalBlocksUsed, du: v.stats().dataBlocksUsed }).toEqual({ lu: before.logicalBlocksUsed, du: before.dataBlocksUsed });
    await untrack(v, 'close');
    // The close checkpointed a whole new snapshot.
    expect((await checkVolume(p)).problems).toEqual([]);
  }, 60_000);

  it('only the last snapshot written is taken, and only if its tag is the journal head: a checkpoint cut short after its snapshot means a rebuild', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: 16 * GiB, physicalSize: 128 << 20, codec: 'lz4', workers: 1 }));
    const rand = prng(21);
    for (let i = 0; i < 300; i++) await v.write(Math.floor(rand() * (16 * GiB / BS)) * BS, randomBytes(BS, rand));
    await untrack(v, 'close');
    const sb = sbOf(v);
    const want = await checkVolume(p);
    const headerOf = (slot: number): Uint8Array => fileReader(p)(slotBlock(sb, slot, 0));
    const [a, b] = [decodeSnapshotHeader(headerOf(0), sb, 0), decodeSnapshotHeader(headerOf(1), sb, 1)];
    const newest = [a, b].filter((h) => h !== null).sort((x, y) => y!.generation - x!.generation)[0]!;
    const other = 1 - newest.slot;
    /** Seals slot `other`'s header as a snapshot (its counts: whatever the slot holds). */
    const forge = (tag: number, generation: number): void => {
      const head = new Uint8Array(BS);
      const dv = new DataView(head.buffer);
      dv.setUint32(28, newest.logicalUsed, true);
      dv.setUint32(36, newest.mapPages, true);
      dv.setUint32(44, sb.physicalBlocks - sb.dataStart, true);
      dv.setUint32(52, generation, true);
      sealSector(head, 0, REFS_MAGIC, sb.nonce, { index: 0, count: 0, key: tag, aux: other });
      const fd = fs.openSync(p, 'r+');
      fs.writeSync(fd, head, 0, BS, slotBlock(sb, other, 0) * BS);
      fs.closeSync(fd);
    };
    const opened = async (): Promise<{ loaded: boolean; lu: number; du: number }> => {
      const vol = await track(Volume.open(p, { workers: 1, readOnly: true }));
      const r = { loaded: loaded(vol), lu: vol.stats().logicalBlocksUsed, du: vol.stats().dataBlocksUsed };
      await untrack(vol, 'close');
      return r;
    };
    const right = { lu: want.logicalBlocksUsed, du: want.dataBlocksUsed };
    // An older snapshot with the same tag: the newer one is taken.
    forge(newest.tag, newest.generation - 1);
    expect(await opened()).toEqual({ loaded: true, ...right });
    // A newer one tagged past the head (its checkpoint never recorded the head): rebuilt from the map.
    forge(newest.tag + 1, newest.generation + 1);
    expect(await opened()).toEqual({ loaded: false, ...right });
    // A newer one with the head's tag but other counts is taken: forged here, so check finds the difference.
    const fd = fs.openSync(p, 'r+');
    fs.writeSync(fd, new Uint8Array(BS), 0, BS, slotBlock(sb, other, 1) * BS);
    fs.closeSync(fd);
    forge(newest.tag, newest.generation + 1);
    expect((await checkVolume(p)).ok).toBe(false);
  }, 60_000);

  it('a snapshot writes the header through, then only the count blocks changed since that slot was written, then the header', async () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: BS, count: 16 }, { size: STAGING_BYTES, count: 2 }]);
    const media = new Map<number, Uint8Array>();
    const log: string[] = [];
    const dev = {
      async read(vb: number, desc: number, n = 1): Promise<void> {
        const b = pool.bytes(desc, true);
        for (let k = 0; k < n; k++) b.set(media.get(vb + k) ?? new Uint8Array(BS), k * BS);
      },
      async write(vb: number, desc: number, fua = false, n = 1): Promise<void> {
        const b = pool.bytes(desc, true);
        for (let k = 0; k < n; k++) media.set(vb + k, b.slice(k * BS, (k + 1) * BS));
        log.push(`${vb}${n > 1 ? `+${n}` : ''}${fua ? ' fua' : ''}`);
      },
      async flush(): Promise<void> {
        log.push('flush');
      },
    };
    const dataStart = 100;
    const sb = { refsStart: 10, physicalBlocks: dataStart + 5 * COUNTS_PER_BLOCK, dataStart, nonce: 77, blockBytes: 4096 } as Superblock;
    const depot = new SlabDepot(dataStart, sb.physicalBlocks, 1024);
    const snaps = new CountSnapshots(sb, dev as unknown as BlockDevice, pool, depot, rt.exports);
    snaps.opened(-1, []);
    const slot1 = slotBlock(sb, 1, 0);
    expect(slot1).toBe(10 + 1 + 6); // a header and a count block per 3,872 physical blocks (an upper bound on the data blocks)
    await snaps.write(5, 0);
    expect(log.splice(0)).toEqual(['10 fua', '11+5', 'flush', '10 fua']);
    await snaps.write(6, 0);
    expect(log.splice(0)).toEqual([`${slot1} fua`, `${slot1 + 1}+5`, 'flush', `${slot1} fua`]);
    // A block in count block 3 gains a reference: slot 0 (written at tag 5) rewrites that block only.
    const pbn = dataStart + 3 * COUNTS_PER_BLOCK + 7;
    depot.increment(pbn);
    depot.mapRef(pbn, 1);
    await snaps.write(7, 1);
    expect(log.splice(0)).toEqual(['10 fua', '14', 'flush', '10 fua']);
    await snaps.write(8, 1);
    expect(log.splice(0)).toEqual([`${slot1} fua`, `${slot1 + 4}`, 'flush', `${slot1} fua`]);
    await snaps.write(9, 1);
    expect(log.splice(0)).toEqual(['10 fua', 'flush', '10 fua']);
    const headers = await snaps.headers();
    expect(headers.map((h) => [h.slot, h.tag, h.logicalUsed])).toEqual([[0, 9, 1], [1, 8, 1]]);
    const counts = await snaps.read(headers[0]);
    expect(counts).not.toBeNull();
    expect(counts![pbn - dataStart]).toBe(1);
    expect(counts!.reduce((a, b) => a + b, 0)).toBe(1);

    // An open takes slot 0 (tag 9): the slot it loaded needs nothing written, and slot 1 (tag 8) is compared and found equal.
    const depot2 = new SlabDepot(dataStart, sb.physicalBlocks, 1024);
    const snaps2 = new CountSnapshots(sb, dev as unknown as BlockDevice, pool, depot2, rt.exports);
    expect(depot2.loadCounts(counts!, 0)).toBe(true);
    expect(depot2.usedBlocks).toBe(1);
    snaps2.opened(0, headers);
    await snaps2.comparing;
    await snaps2.write(10, 1);
    expect(log.splice(0)).toEqual([`${slot1} fua`, 'flush', `${slot1} fua`]);
    // A change in count block 1 goes to the slot written longest ago (0) alone, then to 1.
    depot2.increment(dataStart + COUNTS_PER_BLOCK + 2);
    depot2.mapRef(dataStart + COUNTS_PER_BLOCK + 2, 1);
    await snaps2.write(11, 2);
    expect(log.splice(0)).toEqual(['10 fua', '12', 'flush', '10 fua']);
  });

  it('decodeCountBlocks: in place with the volume runtime\'s kernels and on plain arrays alike; every damaged, misplaced or foreign sector refused', () => {
    const rt = new Runtime();
    const nonce = 0x5eed;
    const slot = 1;
    const k = 3; // the run starts at count block 3
    const n = 4;
    const dataBlocks = (k + n - 1) * COUNTS_PER_BLOCK + 1000; // the last block partly used
    const want = new Uint8Array(dataBlocks);
    const rand = prng(11);
    for (let i = 0; i < dataBlocks; i++) want[i] = rand() < 0.5 ? 0 : Math.floor(rand() * 255);
    const at = rt.reserve(n * BS, 64);
    const mem = new Uint8Array(rt.memory.buffer);
    const seal = (): void => {
      for (let i = 0; i < n; i++) {
        const blk = mem.subarray(at + i * BS, at + (i + 1) * BS);
        blk.fill(0);
        for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
          const from = (k + i) * COUNTS_PER_BLOCK + s * (SECTOR_BYTES - 28);
          if (from < dataBlocks) blk.set(want.subarray(from, Math.min(dataBlocks, from + SECTOR_BYTES - 28)), s * SECTOR_BYTES + 28);
          sealSector(blk, s, COUNTS_MAGIC, nonce, { index: s, count: 0, key: (k + i) * SECTORS_PER_BLOCK + s, aux: slot });
        }
      }
    };
    const sb = { nonce } as Superblock;
    // The same sealed (and perhaps damaged) run decoded both ways: in the shared memory with the
    // runtime's kernels, and as a plain copy with the process's (the bytes are scratch afterwards).
    const both = (withSlot = slot, from = k): [Uint8Array | null, Uint8Array | null] => {
      const plain = mem.slice(at, at + n * BS);
      const a = new Uint8Array(dataBlocks);
      const b = new Uint8Array(dataBlocks);
      return [
        decodeCountBlocks(mem, at, n, sb, withSlot, from, a, wasmSectorOps(rt.exports)) ? a : null,
        decodeCountBlocks(plain, 0, n, sb, withSlot, from, b, plainSectorOps) ? b : null,
      ];
    };
    seal();
    for (const got of both()) {
      expect(got).not.toBeNull();
      expect(Buffer.compare(got!.subarray(k * COUNTS_PER_BLOCK), want.subarray(k * COUNTS_PER_BLOCK))).toBe(0);
      expect(got!.subarray(0, k * COUNTS_PER_BLOCK).every((c) => c === 0)).toBe(true); // nothing before the run
    }
    seal();
    expect(both(slot + 1)).toEqual([null, null]); // another slot's
    seal();
    expect(both(slot, k + 1)).toEqual([null, null]); // another place's
    // One flipped byte anywhere in a used sector (header or counts) is refused by both.
    for (let trial = 0; trial < 200; trial++) {
      seal();
      // Sectors past the last count (in the last block) are not read: a flip there is not a flip in a used sector.
      const sector = Math.floor(rand() * ((n - 1) * SECTORS_PER_BLOCK + Math.ceil(1000 / (SECTOR_BYTES - 28))));
      const p = at + sector * SECTOR_BYTES + Math.floor(rand() * SECTOR_BYTES);
      mem[p] ^= 1 + Math.floor(rand() * 255);
      expect(both(), `byte ${p - at}`).toEqual([null, null]);
    }
  });

  it('loadCounts takes valid counts four at a time and refuses any count over 254, changing nothing', () => {
    const rand = prng(5);
    for (const n of [1, 3, 4, 5, 4096 + 3, 3 * 8192 + 1]) {
      const counts = new Uint8Array(n);
      for (let i = 0; i < n; i++) if (rand() < 0.3) counts[i] = 1 + Math.floor(rand() * 254);
      const used = counts.reduce((a, c) => a + (c > 0 ? 1 : 0), 0);
      const depot = new SlabDepot(100, 100 + n, 8192);
      expect(depot.loadCounts(counts.slice(), 0), `n ${n}`).toBe(true);
      expect(depot.usedBlocks).toBe(used);
      expect(depot.freeBlocks).toBe(n - used);
      for (let i = 0; i < n; i++) if (counts[i] !== depot.references(100 + i)) throw new Error(`n ${n}: block ${i} counts ${depot.references(100 + i)}, not ${counts[i]}`);
      // Allocation finds exactly the free blocks.
      for (let k = 0; k < n - used; k++) expect(counts[depot.allocate() - 100]).toBe(0);
      expect(() => depot.allocate()).toThrow(/all \d+ data blocks are in use/);
      for (const at of [0, n - 1, Math.floor(n / 2)]) {
        const bad = counts.slice();
        bad[at] = 255;
        const fresh = new SlabDepot(100, 100 + n, 8192);
        expect(fresh.loadCounts(bad, 0), `n ${n}, 255 at ${at}`).toBe(false);
        expect(fresh.freeBlocks).toBe(n);
      }
      expect(new SlabDepot(100, 100 + n, 8192).loadCounts(new Uint8Array(n + 1), 0)).toBe(false);
    }
  });
});

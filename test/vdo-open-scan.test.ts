/**
 * What create and open cost on a large, mostly empty volume (issue 17's
 * tests): deterministic counters, not timings.
 * - create on a new image file writes the superblocks and nothing else: the
 *   file is one hole, so the metadata region needs no zeroes, and the bytes
 *   allocated are the same at 64 GiB and 256 GiB logical;
 * - a clean open takes the reference count snapshot the close's checkpoint
 *   wrote: it reads the superblocks, journal, saved index and snapshots,
 *   never the block map, so 64 GiB and 1 TiB volumes on the same physical
 *   size do the same reads;
 * - with no usable snapshot (here: both destroyed after a crash), open
 *   rebuilds the counts from the block map tree: only the pages that exist
 *   are read (a crash costs reads in proportion to what was written, not to
 *   the logical size), leaves in consecutive blocks 128 per device read (not
 *   one read per page), and gets them right (vdo-count-snapshots.test.ts has
 *   the ordinary crash, which reads no map to count).
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { Volume } from '../dist/index.js';
import { prng, randomBytes } from './helpers/data.js';
import { volumeFiles } from './helpers/volume-files.js';
import { leaves, pageBlock, type ReadBlock } from './helpers/map-image.js';
import type { Superblock } from '../dist/vdo/encodings.js';
import { slotBlock } from '../dist/vdo/count-snapshots.js';

const BS = 4096;
const GiB = 2 ** 30;
const SCAN_RUN_PAGES = 128;
const MAP_PER_PAGE = 424;
/** Child PBNs an interior block map page holds. */
const CHILDREN = 968;
/** Leaves written one by one in the scan tests: every leaf under level 1 page 0, in consecutive blocks. */
const RUN = CHILDREN;
const { image, track, untrack } = volumeFiles('open-scan');

const allocated = (p: string): number => fs.statSync(p).blocks * 512;

describe('create and open of large, mostly empty volumes', () => {
  it('create on a new file writes the superblocks only: the same bytes at 64 GiB and 256 GiB logical', async () => {
    const seen: { writes: number; bytes: number }[] = [];
    for (const logical of [64 * GiB, 256 * GiB]) {
      const p = image();
      const v = await track(Volume.create(p, { logicalSize: logical, physicalSize: logical / 64, dedupe: false, workers: 1 }));
      seen.push({ writes: v.stats().biosOut.write, bytes: allocated(p) });
      await untrack(v, 'abandon');
    }
    expect(seen[0]).toEqual(seen[1]);
    expect(seen[0].writes).toBe(2);
    expect(seen[0].bytes).toBeLessThanOrEqual(64 << 10);
  });

  it('a clean open reads the same blocks at 64 GiB and 1 TiB logical (the count snapshot, no map scan), read-only or not', async () => {
    const seen: { reads: number; loaded: boolean; used: number }[] = [];
    for (const logical of [64 * GiB, 1024 * GiB]) {
      const p = image();
      let v = await track(Volume.create(p, { logicalSize: logical, physicalSize: 4 * GiB, workers: 1 }));
      await v.write(0, new Uint8Array(BS).fill(1));
      await v.write(logical - BS, new Uint8Array(BS).fill(2));
      await untrack(v, 'close');
      v = await track(Volume.open(p, { workers: 1, readOnly: true }));
      const loaded = (v as unknown as { referencesLoaded: boolean }).referencesLoaded;
      seen.push({ reads: v.stats().biosOut.read, loaded, used: v.stats().logicalBlocksUsed });
      await untrack(v, 'close');
      v = await track(Volume.open(p, { workers: 1 }));
      expect((v as unknown as { referencesLoaded: boolean }).referencesLoaded).toBe(true);
      expect(Buffer.from(await v.read(logical - BS, BS)).every((x) => x === 2)).toBe(true);
    }
    expect(seen[0]).toEqual(seen[1]);
    expect(seen[0]).toMatchObject({ loaded: true, used: 2 });
  }, 60_000);

  it('a count snapshot that fails its checksum is not taken: open rebuilds the counts from the map, and gets them right', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: 64 << 20, codec: 'lz4', workers: 1 }));
    const rand = prng(3);
    for (let lba = 0; lba < 2000; lba += 3) await v.write(lba * BS, lba % 2 === 0 ? randomBytes(BS, rand) : new Uint8Array(BS).fill(lba & 0xff));
    await v.flush();
    const before = v.stats();
    const sb = (v as unknown as { sb: Superblock }).sb;
    await untrack(v, 'close');
    const fd = fs.openSync(p, 'r+');
    const b = new Uint8Array(1);
    for (const slot of [0, 1]) {
      const at = slotBlock(sb, slot, 1) * BS + 100; // a count in each slot
      fs.readSync(fd, b, 0, 1, at);
      b[0] ^= 0x01;
      fs.writeSync(fd, b, 0, 1, at);
    }
    fs.closeSync(fd);
    // Read-only, the counts are never read: the usage the snapshot header records is right.
    v = await track(Volume.open(p, { workers: 1, readOnly: true }));
    expect({ lu: v.stats().logicalBlocksUsed, du: v.stats().dataBlocksUsed }).toEqual({ lu: before.logicalBlocksUsed, du: before.dataBlocksUsed });
    await untrack(v, 'close');
    // Writable, they load behind the open: the damaged snapshot is not taken; the rebuild is right.
    v = await track(Volume.open(p, { workers: 1 }));
    await v.loaded;
    expect((v as unknown as { referencesLoaded: boolean }).referencesLoaded).toBe(false);
    expect({ lu: v.stats().logicalBlocksUsed, du: v.stats().dataBlocksUsed }).toEqual({ lu: before.logicalBlocksUsed, du: before.dataBlocksUsed });
  });

  for (const crash of [false, true]) {
    it(`open after ${crash ? 'a crash, with no count snapshot: the tree pages that exist read, leaves 128 at a time (replayed pages from the cache)' : 'a clean close: the count snapshot'}, counts and data right`, async () => {
      const p = image();
      const logical = 64 * GiB;
      let v = await track(Volume.create(p, { logicalSize: logical, physicalSize: 2 * GiB, codec: 'lz4', workers: 1 }));
      const blocks = logical / BS;
      const rand = prng(crash ? 2 : 1);
      const written = new Map<number, Uint8Array>();
      // A zero block in each of the first RUN leaves, one by one: they are placed in consecutive
      // blocks, and a close writes them (the scan below reads them from the media, not the cache).
      const zero = new Uint8Array(BS);
      for (let leaf = 0; leaf < RUN; leaf++) {
        written.set(leaf * MAP_PER_PAGE, zero);
        await v.write(leaf * MAP_PER_PAGE * BS, zero);
      }
      await untrack(v, 'close');
      v = await track(Volume.open(p, { workers: 1 }));
      // Scattered over the whole map, some shared (dedupe), some packed, the last LBA too.
      const shared = randomBytes(BS, rand);
      for (let i = 0; i < 300; i++) {
        const lba = i === 0 ? blocks - 1 : Math.floor(rand() * blocks);
        const d = i % 5 === 0 ? shared : i % 3 === 0 ? new TextEncoder().encode(`text ${i} `.repeat(1000).slice(0, BS)) : randomBytes(BS, rand);
        written.set(lba, d);
        await v.write(lba * BS, d);
      }
      await v.flush();
      const before = v.stats();
      const sb = (v as unknown as { sb: Superblock }).sb;
      await untrack(v, crash ? 'abandon' : 'close');
      if (crash) {
        const fd = fs.openSync(p, 'r+');
        for (const slot of [0, 1]) fs.writeSync(fd, new Uint8Array(BS), 0, BS, slotBlock(sb, slot, 0) * BS);
        fs.closeSync(fd);
      }
      expect(sb.mapPages).toBe(1); // the map region holds the root; the rest of the tree is in the data region

      // The tree on the media: leaves in runs of consecutive leaves in consecutive blocks.
      const fd = fs.openSync(p, 'r');
      const read: ReadBlock = (pbn) => {
        const b = new Uint8Array(BS);
        fs.readSync(fd, b, 0, BS, pbn * BS);
        return b;
      };
      const stored = leaves(read, sb);
      let interior = 0;
      for (let level = 1; level <= 2; level++) {
        for (let i = 0; i < Math.ceil(blocks / MAP_PER_PAGE / CHILDREN ** level); i++) if (pageBlock(read, sb, level, i) !== 0) interior++;
      }
      fs.closeSync(fd);
      // Device reads a scan of them takes: one per run of consecutive leaves in consecutive blocks, at most SCAN_RUN_PAGES long.
      let runs = 0;
      let runLength = 0;
      for (let k = 0; k < stored.length; k++) {
        const [leaf, pbn] = stored[k];
        const prev = stored[k - 1];
        if (k > 0 && prev[0] === leaf - 1 && prev[1] === pbn - 1 && runLength < SCAN_RUN_PAGES) runLength++;
        else {
          runs++;
          runLength = 1;
        }
      }
      expect(stored.length).toBeGreaterThanOrEqual(RUN);
      // The leaves written one by one lie in consecutive blocks.
      expect(stored.slice(0, RUN).every(([leaf, pbn], k) => leaf === k && pbn === stored[0][1] + k)).toBe(true);

      v = await track(Volume.open(p, { workers: 1 }));
      const s = v.stats();
      expect((v as unknown as { referencesLoaded: boolean }).referencesLoaded).toBe(!crash);
      expect(s.logicalBlocksUsed).toBe(before.logicalBlocksUsed);
      expect(s.dataBlocksUsed).toBe(before.dataBlocksUsed);
      expect(s.overheadBlocksUsed).toBe(before.overheadBlocksUsed); // the tree pages, counted or placed again by recovery
      // The scan: the root, the interior pages and a read per run of leaves (the flat map of format 3
      // read all 39,570 pages of it, 128 at a time); a page at a time would be more than the leaves on
      // the media. A snapshot: no map read at all.
      const scan = crash ? 1 + interior + runs : 0;
      expect(s.biosOut.read).toBeLessThanOrEqual(scan + sb.journalBlocks + sb.indexBlocks + 16);
      if (crash) expect(s.biosOut.read).toBeLessThan(stored.length);
      for (const [lba, d] of written) expect(Buffer.from(await v.read(lba * BS, BS)).equals(Buffer.from(d)), `LBA ${lba}`).toBe(true);
    }, 60_000);
  }
});

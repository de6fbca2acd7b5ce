/**
 * The block map as a tree allocated on demand (issue 17, format 4): what
 * create and a clean open cost does not depend on the logical size
 * (deterministic device counters at 64 GiB, 1 TiB and 64 TiB), pages exist
 * only under LBAs ever written, scattered writes over a 64 TiB volume survive
 * a clean close and a crash, extents and scrub skip what was never written,
 * and a damaged interior page makes the LBAs under it ECORRUPT (never zeroes),
 * reported by scrub and `check`.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { Volume, checkVolume, nvme } from '../dist/index.js';
import { MAP_ENTRIES_PER_PAGE, type Superblock } from '../dist/vdo/encodings.js';
import { CHILDREN_PER_PAGE } from '../dist/vdo/map-tree.js';
import { pageBlock, fileReader } from './helpers/map-image.js';
import { codeOf } from './helpers/codes.js';
import { prng, randomBytes } from './helpers/data.js';
import { volumeFiles } from './helpers/volume-files.js';

const BS = 4096;
const GiB = 2 ** 30;
const TiB = 2 ** 40;
const { image, track, untrack } = volumeFiles('map-tree');
const sbOf = (v: Volume): Superblock => (v as unknown as { sb: Superblock }).sb;
/** Block map tree pages in use (overhead past the fixed metadata). */
const treePages = (v: Volume): number => v.stats().overheadBlocksUsed - sbOf(v).dataStart;

/** LBAs one level-2 page spans: 968² leaves. */
const L2_SPAN = CHILDREN_PER_PAGE ** 2 * MAP_ENTRIES_PER_PAGE;

describe('block map tree', () => {
  it('create and a clean open do the same device I/O at 64 GiB, 1 TiB and 64 TiB logical', async () => {
    const seen: Record<string, number>[] = [];
    for (const logical of [64 * GiB, TiB, 64 * TiB]) {
      const p = image();
      let v = await track(Volume.create(p, { logicalSize: logical, physicalSize: GiB, codec: 'lz4', workers: 1 }));
      const created = v.stats().biosOut;
      const last = logical / BS - 1;
      const d = randomBytes(BS, prng(7));
      await v.write(0, d);
      await v.write(last * BS, d);
      await untrack(v, 'close');
      v = await track(Volume.open(p, { workers: 1 }));
      await v.loaded; // what the open leaves to the background (the dedupe index) counts too
      const opened = v.stats().biosOut;
      expect(Buffer.from(await v.read(last * BS, BS)).equals(Buffer.from(d))).toBe(true);
      expect(Buffer.from(await v.read(0, BS)).equals(Buffer.from(d))).toBe(true);
      // Each LBA: its data block and at most its leaf, level-1 and level-2 pages, besides the root (64 TiB puts the two under different level-2 pages).
      expect(v.stats().biosOut.read - opened.read).toBeLessThanOrEqual(2 + 1 + 2 * 3);
      seen.push({
        createReads: created.read, createWrites: created.write, openReads: opened.read, openWrites: opened.write,
        allocatedKiB: Math.ceil((fs.statSync(p).blocks * 512) / 1024 / 64),
      });
      await untrack(v, 'close');
    }
    expect(seen[1]).toEqual(seen[0]);
    expect(seen[2]).toEqual(seen[0]);
    expect(seen[0].createWrites).toBe(2); // the superblocks: the root is a hole, read as "no children"
  });

  it('scattered writes over 64 TiB: a page per level per subtree, exact after a clean close and after a crash; extents and scrub skip the rest', async () => {
    const p = image();
    const logical = 64 * TiB;
    const blocks = logical / BS;
    let v = await track(Volume.create(p, { logicalSize: logical, physicalSize: GiB, codec: 'lz4', workers: 1 }));
    const rand = prng(11);
    // Two leaves under one level-1 page, then one LBA in each of two far level-2 subtrees.
    const lbas = [0, 1000, 17 * L2_SPAN + 5, blocks - 1];
    const data = lbas.map(() => randomBytes(BS, rand));
    for (let i = 0; i < lbas.length; i++) await v.write(lbas[i] * BS, data[i]);
    await v.flush();
    // Leaves 0, 2, and one each far away; a level-1 and a level-2 page for each of the three subtrees.
    expect(treePages(v)).toBe(4 + 3 + 3);
    const expectAll = async (vol: Volume): Promise<void> => {
      for (let i = 0; i < lbas.length; i++) expect(Buffer.from(await vol.read(lbas[i] * BS, BS)).equals(Buffer.from(data[i])), `LBA ${lbas[i]}`).toBe(true);
      expect(Buffer.from(await vol.read(1001 * BS, BS)).every((x) => x === 0)).toBe(true);
    };
    await expectAll(v);
    await untrack(v, 'close');

    v = await track(Volume.open(p, { workers: 1 }));
    await expectAll(v);
    expect(treePages(v)).toBe(10);
    const ext = await v.extents(0, logical);
    expect(ext.filter((e) => e.type === 'data').map((e) => e.offset / BS)).toEqual(lbas);
    expect(ext.reduce((s, e) => s + e.length, 0)).toBe(logical);
    const progress: number[] = [];
    const report = await v.scrub({ onProgress: (done) => progress.push(done) });
    expect(report).toMatchObject({ logicalBlocks: blocks, blocksChecked: 4, bad: [] });
    expect(progress.at(-1)).toBe(blocks);
    expect(progress.length).toBeLessThan(20);
    // A write to a new subtree, then a crash: the dirty open takes the counts of the last checkpoint and replays the rest.
    const more = 40 * L2_SPAN + 77;
    const moreData = randomBytes(BS, rand);
    await v.write(more * BS, moreData);
    await v.flush();
    await untrack(v, 'abandon');

    v = await track(Volume.open(p, { workers: 1 }));
    expect((v as unknown as { referencesLoaded: boolean }).referencesLoaded).toBe(true);
    await expectAll(v);
    expect(Buffer.from(await v.read(more * BS, BS)).equals(Buffer.from(moreData))).toBe(true);
    expect(treePages(v)).toBe(13);
    expect(v.stats().dataBlocksUsed).toBe(5);
    await untrack(v, 'close');
    const r = await checkVolume(p, { scrub: true });
    expect(r.problems).toEqual([]);
    expect(r).toMatchObject({ ok: true, logicalBlocksUsed: 5, dataBlocksUsed: 5 });
  }, 60_000);

  it('a damaged level-1 page: its LBAs read ECORRUPT, the rest exact; scrub and check report it', async () => {
    const p = image();
    const logical = 4 * TiB;
    let v = await track(Volume.create(p, { logicalSize: logical, physicalSize: GiB, codec: 'lz4', workers: 1 }));
    const near = 3;
    const far = 2 * L2_SPAN + 9;
    const a = randomBytes(BS, prng(1));
    const b = randomBytes(BS, prng(2));
    await v.write(near * BS, a);
    await v.write(far * BS, b);
    const sb = sbOf(v);
    await untrack(v, 'close');
    // Flip a byte in the level-1 page over `far` (its first sector: the slot naming far's leaf).
    const l1 = pageBlock(fileReader(p), sb, 1, Math.floor(far / MAP_ENTRIES_PER_PAGE / CHILDREN_PER_PAGE));
    expect(l1).toBeGreaterThanOrEqual(sb.dataStart);
    const fd = fs.openSync(p, 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, l1 * BS + 100);
    byte[0] ^= 0x10;
    fs.writeSync(fd, byte, 0, 1, l1 * BS + 100);
    fs.closeSync(fd);

    v = await track(Volume.open(p, { workers: 1 }));
    expect(Buffer.from(await v.read(near * BS, BS)).equals(Buffer.from(a))).toBe(true);
    expect(await codeOf(v.read(far * BS, BS))).toBe('ECORRUPT');
    const report = await v.scrub();
    expect(report.blocksChecked).toBe(1);
    expect(report.bad).toHaveLength(1);
    expect(report.bad[0]).toMatchObject({ pbn: -1, slot: -1 });
    expect(report.bad[0].lba).toBeLessThanOrEqual(far);
    expect(report.bad[0].reason).toMatch(/level 1 page \d+ sector 0 fails its checksum/);
    await untrack(v, 'close');
    const r = await checkVolume(p);
    expect(r.ok).toBe(false);
    expect(r.problems.some((q) => /block map level 1 page/.test(q.where) && /fails its checksum/.test(q.what))).toBe(true);
  }, 60_000);

  // Checkpoints in mid-stream (a 4-page cache, an 8-block journal) place pages in many subtrees; a power
  // cut then drops or tears what was not flushed. The tree must come back with every flushed block, the
  // counts must hold its pages (a page counted free would be handed out again and overwritten), and the
  // volume must take more writes without disturbing anything.
  for (const mode of ['drop', 'tear'] as const) {
    it(`power cuts (${mode}) with tree pages being placed: flushed data exact, later writes old or new, new writes after recovery disturb nothing`, async () => {
      const logical = 64 * TiB;
      const blocks = logical / BS;
      for (let seed = 1; seed <= 3; seed++) {
        const rand = prng(100 + seed);
        const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 << 20 }));
        let v = await Volume.create(fault, { logicalSize: logical, physicalSize: 64 << 20, codec: 'lz4', cachePages: 4, journalBlocks: 8, workers: 1 });
        // LBAs near 24 places spread over the volume: leaves shared, level-1 and level-2 pages shared and not.
        const bases = Array.from({ length: 24 }, () => Math.floor(rand() * (blocks - 4096)));
        const lbaAt = (): number => bases[Math.floor(rand() * bases.length)] + Math.floor(rand() * 4096);
        const flushed = new Map<number, Uint8Array>();
        for (let i = 0; i < 160; i++) {
          const lba = lbaAt();
          const d = i % 3 === 0 ? randomBytes(BS, rand) : new TextEncoder().encode(`block ${seed}.${i} `.repeat(500).slice(0, BS));
          flushed.set(lba, d);
          await v.write(lba * BS, d);
        }
        await v.flush();
        const after = new Map<number, Uint8Array>();
        for (let i = 0; i < 40; i++) {
          const lba = i % 2 === 0 ? lbaAt() : Math.floor(rand() * blocks);
          const d = randomBytes(BS, rand);
          after.set(lba, d);
          await v.write(lba * BS, d);
        }
        fault.powerCut({ mode, seed });
        await v.abandon();
        fault.powerOn();
        v = await Volume.open(fault, { cachePages: 4, workers: 1 });
        const zero = new Uint8Array(BS);
        for (const [lba, d] of after) {
          const got = Buffer.from(await v.read(lba * BS, BS));
          expect(got.equals(Buffer.from(d)) || got.equals(Buffer.from(flushed.get(lba) ?? zero)), `seed ${seed}: LBA ${lba} after the cut`).toBe(true);
        }
        for (const [lba, d] of flushed) {
          if (after.has(lba)) continue;
          expect(Buffer.from(await v.read(lba * BS, BS)).equals(Buffer.from(d)), `seed ${seed}: flushed LBA ${lba}`).toBe(true);
        }
        // More writes in new places: new tree pages and data blocks come from blocks the counts say are free.
        const more = new Map<number, Uint8Array>();
        for (let i = 0; i < 40; i++) {
          const lba = Math.floor(rand() * blocks);
          if (flushed.has(lba) || after.has(lba)) continue;
          const d = randomBytes(BS, rand);
          more.set(lba, d);
          await v.write(lba * BS, d);
        }
        await v.close();
        v = await Volume.open(fault, { workers: 1 });
        for (const [lba, d] of more) expect(Buffer.from(await v.read(lba * BS, BS)).equals(Buffer.from(d)), `seed ${seed}: LBA ${lba} written after recovery`).toBe(true);
        for (const [lba, d] of flushed) {
          if (after.has(lba)) continue;
          expect(Buffer.from(await v.read(lba * BS, BS)).equals(Buffer.from(d)), `seed ${seed}: flushed LBA ${lba}, after more writes`).toBe(true);
        }
        const report = await v.scrub();
        expect(report.bad).toEqual([]);
        await v.close();
      }
    }, 120_000);
  }
});

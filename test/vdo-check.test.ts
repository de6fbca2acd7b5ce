/**
 * The offline volume check (src/vdo/check.ts): a volume closed cleanly, or
 * abandoned with journal entries to replay, checks clean with the counts its
 * own stats() gave; each kind of damage is found and named where it is. The
 * volumes are made with the built package (its workers load dist/); the check
 * and the layout helpers used to find what to damage come from src/.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlashpackError, Volume } from '../dist/index.js';
import { FlashpackError as SrcFlashpackError } from '../src/errors.js';
import type { VolumeStats } from '../dist/index.js';
import { slotBlock } from '../dist/vdo/count-snapshots.js';
import { checkVolume, type CheckReport } from '../src/vdo/check.js';
import {
  BLOCK_BYTES, CODECS, ENTRY_MAP, JOURNAL_MAGIC, MAP_ENTRIES_PER_PAGE, MAP_ENTRIES_PER_SECTOR, MAP_MAGIC,
  SECTOR_BYTES, SECTOR_HEADER_BYTES, SECTOR_VALID, STATE_COMPRESSED_BASE, decodeSuperblock, mapEntryAt, openSector,
  decodeJournalEntry, packedFragment, sealSector, type JournalEntry, type SectorHeader, type Superblock,
} from '../src/vdo/encodings.js';
import { prng, randomBytes } from './helpers/data.js';
import { fileReader, leafBlock, leaves, pageBlock } from './helpers/map-image.js';

const BS = BLOCK_BYTES;
const small = { workers: 1, ioWorkers: 1 } as const;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-check-'));
let n = 0;
const image = (): string => path.join(dir, `v${n++}.img`);

const live = new Set<Volume>();
async function track(p: Promise<Volume>): Promise<Volume> {
  const v = await p;
  live.add(v);
  return v;
}
async function closeVol(v: Volume): Promise<void> {
  live.delete(v);
  await v.close();
}
afterEach(async () => {
  for (const v of [...live]) await v.close().catch(() => v.abandon());
  live.clear();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// ---- data -------------------------------------------------------------------------------
const WORDS = ['block', 'volume', 'journal', 'slab', 'depot', 'packer', 'fragment', 'dedupe', 'the', 'of', 'and', 'map', 'page', 'flush'];
const enc = new TextEncoder();
/** Distinct, compressible text behind a unique tag. */
function textBlock(rand: () => number, tag: string): Uint8Array {
  let s = `${tag}:`;
  while (s.length < BS) s += WORDS[Math.floor(rand() * WORDS.length)] + (rand() < 0.1 ? '\n' : ' ');
  return enc.encode(s.slice(0, BS));
}
/** Distinct and very compressible (a fragment of ~100 bytes). */
function repetitiveBlock(tag: string): Uint8Array {
  return enc.encode(`${tag}|`.padEnd(BS, 'all work and no play makes jack a dull boy. '));
}

/** Writes `blocks` blocks from LBA 0: text, random, zero and duplicate blocks, then overwrites and discards some. */
async function fill(v: Volume, seed: number, blocks = 600): Promise<void> {
  const rand = prng(seed);
  const dups = [0, 1, 2, 3].map((i) => textBlock(rand, `dup${i}`));
  const batch = 16;
  for (let lba = 0; lba < blocks; lba += batch) {
    const buf = new Uint8Array(batch * BS);
    for (let i = 0; i < batch; i++) {
      const r = rand();
      const b = r < 0.4 ? textBlock(rand, `t${seed}.${lba + i}`) : r < 0.6 ? randomBytes(BS, rand) : r < 0.75 ? null : dups[Math.floor(rand() * dups.length)];
      if (b !== null) buf.set(b, i * BS);
    }
    await v.write(lba * BS, buf);
  }
  for (let lba = 10; lba < 20; lba++) await v.write(lba * BS, textBlock(rand, `again${lba}`));
  await v.discard(100 * BS, 50 * BS);
  await v.discard(300 * BS, 3 * BS);
}

/** A volume made, filled, flushed and closed (or abandoned): its path, superblock and the stats taken before it went. */
async function made(opts: { codec?: 'lz4' | 'deflate'; abandon?: boolean; logicalSize?: number; data?: (v: Volume) => Promise<void> } = {}): Promise<{ p: string; sb: Superblock; stats: VolumeStats }> {
  const p = image();
  const v = await track(Volume.create(p, { logicalSize: opts.logicalSize ?? 4 << 20, codec: opts.codec ?? 'lz4', ...small }));
  await (opts.data ?? ((w) => fill(w, 7)))(v);
  await v.flush();
  const stats = v.stats();
  if (opts.abandon === true) {
    live.delete(v);
    await v.abandon();
  } else await closeVol(v);
  return { p, sb: superblockOf(p), stats };
}

// ---- the image, read and damaged with node:fs ---------------------------------------------------
const readBlock = (p: string, pbn: number): Uint8Array => fileReader(p)(pbn);
function writeAt(p: string, offset: number, bytes: Uint8Array): void {
  const fd = fs.openSync(p, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}
function flipByte(p: string, offset: number): void {
  const b = new Uint8Array(1);
  const fd = fs.openSync(p, 'r+');
  try {
    fs.readSync(fd, b, 0, 1, offset);
    b[0] ^= 0x5a;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}
function superblockOf(p: string): Superblock {
  const copies = [0, 1].map((c) => decodeSuperblock(readBlock(p, c))).filter((s): s is Superblock => typeof s !== 'string');
  expect(copies.length).toBeGreaterThan(0);
  return copies.reduce((a, b) => (b.generation > a.generation ? b : a));
}
/** The image's blocks as the map-image helpers read them. */
const readerOf = fileReader;
/** The block holding leaf `leaf` of a closed image (it must exist). */
function leafAt(p: string, sb: Superblock, leaf: number): number {
  const pbn = leafBlock(readerOf(p), sb, leaf);
  expect(pbn, `leaf ${leaf}`).toBeGreaterThanOrEqual(sb.dataStart);
  return pbn;
}
/** Every mapped LBA of a cleanly closed image: [lba, pbn, state]. */
function mappings(p: string, sb: Superblock): [number, number, number][] {
  const out: [number, number, number][] = [];
  const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
  for (const [page, pbn] of leaves(readerOf(p), sb)) {
    const b = readBlock(p, pbn);
    for (let e = 0; e < MAP_ENTRIES_PER_PAGE; e++) {
      const lba = page * MAP_ENTRIES_PER_PAGE + e;
      if (lba >= sb.logicalBlocks || openSector(b, Math.floor(e / MAP_ENTRIES_PER_SECTOR), MAP_MAGIC, sb.nonce, h) !== SECTOR_VALID) continue;
      const at = mapEntryAt(e);
      const pbn = new DataView(b.buffer).getUint32(at, true);
      if (pbn !== 0 || b[at + 4] !== 0) out.push([lba, pbn, b[at + 4]]);
    }
  }
  return out;
}
/** Ring position of the journal block recovery starts at (the highest head any sector names). */
function journalHead(p: string, sb: Superblock): { i: number; head: number } {
  const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
  let head = 0;
  for (let i = 0; i < sb.journalBlocks; i++) {
    if (openSector(readBlock(p, sb.journalStart + i), 0, JOURNAL_MAGIC, sb.nonce, h) === SECTOR_VALID) head = Math.max(head, h.aux);
  }
  return { i: head % sb.journalBlocks, head };
}
const problemsAt = (r: CheckReport, where: string | RegExp): CheckReport['problems'] =>
  r.problems.filter((x) => (typeof where === 'string' ? x.where === where : where.test(x.where)));

/** The FlashpackError a promise rejects with (the volume's comes from dist/, the check's from src/). */
async function failure(p: Promise<unknown>): Promise<FlashpackError> {
  try {
    await p;
  } catch (err) {
    expect(err instanceof FlashpackError || err instanceof SrcFlashpackError, String(err)).toBe(true);
    return err as FlashpackError;
  }
  return expect.fail('expected a FlashpackError, but it succeeded');
}

// ---- tests ----------------------------------------------------------------------------------------
describe('checkVolume: a healthy volume', () => {
  for (const codec of ['lz4', 'deflate'] as const) {
    it(`${codec}: a filled, closed volume is ok and clean, and its counts equal stats() taken before close`, async () => {
      const { p, stats } = await made({ codec });
      const r = await checkVolume(p);
      expect(r.problems).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.clean).toBe(true);
      expect(r.journalEntriesToReplay).toBe(0);
      expect(r.logicalBlocks).toBe(stats.logicalBlocks);
      expect(r.physicalBlocks).toBe(stats.physicalBlocks);
      expect(r.logicalBlocksUsed).toBe(stats.logicalBlocksUsed);
      expect(r.dataBlocksUsed).toBe(stats.dataBlocksUsed);
      expect(r.packedBlocks).toBeGreaterThan(0);
      expect(r.generation).toBe(2);
    });
  }

  it('a volume abandoned after a flush has entries to replay, checks ok, and its counts (after replay) equal stats() and a read-only open', async () => {
    const { p, stats } = await made({ abandon: true });
    const r = await checkVolume(p);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.clean).toBe(false);
    expect(r.journalEntriesToReplay).toBeGreaterThan(0);
    expect(r.logicalBlocksUsed).toBe(stats.logicalBlocksUsed);
    expect(r.dataBlocksUsed).toBe(stats.dataBlocksUsed);
    // The journal's data checks, applied over the map, match the data: scrub is clean, offline and in the volume.
    expect((await checkVolume(p, { scrub: true })).problems).toEqual([]);
    const ro = await track(Volume.open(p, { ...small, readOnly: true }));
    expect(ro.stats().logicalBlocksUsed).toBe(r.logicalBlocksUsed);
    expect(ro.stats().dataBlocksUsed).toBe(r.dataBlocksUsed);
    expect((await ro.scrub()).bad).toEqual([]);
    await closeVol(ro);
  });

  it('a journaled mapping whose data did not reach the media is not applied, as recovery does: the counts agree with a read-only open', async () => {
    const rand = prng(11);
    const { p, sb, stats } = await made({ abandon: true, data: (v) => v.write(0, randomBytes(3 * BS, rand)) });
    const b = readBlock(p, sb.journalStart + journalHead(p, sb).i);
    const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
    expect(openSector(b, 0, JOURNAL_MAGIC, sb.nonce, h)).toBe(SECTOR_VALID);
    const e: JournalEntry = { kind: 0, lba: 0, count: 0, newPbn: 0, newState: 0, oldPbn: 0, oldState: 0, dataCheck: 0 };
    const found = Array.from({ length: h.count }, (_, k) => (decodeJournalEntry(b, k, e), { ...e })).find((x) => x.kind === ENTRY_MAP && x.lba === 0);
    expect(found?.newState).toBe(1);
    flipByte(p, found!.newPbn * BS + 100);
    const r = await checkVolume(p);
    expect(r.problems).toEqual([]);
    expect(r.journalEntriesToReplay).toBeGreaterThan(0);
    expect(r.logicalBlocksUsed).toBe(stats.logicalBlocksUsed - 1);
    expect(r.dataBlocksUsed).toBe(stats.dataBlocksUsed - 1);
    const ro = await track(Volume.open(p, { ...small, readOnly: true }));
    expect(ro.stats().logicalBlocksUsed).toBe(r.logicalBlocksUsed);
    expect(ro.stats().dataBlocksUsed).toBe(r.dataBlocksUsed);
    expect((await ro.read(0, BS)).every((x) => x === 0)).toBe(true);
    await closeVol(ro);
  });

  it('reports progress at most every ~100 ms, ending at the blocks it read; decode: false reads the same blocks', async () => {
    const { p } = await made();
    const calls: [number, number][] = [];
    const r = await checkVolume(p, { onProgress: (done, total) => calls.push([done, total]) });
    expect(calls.length).toBeGreaterThan(0);
    for (const [done, total] of calls) expect(done).toBeLessThanOrEqual(total);
    expect(calls[calls.length - 1]).toEqual([r.blocksRead, r.blocksRead]);
    const quick = await checkVolume(p, { decode: false });
    expect(quick.ok).toBe(true);
    expect(quick.blocksRead).toBe(r.blocksRead);
  });

  it('a 1 GiB volume checks in well under a few seconds', async () => {
    const { p, stats } = await made({ logicalSize: 1 << 30, data: (v) => fill(v, 3, 8192) });
    const t0 = performance.now();
    const r = await checkVolume(p);
    const ms = performance.now() - t0;
    expect(r.ok).toBe(true);
    expect(r.dataBlocksUsed).toBe(stats.dataBlocksUsed);
    expect(ms).toBeLessThan(3000);
  });
});

describe('checkVolume: damage is found and named where it is', () => {
  it('a byte in the reference count snapshot: reported, and a clean open rebuilds the counts from the map', async () => {
    const { p, sb, stats } = await made();
    // The first count block of both slots: whichever the open would take.
    for (const slot of [0, 1]) flipByte(p, slotBlock(sb, slot, 1) * BS + 20);
    const r = await checkVolume(p);
    expect(r.problems).toEqual([
      {
        where: expect.stringMatching(/^reference count snapshot in slot [01] \(blocks \d+–\d+, tag \d+\)$/),
        what: expect.stringMatching(/^count block 0 \(block \d+\) fails its checksum or belongs elsewhere: an open rebuilds the counts from the block map$/),
      },
    ]);
    const v = await track(Volume.open(p, { ...small, readOnly: true }));
    expect({ lu: v.stats().logicalBlocksUsed, du: v.stats().dataBlocksUsed }).toEqual({ lu: stats.logicalBlocksUsed, du: stats.dataBlocksUsed });
    await closeVol(v);
  });

  it('a byte in a block map sector: that page and sector, with its LBAs', async () => {
    const { p, sb } = await made();
    const leaf0 = leafAt(p, sb, 0);
    flipByte(p, leaf0 * BS + 1 * SECTOR_BYTES + 200);
    const r = await checkVolume(p);
    expect(r.ok).toBe(false);
    expect(problemsAt(r, `block map page 0 (PBN ${leaf0}) sector 1`)).toEqual([
      { where: `block map page 0 (PBN ${leaf0}) sector 1`, what: 'fails its checksum (reads of LBAs 53–105 are ECORRUPT)' },
    ]);
  });

  it('a byte in an interior block map page: that page and sector, with every LBA under it; the volume reads them ECORRUPT', async () => {
    const { p, sb } = await made();
    const l1 = pageBlock(readerOf(p), sb, 1, 0);
    expect(l1).toBeGreaterThanOrEqual(sb.dataStart);
    flipByte(p, l1 * BS + SECTOR_HEADER_BYTES); // sector 0, slot 0: leaf 0's PBN
    const r = await checkVolume(p);
    expect(r.ok).toBe(false);
    // Sector 0 of a level 1 page names leaves 0–120: LBAs 0–51303.
    expect(problemsAt(r, `block map level 1 page 0 (PBN ${l1}) sector 0`)).toEqual([
      { where: `block map level 1 page 0 (PBN ${l1}) sector 0`, what: `fails its checksum (reads of LBAs 0–${121 * MAP_ENTRIES_PER_PAGE - 1} are ECORRUPT)` },
    ]);
    const v = await track(Volume.open(p, { ...small, readOnly: true }));
    for (const lba of [0, 500, 1000]) expect((await failure(v.read(lba * BS, BS))).code).toBe('ECORRUPT'); // mapped, mapped, never written
    await closeVol(v);
  });

  it('a superblock copy: that copy and why; the rest is checked with the other copy', async () => {
    const { p, stats } = await made();
    flipByte(p, 1 * BS + 100);
    const r = await checkVolume(p);
    expect(r.problems).toEqual([{ where: 'superblock copy B (block 1)', what: expect.stringMatching(/^checksum /) }]);
    expect(r.logicalBlocksUsed).toBe(stats.logicalBlocksUsed);
  });

  it('packed blocks: bad magic, a codec byte, a fragment size and fragment bytes, each named with the PBN, slot and LBAs', async () => {
    const { p, sb } = await made({ data: async (v) => {
      for (let lba = 0; lba < 200; lba++) await v.write(lba * BS, repetitiveBlock(`r${lba}`));
    } });
    const packed = new Map<number, [number, number][]>(); // PBN → [lba, slot]
    for (const [lba, pbn, state] of mappings(p, sb)) {
      if (state < STATE_COMPRESSED_BASE) continue;
      if (!packed.has(pbn)) packed.set(pbn, []);
      packed.get(pbn)!.push([lba, state - STATE_COMPRESSED_BASE]);
    }
    const [magic, codec, size, bytes] = [...packed.keys()];
    expect(bytes).toBeDefined();
    flipByte(p, magic * BS);
    writeAt(p, codec * BS + 5, Uint8Array.of(CODECS.indexOf('deflate')));
    const [sizeLba, sizeSlot] = packed.get(size)![0];
    writeAt(p, size * BS + 8 + sizeSlot * 2, Uint8Array.of(0xff, 0xff));
    const [bytesLba, bytesSlot] = packed.get(bytes)![0];
    const range = packedFragment(readBlock(p, bytes), bytesSlot) as [number, number];
    writeAt(p, bytes * BS + range[0], new Uint8Array(range[1] - range[0]).fill(0xff));

    const r = await checkVolume(p);
    expect(r.ok).toBe(false);
    const lbasOf = (pbn: number): string => packed.get(pbn)!.map(([lba]) => lba).slice(0, 4).join(', ');
    expect(problemsAt(r, `PBN ${magic}`)).toEqual([{ where: `PBN ${magic}`, what: expect.stringContaining(`is not one (magic`) }]);
    expect(problemsAt(r, `PBN ${magic}`)[0].what).toContain(`LBAs ${lbasOf(magic)}`);
    expect(problemsAt(r, `PBN ${codec}`)).toEqual([{ where: `PBN ${codec}`, what: expect.stringContaining('packed with codec deflate; the volume\'s codec is lz4') }]);
    expect(problemsAt(r, `LBA ${sizeLba} → PBN ${size} slot ${sizeSlot}`)).toEqual([
      { where: `LBA ${sizeLba} → PBN ${size} slot ${sizeSlot}`, what: expect.stringMatching(/overruns the block; referenced by LBA/) },
    ]);
    expect(problemsAt(r, `LBA ${bytesLba} → PBN ${bytes} slot ${bytesSlot}`)).toEqual([
      { where: `LBA ${bytesLba} → PBN ${bytes} slot ${bytesSlot}`, what: expect.stringMatching(/^does not decode: /) },
    ]);
    // Nothing else is wrong: no map, journal or superblock problem.
    expect(r.problems.every((x) => /^(PBN|LBA \d+ →) /.test(x.where))).toBe(true);
  });

  it('a journal sector in the part recovery replays: that block and sector, and the volume does not open', async () => {
    const { p, sb } = await made({ abandon: true });
    const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
    const { i, head } = journalHead(p, sb);
    expect(openSector(readBlock(p, sb.journalStart + i), 0, JOURNAL_MAGIC, sb.nonce, h)).toBe(SECTOR_VALID);
    expect(h.key).toBe(head);
    expect(h.count).toBeGreaterThan(0);
    flipByte(p, (sb.journalStart + i) * BS + SECTOR_HEADER_BYTES + 5);
    const r = await checkVolume(p);
    expect(r.ok).toBe(false);
    expect(r.clean).toBe(false);
    expect(problemsAt(r, `journal block ${i} (sequence ${head}) sector 0`)).toEqual([
      { where: `journal block ${i} (sequence ${head}) sector 0`, what: expect.stringMatching(/fails its checksum; it is in the part recovery replays/) },
    ]);
    expect((await failure(Volume.open(p, { ...small, readOnly: true }))).code).toBe('ECORRUPT');
  });

  it('a block map entry (in a sector with a valid checksum) pointing outside the data region: that LBA, page and sector', async () => {
    const { p, sb } = await made();
    const leaf0 = leafAt(p, sb, 0);
    const b = readBlock(p, leaf0);
    new DataView(b.buffer).setUint32(mapEntryAt(5), sb.physicalBlocks + 10, true);
    b[mapEntryAt(5) + 4] = 1;
    sealSector(b, 0, MAP_MAGIC, sb.nonce, { index: 0, count: 0, key: 0, aux: 0 });
    writeAt(p, leaf0 * BS, b);
    const r = await checkVolume(p);
    expect(problemsAt(r, /^LBA 5 /)).toEqual([
      { where: 'LBA 5 (block map page 0 sector 0 entry 5)', what: expect.stringContaining(`maps to PBN ${sb.physicalBlocks + 10}, outside the data region [${sb.dataStart}, ${sb.physicalBlocks})`) },
    ]);
    // A clean open takes the count snapshot and does not scan the map: the entry is ECORRUPT where it is used.
    const v = await track(Volume.open(p, { ...small, readOnly: true }));
    expect((await failure(v.read(5 * BS, BS))).message).toMatch(/LBA 5 maps to PBN \d+, outside the data region/);
    await closeVol(v);
    // Without a snapshot, open scans the map and refuses the volume.
    for (const slot of [0, 1]) writeAt(p, slotBlock(sb, slot, 0) * BS, new Uint8Array(BS));
    expect((await failure(Volume.open(p, { ...small, readOnly: true }))).code).toBe('ECORRUPT');
  });

  it('a data block with more than 254 references, and one referenced both whole and as a packed block: that PBN, with its LBAs', async () => {
    const { p, sb } = await made({ data: (v) => v.write(0, randomBytes(BS, prng(5))) });
    const [[lba0, pbn, state]] = mappings(p, sb);
    expect([lba0, state]).toEqual([0, 1]);
    const b = new Uint8Array(BS);
    for (let e = 0; e < MAP_ENTRIES_PER_PAGE; e++) {
      new DataView(b.buffer).setUint32(mapEntryAt(e), pbn, true);
      b[mapEntryAt(e) + 4] = e === 7 ? STATE_COMPRESSED_BASE : 1;
    }
    for (let s = 0; s < 8; s++) sealSector(b, s, MAP_MAGIC, sb.nonce, { index: s, count: 0, key: 0, aux: 0 });
    writeAt(p, leafAt(p, sb, 0) * BS, b);
    const r = await checkVolume(p);
    expect(r.dataBlocksUsed).toBe(1);
    expect(problemsAt(r, `PBN ${pbn}`).map((x) => x.what)).toEqual([
      expect.stringMatching(new RegExp(`^has a count of 1 in the reference count snapshot in slot [01] \\(blocks \\d+–\\d+, tag \\d+\\); the block map references it ${MAP_ENTRIES_PER_PAGE} times \\(a clean open takes the snapshot\\)$`)),
      `has ${MAP_ENTRIES_PER_PAGE} references, more than 254 (an open that rebuilds the counts fails: ECORRUPT); referenced by LBAs 0, 1, 2, 3 and ${MAP_ENTRIES_PER_PAGE - 4} more`,
      `is referenced both as an uncompressed block and as a packed block; referenced by LBAs 0, 1, 2, 3 and ${MAP_ENTRIES_PER_PAGE - 4} more`,
      expect.stringContaining('is referenced as a packed block but is not one'),
    ]);
    // A clean open takes the count snapshot: the forged entries (no data check recorded) read ECORRUPT, never the block's bytes.
    const v = await track(Volume.open(p, { ...small, readOnly: true }));
    expect((await failure(v.read(1 * BS, BS))).code).toBe('ECORRUPT');
    expect((await failure(v.read(7 * BS, BS))).code).toBe('ECORRUPT');
    await closeVol(v);
    for (const slot of [0, 1]) writeAt(p, slotBlock(sb, slot, 0) * BS, new Uint8Array(BS));
    expect((await failure(Volume.open(p, { ...small, readOnly: true }))).code).toBe('ECORRUPT');
  });

  it('a sector sealed for another page: named as such', async () => {
    const { p, sb } = await made();
    const leaf0 = leafAt(p, sb, 0);
    const b = readBlock(p, leaf0);
    sealSector(b, 2, MAP_MAGIC, sb.nonce, { index: 2, count: 0, key: 1, aux: 0 }); // leaf 1's
    sealSector(b, 3, MAP_MAGIC, sb.nonce, { index: 3, count: 0, key: 0, aux: 1 }); // page 0 of level 1's: same index, another level
    writeAt(p, leaf0 * BS, b);
    const r = await checkVolume(p);
    expect(problemsAt(r, `block map page 0 (PBN ${leaf0}) sector 2`)).toEqual([
      { where: `block map page 0 (PBN ${leaf0}) sector 2`, what: "holds block map page 1's sector (its header), not this page's (reads of LBAs 106–158 are ECORRUPT)" },
    ]);
    expect(problemsAt(r, `block map page 0 (PBN ${leaf0}) sector 3`)).toEqual([
      { where: `block map page 0 (PBN ${leaf0}) sector 3`, what: "holds block map level 1 page 0's sector (its header), not this page's (reads of LBAs 159–211 are ECORRUPT)" },
    ]);
  });

  it('an image shorter than its superblock says', async () => {
    const { p, sb } = await made();
    fs.truncateSync(p, (sb.physicalBlocks - 3) * BS);
    const r = await checkVolume(p);
    expect(r.problems).toEqual([{ where: 'image', what: `is ${(sb.physicalBlocks - 3) * BS} bytes; the superblock says ${sb.physicalBlocks} blocks (${sb.physicalBlocks * BS} bytes)` }]);
  });

  it('more than 1,000 problems: 1,000 listed and one entry counting the rest', async () => {
    const { p, sb } = await made({ data: (v) => fill(v, 7, 1024) }); // every LBA written: all 3 leaves exist
    const written = leaves(readerOf(p), sb);
    expect(written.map(([leaf]) => leaf)).toEqual([0, 1, 2]);
    for (const [page, pbn] of written) {
      const b = new Uint8Array(BS);
      for (let e = 0; e < MAP_ENTRIES_PER_PAGE; e++) b[mapEntryAt(e) + 4] = 0x20; // not a mapping state
      for (let s = 0; s < 8; s++) sealSector(b, s, MAP_MAGIC, sb.nonce, { index: s, count: 0, key: page, aux: 0 });
      writeAt(p, pbn * BS, b);
    }
    const r = await checkVolume(p);
    const total = written.length * MAP_ENTRIES_PER_PAGE;
    expect(r.problems.length).toBe(1001);
    expect(r.problems[1000]).toEqual({ where: 'check', what: `${total - 1000} more problems not listed` });
    expect(r.logicalBlocksUsed).toBe(0);
  });
});

describe('checkVolume: not a volume, and bad arguments', () => {
  it('a file of random bytes is a report naming both superblock copies, not an error', async () => {
    const p = image();
    fs.writeFileSync(p, randomBytes(64 << 10, prng(9)));
    const r = await checkVolume(p);
    expect(r.ok).toBe(false);
    expect(r.clean).toBe(false);
    expect(r.logicalBlocks).toBe(0);
    expect(r.problems).toEqual([
      { where: 'superblock copy A (block 0)', what: expect.stringMatching(/^bad magic 0x/) },
      { where: 'superblock copy B (block 1)', what: expect.stringMatching(/^bad magic 0x/) },
    ]);
    const empty = image();
    fs.writeFileSync(empty, new Uint8Array(0));
    expect((await checkVolume(empty)).problems.map((x) => x.what)).toEqual(['missing: the image is 0 bytes long', 'missing: the image is 0 bytes long']);
  });

  it('a path that is not a string, a missing file, a directory and an unknown option are errors', async () => {
    expect((await failure(checkVolume(42 as unknown as string))).code).toBe('EINVAL');
    expect((await failure(checkVolume(path.join(dir, 'nothing-here.img')))).code).toBe('ENOENT');
    expect((await failure(checkVolume(dir))).code).toBe('EINVAL');
    const p = image();
    fs.writeFileSync(p, new Uint8Array(BS));
    expect((await failure(checkVolume(p, { decoding: true } as never))).code).toBe('EINVAL');
    expect((await failure(checkVolume(p, { onProgress: 1 } as never))).code).toBe('EINVAL');
  });
});

describe('checkVolume: scrub (every stored block against its data check)', () => {
  it('a healthy volume scrubs clean and reads every data block', async () => {
    const { p, stats } = await made();
    const r = await checkVolume(p, { scrub: true });
    expect(r.problems).toEqual([]);
    expect(r.blocksRead).toBeGreaterThanOrEqual(stats.dataBlocksUsed);
    expect((await checkVolume(p)).blocksRead).toBeLessThan(r.blocksRead);
    expect((await failure(checkVolume(p, { scrub: true, decode: false }))).code).toBe('EINVAL');
    expect((await failure(checkVolume(p, { scrub: 1 } as never))).code).toBe('EINVAL');
  });

  it('a damaged raw block and a damaged packed slot: found only by scrub, named by PBN with their LBAs, as Volume.scrub() finds them', async () => {
    const { p, sb } = await made();
    const maps = mappings(p, sb);
    const raw = maps.find(([, pbn, state]) => state === 1 && pbn !== 0)!;
    const slot0 = maps.find(([, pbn, state]) => state === STATE_COMPRESSED_BASE && pbn !== 0)!;
    flipByte(p, raw[1] * BS + 1000);
    const packedBlock = readBlock(p, slot0[1]);
    const size0 = packedBlock[8] | (packedBlock[9] << 8);
    flipByte(p, slot0[1] * BS + 36 + Math.floor(size0 / 2)); // inside slot 0's fragment

    const plain = await checkVolume(p);
    expect(problemsAt(plain, `PBN ${raw[1]}`)).toEqual([]); // a raw block has nothing to decode
    const r = await checkVolume(p, { scrub: true });
    expect(r.ok).toBe(false);
    expect(problemsAt(r, `PBN ${raw[1]}`)).toEqual([
      { where: `PBN ${raw[1]}`, what: expect.stringMatching(new RegExp(`^holds data whose check 0x[0-9a-f]{8} does not match the block map's 0x[0-9a-f]{8} \\(reads of it are ECORRUPT\\); referenced by LBAs? ${raw[0]}\\b`)) },
    ]);
    const slotProblems = problemsAt(r, new RegExp(`→ PBN ${slot0[1]} slot 0$`));
    expect(slotProblems.length).toBe(1);
    expect(slotProblems[0].what).toMatch(/does not match the block map's|does not decode/);

    // The volume's own scrub finds the same stored blocks bad.
    const v = await track(Volume.open(p, small));
    const report = await v.scrub();
    await closeVol(v);
    const badPbns = [...new Set(report.bad.map((b) => b.pbn))].sort((a, b) => a - b);
    expect(badPbns).toEqual([raw[1], slot0[1]].sort((a, b) => a - b));
    expect(report.bad.filter((b) => b.pbn === raw[1]).map((b) => b.lba)).toEqual(maps.filter(([, pbn]) => pbn === raw[1]).map(([lba]) => lba));
  });
});

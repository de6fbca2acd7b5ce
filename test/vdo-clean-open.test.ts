/**
 * A clean open (issue 17: "a clean open reads the superblock and roots
 * only"): a clean close records in the superblock where it left the journal;
 * the next open reads two journal blocks to confirm it instead of the whole
 * ring, replays and checkpoints nothing, and a writable open writes one
 * superblock copy marking the volume dirty before anything else, so a crash
 * from then on reads the whole journal again. Checked with media errors on
 * every other journal block (a read of the ring would fail the open), device
 * counters, crashes after a clean open, and a stale clean mark that the
 * journal contradicts. The dedupe index the close saved loads behind the
 * open, and updates made meanwhile survive it.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { Volume, checkVolume, nvme } from '../dist/index.js';
import { SUPERBLOCK_COPIES, decodeSuperblock, type Superblock } from '../dist/vdo/encodings.js';
import { DedupeIndex } from '../dist/vdo/dedupe.js';
import { slotBlock } from '../dist/vdo/count-snapshots.js';
import { slotBlocksFor } from '../dist/vdo/encodings.js';
import { prng, randomBytes } from './helpers/data.js';
import { volumeFiles } from './helpers/volume-files.js';

const BS = 4096;
const GiB = 2 ** 30;
const { image, track, untrack } = volumeFiles('clean-open');
const text = (tag: string): Uint8Array => new TextEncoder().encode(`${tag} `.repeat(BS).slice(0, BS));

/** Both superblock copies as the image holds them, and the one an open takes (the higher valid generation). */
function superblocks(p: string): { copies: (Superblock | string)[]; current: Superblock } {
  const fd = fs.openSync(p, 'r');
  try {
    const copies = [0, 1].map((c) => {
      const b = new Uint8Array(BS);
      fs.readSync(fd, b, 0, BS, c * BS);
      return decodeSuperblock(b);
    });
    const valid = copies.filter((c): c is Superblock => typeof c !== 'string').sort((a, b) => b.generation - a.generation);
    return { copies, current: valid[0] };
  } finally {
    fs.closeSync(fd);
  }
}

/** A fault backend over the image whose journal fails every read except the two blocks a clean open checks. */
function journalMostlyUnreadable(p: string, sb: Superblock): InstanceType<typeof nvme.FaultBackend> {
  const fault = new nvme.FaultBackend(new nvme.FileBackend(p, { blockSize: BS }));
  const keep = [...new Set([sb.cleanSeq % sb.journalBlocks, (sb.cleanSeq + 1) % sb.journalBlocks])].sort((a, b) => a - b);
  let from = 0;
  for (const k of [...keep, sb.journalBlocks]) {
    if (k > from) fault.injectMediaError(sb.journalStart + from, k - from, 'read');
    from = k + 1;
  }
  return fault;
}

/** A fault backend over the image whose count snapshots fail every read but their headers (a read of the counts fails). */
function countsUnreadable(p: string, sb: Superblock): InstanceType<typeof nvme.FaultBackend> {
  const fault = new nvme.FaultBackend(new nvme.FileBackend(p, { blockSize: BS }));
  const slot = slotBlocksFor(sb.physicalBlocks, sb.blockBytes);
  for (const s of [0, 1]) fault.injectMediaError(slotBlock(sb, s, 1), slot - 1, 'read');
  return fault;
}

const digest = (p: string): string => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

/** Fills a volume with distinct, shared and zero blocks (the model to read back). */
async function fill(v: Volume, model: Map<number, Uint8Array>, seed: number, count: number): Promise<void> {
  const rand = prng(seed);
  const shared = randomBytes(BS, rand);
  for (let i = 0; i < count; i++) {
    const lba = Math.floor(rand() * (v.logicalSize / BS));
    const d = i % 5 === 0 ? shared : i % 7 === 0 ? new Uint8Array(BS) : i % 2 === 0 ? text(`s${seed} ${i}`) : randomBytes(BS, rand);
    model.set(lba, d);
    await v.write(lba * BS, d);
  }
}

async function expectModel(v: Volume, model: Map<number, Uint8Array>): Promise<void> {
  for (const [lba, d] of model) expect(Buffer.from(await v.read(lba * BS, BS)).equals(Buffer.from(d)), `LBA ${lba}`).toBe(true);
}

/** A new 64 GiB volume over `physicalSize`, filled (fill()), closed cleanly: its path, what it holds, and the superblock the close wrote. */
/** Bytes of the slab depot's per-block arrays (references, mapped counts, pending frees, writes in flight). */
function depotArrayBytes(v: Volume): number {
  const d = (v as unknown as { depot: Record<'refs' | 'mapped' | 'pendingMark' | 'writing', Uint8Array> }).depot;
  return d.refs.length + d.mapped.length + d.pendingMark.length + d.writing.length;
}

async function closedVolume(seed: number, count: number, physicalSize = GiB, codec: 'lz4' | 'deflate' = 'lz4'): Promise<{ p: string; model: Map<number, Uint8Array>; closed: Superblock }> {
  const p = image();
  const v = await track(Volume.create(p, { logicalSize: 64 * GiB, physicalSize, codec, workers: 1 }));
  const model = new Map<number, Uint8Array>();
  await fill(v, model, seed, count);
  await untrack(v, 'close');
  return { p, model, closed: superblocks(p).current };
}

describe('clean open', () => {
  it('a clean close marks the superblock; the next open reads two journal blocks, not the ring, replays nothing and writes one superblock', async () => {
    const { p, model, closed } = await closedVolume(1, 400);
    expect(closed.cleanSeq).toBeGreaterThan(0);
    // Every journal block but two fails to read: an open that read the ring would fail EIO.
    let v = await track(Volume.open(journalMostlyUnreadable(p, closed), { workers: 1 }));
    expect(v.openedClean).toBe(true);
    expect(v.entriesReplayed).toBe(0);
    expect(v.referencesLoaded).toBe(true);
    // One superblock copy (the dirty mark), nothing else: no checkpoint.
    expect(v.stats().biosOut.write).toBe(1);
    await v.loaded;
    await expectModel(v, model);
    const { copies, current: open } = superblocks(p);
    expect(open.generation).toBe(closed.generation + 1);
    expect(open.cleanSeq).toBe(0);
    expect(copies[closed.generation % SUPERBLOCK_COPIES]).toEqual(closed); // the clean copy is untouched until close
    await untrack(v, 'close');
    const report = await checkVolume(p);
    expect(report.problems).toEqual([]);
    expect(superblocks(p).current.cleanSeq).toBeGreaterThan(0);
  });

  it('a crash after a clean open: the next open reads the whole journal, replays on the snapshot the close wrote, and loses nothing flushed', async () => {
    const { p, model, closed } = await closedVolume(2, 300);
    let v = await track(Volume.open(p, { workers: 1 }));
    expect(v.openedClean).toBe(true);
    await fill(v, model, 3, 300);
    await v.discard([...model.keys()][0] * BS, BS);
    model.set([...model.keys()][0], new Uint8Array(BS));
    await v.flush();
    await untrack(v, 'abandon');
    // The dirty mark is what the next open sees: with the journal unreadable past two blocks it fails.
    expect(superblocks(p).current.cleanSeq).toBe(0);
    await expect(Volume.open(journalMostlyUnreadable(p, closed), { workers: 1 })).rejects.toMatchObject({ code: 'EIO' });
    v = await track(Volume.open(p, { workers: 1 }));
    expect(v.openedClean).toBe(false);
    expect(v.entriesReplayed).toBeGreaterThan(300);
    expect(v.referencesLoaded).toBe(true); // the close's snapshot is tagged with the head the writes went on from
    await expectModel(v, model);
    // And a crash right after a clean open with nothing written: still dirty, still whole.
    await untrack(v, 'close');
    v = await track(Volume.open(p, { workers: 1 }));
    await untrack(v, 'abandon');
    v = await track(Volume.open(p, { workers: 1 }));
    expect(v.openedClean).toBe(false);
    expect(v.entriesReplayed).toBe(0);
    await expectModel(v, model);
    await untrack(v, 'close');
    expect((await checkVolume(p)).problems).toEqual([]);
  });

  it('a read-only open of a clean volume reads two journal blocks and writes nothing', async () => {
    const { p, model, closed } = await closedVolume(4, 200, 32 << 20, 'deflate');
    const before = digest(p);
    const v = await track(Volume.open(journalMostlyUnreadable(p, closed), { readOnly: true, workers: 1 }));
    expect(v.openedClean).toBe(true);
    await v.loaded;
    await expectModel(v, model);
    expect(v.stats().biosOut.write).toBe(0);
    await untrack(v, 'close');
    expect(digest(p)).toBe(before);
  });

  it('a clean mark the journal contradicts (the dirty copy lost) is not trusted: the ring is read, nothing flushed is lost, check reports it', async () => {
    const { p, model, closed } = await closedVolume(5, 200);
    let v = await track(Volume.open(p, { workers: 1 }));
    await fill(v, model, 6, 200);
    await v.flush();
    await untrack(v, 'abandon');
    // Destroy the copy that marked the volume dirty: the clean copy of the close is the one left.
    const fd = fs.openSync(p, 'r+');
    fs.writeSync(fd, new Uint8Array(BS).fill(0x5a), 0, BS, ((closed.generation + 1) % SUPERBLOCK_COPIES) * BS);
    fs.closeSync(fd);
    expect(superblocks(p).current).toEqual(closed);
    const report = await checkVolume(p);
    expect(report.problems.some((x) => x.where === 'superblock' && /clean close left the journal at block/.test(x.what))).toBe(true);
    v = await track(Volume.open(p, { workers: 1 }));
    expect(v.openedClean).toBe(false);
    expect(v.entriesReplayed).toBeGreaterThan(0);
    await expectModel(v, model);
    await untrack(v, 'close');
  });

  it('the reference counts load behind a clean open: open and reads need none, stats() is right at once, writes wait for them in order and read back at once', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: 64 * GiB, physicalSize: 256 << 20, codec: 'lz4', workers: 1 }));
    const model = new Map<number, Uint8Array>();
    await fill(v, model, 9, 300);
    await v.flush();
    const before = v.stats();
    await untrack(v, 'close');
    const sb = superblocks(p).current;
    // Read-only: the counts are never read (every count block fails to read; the open, the reads and stats() are fine).
    v = await track(Volume.open(countsUnreadable(p, sb), { readOnly: true, workers: 1 }));
    await v.loaded;
    await expectModel(v, model);
    expect([v.stats().dataBlocksUsed, v.stats().overheadBlocksUsed, v.stats().logicalBlocksUsed]).toEqual([before.dataBlocksUsed, before.overheadBlocksUsed, before.logicalBlocksUsed]);
    // Nor is memory for them allocated (a byte array per count kind, one byte per data block, once loaded).
    expect(depotArrayBytes(v)).toBe(0);
    await untrack(v, 'close');
    // Writable: the open and the reads do not wait for the counts; stats() has the snapshot's usage meanwhile.
    v = await track(Volume.open(countsUnreadable(p, sb), { workers: 1 }));
    expect(v.openedClean).toBe(true);
    expect(v.stats().dataBlocksUsed).toBe(before.dataBlocksUsed);
    // Writes issued at once, not awaited: they wait for the counts (here rebuilt from the map, the snapshot being
    // unreadable), in order; a read issued after them sees them.
    const lba = [...model.keys()][3];
    const a = text('first');
    const b = text('second');
    const writes = [v.write(lba * BS, a), v.write(lba * BS, b), v.write((lba + 1) * BS, a)];
    const readBack = v.read(lba * BS, 2 * BS);
    model.set(lba, b);
    model.set(lba + 1, a);
    await Promise.all(writes);
    const got = await readBack;
    expect(Buffer.from(got.subarray(0, BS)).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(got.subarray(BS)).equals(Buffer.from(a))).toBe(true);
    await v.flush();
    await v.loaded;
    await expectModel(v, model);
    expect(depotArrayBytes(v)).toBe(4 * ((256 << 20) / BS - sb.dataStart));
    await untrack(v, 'close');
    // The counts the rebuild made, and the snapshot the close wrote from them, are exact.
    expect((await checkVolume(p)).problems).toEqual([]);
    v = await track(Volume.open(p, { workers: 1 }));
    await v.loaded;
    await expectModel(v, model);
    await untrack(v, 'close');
    expect((await checkVolume(p)).problems).toEqual([]);
  });

  it('the dedupe index loads behind the open: data from before the close dedupes once it is in, and updates made while it loaded survive it', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: 64 * GiB, physicalSize: GiB, codec: 'lz4', workers: 1 }));
    const rand = prng(8);
    const blocks = Array.from({ length: 64 }, () => randomBytes(BS, rand));
    for (let i = 0; i < blocks.length; i++) await v.write(i * BS, blocks[i]);
    await untrack(v, 'close');
    v = await track(Volume.open(p, { workers: 1 }));
    await v.loaded;
    const used = v.stats().dataBlocksUsed;
    for (let i = 0; i < blocks.length; i++) await v.write((1000 + i) * BS, blocks[i]);
    await v.flush();
    expect(v.stats().dataBlocksUsed).toBe(used);
    await untrack(v, 'close');

    // The index itself: an update made between beginLoad and finishLoad is applied again over the image.
    const index = new DedupeIndex(1 << 16);
    index.update(1, 2, 100, 1);
    const image_ = new Uint8Array(DedupeIndex.imageBytes(1 << 16));
    index.save(image_);
    const fresh = new DedupeIndex(1 << 16);
    fresh.beginLoad();
    fresh.update(3, 4, 200, 1);
    expect(fresh.lookup(1, 2)).toBe(-1);
    fresh.finishLoad(image_);
    expect(fresh.pbnAt(fresh.lookup(1, 2))).toBe(100);
    expect(fresh.pbnAt(fresh.lookup(3, 4))).toBe(200);
    expect(fresh.count).toBe(2);
    // An unusable image (null) leaves what the index learned.
    const other = new DedupeIndex(1 << 16);
    other.beginLoad();
    other.update(5, 6, 300, 1);
    other.finishLoad(null);
    expect(other.pbnAt(other.lookup(5, 6))).toBe(300);
  });
});

/**
 * The VDO volume (src/vdo) through its public API: a seeded property test
 * against an in-memory model, data-reduction accounting, discard, ENOSPC,
 * crash recovery, on-disk corruption and argument errors. Imports the built
 * package: the engine and device workers load dist/.
 *
 * The on-disk layout constants below mirror src/vdo/encodings.ts (the test only
 * uses them to find what to corrupt, and checks them against the superblock).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FlashpackError, Runtime, Volume, nvme, runtime as processRuntime } from '../dist/index.js';
import type { VolumeStats } from '../dist/index.js';
import { prng, randomBytes } from './helpers/data.js';
import { codeOf } from './helpers/codes.js';
import { entryOffset, imageReader, leafBlock, leaves, pageBlock } from './helpers/map-image.js';

const BS = 4096;
const SECTOR = 512;
const SECTOR_HEADER = 28;
const MAP_ENTRY = 9; // PBN, state, data check
const MAP_PER_SECTOR = Math.floor((SECTOR - SECTOR_HEADER) / MAP_ENTRY); // 53
const MAP_PER_PAGE = MAP_PER_SECTOR * 8; // 424
const MAX_REFERENCES = 254;
const PACKED_MAGIC = [0x46, 0x50, 0x43, 0x42]; // "FPCB", u32 LE 0x42435046
const PACKED_HEADER = 36;
const MAX_SLOTS = 14;

/** Shifts every seed of the property and power-cut tests (VDO_SEED=n npx vitest run test/vdo-volume.test.ts). */
const SEED = Number(process.env.VDO_SEED ?? 0);

type Vol = Volume;
type Opts = Parameters<typeof Volume.create>[1];

// ---- bookkeeping: every volume is closed (or abandoned) after its test --------------
const live = new Set<Vol>();
function track(v: Vol): Vol {
  live.add(v);
  return v;
}
async function create(backend: nvme.MemoryBackend | nvme.FaultBackend, opts: Omit<Opts, 'workers'> & { workers?: number }): Promise<Vol> {
  return track(await Volume.create(backend, { workers: 1, runtime: new Runtime(), ...opts } as Opts));
}
async function open(backend: nvme.MemoryBackend | nvme.FaultBackend, opts: Parameters<typeof Volume.open>[1] = {}): Promise<Vol> {
  return track(await Volume.open(backend, { workers: 1, runtime: new Runtime(), ...opts }));
}
async function closeVol(v: Vol): Promise<void> {
  live.delete(v);
  await v.close();
}
async function abandonVol(v: Vol): Promise<void> {
  live.delete(v);
  await v.abandon();
}
afterEach(async () => {
  for (const v of [...live]) {
    live.delete(v);
    try {
      await v.close();
    } catch {
      await v.abandon().catch(() => {});
    }
  }
});


async function errorOf(p: Promise<unknown>): Promise<FlashpackError | null> {
  try {
    await p;
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(FlashpackError);
    return err as FlashpackError;
  }
}

const buf = (a: Uint8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && buf(a).equals(buf(b));
}
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
/** Asserts `got` equals `want`, naming the first differing byte (of the volume) on failure. */
function expectBytes(got: Uint8Array, want: Uint8Array, what: string, base = 0): void {
  if (sameBytes(got, want)) return;
  const d = firstDiff(got, want);
  expect.fail(`${what}: ${got.length} bytes read, ${want.length} expected; first difference at volume byte ${base + d} (LBA ${Math.floor((base + d) / BS)}): got ${got[d]}, want ${want[d]}`);
}

async function expectVolumeEquals(v: Vol, model: Uint8Array, what: string): Promise<void> {
  expectBytes(await v.read(0, model.length), model, what);
}

function isZeroBlock(model: Uint8Array, lba: number): boolean {
  for (let i = lba * BS; i < (lba + 1) * BS; i++) if (model[i] !== 0) return false;
  return true;
}
function nonZeroBlocks(model: Uint8Array): number {
  let n = 0;
  for (let lba = 0; lba < model.length / BS; lba++) if (!isZeroBlock(model, lba)) n++;
  return n;
}

/** savingPercent as VolumeStats documents it: (logical used − data used) / logical used, in percent, one decimal. */
function expectSaving(s: { logicalBlocksUsed: number; dataBlocksUsed: number; savingPercent: number }): void {
  const want = s.logicalBlocksUsed === 0 ? 0 : Math.round(((s.logicalBlocksUsed - s.dataBlocksUsed) / s.logicalBlocksUsed) * 1000) / 10;
  expect(s.savingPercent).toBeCloseTo(want, 6);
}

// ---- data -----------------------------------------------------------------------------
const WORDS = ['block', 'volume', 'journal', 'slab', 'depot', 'packer', 'fragment', 'dedupe', 'the', 'of', 'and', 'a', 'map', 'page', 'flush', 'zero', 'write', 'read'];
const enc = new TextEncoder();

/** Distinct, compressible text: words with a unique tag (lz4 and deflate shrink it 2–4×). */
function textBlock(rand: () => number, tag: string): Uint8Array {
  let s = `${tag}:`;
  while (s.length < BS) s += WORDS[Math.floor(rand() * WORDS.length)] + (rand() < 0.1 ? '\n' : ' ');
  return enc.encode(s.slice(0, BS));
}
/** Distinct and very compressible: one phrase repeated behind a unique tag (a fragment of ~100 bytes). */
function repetitiveBlock(tag: string): Uint8Array {
  return enc.encode(`${tag}|`.padEnd(BS, 'all work and no play makes jack a dull boy. '));
}

type Kind = 'zero' | 'dup' | 'text' | 'random';

class DataGen {
  private readonly dups: Uint8Array[];
  private n = 0;
  constructor(private readonly rand: () => number, seed: number) {
    const r = prng(seed ^ 0x5eed);
    this.dups = [textBlock(r, 'dup0'), randomBytes(BS, r), repetitiveBlock('dup2'), textBlock(r, 'dup3'), randomBytes(BS, r), repetitiveBlock('dup5')];
  }
  kind(): Kind {
    const x = this.rand();
    return x < 0.2 ? 'zero' : x < 0.45 ? 'dup' : x < 0.8 ? 'text' : 'random';
  }
  block(kind: Kind = this.kind()): Uint8Array {
    switch (kind) {
      case 'zero':
        return new Uint8Array(BS);
      case 'dup':
        return this.dups[Math.floor(this.rand() * this.dups.length)];
      case 'text':
        return this.rand() < 0.5 ? textBlock(this.rand, `t${this.n++}`) : repetitiveBlock(`r${this.n++}`);
      default:
        return randomBytes(BS, this.rand);
    }
  }
  /**
   * `length` bytes for a write at `offset`, made of whole generated blocks laid
   * on the volume's block grid (so an aligned write stores zero, duplicate,
   * text or random blocks as such). Returned as a view into a larger buffer.
   */
  data(offset: number, length: number): Uint8Array {
    const phase = offset % BS;
    const blocks = Math.ceil((phase + length) / BS);
    const all = new Uint8Array(blocks * BS + 64);
    for (let i = 0; i < blocks; i++) all.set(this.block(), 64 + i * BS);
    return all.subarray(64 + phase, 64 + phase + length);
  }
}

// ---- 1. property test against a model -----------------------------------------------------
interface PropConfig {
  codec: 'lz4' | 'deflate' | 'none';
  dedupe: boolean;
  writePolicy: 'async' | 'sync';
  logicalBlocks: number;
  batches: number;
  seed: number;
  journalBlocks?: number;
  cachePages?: number;
  /** Batch index → close + reopen ('close') or flush + abandon + reopen ('crash'). */
  reopen?: Record<number, 'close' | 'crash'>;
  /** Probability an op lands anywhere in the volume instead of a hot window. */
  far?: number;
}

type Op =
  | { kind: 'write'; offset: number; data: Uint8Array }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'discard'; offset: number; length: number }
  | { kind: 'flush' };

const overlaps = (a: [number, number], b: [number, number]): boolean => a[0] < b[1] && b[0] < a[1];

async function runProperty(cfg: PropConfig): Promise<void> {
  const seed = cfg.seed + SEED * 1000;
  const rand = prng(seed);
  const gen = new DataGen(rand, seed);
  const size = cfg.logicalBlocks * BS;
  const model = new Uint8Array(size);
  const backend = new nvme.MemoryBackend({ size: size + (8 << 20) });
  const openOpts = { cachePages: cfg.cachePages };
  let v = await create(backend, {
    logicalSize: size, codec: cfg.codec, dedupe: cfg.dedupe, writePolicy: cfg.writePolicy,
    journalBlocks: cfg.journalBlocks, ...openOpts,
  });
  // The map region holds the tree's root only; leaves come from the data region as they are written.
  expect(v.sb.mapPages).toBe(1);
  const leafPages = Math.ceil(cfg.logicalBlocks / MAP_PER_PAGE);

  // Hot windows of 24 blocks: the start, the end, and across every block map leaf boundary.
  const WIN = 24;
  const windows = [0, cfg.logicalBlocks - WIN];
  for (let p = 1; p < leafPages; p++) windows.push(p * MAP_PER_PAGE - WIN / 2);
  const pickStart = (): number => {
    if (rand() < (cfg.far ?? 0.03)) return Math.floor(rand() * size);
    const w = windows[Math.floor(rand() * windows.length)];
    return w * BS + Math.floor(rand() * WIN * BS);
  };
  const clampLen = (offset: number, length: number): number => Math.max(0, Math.min(length, size - offset));
  const alignDown = (x: number): number => Math.floor(x / BS) * BS;

  const genOp = (): Op => {
    const x = rand();
    if (x < 0.05) return { kind: 'flush' };
    if (x < 0.55) {
      const y = rand();
      let offset = pickStart();
      let length: number;
      if (y < 0.25) length = 1 + Math.floor(rand() * (BS - 1)); // sub-block (may straddle two blocks)
      else if (y < 0.55) { offset = alignDown(offset); length = BS; }
      else if (y < 0.75) { offset = alignDown(offset); length = (2 + Math.floor(rand() * 11)) * BS; }
      else length = 1 + Math.floor(rand() * 5 * BS); // unaligned, spanning
      length = clampLen(offset, length);
      return { kind: 'write', offset, data: gen.data(offset, length) };
    }
    if (x < 0.8) {
      let offset = pickStart();
      let length = 1 + Math.floor(rand() * 8 * BS);
      if (rand() < 0.2) { offset = alignDown(offset); length = alignDown(length) + BS; }
      return { kind: 'read', offset, length: clampLen(offset, length) };
    }
    const y = rand();
    let offset = pickStart();
    let length: number;
    if (y < 0.05) { offset = alignDown(offset); length = (32 + Math.floor(rand() * 300)) * BS; } // large: across pages
    else if (y < 0.45) { offset = alignDown(offset); length = (1 + Math.floor(rand() * 8)) * BS; }
    else if (y < 0.85) length = 1 + Math.floor(rand() * 6 * BS);
    else length = 1 + Math.floor(rand() * (BS - 1));
    return { kind: 'discard', offset, length: clampLen(offset, length) };
  };

  const reopenAt = cfg.reopen ?? {};
  for (let batch = 0; batch < cfg.batches; batch++) {
    const how = reopenAt[batch];
    if (how !== undefined) {
      await v.flush();
      const before = v.stats();
      expect(before.compressedFragmentsInPacker).toBe(0);
      if (how === 'close') await closeVol(v);
      else await abandonVol(v); // crash: the block map pages written so far are all the media has, plus the journal
      v = await open(backend, openOpts);
      await expectVolumeEquals(v, model, `after ${how} + reopen at batch ${batch}`);
      const after = v.stats();
      // Reference counts rebuilt from the block map equal the ones the volume kept in memory.
      expect({ lu: after.logicalBlocksUsed, du: after.dataBlocksUsed }).toEqual({ lu: before.logicalBlocksUsed, du: before.dataBlocksUsed });
      // ... and so do the block map tree pages (overhead: the metadata regions plus the tree pages).
      expect(after.overheadBlocksUsed).toBe(before.overheadBlocksUsed);
    }

    // A batch of 1–16 ops issued without waiting. Mutations in a batch are byte-disjoint
    // and reads are disjoint from them, so the model is independent of completion order.
    const n = rand() < 0.3 ? 1 : 1 + Math.floor(rand() * 16);
    const mutated: [number, number][] = [];
    const readRanges: [number, number][] = [];
    const promises: Promise<unknown>[] = [];
    const checks: { op: Op & { kind: 'read' }; want: Uint8Array; at: number }[] = [];
    for (let i = 0; i < n; i++) {
      const op = genOp();
      if (op.kind === 'flush') {
        promises.push(v.flush());
        continue;
      }
      const range: [number, number] = op.kind === 'write' ? [op.offset, op.offset + op.data.length] : [op.offset, op.offset + op.length];
      if (range[1] === range[0]) continue;
      if (mutated.some((r) => overlaps(r, range))) continue;
      if (op.kind === 'read') {
        readRanges.push(range);
        checks.push({ op, want: model.slice(range[0], range[1]), at: promises.length });
        promises.push(v.read(op.offset, op.length));
        continue;
      }
      if (readRanges.some((r) => overlaps(r, range))) continue;
      mutated.push(range);
      if (op.kind === 'write') {
        model.set(op.data, op.offset);
        promises.push(v.write(op.offset, op.data));
      } else {
        model.fill(0, op.offset, op.offset + op.length);
        promises.push(v.discard(op.offset, op.length));
      }
    }
    const results = await Promise.all(promises);
    for (const c of checks) expectBytes(results[c.at] as Uint8Array, c.want, `batch ${batch}: read of ${c.op.length} at ${c.op.offset}`, c.op.offset);
    if (batch % 40 === 39) await expectVolumeEquals(v, model, `full read after batch ${batch}`);
  }

  await v.flush();
  await expectVolumeEquals(v, model, 'final full read');
  const s = v.stats();
  const nonZero = nonZeroBlocks(model);
  expect(s.compressedFragmentsInPacker).toBe(0);
  expect(s.logicalBlocksUsed).toBeGreaterThanOrEqual(nonZero);
  expect(s.logicalBlocksUsed).toBeLessThanOrEqual(cfg.logicalBlocks);
  // Every non-zero block maps to a data block; all-zero ones never hold one.
  if (!cfg.dedupe && cfg.codec === 'none') expect(s.dataBlocksUsed).toBe(nonZero);
  else expect(s.dataBlocksUsed).toBeLessThanOrEqual(nonZero);
  expectSaving(s);
  if (cfg.codec !== 'none') expect(s.compressedFragmentsWritten).toBeGreaterThan(0);
  else expect(s.compressedFragmentsWritten).toBe(0);
  if (cfg.dedupe) expect(s.dedupeAdviceValid + s.dedupeConcurrentShared).toBeGreaterThan(0);
  else expect(s.dedupeAdviceValid + s.dedupeConcurrentShared + s.dedupeAdviceStale).toBe(0);
  // Tree pages (leaves and interior pages, not the root) are overhead: at most one per leaf plus the interior pages above them.
  const treePages = s.overheadBlocksUsed - v.sb.dataStart;
  expect(treePages).toBeGreaterThan(0);
  expect(treePages).toBeLessThanOrEqual(leafPages + 2);
  if (cfg.cachePages !== undefined) {
    // The small cache and journal really forced evictions and checkpoints: more misses and
    // page writes than the tree has pages (its root and every page placed).
    expect(s.blockMapCacheMisses).toBeGreaterThan(treePages + 1);
    expect(s.blockMapPagesWritten).toBeGreaterThan(treePages + 1);
  }

  // Everything persists exactly across a clean close.
  await closeVol(v);
  v = await open(backend, openOpts);
  await expectVolumeEquals(v, model, 'after the final close + reopen');
  const t = v.stats();
  expect({ lu: t.logicalBlocksUsed, du: t.dataBlocksUsed, ou: t.overheadBlocksUsed }).toEqual({ lu: s.logicalBlocksUsed, du: s.dataBlocksUsed, ou: s.overheadBlocksUsed });
  await closeVol(v);
  // On the media: the root names exactly the tree pages the volume counted, one leaf per page the writes touched.
  const read = imageReader(backend.bytes());
  const written = leaves(read, v.sb);
  expect(written.length).toBeGreaterThan(0);
  expect(written.length).toBeLessThanOrEqual(leafPages);
  expect(treePages).toBe(written.length + 2); // one level 1 and one level 2 page above them (< 968 leaves)
}

describe('vdo volume: reads always match an in-memory model (seeded random ops, batches issued concurrently)', () => {
  it('lz4 + dedupe + async', async () => {
    await runProperty({ codec: 'lz4', dedupe: true, writePolicy: 'async', logicalBlocks: 2048, batches: 220, seed: 101 });
  });

  it('deflate + dedupe + sync', async () => {
    await runProperty({ codec: 'deflate', dedupe: true, writePolicy: 'sync', logicalBlocks: 2048, batches: 140, seed: 202 });
  });

  it('no compression + no dedupe + async', async () => {
    await runProperty({ codec: 'none', dedupe: false, writePolicy: 'async', logicalBlocks: 2048, batches: 180, seed: 303 });
  });

  it('lz4 with a 4-page block map cache and an 8-block journal (checkpoints, page evictions)', async () => {
    await runProperty({
      codec: 'lz4', dedupe: true, writePolicy: 'async', logicalBlocks: 6144, batches: 220, seed: 404,
      cachePages: 4, journalBlocks: 8, far: 0.15,
    });
  });

  it('state persists exactly across close + reopen and crash (flush, abandon) + reopen mid-sequence', async () => {
    await runProperty({
      codec: 'lz4', dedupe: true, writePolicy: 'async', logicalBlocks: 2048, batches: 210, seed: 505,
      journalBlocks: 16, reopen: { 60: 'close', 120: 'crash', 170: 'crash' },
    });
  });
});

// ---- concurrency ----------------------------------------------------------------------------
describe('vdo volume: concurrent writes to one block', () => {
  it('concurrent sub-block writes to disjoint bytes of the same block all survive', async () => {
    const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 1 << 20, codec: 'lz4', writePolicy: 'async' });
    const model = new Uint8Array(1 << 20);
    const rand = prng(7);
    for (let round = 0; round < 20; round++) {
      const lba = round % 5;
      const ps: Promise<void>[] = [];
      for (let k = 0; k < 16; k++) {
        const d = randomBytes(200, rand);
        const off = lba * BS + k * 256;
        model.set(d, off);
        ps.push(v.write(off, d));
      }
      await Promise.all(ps);
    }
    await expectVolumeEquals(v, model, 'after concurrent patches');
    await v.flush();
    await expectVolumeEquals(v, model, 'after flush');
  });

  // Regression: a whole-block write once skipped the per-block lock and took its generation late, so a sub-block write issued after it could win with stale data.
  it('a whole-block write and a sub-block write issued together end as one of their serial orders (maxInflight 1)', async () => {
    const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 1 << 20, codec: 'lz4', writePolicy: 'async', maxInflight: 1 });
    const rand = prng(8);
    let lost = 0;
    for (let i = 0; i < 20; i++) {
      const full = new Uint8Array(BS).fill(0x41 + i);
      const patch = new Uint8Array(10).fill(0x7a);
      await Promise.all([v.write(200 * BS, randomBytes(BS, rand)), v.write(i * BS, full), v.write(i * BS + 100, patch)]);
      const got = await v.read(i * BS, BS);
      const fullThenPatch = full.slice();
      fullThenPatch.set(patch, 100);
      if (!sameBytes(got, fullThenPatch) && !sameBytes(got, full)) lost++;
    }
    expect(lost).toBe(0);
  });
});

// ---- 2. data reduction accounting -------------------------------------------------------------
describe('vdo volume: dedupe, compression and zero-block accounting', () => {
  it('N identical blocks written concurrently or one by one use one data block', async () => {
    for (const writePolicy of ['async', 'sync'] as const) {
      const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 4 << 20, codec: 'lz4', writePolicy });
      const block = randomBytes(BS, prng(11));
      const N = 60;
      await Promise.all(Array.from({ length: N / 2 }, (_, i) => v.write(i * BS, block)));
      for (let i = N / 2; i < N; i++) await v.write(i * BS, block);
      await v.flush();
      const s = v.stats();
      expect(s.dataBlocksUsed).toBe(1);
      expect(s.logicalBlocksUsed).toBe(N);
      expect(s.dedupeAdviceValid + s.dedupeConcurrentShared).toBe(N - 1);
      expectSaving(s);
      expect(s.savingPercent).toBeCloseTo(Math.round(((N - 1) / N) * 1000) / 10, 6);
      const all = await v.read(0, N * BS);
      for (let i = 0; i < N; i++) expectBytes(all.subarray(i * BS, (i + 1) * BS), block, `LBA ${i}`);
      await closeVol(v);
    }
  });

  it('data the index knows whose copy is gone (discarded) is compressed after all and packed as before, lz4 and deflate', async () => {
    for (const codec of ['lz4', 'deflate'] as const) {
      const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 4 << 20, codec, writePolicy: 'async' });
      const blocks = Array.from({ length: 6 }, (_, i) => repetitiveBlock(`known, then gone: ${codec} ${i}`));
      await Promise.all(blocks.map((b, i) => v.write(i * BS, b)));
      await v.flush();
      const before = v.stats();
      expect(before.compressedFragmentsWritten).toBe(blocks.length);
      await v.discard(0, blocks.length * BS);
      await v.flush();
      expect(v.stats().dataBlocksUsed).toBe(0);
      // The engine finds each fingerprint in the index and skips compressing; the advice
      // is stale (the block is free), so each goes back to the engine and is packed.
      await Promise.all(blocks.map((b, i) => v.write((50 + i) * BS, b)));
      await v.flush();
      const s = v.stats();
      expect(s.dedupeAdviceStale - before.dedupeAdviceStale).toBe(blocks.length);
      expect(s.dedupeAdviceValid).toBe(0);
      expect(s.compressedFragmentsWritten - before.compressedFragmentsWritten).toBe(blocks.length);
      expect(s.dataBlocksUsed).toBe(before.dataBlocksUsed);
      for (let i = 0; i < blocks.length; i++) expectBytes(await v.read((50 + i) * BS, BS), blocks[i], `${codec} LBA ${50 + i}`);
      // And a third copy shares the stored one (decoded and compared: the engine sent no compressed form).
      await v.write(80 * BS, blocks[2]);
      await v.flush();
      expect(v.stats().dedupeAdviceValid).toBe(1);
      expect(v.stats().dataBlocksUsed).toBe(before.dataBlocksUsed);
      expectBytes(await v.read(80 * BS, BS), blocks[2], `${codec} LBA 80`);
      await closeVol(v);
    }
  });

  it('zero blocks use no data block and count as zeroBlocksWritten; overwriting data with zeros frees it', async () => {
    const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async' });
    await v.write(0, new Uint8Array(100 * BS));
    await v.flush();
    let s = v.stats();
    expect(s.zeroBlocksWritten).toBe(100);
    expect(s.dataBlocksUsed).toBe(0);
    expect(s.logicalBlocksUsed).toBe(100);
    expect(s.savingPercent).toBe(100);
    const rand = prng(12);
    for (let i = 200; i < 210; i++) await v.write(i * BS, randomBytes(BS, rand));
    await v.flush();
    expect(v.stats().dataBlocksUsed).toBe(10);
    await v.write(200 * BS, new Uint8Array(10 * BS));
    await v.flush();
    s = v.stats();
    expect(s.zeroBlocksWritten).toBe(110);
    expect(s.dataBlocksUsed).toBe(0);
    expect(s.logicalBlocksUsed).toBe(110);
    expectBytes(await v.read(0, 300 * BS), new Uint8Array(300 * BS), 'zeros');
  });

  for (const codec of ['lz4', 'deflate'] as const) {
    it(`${codec}: distinct compressible blocks are packed up to 14 fragments a block, and the packed blocks on disk agree with the counters`, async () => {
      const backend = new nvme.MemoryBackend({ size: 16 << 20 });
      const v = await create(backend, { logicalSize: 4 << 20, codec, writePolicy: 'async' });
      const N = 280;
      const blocks = Array.from({ length: N }, (_, i) => repetitiveBlock(`distinct block ${i}`));
      for (let i = 0; i < N; i += 20) await Promise.all(blocks.slice(i, i + 20).map((b, k) => v.write((i + k) * BS, b)));
      await v.flush();
      const s = v.stats();
      expect(s.compressedBlocksWritten).toBeGreaterThan(0);
      expect(s.compressedFragmentsWritten).toBeGreaterThanOrEqual(2 * s.compressedBlocksWritten);
      expect(s.compressedFragmentsWritten).toBeLessThanOrEqual(MAX_SLOTS * s.compressedBlocksWritten);
      // Fragments of ~100 bytes: packing is bound by the 14 slots, so most blocks are full.
      expect(s.compressedFragmentsWritten).toBeGreaterThan(N / 2);
      expect(s.dataBlocksUsed).toBeLessThan(N / 5);
      // No dedupe hits and no overwrites: each block is a fragment in a packed block or a raw block.
      expect(s.dedupeAdviceValid + s.dedupeConcurrentShared).toBe(0);
      expect(s.dataBlocksUsed).toBe(s.compressedBlocksWritten + (N - s.compressedFragmentsWritten));
      expect(s.logicalBlocksUsed).toBe(N);
      expectSaving(s);
      const all = await v.read(0, N * BS);
      for (let i = 0; i < N; i++) expectBytes(all.subarray(i * BS, (i + 1) * BS), blocks[i], `LBA ${i}`, i * BS);
      const { dataStart, physicalBlocks } = v.sb;
      await closeVol(v);
      // The packed blocks on the medium: magic, at most 14 fragments each, as many as the counters say.
      const bytes = backend.bytes();
      let packed = 0;
      let fragments = 0;
      let full = 0;
      for (let pbn = dataStart; pbn < physicalBlocks; pbn++) {
        const at = pbn * BS;
        if (PACKED_MAGIC.every((m, k) => bytes[at + k] === m)) {
          packed++;
          const count = bytes[at + 6];
          expect(count).toBeGreaterThanOrEqual(2);
          expect(count).toBeLessThanOrEqual(MAX_SLOTS);
          if (count === MAX_SLOTS) full++;
          fragments += count;
        }
      }
      expect(packed).toBe(s.compressedBlocksWritten);
      expect(fragments).toBe(s.compressedFragmentsWritten);
      expect(full).toBeGreaterThan(0);
    });
  }

  it('one block written 300 times (sync, one by one) takes 2 data blocks: 254 references, then 46', async () => {
    const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'sync' });
    const block = randomBytes(BS, prng(13));
    for (let i = 0; i < 300; i++) await v.write(i * BS, block);
    await v.flush();
    const s = v.stats();
    expect(s.dataBlocksUsed).toBe(2);
    expect(s.logicalBlocksUsed).toBe(300);
    expect(s.dedupeAdviceValid).toBe(300 - 2);
    expect(s.dedupeAdviceStale).toBe(1); // the advice pointing at the block at 254 references
    expectSaving(s);
    const all = await v.read(0, 300 * BS);
    for (let i = 0; i < 300; i++) expectBytes(all.subarray(i * BS, (i + 1) * BS), block, `LBA ${i}`, i * BS);
    // The bound survives a reopen: the rebuilt counts still fit (≤ 254 a block).
    await closeVol(v);
  });

  // Regression: writers queued on a hash lock whose block was full once each stored their own copy (47 blocks for 300 writes).
  it('one block written 300 times concurrently (async) takes 2 data blocks', async () => {
    const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async' });
    const block = randomBytes(BS, prng(14));
    await Promise.all(Array.from({ length: 300 }, (_, i) => v.write(i * BS, block)));
    await v.flush();
    expect(v.stats().logicalBlocksUsed).toBe(300);
    expect(v.stats().dataBlocksUsed).toBe(Math.ceil(300 / MAX_REFERENCES));
  });
});

// ---- 3. discard ---------------------------------------------------------------------------------
describe('vdo volume: the dedupe index outlives close()', () => {
  const N = 40;
  const data = (i: number): Uint8Array => (i % 2 === 0 ? repetitiveBlock(`saved index ${i}`) : randomBytes(BS, prng(700 + i)));

  /** A volume holding N distinct blocks (half packed, half raw) at LBAs 0..N−1, closed. */
  async function written(backend: nvme.MemoryBackend): Promise<number> {
    const v = await create(backend, { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async' });
    await Promise.all(Array.from({ length: N }, (_, i) => v.write(i * BS, data(i))));
    await v.flush();
    const used = v.stats().dataBlocksUsed;
    await closeVol(v);
    return used;
  }

  /** Writes the same N blocks again at LBAs 100.. and returns the stats after a flush. */
  async function again(v: Vol): Promise<VolumeStats> {
    for (let i = 0; i < N; i++) await v.write((100 + i) * BS, data(i));
    await v.flush();
    for (let i = 0; i < N; i++) expectBytes(await v.read((100 + i) * BS, BS), data(i), `LBA ${100 + i}`);
    return v.stats();
  }

  it('after close and open, data written before the close is still found: every rewrite shares its block', async () => {
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    const used = await written(backend);
    const v = await open(backend);
    await v.loaded; // the saved index loads behind the open
    const s = await again(v);
    expect(s.dedupeAdviceValid).toBe(N);
    expect(s.dataBlocksUsed).toBe(used);
    // A crash after the reopen: the volume opens with the index saved by the last close.
    await abandonVol(v);
    const w = await open(backend);
    await w.loaded;
    for (let i = 0; i < N; i++) await w.write((200 + i) * BS, data(i));
    await w.flush();
    expect(w.stats().dedupeAdviceValid).toBe(N);
    expect(w.stats().dataBlocksUsed).toBe(used);
  });

  it('a damaged saved index (header or image) or one of another size is not used: the volume opens, finds nothing, stores copies', async () => {
    for (const damage of ['header', 'image', 'other size'] as const) {
      const backend = new nvme.MemoryBackend({ size: 16 << 20 });
      const used = await written(backend);
      const probe = await open(backend);
      const { indexStart, indexBlocks } = probe.sb;
      await closeVol(probe); // (saves the index again, for the same generation chain)
      const media = backend.bytes();
      if (damage === 'header') media[indexStart * BS + 40] ^= 0x10;
      if (damage === 'image') media[(indexStart + indexBlocks - 1) * BS + 7] ^= 0x01;
      const v = await open(backend, damage === 'other size' ? { indexMemory: 1 << 16 } : {});
      const s = await again(v);
      expect(s.dedupeAdviceValid, damage).toBe(0);
      expect(s.dataBlocksUsed, damage).toBe(2 * used);
      for (let i = 0; i < N; i++) expectBytes(await v.read(i * BS, BS), data(i), `${damage}: LBA ${i}`);
    }
  });
});

describe('vdo volume: discard', () => {
  it('unmaps whole blocks: logical blocks drop, reads return zeros, data blocks are freed (and reusable after a flush)', async () => {
    const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async' });
    const rand = prng(21);
    const model = new Uint8Array(4 << 20);
    const data = randomBytes(40 * BS, rand);
    model.set(data, 0);
    await v.write(0, data);
    // Two LBAs sharing one block: discarding one keeps it.
    const shared = randomBytes(BS, rand);
    await v.write(100 * BS, shared);
    await v.write(101 * BS, shared);
    model.set(shared, 100 * BS);
    model.set(shared, 101 * BS);
    await v.flush();
    let s = v.stats();
    expect(s).toMatchObject({ logicalBlocksUsed: 42, dataBlocksUsed: 41 });

    await v.discard(10 * BS, 20 * BS);
    model.fill(0, 10 * BS, 30 * BS);
    s = v.stats();
    expect(s).toMatchObject({ logicalBlocksUsed: 22, dataBlocksUsed: 21 });
    await expectVolumeEquals(v, model, 'after discard');
    await v.discard(100 * BS, BS);
    model.fill(0, 100 * BS, 101 * BS);
    expect(v.stats()).toMatchObject({ logicalBlocksUsed: 21, dataBlocksUsed: 21 });
    await v.discard(101 * BS, BS);
    model.fill(0, 101 * BS, 102 * BS);
    expect(v.stats()).toMatchObject({ logicalBlocksUsed: 20, dataBlocksUsed: 20 });
    await v.flush();
    await expectVolumeEquals(v, model, 'after flush');
    // Discarding unmapped blocks changes nothing.
    const e0 = v.stats().journalEntriesWritten;
    await v.discard(500 * BS, 100 * BS);
    expect(v.stats().journalEntriesWritten).toBe(e0);
    expect(v.stats().logicalBlocksUsed).toBe(20);
    await closeVol(v);
  });

  it('unaligned discards zero exactly the range: edge blocks keep their other bytes and stay mapped', async () => {
    const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async' });
    const model = new Uint8Array(4 << 20);
    const data = textBlock(prng(22), 'x');
    for (let i = 0; i < 12; i++) {
      model.set(data, i * BS);
      model[i * BS] = i; // distinct
    }
    await v.write(0, model.subarray(0, 12 * BS));
    await v.flush();
    expect(v.stats().logicalBlocksUsed).toBe(12);
    // Bytes 8292..28772: blocks 3–6 unmapped, blocks 2 and 7 patched.
    await v.discard(2 * BS + 100, 5 * BS);
    model.fill(0, 2 * BS + 100, 7 * BS + 100);
    expect(v.stats().logicalBlocksUsed).toBe(12 - 4);
    await expectVolumeEquals(v, model, 'after an unaligned discard');
    // Inside one block.
    await v.discard(9 * BS + 7, 1000);
    model.fill(0, 9 * BS + 7, 9 * BS + 1007);
    // Across one block boundary, no whole block.
    await v.discard(10 * BS + 4000, 200);
    model.fill(0, 10 * BS + 4000, 10 * BS + 4200);
    expect(v.stats().logicalBlocksUsed).toBe(8);
    await expectVolumeEquals(v, model, 'after sub-block discards');
    await v.flush();
    await closeVol(v);
  });

  it('a huge discard journals one entry per block map page touched, not one per block', async () => {
    const blocks = 8192; // 20 block map leaves
    const v = await create(new nvme.MemoryBackend({ size: 48 << 20 }), { logicalSize: blocks * BS, codec: 'lz4', writePolicy: 'async' });
    expect(v.sb.mapPages).toBe(1); // the tree's root
    const pages = Math.ceil(blocks / MAP_PER_PAGE);
    expect(pages).toBe(20);
    await v.write(0, new Uint8Array(blocks * BS)); // every block mapped (to the zero block)
    // Every leaf placed, and one level 1 and one level 2 page above them.
    expect(v.stats().overheadBlocksUsed - v.sb.dataStart).toBe(pages + 2);
    const rand = prng(23);
    for (let lba = 5; lba < blocks; lba += 301) await v.write(lba * BS, randomBytes(BS, rand));
    await v.flush();
    const s0 = v.stats();
    expect(s0.logicalBlocksUsed).toBe(blocks);
    expect(s0.dataBlocksUsed).toBeGreaterThan(20);

    await v.discard(0, blocks * BS);
    const s1 = v.stats();
    expect(s1.journalEntriesWritten - s0.journalEntriesWritten).toBeGreaterThanOrEqual(1);
    expect(s1.journalEntriesWritten - s0.journalEntriesWritten).toBeLessThanOrEqual(pages);
    expect(s1.logicalBlocksUsed).toBe(0);
    expect(s1.dataBlocksUsed).toBe(0);
    expectBytes(await v.read(0, blocks * BS), new Uint8Array(blocks * BS), 'after discarding everything');

    // Unaligned: the pages touched plus the two edge writes.
    await v.write(0, new Uint8Array(blocks * BS));
    await v.flush();
    const s2 = v.stats();
    await v.discard(3 * BS + 5, (blocks - 10) * BS);
    const s3 = v.stats();
    expect(s3.journalEntriesWritten - s2.journalEntriesWritten).toBeLessThanOrEqual(pages + 2);
    // Whole blocks 4..8184 unmapped; edge blocks 3 and 8185 patched with zeros and still mapped.
    expect(s3.logicalBlocksUsed).toBe(blocks - (8185 - 4));
    await v.flush();
    await closeVol(v);
  });

  // Regression: a discard once checked for a checkpoint per page, and one page can append 384 entries, overflowing a small journal.
  it('discarding a page of alternating mapped blocks works with the smallest journal (4 blocks)', async () => {
    const v = await create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async', journalBlocks: 4 });
    const d = new Uint8Array(BS).fill(7);
    for (let lba = 0; lba < MAP_PER_PAGE; lba += 2) await v.write(lba * BS, d);
    await v.flush();
    expect(v.stats().logicalBlocksUsed).toBe(MAP_PER_PAGE / 2);
    await v.discard(0, MAP_PER_PAGE * BS);
    expect(v.stats().logicalBlocksUsed).toBe(0);
  });

  it('a discard of 384 separate runs in one page works with an 8-block journal', async () => {
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    let v = await create(backend, { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async', journalBlocks: 8 });
    const d = new Uint8Array(BS).fill(7);
    for (let lba = 0; lba < MAP_PER_PAGE; lba += 2) await v.write(lba * BS, d);
    await v.flush();
    await v.discard(0, MAP_PER_PAGE * BS);
    expect(v.stats().logicalBlocksUsed).toBe(0);
    await v.flush();
    await abandonVol(v);
    v = await open(backend);
    expect(v.stats().logicalBlocksUsed).toBe(0);
    expectBytes(await v.read(0, MAP_PER_PAGE * BS), new Uint8Array(MAP_PER_PAGE * BS), 'after crash + reopen');
  });

  it('a flushed discard survives a crash (journal replay) and a close', async () => {
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    let v = await create(backend, { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async', journalBlocks: 16 });
    const model = new Uint8Array(4 << 20);
    const rand = prng(24);
    for (let i = 0; i < 50; i++) {
      const b = textBlock(rand, `b${i}`);
      model.set(b, i * BS);
      await v.write(i * BS, b);
    }
    await closeVol(v); // the writes are in the block map now
    v = await open(backend);
    await v.discard(5 * BS + 10, 30 * BS);
    model.fill(0, 5 * BS + 10, 35 * BS + 10);
    await v.flush();
    const used = v.stats().logicalBlocksUsed;
    await abandonVol(v);
    v = await open(backend);
    await expectVolumeEquals(v, model, 'after crash + reopen');
    expect(v.stats().logicalBlocksUsed).toBe(used);
    await closeVol(v);
    v = await open(backend);
    await expectVolumeEquals(v, model, 'after close + reopen');
    await closeVol(v);
  });
});

// ---- 4. ENOSPC ----------------------------------------------------------------------------------
describe('vdo volume: out of space', () => {
  const DATA_BLOCKS = 64;
  /** Tree pages the writes below place in the data region: leaf 0 (LBAs 0–423), a level 1 and a level 2 page. */
  const TREE_PAGES = 3;
  async function smallVolume(writePolicy: 'async' | 'sync'): Promise<{ v: Vol; backend: nvme.MemoryBackend }> {
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    // 2 superblocks + 8 journal + the block map root (1024 LBAs) + 2 saved-index blocks (header and
    // a 128-entry index: 64 bytes of index memory per physical block at most) + 2 reference count
    // snapshots of 2 blocks (header and a byte per block) + 3 blocks for the tree pages of leaf 0 + 64 data blocks.
    const v = await create(backend, { logicalSize: 4 << 20, physicalSize: (2 + 8 + 1 + 2 + 4 + TREE_PAGES + DATA_BLOCKS) * BS, journalBlocks: 8, codec: 'lz4', writePolicy });
    expect(v.sb.mapPages).toBe(1);
    expect(v.sb.indexBlocks).toBe(2);
    expect(v.sb.physicalBlocks - v.sb.dataStart).toBe(TREE_PAGES + DATA_BLOCKS);
    return { v, backend };
  }
  /** Overhead of the small volume once leaf 0 is placed: the metadata regions and its tree pages. */
  const overheadOf = (v: Vol): number => v.sb.dataStart + TREE_PAGES;

  for (const writePolicy of ['async', 'sync'] as const) {
    it(`${writePolicy}: distinct incompressible writes end in ENOSPC; everything acknowledged reads back; discard + flush makes room again`, async () => {
      const { v, backend } = await smallVolume(writePolicy);
      const rand = prng(31);
      const model = new Uint8Array(4 << 20);
      let acked = 0;
      let err: FlashpackError | null = null;
      for (let i = 0; i < 200 && err === null; i++) {
        const b = randomBytes(BS, rand);
        err = await errorOf(v.write(i * BS, b));
        if (err === null) {
          model.set(b, i * BS);
          acked++;
        }
      }
      expect(err?.code).toBe('ENOSPC');
      expect(acked).toBe(DATA_BLOCKS);
      await v.flush();
      await expectVolumeEquals(v, model, 'after ENOSPC');
      expect(v.stats()).toMatchObject({ dataBlocksUsed: DATA_BLOCKS, logicalBlocksUsed: DATA_BLOCKS, overheadBlocksUsed: overheadOf(v) });
      // Still full: another distinct block does not fit (in leaf 1, never placed: no tree page is taken for it either).
      expect(await codeOf(v.write(500 * BS, randomBytes(BS, rand)))).toBe('ENOSPC');
      await expectVolumeEquals(v, model, 'after a second ENOSPC');
      expect(v.stats()).toMatchObject({ dataBlocksUsed: DATA_BLOCKS, logicalBlocksUsed: DATA_BLOCKS, overheadBlocksUsed: overheadOf(v) });

      await v.discard(10 * BS, 10 * BS);
      model.fill(0, 10 * BS, 20 * BS);
      await v.flush();
      for (let i = 0; i < 10; i++) {
        const b = randomBytes(BS, rand);
        await v.write((300 + i) * BS, b);
        model.set(b, (300 + i) * BS);
      }
      await v.flush();
      await expectVolumeEquals(v, model, 'after refilling');
      expect(v.stats().dataBlocksUsed).toBe(DATA_BLOCKS);
      await closeVol(v);
      const again = await open(backend);
      await expectVolumeEquals(again, model, 'after reopen');
      await closeVol(again);
    });
  }

  // Regression: writers that found no free block flushed once and gave up, though the flush freed
  // fewer blocks than were waiting and the writes in flight were about to free the rest.
  it('32 concurrent overwrites of a nearly full volume wait for the blocks overwrites free: no ENOSPC, nothing lost', async () => {
    const { v, backend } = await smallVolume('async');
    const rand = prng(33);
    const USED = DATA_BLOCKS - 8;
    const model = new Uint8Array(4 << 20);
    for (let i = 0; i < USED; i++) {
      const b = randomBytes(BS, rand);
      await v.write(i * BS, b);
      model.set(b, i * BS);
    }
    await v.flush();
    for (let round = 0; round < 20; round++) {
      const lbas = [...Array(USED).keys()].sort(() => rand() - 0.5).slice(0, 32);
      const blocks = lbas.map(() => randomBytes(BS, rand));
      const errors = await Promise.all(lbas.map((l, i) => errorOf(v.write(l * BS, blocks[i]))));
      expect(errors.map((e) => e?.code ?? null).filter((c) => c !== null)).toEqual([]);
      lbas.forEach((l, i) => model.set(blocks[i], l * BS));
    }
    await v.flush();
    await expectVolumeEquals(v, model, 'after the overwrites');
    expect(v.stats()).toMatchObject({ dataBlocksUsed: USED, logicalBlocksUsed: USED, overheadBlocksUsed: overheadOf(v) });
    await closeVol(v);
    const again = await open(backend);
    await expectVolumeEquals(again, model, 'after reopen');
    await closeVol(again);
  });

  // Regression: every write once reserved a physical block before looking at its data, so a full volume refused zeros.
  it('a full volume still takes a write of zeros over stored data (it needs no space and frees a block)', async () => {
    const { v } = await smallVolume('async');
    const rand = prng(32);
    for (let i = 0; i < DATA_BLOCKS; i++) await v.write(i * BS, randomBytes(BS, rand));
    await v.flush();
    expect(v.stats()).toMatchObject({ dataBlocksUsed: DATA_BLOCKS, overheadBlocksUsed: overheadOf(v) });
    await v.write(0, new Uint8Array(BS));
    await v.flush();
    expect(v.stats().dataBlocksUsed).toBe(DATA_BLOCKS - 1);
  });
});

// ---- crash recovery with a volatile write cache ----------------------------------------------------
describe('vdo volume: power cut with unflushed writes', () => {
  it('acknowledged sync writes, and async writes and discards before a completed flush, survive a power cut that drops the write cache', async () => {
    for (const writePolicy of ['sync', 'async'] as const) {
      const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 16 << 20 }));
      let v = await create(fault, { logicalSize: 4 << 20, codec: 'lz4', writePolicy });
      const rand = prng(51);
      const model = new Uint8Array(4 << 20);
      for (let i = 0; i < 40; i++) {
        const b = i % 4 === 0 ? new Uint8Array(BS) : i % 4 === 1 ? randomBytes(BS, rand) : textBlock(rand, `s${i}`);
        model.set(b, i * 3 * BS + (i % 2) * 100);
        await v.write(i * 3 * BS + (i % 2) * 100, b);
      }
      if (writePolicy === 'async') {
        await v.discard(30 * BS, 4 * BS);
        model.fill(0, 30 * BS, 34 * BS);
        await v.flush();
      }
      fault.powerCut({ mode: 'drop' });
      await abandonVol(v);
      fault.powerOn();
      v = await open(fault);
      await expectVolumeEquals(v, model, `${writePolicy}: after the power cut`);
      await closeVol(v);
    }
  });

  // Regression: a sync discard once resolved with its journal entries only in memory.
  it('an acknowledged sync discard survives a power cut that drops the write cache', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 16 << 20 }));
    let v = await create(fault, { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'sync' });
    const model = new Uint8Array(8 * BS).fill(0x5a);
    await v.write(0, model);
    await v.discard(2 * BS, 4 * BS);
    model.fill(0, 2 * BS, 6 * BS);
    fault.powerCut({ mode: 'drop' });
    await abandonVol(v);
    fault.powerOn();
    v = await open(fault);
    expectBytes(await v.read(0, 8 * BS), model, 'after the power cut');
  });

  it('every block reads as its flushed content or one written after the flush; the volume opens every time', async () => {
    const key = (b: Uint8Array): string => buf(b).toString('base64');
    const LB = 512;
    let reverted = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 16 << 20 }));
      // Seeds 1–2: a 4-block journal and 2-page cache (checkpoints all the time); others: a roomy journal.
      const small = seed <= 2;
      const geometry = small ? { journalBlocks: 4, cachePages: 2 } : { journalBlocks: 64 };
      let v = await create(fault, { logicalSize: LB * BS, codec: seed % 2 ? 'lz4' : 'deflate', writePolicy: 'async', ...geometry });
      const rand = prng(1000 + seed + SEED * 1000);
      const gen = new DataGen(rand, seed);
      const model = new Uint8Array(LB * BS);
      for (let i = 0; i < 300; i++) {
        const lba = Math.floor(rand() * LB);
        const b = gen.block();
        model.set(b, lba * BS);
        await v.write(lba * BS, b);
      }
      await v.flush();
      const allowed = Array.from({ length: LB }, (_, lba) => new Set([key(model.subarray(lba * BS, (lba + 1) * BS))]));
      for (let i = 0; i < 200; i++) {
        const lba = Math.floor(rand() * LB);
        if (rand() < 0.1) {
          await v.discard(lba * BS, BS);
          allowed[lba].add(key(new Uint8Array(BS)));
        } else {
          const b = gen.block();
          allowed[lba].add(key(b));
          await v.write(lba * BS, b);
        }
      }
      await new Promise((r) => setTimeout(r, (seed % 3) * 5));
      reverted += fault.powerCut({ mode: 'tear', seed }).sectorsReverted;
      await abandonVol(v);
      fault.powerOn();
      v = await open(fault, { cachePages: geometry.cachePages });
      const all = await v.read(0, LB * BS);
      const wrong: number[] = [];
      for (let lba = 0; lba < LB; lba++) if (!allowed[lba].has(key(all.subarray(lba * BS, (lba + 1) * BS)))) wrong.push(lba);
      expect(wrong, `seed ${seed}: LBAs with content neither flushed nor written later`).toEqual([]);
      await closeVol(v);
    }
    expect(reverted).toBeGreaterThan(0); // the cuts really tore unflushed writes
  });
});

// ---- 5. corruption ------------------------------------------------------------------------------------
describe('vdo volume: corrupt metadata is detected, never read as data', () => {
  async function volumeWith(blocks: number, opts: Partial<Opts> = {}): Promise<{ backend: nvme.MemoryBackend; model: Uint8Array; v: Vol }> {
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    const v = await create(backend, { logicalSize: 4 << 20, codec: 'lz4', writePolicy: 'async', journalBlocks: 8, ...opts });
    const model = new Uint8Array(4 << 20);
    const rand = prng(41);
    for (let i = 0; i < blocks; i++) {
      const b = i % 3 === 0 ? randomBytes(BS, rand) : textBlock(rand, `blk${i}`);
      model.set(b, i * BS);
      await v.write(i * BS, b);
    }
    return { backend, model, v };
  }

  it('superblock: one bad copy falls back to the other; both bad is ECORRUPT naming both', async () => {
    const { backend, model, v } = await volumeWith(30);
    await closeVol(v);
    const bytes = backend.bytes();
    bytes[100] ^= 0xff; // copy A (VB 0): checksum
    let w = await open(backend);
    await expectVolumeEquals(w, model, 'with copy A bad');
    await closeVol(w);
    // That close rewrote copy A (next generation): now break both copies.
    bytes[0] ^= 0xff; // copy A: magic
    bytes[BS + 100] ^= 0xff; // copy B (VB 1): checksum
    const err = await errorOf(open(backend));
    expect(err?.code).toBe('ECORRUPT');
    expect(err?.message).toMatch(/copy A: bad magic.*copy B: checksum/);
    // Copy B alone bad: copy A is used.
    bytes[0] ^= 0xff;
    w = await open(backend);
    await expectVolumeEquals(w, model, 'with copy B bad');
    await closeVol(w);
  });

  it('block map: a bad sector is ECORRUPT (at open, or on reading its LBAs), never zeros or other data', async () => {
    const { backend, model, v } = await volumeWith(300); // leaf 0, sectors 0–5
    const sb = v.sb;
    expect(sb.mapStart).toBe(sb.journalStart + sb.journalBlocks);
    await closeVol(v);
    const read = imageReader(backend.bytes());
    const leaf0 = leafBlock(read, sb, 0);
    expect(leaf0).toBeGreaterThanOrEqual(sb.dataStart); // a tree page, in the data region
    // LBA 100 is in sector 1 (LBAs 53–105) of leaf 0: flip one bit of its PBN.
    const at = entryOffset(read, sb, 100);
    expect(at).toBe(leaf0 * BS + SECTOR + SECTOR_HEADER + (100 - MAP_PER_SECTOR) * MAP_ENTRY);
    backend.bytes()[at] ^= 0x01;
    let w: Vol;
    try {
      w = await open(backend);
    } catch (err) {
      expect(err).toBeInstanceOf(FlashpackError);
      expect((err as FlashpackError).code).toBe('ECORRUPT');
      return;
    }
    for (const lba of [53, 100, 105]) expect(await codeOf(w.read(lba * BS, BS))).toBe('ECORRUPT');
    for (const lba of [0, 52, 106, 299]) expectBytes(await w.read(lba * BS, BS), model.subarray(lba * BS, (lba + 1) * BS), `LBA ${lba}`);
  });

  it('block map: a bad sector in the root or an interior page is ECORRUPT for every LBA under it, mapped or never written, never zeros', async () => {
    // A thin volume of 130 leaves: level 1 page 0 names leaves 0–120 in its sector 0, leaves 121–129 in sector 1.
    const LEAVES = 130;
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    let v = await create(backend, { logicalSize: LEAVES * MAP_PER_PAGE * BS, physicalSize: 16 << 20, codec: 'lz4', writePolicy: 'async', journalBlocks: 8 });
    const rand = prng(44);
    const written = [0, 100, 299, 125 * MAP_PER_PAGE + 7];
    const blocks = new Map<number, Uint8Array>();
    for (const lba of written) {
      const b = textBlock(rand, `lba${lba}`);
      blocks.set(lba, b);
      await v.write(lba * BS, b);
    }
    const sb = v.sb;
    await closeVol(v);
    expect(v.stats().overheadBlocksUsed - sb.dataStart).toBe(4); // leaves 0 and 125, level 1 and level 2 page 0
    const bytes = backend.bytes();
    const snapshot = bytes.slice();
    const read = imageReader(bytes);
    const zero = new Uint8Array(BS);
    const under0 = [0, 100, 299, 5 * MAP_PER_PAGE, 120 * MAP_PER_PAGE + 1]; // leaves 0 (written) and 5, 120 (never written)
    const beside = [125 * MAP_PER_PAGE + 7, 127 * MAP_PER_PAGE]; // leaves 125 (written) and 127 (never written): level 1 sector 1
    /** Each LBA's content, or its error code. */
    const outcome = async (w: Vol, lba: number): Promise<string> => {
      const err = await errorOf(w.read(lba * BS, BS).then((got) => expectBytes(got, blocks.get(lba) ?? zero, `LBA ${lba}`, lba * BS)));
      return err === null ? 'ok' : err.code;
    };
    const cases: [string, number, number[]][] = [
      // Sector 0 holds slot 0 (a child PBN), the one child of the root and of level 2 page 0: every LBA.
      ['the root', sb.mapStart, [...under0, ...beside]],
      ['level 2 page 0', pageBlock(read, sb, 2, 0), [...under0, ...beside]],
      // Level 1 page 0's sector 0: leaves 0–120 only.
      ['level 1 page 0', pageBlock(read, sb, 1, 0), under0],
    ];
    for (const [name, pbn, bad] of cases) {
      expect(pbn, name).toBeGreaterThan(0);
      bytes.set(snapshot);
      bytes[pbn * BS + SECTOR_HEADER] ^= 0x01; // sector 0, slot 0: one bit of the child's PBN
      // A clean open takes the count snapshot without walking the map: the damage is met by the reads under it.
      const w = await open(backend);
      for (const lba of [...under0, ...beside]) expect(await outcome(w, lba), `${name} damaged: LBA ${lba}`).toBe(bad.includes(lba) ? 'ECORRUPT' : 'ok');
      await abandonVol(w);
    }
    // Control: the undamaged image reads back exactly.
    bytes.set(snapshot);
    v = await open(backend);
    for (const lba of [...under0, ...beside]) expect(await outcome(v, lba), `LBA ${lba}`).toBe('ok');
    await closeVol(v);
  });

  it('block map: a sector corrupted under an open volume is ECORRUPT when its page is reloaded; other sectors and pages read fine', async () => {
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    // 16 leaves through a 2-page cache (which also holds the pages above them): every page is reloaded.
    const LEAVES = 16;
    const LB = LEAVES * MAP_PER_PAGE;
    let v = await create(backend, { logicalSize: LB * BS, codec: 'lz4', writePolicy: 'async', cachePages: 2 });
    const model = new Uint8Array(LB * BS);
    const rand = prng(42);
    for (const lba of [0, 5, 60, 100, MAP_PER_PAGE + 1, 2 * MAP_PER_PAGE + 2, 3 * MAP_PER_PAGE + 3]) {
      const b = textBlock(rand, `lba${lba}`);
      model.set(b, lba * BS);
      await v.write(lba * BS, b);
    }
    await closeVol(v);
    v = await open(backend, { cachePages: 2 }); // recovery checkpointed: every cached page is clean
    for (let p = 1; p < LEAVES; p++) await v.read(p * MAP_PER_PAGE * BS, BS); // leaf 0 falls out of the cache
    const misses = v.stats().blockMapCacheMisses;
    const leaf0 = leafBlock(imageReader(backend.bytes()), v.sb, 0);
    expect(leaf0).toBeGreaterThanOrEqual(v.sb.dataStart);
    backend.bytes()[leaf0 * BS + SECTOR + 200] ^= 0x40; // leaf 0, sector 1 (LBAs 53–105)
    expect(await codeOf(v.read(100 * BS, BS))).toBe('ECORRUPT');
    expect(await codeOf(v.read(60 * BS + 10, 10))).toBe('ECORRUPT');
    expect(await codeOf(v.read(80 * BS, BS))).toBe('ECORRUPT'); // unmapped in a bad sector: not zeros
    expect(v.stats().blockMapCacheMisses).toBeGreaterThan(misses);
    for (const lba of [0, 5, 52, 106, MAP_PER_PAGE + 1, 3 * MAP_PER_PAGE + 3]) {
      expectBytes(await v.read(lba * BS, BS), model.subarray(lba * BS, (lba + 1) * BS), `LBA ${lba}`, lba * BS);
    }
  });

  it('journal: a bad sector in the replayed range is ECORRUPT at open (or the data is exact), never silent wrong data', async () => {
    const { backend, model, v } = await volumeWith(40);
    await v.flush();
    expect(v.stats().blockMapPagesWritten).toBe(0); // the mappings live only in the journal
    const { journalStart, journalBlocks } = v.sb;
    await abandonVol(v);
    const bytes = backend.bytes();
    const snapshot = bytes.slice();
    const live: number[] = [];
    for (let j = journalStart; j < journalStart + journalBlocks; j++) {
      if (bytes.subarray(j * BS, (j + 1) * BS).some((x) => x !== 0)) live.push(j);
    }
    expect(live.length).toBeGreaterThan(0);

    // Control: the untouched medium recovers exactly.
    let w = await open(backend);
    await expectVolumeEquals(w, model, 'recovered from the journal');
    await abandonVol(w);

    // Entry bytes (sector 0 and 2 of a live block; 40 entries fill sectors 0–1 and part of 2), a header byte, a sector past the tail.
    const flips = [[0, 100], [0, 3], [2, 40], [1, 500], [6, 300]];
    const outcomes: string[] = [];
    for (const [sector, at] of flips) {
      bytes.set(snapshot);
      bytes[live[0] * BS + sector * SECTOR + at] ^= 0x10;
      const err = await errorOf((async () => {
        w = await open(backend);
        await expectVolumeEquals(w, model, `opened with journal sector ${sector} byte ${at} flipped`);
        await abandonVol(w);
      })());
      if (err !== null) expect(err.code).toBe('ECORRUPT');
      outcomes.push(err === null ? 'exact' : err.code);
    }
    // Damage inside the replayed entries is detected.
    expect(outcomes.slice(0, 4)).toEqual(['ECORRUPT', 'ECORRUPT', 'ECORRUPT', 'ECORRUPT']);
    bytes.set(snapshot);
  });

  for (const codec of ['lz4', 'deflate'] as const) {
    it(`${codec}: a damaged packed block gives ECORRUPT or exactly the data for its LBAs, never other bytes (no crash, no hang); other blocks are intact`, async () => {
      const backend = new nvme.MemoryBackend({ size: 16 << 20 });
      let v = await create(backend, { logicalSize: 4 << 20, codec, writePolicy: 'async' });
      const N = 56;
      const model = new Uint8Array(4 << 20);
      const rand = prng(43);
      for (let i = 0; i < N; i++) {
        const b = i % 2 ? repetitiveBlock(`p${i}`) : textBlock(rand, `p${i}`);
        model.set(b, i * BS);
        await v.write(i * BS, b);
      }
      await v.flush();
      const { dataStart, physicalBlocks } = v.sb;
      await closeVol(v);
      const bytes = backend.bytes();
      const packed: number[] = [];
      for (let pbn = dataStart; pbn < physicalBlocks; pbn++) {
        if (PACKED_MAGIC.every((m, k) => bytes[pbn * BS + k] === m)) packed.push(pbn);
      }
      expect(packed.length).toBeGreaterThan(0);
      const target = packed[0];
      const count = bytes[target * BS + 6];
      const snapshot = bytes.slice(target * BS, (target + 1) * BS);
      const readAll = async (w: Vol): Promise<{ failed: number[]; wrong: number[] }> => {
        const failed: number[] = [];
        const wrong: number[] = [];
        for (let i = 0; i < N; i++) {
          try {
            const got = await w.read(i * BS, BS);
            expect(got.length).toBe(BS);
            if (!sameBytes(got, model.subarray(i * BS, (i + 1) * BS))) wrong.push(i);
          } catch (err) {
            expect(err).toBeInstanceOf(FlashpackError);
            expect((err as FlashpackError).code).toBe('ECORRUPT');
            failed.push(i);
          }
        }
        return { failed, wrong };
      };

      // Header damage is always detected: bad magic, too many fragments, a fragment overrunning the block.
      for (const damage of [(b: Uint8Array) => (b[0] ^= 0xff), (b: Uint8Array) => (b[6] = 15), (b: Uint8Array) => (b[8] = 0xff, b[9] = 0x0f)]) {
        bytes.set(snapshot, target * BS);
        damage(bytes.subarray(target * BS, (target + 1) * BS));
        v = await open(backend);
        const r = await readAll(v);
        await abandonVol(v);
        expect(r.wrong).toEqual([]);
        expect(r.failed.length).toBe(count); // every fragment of the block, nothing else
      }
      bytes.set(snapshot, target * BS);
      v = await open(backend);
      let r = await readAll(v);
      await abandonVol(v);
      expect(r).toEqual({ failed: [], wrong: [] });

      // Payload damage: every read is checked against the block map's data check, so a decode
      // that goes wrong is ECORRUPT too, never other bytes; at most the block's own fragments fail.
      const frand = prng(44);
      for (let trial = 0; trial < 6; trial++) {
        bytes.set(snapshot, target * BS);
        for (let k = 0; k < 4; k++) bytes[target * BS + PACKED_HEADER + Math.floor(frand() * (BS - PACKED_HEADER))] ^= 1 << Math.floor(frand() * 8);
        v = await open(backend);
        r = await readAll(v);
        await abandonVol(v);
        expect(r.wrong).toEqual([]);
        expect(r.failed.length).toBeLessThanOrEqual(count);
      }
      bytes.set(snapshot, target * BS);
    });
  }
});

// ---- resources ------------------------------------------------------------------------------------------
describe('vdo volume: resources', () => {
  // Regression: volumes once carved their pools from the process runtime, which never gives memory back.
  it('closing a volume on the process runtime gives its shared memory back (repeated create/close does not grow it)', async () => {
    const cycle = async (): Promise<void> => {
      const v = await Volume.create(new nvme.MemoryBackend({ size: 8 << 20 }), { logicalSize: 1 << 20, workers: 1 });
      await v.close();
    };
    await cycle();
    const before = processRuntime().memory.buffer.byteLength;
    for (let i = 0; i < 3; i++) await cycle();
    expect(processRuntime().memory.buffer.byteLength).toBe(before);
  });
});

// ---- 6. argument errors ------------------------------------------------------------------------------
describe('vdo volume: argument errors', () => {
  it('EINVAL for offsets and lengths outside the volume and for data that is not bytes', async () => {
    const size = 1 << 20;
    const v = await create(new nvme.MemoryBackend({ size: 8 << 20 }), { logicalSize: size, codec: 'lz4', writePolicy: 'async' });
    const bad: [number, number][] = [[-1, 10], [size, 1], [size - 10, 11], [0, size + 1], [1.5, 10], [0, -1], [0, 2.5], [Number.NaN, 1], [0, Infinity], [2 ** 60, 1]];
    for (const [offset, length] of bad) {
      expect(await codeOf(v.read(offset, length)), `read(${offset}, ${length})`).toBe('EINVAL');
      expect(await codeOf(v.discard(offset, length)), `discard(${offset}, ${length})`).toBe('EINVAL');
      if (length >= 0 && Number.isSafeInteger(length) && length < 1 << 21) {
        expect(await codeOf(v.write(offset, new Uint8Array(length))), `write(${offset}, ${length} bytes)`).toBe('EINVAL');
      }
    }
    for (const data of ['text', [1, 2, 3], { length: 4096 }, null, undefined, 7]) {
      expect(await codeOf(v.write(0, data as unknown as Uint8Array))).toBe('EINVAL');
    }
    // The edges themselves are fine; nothing above changed the volume.
    expect((await v.read(size, 0)).length).toBe(0);
    await v.write(size - 3, Uint8Array.of(1, 2, 3));
    expectBytes(await v.read(size - 4, 4), Uint8Array.of(0, 1, 2, 3), 'tail');
    // A view into a larger buffer, and a Node Buffer, are Uint8Arrays.
    const big = new Uint8Array(3 * BS).map((_, i) => i % 251);
    await v.write(BS, big.subarray(100, 100 + BS));
    expectBytes(await v.read(BS, BS), big.subarray(100, 100 + BS), 'subarray write');
    await v.write(2 * BS, Buffer.from('hello'));
    expect(Buffer.from(await v.read(2 * BS, 5)).toString()).toBe('hello');
    await v.flush();
    expect(v.stats().logicalBlocksUsed).toBe(3); // LBAs 1, 2 and the last one; none of the rejected writes
    expectBytes(await v.read(0, BS), new Uint8Array(BS), 'LBA 0 untouched');
  });

  it('EINVAL for bad create options (before touching the backend), ENOSPC for a backend too small', async () => {
    const backend = new nvme.MemoryBackend({ size: 8 << 20 });
    const base = { logicalSize: 1 << 20, codec: 'lz4' as const, writePolicy: 'async' as const, workers: 1, runtime: new Runtime() };
    for (const logicalSize of [0, -4096, 4097, 1.5 * 4096, Number.NaN, 2 ** 60 + 4096]) {
      expect(await codeOf(Volume.create(backend, { ...base, logicalSize })), `logicalSize ${logicalSize}`).toBe('EINVAL');
    }
    for (const codec of ['zstd', 'LZ4', '', 0]) {
      expect(await codeOf(Volume.create(backend, { ...base, codec: codec as 'lz4' })), `codec ${codec}`).toBe('EINVAL');
    }
    for (const writePolicy of ['writeback', 'SYNC', 1]) {
      expect(await codeOf(Volume.create(backend, { ...base, writePolicy: writePolicy as 'sync' })), `writePolicy ${writePolicy}`).toBe('EINVAL');
    }
    for (const journalBlocks of [0, 3, 65537, 4.5]) {
      expect(await codeOf(Volume.create(backend, { ...base, journalBlocks })), `journalBlocks ${journalBlocks}`).toBe('EINVAL');
    }
    for (const maxInflight of [0, -1, 1.5, 16385]) {
      expect(await codeOf(Volume.create(backend, { ...base, maxInflight })), `maxInflight ${maxInflight}`).toBe('EINVAL');
    }
    for (const cachePages of [0, 1, 2.5]) {
      expect(await codeOf(Volume.create(backend, { ...base, cachePages })), `cachePages ${cachePages}`).toBe('EINVAL');
    }
    for (const indexMemory of [0, 63, 2 ** 30 + 1, 1.5]) {
      expect(await codeOf(Volume.create(backend, { ...base, indexMemory })), `indexMemory ${indexMemory}`).toBe('EINVAL');
    }
    expect(await codeOf(Volume.create(backend, { ...base, physicalSize: 16 << 20 }))).toBe('EINVAL');
    expect(await codeOf(Volume.create(backend, { ...base, physicalSize: 100 }))).toBe('EINVAL');
    expect(await codeOf(Volume.create(backend, { ...base, physicalSize: 10 * BS }))).toBe('ENOSPC');
    // Nothing was formatted: the backend holds no volume.
    expect(backend.bytes().subarray(0, 2 * BS).every((x) => x === 0)).toBe(true);
    expect(await codeOf(Volume.open(backend, { workers: 1, runtime: new Runtime() }))).toBe('ECORRUPT');
    // And a good create still works on it.
    const v = await create(backend, base);
    await v.write(0, Uint8Array.of(9));
    expect((await v.read(0, 1))[0]).toBe(9);
  });

  it('a pipeline deeper than the default buffer count (maxInflight 4096) still finishes: its buffers are sized from it', async () => {
    // With a fixed pool, 4096 writes in flight held every 4 KiB buffer (data + compressed
    // form) and the block map could not load a page to map them: the ingest hung.
    const n = 6000;
    const backend = new nvme.MemoryBackend({ size: (n + 512) * BS });
    const v = await create(backend, { logicalSize: n * BS, codec: 'lz4', writePolicy: 'async', maxInflight: 4096, cachePages: 4 });
    const blockOf = (i: number): Uint8Array => {
      const b = new Uint8Array(BS);
      for (let k = 0; k < BS; k += 8) b[k] = (i * 31 + k) & 0xff; // compressible, distinct
      b[1] = i & 0xff;
      b[2] = i >> 8;
      return b;
    };
    await Promise.all(Array.from({ length: n }, (_, i) => v.write(i * BS, blockOf(i))));
    await v.flush();
    for (let i = 0; i < n; i += 97) expect(Buffer.compare(await v.read(i * BS, BS), blockOf(i)), `block ${i}`).toBe(0);
    expect(v.stats().logicalBlocksUsed).toBe(n);
  });

  it('ENXIO for every operation after close() or abandon(); close() twice is harmless', async () => {
    for (const end of ['close', 'abandon'] as const) {
      const backend = new nvme.MemoryBackend({ size: 8 << 20 });
      const v = await create(backend, { logicalSize: 1 << 20, codec: 'lz4', writePolicy: 'async' });
      await v.write(0, Uint8Array.of(1, 2, 3));
      await v.flush();
      if (end === 'close') await closeVol(v);
      else await abandonVol(v);
      expect(await codeOf(v.read(0, 3))).toBe('ENXIO');
      expect(await codeOf(v.write(0, Uint8Array.of(1)))).toBe('ENXIO');
      expect(await codeOf(v.discard(0, BS))).toBe('ENXIO');
      expect(await codeOf(v.flush())).toBe('ENXIO');
      expect(await codeOf(v.close())).toBe('ok');
      const w = await open(backend);
      expectBytes(await w.read(0, 3), Uint8Array.of(1, 2, 3), `reopened after ${end}`);
      await closeVol(w);
    }
  });
});

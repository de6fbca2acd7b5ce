/**
 * Bit rot (issue 17): bytes of stored data blocks and packed blocks changed
 * on the media behind a closed volume. Every read of an affected LBA must
 * fail ECORRUPT naming LBA and PBN, every other LBA must read exactly what
 * was written, scrub() must list exactly the affected LBAs, and rewriting
 * them must repair the volume. "Affected" is decided by an oracle that
 * shares no code with the volume: the map parsed from the image bytes, the
 * packed header parsed by hand and each fragment decoded by the test's own
 * LZ4 model — an LBA is affected when its stored bytes no longer give back
 * what was written. At volume blocks of 4 KiB and of 64 KiB (a packed block
 * of 64 KiB holds fragments of 64 KiB blocks).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FlashpackError, Runtime, Volume, nvme } from '../dist/index.js';
import {
  STATE_COMPRESSED_BASE, STATE_UNCOMPRESSED, STATE_UNMAPPED, SUPERBLOCK_COPIES, decodeSuperblock,
  type Superblock,
} from '../dist/vdo/encodings.js';
import { prng, randomBytes } from './helpers/data.js';
import { codeOf } from './helpers/codes.js';
import { modelDecodeBlock } from './helpers/lz4-model.js';
import { entryOffset, imageReader } from './helpers/map-image.js';

/** A PBN, and the superblock's block. */
const PBN_BYTES = 4096;
/** The volume block and the logical blocks of the case running (set per case). */
let BS = 4096;
let LOGICAL_BLOCKS = 1024;
const PACKED_MAGIC = 0x42435046; // "FPCB"
const PACKED_HEADER_BYTES = 36;

const live = new Set<Volume>();
afterEach(async () => {
  for (const v of [...live]) {
    live.delete(v);
    await v.close().catch(() => v.abandon().catch(() => {}));
  }
});

async function opened(p: Promise<Volume>): Promise<Volume> {
  const v = await p;
  live.add(v);
  return v;
}

async function closed(v: Volume): Promise<void> {
  live.delete(v);
  await v.close();
}

const WORDS = 'block map slab journal packer fragment dedupe advice verify scrub checksum sector extent'.split(' ');

/** Text of 2–6 seeded words: compresses to fragments of a sixth to a half of a block. */
function textBlock(rand: () => number): Uint8Array {
  const words = 2 + Math.floor(rand() * 5);
  let s = '';
  while (s.length < BS) s += WORDS[Math.floor(rand() * words)] + (rand() < 0.05 ? String(Math.floor(rand() * 1e3)) : '') + ' ';
  return new TextEncoder().encode(s.slice(0, BS));
}

/** Zero blocks, packable text, incompressible bytes and copies of earlier blocks (shared by dedupe). */
function modelFor(rand: () => number): Uint8Array {
  const model = new Uint8Array(LOGICAL_BLOCKS * BS);
  for (let i = 0; i < LOGICAL_BLOCKS; i++) {
    const r = rand();
    const j = Math.floor(rand() * i);
    const b = r < 0.1 ? new Uint8Array(BS) : r < 0.5 ? textBlock(rand) : r < 0.8 || i === 0 ? randomBytes(BS, rand) : model.slice(j * BS, (j + 1) * BS);
    model.set(b, i * BS);
  }
  return model;
}

function superblockOf(img: Uint8Array): Superblock {
  const copies = [];
  for (let c = 0; c < SUPERBLOCK_COPIES; c++) {
    const sb = decodeSuperblock(img.subarray(c * PBN_BYTES, (c + 1) * PBN_BYTES));
    if (typeof sb !== 'string') copies.push(sb);
  }
  copies.sort((a, b) => b.generation - a.generation);
  return copies[0];
}

const u32 = (b: Uint8Array, at: number): number => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;

/** Each LBA's (PBN, state) as the image's block map tree holds them (a closed volume: every mapping checkpointed; a leaf never written: unmapped). */
function mappings(img: Uint8Array, sb: Superblock): { pbn: number; state: number }[] {
  const out = [];
  const read = imageReader(img);
  for (let lba = 0; lba < sb.logicalBlocks; lba++) {
    const at = entryOffset(read, sb, lba);
    out.push(at < 0 ? { pbn: 0, state: STATE_UNMAPPED } : { pbn: u32(img, at), state: img[at + 4] });
  }
  return out;
}

/** What the oracle makes of an LBA's stored bytes: the block they give back, or null. */
function storedBytes(img: Uint8Array, pbn: number, state: number): Uint8Array | null {
  const b = img.subarray(pbn * PBN_BYTES, pbn * PBN_BYTES + BS);
  if (state === STATE_UNCOMPRESSED) return b;
  if (u32(b, 0) !== PACKED_MAGIC) return null;
  const count = b[6];
  const slot = state - STATE_COMPRESSED_BASE;
  if (count > 14 || slot >= count) return null;
  let at = PACKED_HEADER_BYTES;
  for (let i = 0; i < slot; i++) at += b[8 + 2 * i] | (b[9 + 2 * i] << 8);
  const size = b[8 + 2 * slot] | (b[9 + 2 * slot] << 8);
  if (size === 0 || at + size > BS) return null;
  const r = modelDecodeBlock(b.slice(at, at + size), BS);
  return r.ok && r.bytes.length === BS ? r.bytes : null;
}

const same = (a: Uint8Array | null, b: Uint8Array): boolean => a !== null && a.length === b.length && a.every((x, i) => x === b[i]);


const CASES = [
  { seed: 17, bs: 4096, blocks: 1024, damage: 16 },
  { seed: 1701, bs: 4096, blocks: 1024, damage: 16 },
  { seed: 6464, bs: 65536, blocks: 256, damage: 6 },
];

describe('bit rot in stored blocks', () => {
  for (const { seed, bs, blocks, damage } of CASES) {
    it(`seed ${seed}, ${bs / 1024} KiB blocks: damaged blocks read ECORRUPT naming LBA and PBN, the rest exact; scrub lists exactly them; rewriting repairs`, async () => {
      BS = bs;
      LOGICAL_BLOCKS = blocks;
      const rand = prng(seed);
      const backend = new nvme.MemoryBackend({ size: 2 * blocks * bs + (8 << 20) });
      let v = await opened(Volume.create(backend, { logicalSize: LOGICAL_BLOCKS * BS, blockBytes: BS, codec: 'lz4', writePolicy: 'async', workers: 1, runtime: new Runtime() }));
      const model = modelFor(rand);
      for (let k = 0; k < LOGICAL_BLOCKS; k += 64) {
        await Promise.all(Array.from({ length: 64 }, (_, j) => v.write((k + j) * BS, model.subarray((k + j) * BS, (k + j + 1) * BS))));
      }
      await closed(v);

      const img = backend.bytes();
      const sb = superblockOf(img);
      const maps = mappings(img, sb);
      const stored = new Set<number>();
      const raw: number[] = [];
      const packed: number[] = [];
      for (const { pbn, state } of maps) {
        if (state === STATE_UNMAPPED || pbn === 0 || stored.has(pbn)) continue;
        stored.add(pbn);
        (state === STATE_UNCOMPRESSED ? raw : packed).push(pbn);
      }
      expect(raw.length).toBeGreaterThan(blocks / 10);
      expect(packed.length).toBeGreaterThan(blocks / 40);
      // Before any damage the oracle agrees with the model everywhere.
      for (let lba = 0; lba < LOGICAL_BLOCKS; lba++) {
        const { pbn, state } = maps[lba];
        if (state !== STATE_UNMAPPED && pbn !== 0) expect(same(storedBytes(img, pbn, state), model.subarray(lba * BS, (lba + 1) * BS))).toBe(true);
      }

      // Damage: 1–3 bytes in each of `damage` raw and `damage` packed blocks (a packed block's header or fragments).
      const pick = (from: number[], n: number): number[] => {
        const pool = [...from];
        const out: number[] = [];
        while (out.length < n && pool.length > 0) out.push(pool.splice(Math.floor(rand() * pool.length), 1)[0]);
        return out;
      };
      const damaged = new Set<number>();
      for (const pbn of [...pick(raw, damage), ...pick(packed, damage)]) {
        const b = img.subarray(pbn * PBN_BYTES, pbn * PBN_BYTES + BS);
        let used = BS;
        if (u32(b, 0) === PACKED_MAGIC) {
          used = PACKED_HEADER_BYTES;
          for (let i = 0; i < b[6]; i++) used += b[8 + 2 * i] | (b[9 + 2 * i] << 8);
        }
        for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) b[Math.floor(rand() * used)] ^= 1 + Math.floor(rand() * 255);
        damaged.add(pbn);
      }
      const affected = new Set<number>();
      for (let lba = 0; lba < LOGICAL_BLOCKS; lba++) {
        const { pbn, state } = maps[lba];
        if (damaged.has(pbn) && !same(storedBytes(img, pbn, state), model.subarray(lba * BS, (lba + 1) * BS))) affected.add(lba);
      }
      // Every LBA of a damaged raw block is affected; packed damage affects at least the slots it hit.
      for (let lba = 0; lba < LOGICAL_BLOCKS; lba++) {
        if (damaged.has(maps[lba].pbn) && maps[lba].state === STATE_UNCOMPRESSED) expect(affected.has(lba)).toBe(true);
      }
      expect(affected.size).toBeGreaterThan(damage);

      v = await opened(Volume.open(backend, { runtime: new Runtime(), workers: 1 }));
      // Block by block: ECORRUPT naming LBA and PBN, or exactly what was written.
      const failed = new Set<number>();
      for (let lba = 0; lba < LOGICAL_BLOCKS; lba++) {
        try {
          const got = await v.read(lba * BS, BS);
          expect(same(got, model.subarray(lba * BS, (lba + 1) * BS)), `LBA ${lba} reads wrong bytes`).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(FlashpackError);
          expect((err as FlashpackError).code).toBe('ECORRUPT');
          expect((err as Error).message).toContain(`LBA ${lba} → PBN ${maps[lba].pbn}`);
          failed.add(lba);
        }
      }
      expect([...failed].sort((a, b) => a - b)).toEqual([...affected].sort((a, b) => a - b));
      expect(v.stats().checksumErrors).toBe(affected.size);
      // A gathered read over the whole volume fails whole rather than return any wrong byte.
      expect(await codeOf(v.read(0, LOGICAL_BLOCKS * BS))).toBe('ECORRUPT');
      // A partial write over a damaged block is refused (its read-modify-write would store the damage).
      const victim = [...affected][0];
      expect(await codeOf(v.write(victim * BS + 512, new Uint8Array(512).fill(7)))).toBe('ECORRUPT');

      // Scrub: exactly the affected LBAs, each with its PBN and slot, with progress to the end.
      const progress: number[] = [];
      const report = await v.scrub({ onProgress: (done, total) => progress.push(done / total) });
      expect(progress[progress.length - 1]).toBe(1);
      expect(report.logicalBlocks).toBe(LOGICAL_BLOCKS);
      expect(report.blocksChecked + report.bad.length).toBe(maps.filter((m) => m.state !== STATE_UNMAPPED && m.pbn !== 0).length);
      expect(report.bad.map((b) => b.lba)).toEqual([...affected].sort((a, b) => a - b));
      for (const b of report.bad) {
        expect(b.pbn).toBe(maps[b.lba].pbn);
        expect(b.slot).toBe(maps[b.lba].state === STATE_UNCOMPRESSED ? -1 : maps[b.lba].state - STATE_COMPRESSED_BASE);
      }

      // Repair as a replica would: rewrite each affected LBA whole; then everything reads back, scrub is clean, across a reopen.
      for (const lba of affected) await v.write(lba * BS, model.subarray(lba * BS, (lba + 1) * BS));
      expect((await v.scrub()).bad).toEqual([]);
      await closed(v);
      v = await opened(Volume.open(backend, { runtime: new Runtime(), workers: 1 }));
      const all = await v.read(0, LOGICAL_BLOCKS * BS);
      expect(same(all, model)).toBe(true);
      const again = await v.scrub();
      expect(again.bad).toEqual([]);
      expect(v.stats().checksumErrors).toBe(0);
    }, 60_000);
  }
});

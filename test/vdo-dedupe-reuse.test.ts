/**
 * Dedupe against a block that was freed and is being reused. The index keeps
 * stale advice (dm-vdo's does too): after every LBA holding data D is
 * overwritten and a flush makes D's block reusable, the index still says "D
 * is at PBN p". When p is allocated for new data E and E's write is still in
 * flight, the device still holds D at p — a verifying read of the advice
 * matches, and sharing p would map the new copy of D to a block about to hold
 * E. A block being written is never shared (dm-vdo's PBN write lock); these
 * tests build that moment on purpose, then in a random stress.
 * Imports the built package: the engine and device workers load dist/.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Runtime, Volume, nvme } from '../dist/index.js';
import { equalBytes, prng, randomBytes } from './helpers/data.js';

const BS = 4096;
const DATA_BLOCKS = 16;
const ROUNDS = 10;
const STRESS_ROUNDS = 1500;

const live = new Set<Volume>();
afterEach(async () => {
  for (const v of [...live]) await v.close().catch(() => v.abandon());
  live.clear();
});

/** Block map tree pages of a 4 MiB volume: 3 leaves, a level-1 and a level-2 page. */
const TREE_PAGES = 5;

/**
 * A volume with `dataBlocks` data blocks (2 superblocks, 8 journal, the map's root, 2 index blocks,
 * two count snapshots of 2 blocks before them) besides its block map tree, placed first (zeroes written under
 * every leaf), so the allocator hands out data blocks from there on as the scenarios expect.
 */
async function small(codec: 'lz4' | 'deflate', dataBlocks = DATA_BLOCKS): Promise<Volume> {
  const v = await Volume.create(new nvme.MemoryBackend({ size: 16 << 20 }), {
    logicalSize: 4 << 20, physicalSize: (2 + 8 + 1 + 2 + 4 + TREE_PAGES + dataBlocks) * BS, journalBlocks: 8, codec, workers: 1, runtime: new Runtime(),
  });
  live.add(v);
  expect(v.sb.physicalBlocks - v.sb.dataStart).toBe(TREE_PAGES + dataBlocks);
  for (let leaf = 0; leaf < 3; leaf++) await v.write(leaf * 424 * BS, new Uint8Array(BS));
  await v.flush();
  expect(v.stats().overheadBlocksUsed - v.sb.dataStart).toBe(TREE_PAGES);
  return v;
}

/** Compressible and distinct: a tagged phrase (packs into a shared block). */
function text(tag: string): Uint8Array {
  return new TextEncoder().encode(`${tag}|`.padEnd(BS, 'the quick brown fox jumps over the lazy dog. '));
}

describe('vdo volume: dedupe never shares a block whose new data is still being written', () => {
  for (const kind of ['random', 'text'] as const) {
    it(`${kind} data: the stale advice's block, reallocated to other data in flight, is not shared (${ROUNDS} volumes)`, async () => {
      const rand = prng(kind === 'random' ? 71 : 72);
      let shared = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const v = await small('lz4');
        const data = (tag: string): Uint8Array => (kind === 'random' ? randomBytes(BS, rand) : text(`${tag}.${round}.${rand()}`));
        // D is stored first, at the first data block; then distinct random blocks fill all but the last.
        const d = data('D');
        await v.write(0, d);
        await v.flush();
        const fill: Uint8Array[] = [];
        for (let lba = 1; lba < DATA_BLOCKS - 1; lba++) {
          const b = randomBytes(BS, rand);
          await v.write(lba * BS, b);
          fill.push(b);
        }
        await v.flush();
        expect(v.stats().dataBlocksUsed).toBe(DATA_BLOCKS - 1);
        // D's only copy goes (LBA 0 now shares another block), and so does block 1's: both are reusable
        // after the flush. The last block is used next, so the allocator's next turn starts at D's old block.
        await v.write(0, fill[fill.length - 1]);
        await v.write(BS, fill[fill.length - 1]);
        await v.flush();
        await v.write(50 * BS, randomBytes(BS, rand));
        await v.flush();
        expect(v.stats().dataBlocksUsed).toBe(DATA_BLOCKS - 2);
        // In one tick: new data E takes D's old block, and D is written again (the index still advises that block).
        const e = randomBytes(BS, rand);
        const writes = [v.write(100 * BS, e), v.write(101 * BS, d)];
        await Promise.all(writes);
        shared += v.stats().dedupeAdviceValid;
        expect(equalBytes(await v.read(100 * BS, BS), e), `round ${round}: LBA 100 reads E`).toBe(true);
        expect(equalBytes(await v.read(101 * BS, BS), d), `round ${round}: LBA 101 reads D, not the data that reused its old block`).toBe(true);
        await v.flush();
        expect(equalBytes(await v.read(101 * BS, BS), d), `round ${round}: LBA 101 after flush`).toBe(true);
        live.delete(v);
        await v.close();
      }
      // The fill's duplicate writes shared (the advice path ran); D was never shared with E's block.
      expect(shared).toBeGreaterThanOrEqual(2 * ROUNDS);
    });
  }

  it(`random stress: ${STRESS_ROUNDS} bursts of writes, discards and flushes over 12 LBAs and 40 distinct blocks on 64 data blocks read back as last written`, async () => {
    const rand = prng(73);
    const v = await small('lz4', 64);
    const pool: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) pool.push(i % 2 === 0 ? text(`pool ${i}`) : randomBytes(BS, rand));
    const LBAS = 12;
    const model = new Int32Array(LBAS).fill(-1);
    const zero = new Uint8Array(BS);
    for (let round = 0; round < STRESS_ROUNDS; round++) {
      const ops: Promise<void>[] = [];
      for (let k = 1 + Math.floor(rand() * 24); k > 0; k--) {
        const lba = Math.floor(rand() * LBAS);
        if (rand() < 0.1) {
          ops.push(v.discard(lba * BS, BS));
          model[lba] = -1;
        } else {
          const i = Math.floor(rand() * pool.length);
          ops.push(v.write(lba * BS, pool[i]));
          model[lba] = i;
        }
      }
      if (rand() < 0.9) ops.push(v.flush());
      await Promise.all(ops);
      const got = await v.read(0, LBAS * BS);
      for (let lba = 0; lba < LBAS; lba++) {
        const want = model[lba] < 0 ? zero : pool[model[lba]];
        if (!equalBytes(got.subarray(lba * BS, (lba + 1) * BS), want)) {
          const found = pool.findIndex((p) => equalBytes(p, got.subarray(lba * BS, (lba + 1) * BS)));
          expect.fail(`round ${round}: LBA ${lba} should hold pool block ${model[lba]}, reads ${found < 0 ? 'something else' : `pool block ${found}`}`);
        }
      }
    }
    const s = v.stats();
    expect(s.dedupeAdviceValid).toBeGreaterThan(0);
    expect(s.dedupeAdviceStale).toBeGreaterThan(0);
  });
});

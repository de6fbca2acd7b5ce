/**
 * Reference counts saved across a clean close, so a clean open does not scan
 * the whole block map to rebuild them (issue 17; dm-vdo persists its
 * reference blocks with a slab journal, which is what a dirty open still
 * lacks here): the depot's counts in the refs region, behind a header sector
 * naming the superblock generation of the close that wrote them and the
 * payload's CRC-32C. Payload: logical blocks used (u64), block map tree pages
 * (u64), then one count byte per data block.
 *
 * Invariants:
 * - counts are used only by an open whose journal replays nothing, when the
 *   header's generation is the current superblock's and the CRC matches;
 *   otherwise they are rebuilt from the map, as before;
 * - a writable open erases the header, durably, before it writes anything
 *   else: a checkpoint can empty the journal while the map moves on, so
 *   counts saved at one close must never meet a later crash.
 */
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice } from './block-device.js';
import type { SlabDepot } from './slab-depot.js';
import { BLOCK_BYTES, REFS_MAGIC, type Superblock } from './encodings.js';
import { readSaved, writeSaved, type SavedRegion } from './saved-region.js';

export const refsRegionOf = (sb: Superblock): SavedRegion => ({ start: sb.refsStart, magic: REFS_MAGIC, nonce: sb.nonce });

/** Where the count bytes start in the payload (after the u64s of logical blocks used and tree pages). */
const COUNTS_AT = 16;
/** Payload bytes the saved counts use (and their CRC covers). */
export const countsBytes = (sb: Superblock): number => COUNTS_AT + sb.physicalBlocks - sb.dataStart;

/** What saved counts hold: logical blocks used, tree pages, and a count per data block. */
export interface SavedCounts {
  logicalUsed: number;
  mapPages: number;
  counts: Uint8Array;
}

/** The saved counts a payload holds (`counts` a view into it). */
export function decodeCounts(payload: Uint8Array, sb: Superblock): SavedCounts {
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return {
    logicalUsed: v.getUint32(0, true) + v.getUint32(4, true) * 2 ** 32,
    mapPages: v.getUint32(8, true) + v.getUint32(12, true) * 2 ** 32,
    counts: payload.subarray(COUNTS_AT, countsBytes(sb)),
  };
}

/** Writes the counts, then the header naming `generation` (the superblock the close writes next). */
export async function saveReferences(depot: SlabDepot, logicalUsed: number, sb: Superblock, dev: BlockDevice, pool: SlabPool, generation: number): Promise<void> {
  const payload = new Uint8Array((sb.refsBlocks - 1) * BLOCK_BYTES);
  const v = new DataView(payload.buffer);
  v.setUint32(0, logicalUsed >>> 0, true);
  v.setUint32(4, Math.floor(logicalUsed / 2 ** 32), true);
  v.setUint32(8, depot.mapPages, true);
  payload.set(depot.counts(), COUNTS_AT);
  await writeSaved(refsRegionOf(sb), dev, pool, payload, countsBytes(sb), generation);
}

/** The counts the close that wrote the current superblock saved, if whole: logical blocks used and a count per data block; else null. */
export async function loadReferences(sb: Superblock, dev: BlockDevice, pool: SlabPool): Promise<SavedCounts | null> {
  const payload = await readSaved(refsRegionOf(sb), dev, pool, (sb.refsBlocks - 1) * BLOCK_BYTES, countsBytes(sb), sb.generation);
  return payload === null ? null : decodeCounts(payload, sb);
}

/** Makes saved counts unusable (a zero header), written through (FUA): a writable open, before anything else changes. */
export async function eraseReferences(sb: Superblock, dev: BlockDevice, pool: SlabPool): Promise<void> {
  const buf = await pool.allocAsync(BLOCK_BYTES);
  try {
    pool.bytes(buf, true).subarray(0, BLOCK_BYTES).fill(0);
    await dev.write(sb.refsStart, buf, true, 1);
  } finally {
    pool.free(buf);
  }
}

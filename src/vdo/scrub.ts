/**
 * Scrub (dm-vdo has none; ZFS's scrub is the model): every stored block of the
 * volume read and verified against the data check its block map entry
 * records, while I/O continues. What fails is reported, never repaired here:
 * a replicated volume repairs a bad LBA by writing the whole block back from a
 * replica that reads it right (a whole-block write replaces the mapping, so
 * the bad block is never read again), and a single volume's owner decides.
 *
 * Invariants:
 * - the range is walked in order, SCRUB_CHUNK_BLOCKS at a time, each chunk
 *   one gathered read (read-path.ts): every stored block it maps is read once
 *   and each of its LBAs verified, a packed block's slots one by one; a
 *   range no block map leaf covers maps nothing and is skipped whole;
 * - a block or map sector that fails is recorded and the scrub goes on; the
 *   caller's reads of the block keep failing ECORRUPT until it is rewritten.
 */
import type { BlockMap } from './block-map.js';
import type { BadBlock, ReadPath, ScrubTally } from './read-path.js';

/** LBAs one step of a scrub covers: one gathered read, then a progress report. */
export const SCRUB_CHUNK_BLOCKS = 1024;

export interface ScrubOptions {
  /** Called after each step with logical blocks covered so far and in all. */
  onProgress?: (blocksDone: number, blocksTotal: number) => void;
}

export interface ScrubReport {
  /** Logical blocks walked (the whole volume). */
  logicalBlocks: number;
  /** Stored logical blocks read and verified (mapped to something other than the zero block). */
  blocksChecked: number;
  /** Every LBA whose stored block failed, in LBA order: the PBN (−1 for a map sector that fails; `lba` is then the sector's first LBA), the packed slot (−1 if none) and why. */
  bad: BadBlock[];
}

export async function scrubVolume(reads: ReadPath, map: BlockMap, options: ScrubOptions): Promise<ScrubReport> {
  const logicalBlocks = map.logicalBlocks;
  const tally: ScrubTally = { checked: 0, bad: [] };
  // A tree page that fails: one finding for every LBA under it (reads of them are ECORRUPT), then past it.
  const onBad = (first: number, _end: number, why: string): void => {
    tally.bad.push({ lba: first, pbn: -1, slot: -1, reason: why });
  };
  let lba = await map.nextStored(0, onBad);
  let reported = 0;
  while (lba < logicalBlocks) {
    const n = Math.min(SCRUB_CHUNK_BLOCKS, logicalBlocks - lba);
    await reads.scrub(lba, n, tally);
    options.onProgress?.((reported = lba + n), logicalBlocks);
    lba = await map.nextStored(lba + n, onBad);
  }
  if (reported < logicalBlocks) options.onProgress?.(logicalBlocks, logicalBlocks);
  tally.bad.sort((a, b) => a.lba - b.lba);
  return { logicalBlocks, blocksChecked: tally.checked, bad: tally.bad };
}

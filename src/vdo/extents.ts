/**
 * How a range of a volume is stored, as runs of whole blocks (Volume.extents:
 * NBD's base:allocation, SEEK_DATA/SEEK_HOLE), read from the block map. A
 * block with a write or discard still in flight is `data`: never claimed zero
 * or a hole before it is.
 */
import type { BlockMap } from './block-map.js';
import { pbnOf, stateOf } from './block-map.js';
import type { LogicalZone } from './logical-zone.js';
import { BLOCK_BYTES, MAP_ENTRIES_PER_PAGE, STATE_UNMAPPED, ZERO_PBN } from './encodings.js';

/** A run of whole blocks and how it is stored (Volume.extents). */
export interface VolumeExtent {
  offset: number;
  length: number;
  type: 'data' | 'zero' | 'hole';
}

/** Blocks one extents() call looks at (4 GiB): a client asking about a whole large volume gets an answer in parts. */
export const EXTENTS_SCAN_BLOCKS_MAX = 1 << 20;

/** The runs from the block containing `offset`, at most `maxExtents` of them and EXTENTS_SCAN_BLOCKS_MAX blocks (at least one). */
export async function extentsOf(map: BlockMap, zone: LogicalZone, offset: number, length: number, maxExtents: number): Promise<VolumeExtent[]> {
  const out: VolumeExtent[] = [];
  const first = Math.floor(offset / BLOCK_BYTES);
  const end = Math.min(Math.ceil((offset + Math.max(length, 1)) / BLOCK_BYTES), first + EXTENTS_SCAN_BLOCKS_MAX);
  let lba = first;
  while (lba < end) {
    const pageEnd = Math.min(end, (Math.floor(lba / MAP_ENTRIES_PER_PAGE) + 1) * MAP_ENTRIES_PER_PAGE);
    const page = await map.page(lba);
    try {
      for (; lba < pageEnd; lba++) {
        const m = map.get(page, lba);
        const type: VolumeExtent['type'] = zone.busy(lba) ? 'data' : stateOf(m) === STATE_UNMAPPED ? 'hole' : pbnOf(m) === ZERO_PBN ? 'zero' : 'data';
        const last = out[out.length - 1];
        if (last !== undefined && last.type === type) last.length += BLOCK_BYTES;
        else if (out.length === maxExtents) return out;
        else out.push({ offset: lba * BLOCK_BYTES, length: BLOCK_BYTES, type });
      }
    } finally {
      map.unpin(page);
    }
  }
  return out;
}

/**
 * How a range of a volume is stored, as runs of whole blocks (Volume.extents:
 * NBD's base:allocation, SEEK_DATA/SEEK_HOLE), read from the block map. A
 * block with a write or discard still in flight is `data`: never claimed zero
 * or a hole before it is.
 */
import type { BlockMap } from './block-map.js';
import { pbnOf, stateOf } from './block-map.js';
import type { LogicalZone } from './logical-zone.js';
import { MAP_ENTRIES_PER_PAGE, STATE_UNMAPPED, ZERO_PBN } from './encodings.js';

/** A run of whole blocks and how it is stored (Volume.extents). */
export interface VolumeExtent {
  offset: number;
  length: number;
  type: 'data' | 'zero' | 'hole';
}

/** Stored blocks one extents() call looks at, entry by entry (4 GiB of 4 KiB blocks): a client asking about a whole large volume gets an answer in parts. Unmapped subtrees cost nothing to skip. */
export const EXTENTS_SCAN_BLOCKS_MAX = 1 << 20;

/**
 * The runs from the block containing `offset`, at most `maxExtents` of them
 * (at least one). Leaves that exist are read entry by entry, up to
 * EXTENTS_SCAN_BLOCKS_MAX blocks; between them the map holds nothing, and the
 * gap is one hole (less the blocks with writes in flight) whatever its size.
 */
export async function extentsOf(map: BlockMap, zone: LogicalZone, offset: number, length: number, maxExtents: number, blockBytes: number): Promise<VolumeExtent[]> {
  const out: VolumeExtent[] = [];
  /** Appends [from, to) of `type`; false once the list is full. */
  const add = (type: VolumeExtent['type'], from: number, to: number): boolean => {
    const last = out[out.length - 1];
    if (last !== undefined && last.type === type) last.length += (to - from) * blockBytes;
    else if (out.length === maxExtents) return false;
    else out.push({ offset: from * blockBytes, length: (to - from) * blockBytes, type });
    return true;
  };
  const first = Math.floor(offset / blockBytes);
  const end = Math.ceil((offset + Math.max(length, 1)) / blockBytes);
  let lba = first;
  let scanned = 0;
  while (lba < end && scanned < EXTENTS_SCAN_BLOCKS_MAX) {
    const stored = Math.min(end, await map.nextStored(lba));
    if (stored > lba) {
      // Nothing mapped here: a hole, but for blocks with a write or discard in flight.
      for (const [from, to] of zone.busyIn(lba, stored)) {
        if (from > lba && !add('hole', lba, from)) return out;
        if (!add('data', from, to)) return out;
        lba = to;
      }
      if (lba < stored && !add('hole', lba, stored)) return out;
      lba = stored;
      continue;
    }
    const pageEnd = Math.min(end, (Math.floor(lba / MAP_ENTRIES_PER_PAGE) + 1) * MAP_ENTRIES_PER_PAGE);
    const page = await map.page(lba);
    try {
      for (; lba < pageEnd; lba++, scanned++) {
        const m = map.get(page, lba);
        const type: VolumeExtent['type'] = zone.busy(lba) ? 'data' : stateOf(m) === STATE_UNMAPPED ? 'hole' : pbnOf(m) === ZERO_PBN ? 'zero' : 'data';
        if (!add(type, lba, lba + 1)) return out;
      }
    } finally {
      map.unpin(page);
    }
  }
  return out;
}

/**
 * The block map's shape on disk (dm-vdo's block map tree, with one root): a
 * radix tree of 4 KiB pages, four levels deep. Level 0 pages are leaves
 * (MAP_ENTRIES_PER_PAGE mappings each, encodings.ts); levels 1 and 2 are
 * interior pages of CHILDREN_PER_PAGE child PBNs (0: no child yet, so every
 * LBA under it is unmapped); level 3 is the root, the one page at the
 * superblock's mapStart.
 *
 * Every page but the root is allocated from the data region the first time
 * a mapping under it is set (BlockMap.place), and never freed: its reference
 * count is MAX_REFERENCES, so dedupe can never share it (dm-vdo does the
 * same). A page is sealed like every metadata sector: key = its index at its
 * level, aux = its level, so a page read from the wrong place fails.
 *
 * Invariants the tree keeps on the media:
 * - a parent page is written only after every child it names is durable (a
 *   checkpoint writes level by level, leaves first, with a flush between);
 *   a crash in between leaves children nobody names, which the reference
 *   count rebuild of the dirty open that follows does not count;
 * - a child PBN is 0 or in the data region; anything else is ECORRUPT for
 *   every LBA under it.
 */
import { assert } from '../assert.js';
import { MAX_LOGICAL_BLOCKS, MAP_ENTRIES_PER_PAGE, u32le, SECTOR_BYTES, SECTOR_HEADER_BYTES, SECTORS_PER_BLOCK } from './encodings.js';

export const ROOT_LEVEL = 3;
export const CHILD_BYTES = 4;
export const CHILDREN_PER_SECTOR = Math.floor((SECTOR_BYTES - SECTOR_HEADER_BYTES) / CHILD_BYTES);
export const CHILDREN_PER_PAGE = CHILDREN_PER_SECTOR * SECTORS_PER_BLOCK;
/** Logical blocks the tree can address: 968³ leaves of 424 (1.4 PiB at 4 KiB). */
export const TREE_MAX_LBAS = CHILDREN_PER_PAGE ** ROOT_LEVEL * MAP_ENTRIES_PER_PAGE;
assert(MAX_LOGICAL_BLOCKS <= TREE_MAX_LBAS, 'block map tree: the largest logical size is past what the tree addresses');

/** Pages below `level` one page at `level` spans, in leaves (968^level). */
export const leavesUnder = (level: number): number => CHILDREN_PER_PAGE ** level;

/** The leaf (level 0 page index) holding `lba`. */
export const leafOf = (lba: number): number => Math.floor(lba / MAP_ENTRIES_PER_PAGE);

/** Pages at `level` a volume of `logicalBlocks` can have. */
export const pagesAt = (logicalBlocks: number, level: number): number => Math.ceil(Math.ceil(logicalBlocks / MAP_ENTRIES_PER_PAGE) / leavesUnder(level));

/** A page's cache key: its level and its index at that level. */
export const pageId = (level: number, index: number): number => index * 4 + level;

/** Byte offset of child slot `slot` in an interior page. */
export function childAt(slot: number): number {
  const s = Math.floor(slot / CHILDREN_PER_SECTOR);
  return s * SECTOR_BYTES + SECTOR_HEADER_BYTES + (slot % CHILDREN_PER_SECTOR) * CHILD_BYTES;
}

export function readChild(b: Uint8Array, at: number, slot: number): number {
  return u32le(b, at + childAt(slot));
}

export function writeChild(b: Uint8Array, at: number, slot: number, pbn: number): void {
  const o = at + childAt(slot);
  b[o] = pbn & 0xff;
  b[o + 1] = (pbn >>> 8) & 0xff;
  b[o + 2] = (pbn >>> 16) & 0xff;
  b[o + 3] = (pbn >>> 24) & 0xff;
}

/**
 * The most tree pages (leaves and interior pages, not the root) a volume of
 * `logicalBlocks` can ever allocate: room a default image leaves for them.
 */
export function treePagesFor(logicalBlocks: number): number {
  let n = 0;
  for (let level = 0; level < ROOT_LEVEL; level++) n += pagesAt(logicalBlocks, level);
  return n;
}

/** Names the LBAs under `count` pages from `index` at `level`, for messages. */
export function lbasUnder(level: number, index: number, count = 1): string {
  const first = index * leavesUnder(level) * MAP_ENTRIES_PER_PAGE;
  return `LBAs ${first}–${first + count * leavesUnder(level) * MAP_ENTRIES_PER_PAGE - 1}`;
}

/** A page's name in messages. */
export const pageName = (level: number, index: number): string => (level === 0 ? `block map page ${index}` : level === ROOT_LEVEL ? 'block map root' : `block map level ${level} page ${index}`);

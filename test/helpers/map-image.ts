/**
 * The block map tree of a volume image, walked as the volume walks it
 * (map-tree.ts): for tests that read or damage map entries on the media.
 */
import * as fs from 'node:fs';
import { MAP_ENTRIES_PER_PAGE, mapEntryAt, type Superblock } from '../../dist/vdo/encodings.js';
import { CHILDREN_PER_PAGE, ROOT_LEVEL, readChild } from '../../dist/vdo/map-tree.js';

/** Reads one 4 KiB block of the image. */
export type ReadBlock = (pbn: number) => Uint8Array;

/** A reader over an image file (a block past its end reads as zeroes). */
export const fileReader = (p: string): ReadBlock => (pbn) => {
  const b = new Uint8Array(4096);
  const fd = fs.openSync(p, 'r');
  try {
    fs.readSync(fd, b, 0, 4096, pbn * 4096);
  } finally {
    fs.closeSync(fd);
  }
  return b;
};

/** A reader over a whole image held in memory. */
export const imageReader = (img: Uint8Array): ReadBlock => (pbn) => img.subarray(pbn * 4096, (pbn + 1) * 4096);

/** The block holding page `index` at `level` (ROOT_LEVEL: the root), or 0 if no parent names it. */
export function pageBlock(read: ReadBlock, sb: Superblock, level: number, index: number): number {
  if (level === ROOT_LEVEL) return sb.mapStart;
  const parent = pageBlock(read, sb, level + 1, Math.floor(index / CHILDREN_PER_PAGE));
  return parent === 0 ? 0 : readChild(read(parent), 0, index % CHILDREN_PER_PAGE);
}

/** The block holding leaf `leaf` (block map page `leaf`), or 0. */
export const leafBlock = (read: ReadBlock, sb: Superblock, leaf: number): number => pageBlock(read, sb, 0, leaf);

/** Byte offset in the image of `lba`'s map entry, or −1 if its leaf was never written. */
export function entryOffset(read: ReadBlock, sb: Superblock, lba: number): number {
  const pbn = leafBlock(read, sb, Math.floor(lba / MAP_ENTRIES_PER_PAGE));
  return pbn === 0 ? -1 : pbn * 4096 + mapEntryAt(lba % MAP_ENTRIES_PER_PAGE);
}

/** Every leaf written, in leaf order: [leaf index, block]. */
export function leaves(read: ReadBlock, sb: Superblock): [number, number][] {
  const out: [number, number][] = [];
  const leafPages = Math.ceil(sb.logicalBlocks / MAP_ENTRIES_PER_PAGE);
  const walk = (level: number, index: number, pbn: number): void => {
    const b = read(pbn);
    for (let slot = 0; slot < CHILDREN_PER_PAGE; slot++) {
      const child = index * CHILDREN_PER_PAGE + slot;
      const at = readChild(b, 0, slot);
      if (at === 0 || child >= Math.ceil(leafPages / CHILDREN_PER_PAGE ** (level - 1))) continue;
      if (level === 1) out.push([child, at]);
      else walk(level - 1, child, at);
    }
  };
  walk(ROOT_LEVEL, 0, sb.mapStart);
  return out;
}

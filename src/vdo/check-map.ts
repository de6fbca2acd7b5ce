/**
 * The volume check's block map: the tree walked from its root as BlockMap
 * walks it (map-tree.ts) — every interior sector validated, every child PBN
 * in the data region and named once — then every leaf's sectors and entries,
 * with the changes recovery would replay applied (a leaf the journal fills
 * but no parent names yet is all unmapped before them, as recovery makes it).
 */
import {
  BLOCK_BYTES, MAP_ENTRIES_PER_PAGE, MAP_ENTRIES_PER_SECTOR, MAP_MAGIC, SECTORS_PER_BLOCK, SECTOR_CORRUPT,
  SECTOR_VALID, STATE_UNCOMPRESSED, STATE_UNMAPPED, ZERO_PBN, mapEntryAt, openSector, u32le, dataRegionOf, isDataBlockOf, type SectorHeader, type Superblock,
} from './encodings.js';
import { CHILDREN_PER_PAGE, CHILDREN_PER_SECTOR, ROOT_LEVEL, lbasUnder, pageName, pagesAt, readChild } from './map-tree.js';
import { STATE_MAX, type Replay } from './check-journal.js';
import type { Image, Problems } from './check-image.js';

/** The tree as found: where each leaf lives (in leaf order) and every tree page's block. */
export interface Tree {
  leaves: Map<number, number>;
  /** Blocks of the pages below the root, each named once. */
  pages: number[];
}

/** Sectors of `b`, read for (level, index), that fail: bit s for sector s; each reported. */
function badSectors(b: Uint8Array, sb: Superblock, level: number, index: number, pbn: number, problems: Problems | null): number {
  const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
  let bad = 0;
  for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
    const r = openSector(b, s, MAP_MAGIC, sb.nonce, h);
    const where = `${pageName(level, index)} (PBN ${pbn}) sector ${s}`;
    const under = level === 0
      ? `LBAs ${index * MAP_ENTRIES_PER_PAGE + s * MAP_ENTRIES_PER_SECTOR}–${index * MAP_ENTRIES_PER_PAGE + (s + 1) * MAP_ENTRIES_PER_SECTOR - 1}`
      : lbasUnder(level - 1, index * CHILDREN_PER_PAGE + s * CHILDREN_PER_SECTOR, CHILDREN_PER_SECTOR);
    if (r === SECTOR_CORRUPT) problems?.add(where, `fails its checksum (reads of ${under} are ECORRUPT)`);
    else if (r === SECTOR_VALID && (h.key !== index || h.aux !== level)) problems?.add(where, `holds ${pageName(h.aux, h.key)}'s sector (its header), not this page's (reads of ${under} are ECORRUPT)`);
    else continue;
    bad |= 1 << s;
  }
  return bad;
}

/** Walks the tree from the root: where every leaf lives, and problems with interior pages. */
export async function walkTree(img: Image, sb: Superblock, problems: Problems | null): Promise<Tree> {
  const tree: Tree = { leaves: new Map(), pages: [] };
  const seen = new Set<number>();
  const b = new Uint8Array(BLOCK_BYTES);
  const visit = async (level: number, index: number, pbn: number): Promise<void> => {
    await img.read(pbn, 1, b);
    const bad = badSectors(b, sb, level, index, pbn, problems);
    const children: [number, number][] = [];
    const first = index * CHILDREN_PER_PAGE;
    const end = pagesAt(sb.logicalBlocks, level - 1);
    for (let slot = 0; slot < CHILDREN_PER_PAGE; slot++) {
      if ((bad & (1 << Math.floor(slot / CHILDREN_PER_SECTOR))) !== 0) continue;
      const child = readChild(b, 0, slot);
      if (child === 0) continue;
      const where = `${pageName(level, index)} (PBN ${pbn}) slot ${slot}`;
      if (first + slot >= end) problems?.add(where, `names PBN ${child} for ${pageName(level - 1, first + slot)}, past the logical size`);
      else if (!isDataBlockOf(sb, child)) {
        problems?.add(where, `names PBN ${child} for ${pageName(level - 1, first + slot)}, outside ${dataRegionOf(sb)} (reads of ${lbasUnder(level - 1, first + slot)} are ECORRUPT)`);
      } else if (seen.has(child)) problems?.add(where, `names PBN ${child}, which another slot of the tree names too`);
      else {
        seen.add(child);
        tree.pages.push(child);
        children.push([first + slot, child]);
      }
    }
    img.total += children.length;
    for (const [child, at] of children) {
      if (level === 1) tree.leaves.set(child, at);
      else await visit(level - 1, child, at);
    }
  };
  img.total += 1;
  await visit(ROOT_LEVEL, 0, sb.mapStart);
  return tree;
}

/**
 * Every mapping of the volume with the journal applied, in leaf order: problems
 * (when given) for bad sectors and entries, and `visit` for each mapping to a
 * data block. Returns the mapped LBAs (zero-block mappings included).
 */
export async function scanMap(
  img: Image, sb: Superblock, tree: Tree, replay: Replay, problems: Problems | null, visit: (lba: number, pbn: number, state: number, check: number) => void,
): Promise<number> {
  const pbns = new Float64Array(MAP_ENTRIES_PER_PAGE);
  const states = new Uint8Array(MAP_ENTRIES_PER_PAGE);
  const checks = new Uint32Array(MAP_ENTRIES_PER_PAGE);
  const journaled = new Uint8Array(MAP_ENTRIES_PER_PAGE);
  const report = (where: string, what: string): void => problems?.add(where, what);
  let used = 0;
  const scan = (p: number, b: Uint8Array, bad: number): void => {
    const base = p * MAP_ENTRIES_PER_PAGE;
    for (let e = 0; e < MAP_ENTRIES_PER_PAGE; e++) {
      const at = mapEntryAt(e);
      pbns[e] = u32le(b, at);
      states[e] = b[at + 4];
      checks[e] = u32le(b, at + 5);
      journaled[e] = 0;
    }
    for (const c of replay.byPage.get(p) ?? []) {
      const end = Math.min(c.lba + c.count, base + MAP_ENTRIES_PER_PAGE);
      for (let lba = Math.max(c.lba, base); lba < end; lba++) {
        const e = lba - base;
        if ((bad & (1 << Math.floor(e / MAP_ENTRIES_PER_SECTOR))) !== 0) continue; // recovery fails there: reported already
        pbns[e] = c.pbn;
        states[e] = c.state;
        checks[e] = c.check;
        journaled[e] = 1;
      }
    }
    for (let e = 0; e < MAP_ENTRIES_PER_PAGE; e++) {
      const pbn = pbns[e];
      const state = states[e];
      const s = Math.floor(e / MAP_ENTRIES_PER_SECTOR);
      if ((pbn === 0 && state === STATE_UNMAPPED) || (bad & (1 << s)) !== 0) continue;
      const lba = base + e;
      const where = `LBA ${lba} (block map page ${p} sector ${s} entry ${e % MAP_ENTRIES_PER_SECTOR}${journaled[e] ? ', from the journal' : ''})`;
      if (lba >= sb.logicalBlocks) report(where, `is past the logical size (${sb.logicalBlocks} blocks) but maps to PBN ${pbn} state ${state}`);
      else if (state > STATE_MAX) report(where, `has mapping state ${state}; states are 0–${STATE_MAX} (the volume reads it as ${state & 15})`);
      else if (state === STATE_UNMAPPED) report(where, `is unmapped but names PBN ${pbn} (the volume would count a reference to it)`);
      else if (pbn === ZERO_PBN) {
        if (state === STATE_UNCOMPRESSED) used++;
        else report(where, `maps to slot ${state - 2} of PBN 0, the zero block`);
      } else if (!isDataBlockOf(sb, pbn)) {
        report(where, `maps to PBN ${pbn}, outside ${dataRegionOf(sb)} (ECORRUPT when read, or at an open that rebuilds the counts)`);
      } else {
        used++;
        visit(lba, pbn, state, checks[e]);
      }
    }
  };
  // Stored leaves, read in block order; then the leaves only the journal fills.
  const byBlock = new Map<number, number>();
  for (const [leaf, pbn] of tree.leaves) byBlock.set(pbn, leaf);
  await img.readEach(Float64Array.from(byBlock.keys()).sort(), (pbn, b) => {
    const leaf = byBlock.get(pbn)!;
    scan(leaf, b, badSectors(b, sb, 0, leaf, pbn, problems));
  });
  const zeroes = new Uint8Array(BLOCK_BYTES);
  for (const leaf of replay.byPage.keys()) if (!tree.leaves.has(leaf)) scan(leaf, zeroes, 0);
  return used;
}

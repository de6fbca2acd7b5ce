/**
 * The block map: logical block → (PBN, mapping state, data check), kept in
 * the radix tree of map-tree.ts behind a bounded LRU page cache whose pages
 * are slab buffers (read and written in place). Pages of every level share
 * the cache; a page no parent names yet is "unplaced" (pbn 0): all zeroes,
 * every LBA under it unmapped, and nothing read or written for it.
 *
 * Invariants:
 * - write-ahead: a dirty page reaches the device only in a checkpoint, after
 *   the journal entries that changed it are durable (the volume runs
 *   checkpoints), and a parent only after its new children (writeDirty);
 * - a mapping is set only in a placed page (place(), which allocates the
 *   page and any unplaced parents before the caller journals anything), except
 *   by recovery, which places what it replayed once the counts are rebuilt;
 * - a sector that fails validation makes every read of its entries (or of
 *   the LBAs under its children) ECORRUPT; it is never taken as "unmapped".
 */
import { corrupt } from '../errors.js';
import { assert, assertionFailed } from '../assert.js';
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice } from './block-device.js';
import { STAGING_BYTES } from './data-writer.js';
import {
  MAP_ENTRIES_PER_PAGE, MAP_ENTRIES_PER_SECTOR, MAP_ENTRY_BYTES, MAP_MAGIC, SECTORS_PER_BLOCK, SECTOR_ABSENT, SECTOR_CORRUPT,
  mapEntryAt, openSector, recordedCheck, sealSector, u32le, type SectorHeader,
} from './encodings.js';
import {
  CHILDREN_PER_PAGE, CHILDREN_PER_SECTOR, ROOT_LEVEL, lbasUnder, leafOf, leavesUnder, pageId, pageName, pagesAt, readChild, writeChild,
} from './map-tree.js';

/** Leaves one device read covers when forEach() scans the map: a staging buffer's worth. */
const SCAN_RUN_PAGES = STAGING_BYTES / 4096;


/** A mapping as one number: pbn * 16 + state. */
export const mappingOf = (pbn: number, state: number): number => pbn * 16 + state;
export const pbnOf = (m: number): number => Math.floor(m / 16);
export const stateOf = (m: number): number => m % 16;

interface Page {
  level: number;
  /** Index at its level (a leaf's is leafOf(lba)). */
  index: number;
  /** Where the page lives; 0: unplaced (no parent names it: all zeroes). */
  pbn: number;
  desc: number;
  dirty: boolean;
  /** Bit s set: sector s failed validation. */
  corrupt: number;
  /** Callers holding the page; a pinned page is never evicted. */
  pins: number;
  /** The checkpoint write of this page in flight, if any: the page is not evicted (a reload would read the old copy) and the next write waits for it (so writes land in order). */
  writing: Promise<void> | null;
  writesInFlight: number;
  loading: Promise<Page> | null;
}

export interface BlockMapStats {
  cacheHits: number;
  cacheMisses: number;
  pagesWritten: number;
}

/** Where tree pages come from: the slab depot, which counts them as never shareable. */
export interface MapPageAllocator {
  /** A free data block for a new tree page (ENOSPC when none). */
  allocateMapPage(): number;
}

export class BlockMap {
  logicalBlocks: number;
  /** Leaves the volume can have. */
  pages: number;
  readonly cachePages: number;
  readonly stats: BlockMapStats = { cacheHits: 0, cacheMisses: 0, pagesWritten: 0 };
  private readonly dev: BlockDevice;
  private readonly pool: SlabPool;
  private readonly rootPbn: number;
  private readonly nonce: number;
  private readonly cache = new Map<number, Page>();
  /** The page last moved to the most recently used end of `cache`. */
  private newest: Page | null = null;
  private dirtyCount = 0;
  private mem: Uint8Array;
  private allocator: MapPageAllocator | null = null;
  /** What validate() reads a sector header into (one, reused). */
  private readonly header: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
  /** Interior pages with an unplaced page that recovery changed under them (until placeAll()). */
  private readonly replayedUnder = new Set<number>();

  /** [dataStart, dataEnd): where a mapping or a tree page may point (besides PBN 0, the zero block or no page): a data block's first PBN, `unit` PBNs each. */
  private readonly dataStart: number;
  private dataEnd: number;
  private readonly unit: number;

  constructor(dev: BlockDevice, pool: SlabPool, rootPbn: number, logicalBlocks: number, nonce: number, cachePages: number, dataStart = 1, dataEnd = 2 ** 32, unit = 1) {
    this.dataStart = dataStart;
    this.dataEnd = dataEnd;
    this.unit = unit;
    this.dev = dev;
    this.pool = pool;
    this.rootPbn = rootPbn;
    this.logicalBlocks = logicalBlocks;
    this.pages = pagesAt(logicalBlocks, 0);
    this.nonce = nonce;
    // A soft bound: the pages of one lookup path are pinned together, and the cache grows past a bound smaller than that.
    this.cachePages = cachePages;
    this.mem = new Uint8Array(pool.memory.buffer);
  }

  /** The logical size grew (resize.ts): LBAs up to `logicalBlocks` have a place in the tree (it addresses up to 1 PiB). */
  grow(logicalBlocks: number): void {
    assert(logicalBlocks >= this.logicalBlocks, 'block map: the logical size never shrinks');
    this.logicalBlocks = logicalBlocks;
    this.pages = pagesAt(logicalBlocks, 0);
  }

  /** Whether `pbn` is the first PBN of a whole data block. */
  private isDataBlock(pbn: number): boolean {
    return pbn >= this.dataStart && pbn + this.unit <= this.dataEnd && (pbn - this.dataStart) % this.unit === 0;
  }

  /** The data region now ends at `dataEnd` (the physical size grew). */
  growData(dataEnd: number): void {
    assert(dataEnd >= this.dataEnd, 'block map: the data region never shrinks');
    this.dataEnd = dataEnd;
  }

  /** Where place() takes new tree pages from (the volume's slab depot, once its counts are known). */
  setAllocator(a: MapPageAllocator): void {
    this.allocator = a;
  }

  get dirtyPages(): number {
    return this.dirtyCount;
  }

  /** Whether the cache is full of dirty pages (a checkpoint must clean some). */
  get needsCheckpoint(): boolean {
    return this.dirtyCount >= this.cachePages - 1;
  }

  private bytes(): Uint8Array {
    if (this.mem.buffer.byteLength !== this.pool.memory.buffer.byteLength) this.mem = new Uint8Array(this.pool.memory.buffer);
    return this.mem;
  }

  /**
   * A view spanning bytes up to `end`: the cached one unless it ends before
   * (the memory only grows, so a view that spans an address stays good for
   * it). The reads of every mapping take this: `memory.buffer` is a call
   * into the engine, a few percent of a sequential read when made per entry.
   */
  private bytesTo(end: number): Uint8Array {
    return end <= this.mem.length ? this.mem : this.bytes();
  }

  /**
   * The leaf holding `lba` if it is cached and loaded (a hit), else null: for a
   * caller that uses it before its next await, so it takes no pin.
   */
  cachedPage(lba: number): Page | null {
    const p = this.cache.get(pageId(0, leafOf(lba)));
    if (p === undefined || p.loading !== null) return null;
    this.touch(p);
    this.stats.cacheHits++;
    return p;
  }

  /** Whether the leaf of `lba` is cached and placed: mapping into it takes no new tree page. No LRU move, no count. */
  leafPlaced(lba: number): boolean {
    const p = this.cache.get(pageId(0, leafOf(lba)));
    return p !== undefined && p.pbn !== 0;
  }

  private touch(p: Page): void {
    if (p === this.newest) return;
    // Most recently used last (a run of LBAs in one page moves it once).
    const id = pageId(p.level, p.index);
    this.cache.delete(id);
    this.cache.set(id, p);
    this.newest = p;
  }

  /** The leaf holding `lba`, loaded and pinned: release it with unpin() (pinned pages stay cached). */
  page(lba: number): Promise<Page> {
    return this.pageAt(0, leafOf(lba));
  }

  /** The page (level, index), loaded (or made, all zeroes, if unplaced) and pinned. */
  private async pageAt(level: number, index: number): Promise<Page> {
    const id = pageId(level, index);
    let p = this.cache.get(id);
    if (p !== undefined) {
      this.touch(p);
      if (p.loading === null) this.stats.cacheHits++;
    } else {
      this.stats.cacheMisses++;
      this.makeRoom();
      const desc = await this.pool.allocAsync(4096);
      p = this.cache.get(id);
      if (p === undefined) {
        p = { level, index, pbn: 0, desc, dirty: false, corrupt: 0, pins: 0, loading: null, writing: null, writesInFlight: 0 };
        p.loading = this.load(p);
        this.cache.set(id, p);
        this.newest = p;
      } else this.pool.free(desc);
    }
    p.pins++;
    if (p.loading !== null) {
      try {
        await p.loading;
      } catch (err) {
        p.pins--;
        throw err;
      }
    }
    return p;
  }

  unpin(p: Page): void {
    p.pins--;
  }

  /** Finds where a page lives (its parent's slot; the root's place is fixed) and reads it, or makes it all zeroes if unplaced. */
  private async load(page: Page): Promise<Page> {
    const at = this.pool.bufferOf(page.desc);
    try {
      const pbn = page.level === ROOT_LEVEL ? this.rootPbn : await this.childPbn(page.level + 1, Math.floor(page.index / CHILDREN_PER_PAGE), page.index % CHILDREN_PER_PAGE);
      if (pbn === 0) this.bytes().fill(0, at, at + 4096);
      else await this.dev.read(pbn, page.desc);
      page.pbn = pbn;
    } catch (err) {
      this.cache.delete(pageId(page.level, page.index));
      this.pool.free(page.desc);
      page.loading = null;
      throw err;
    }
    if (page.pbn !== 0) page.corrupt = this.validate(this.bytes().subarray(at, at + 4096), page.level, page.index);
    page.loading = null;
    return page;
  }

  /** Bit s set: sector s of a page read for (level, index) fails (checksum, or another page's sector). */
  private validate(b: Uint8Array, level: number, index: number): number {
    const h = this.header;
    let bad = 0;
    for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
      const r = openSector(b, s, MAP_MAGIC, this.nonce, h);
      if (r === SECTOR_CORRUPT || (r !== SECTOR_ABSENT && (h.key !== index || h.aux !== level))) bad |= 1 << s;
    }
    return bad;
  }

  /** Child `slot` of the interior page (level, index): its PBN, 0 when it has none; ECORRUPT if the slot cannot be trusted. */
  private async childPbn(level: number, index: number, slot: number): Promise<number> {
    const parent = await this.pageAt(level, index);
    try {
      return this.childOf(parent, slot);
    } finally {
      this.unpin(parent);
    }
  }

  private childOf(parent: Page, slot: number): number {
    const s = Math.floor(slot / CHILDREN_PER_SECTOR);
    const child = parent.index * CHILDREN_PER_PAGE + slot;
    if ((parent.corrupt & (1 << s)) !== 0) {
      throw corrupt(`${pageName(parent.level, parent.index)} sector ${s} fails its checksum: ${lbasUnder(parent.level - 1, child)} are unreadable`);
    }
    const pbn = readChild(this.bytes(), this.pool.bufferOf(parent.desc), slot);
    if (pbn !== 0 && !this.isDataBlock(pbn)) {
      throw corrupt(`${pageName(parent.level, parent.index)} names PBN ${pbn} for ${pageName(parent.level - 1, child)}, outside the data region [${this.dataStart}, ${this.dataEnd})`);
    }
    return pbn;
  }

  /**
   * Gives a pinned unplaced page, and any unplaced page above it, a block of
   * its own and its parent's slot (the parents turn dirty): before a caller
   * journals a mapping into it. ENOSPC (nothing changed for this page) when the
   * data region is full.
   */
  async place(p: Page): Promise<void> {
    if (p.pbn !== 0 || p.level === ROOT_LEVEL) return;
    const parent = await this.pageAt(p.level + 1, Math.floor(p.index / CHILDREN_PER_PAGE));
    try {
      await this.place(parent);
      if (p.pbn !== 0) return;
      const slot = p.index % CHILDREN_PER_PAGE;
      assert(this.childOf(parent, slot) === 0, `block map: ${pageName(p.level, p.index)} is unplaced but its parent names a block for it`);
      if (this.allocator === null) throw assertionFailed('block map: a page placed before the volume gave an allocator');
      const pbn = this.allocator.allocateMapPage();
      p.pbn = pbn;
      writeChild(this.bytes(), this.pool.bufferOf(parent.desc), slot, pbn);
      this.markDirty(parent);
      // Written at the next checkpoint even if no mapping lands in it: its parent names it.
      this.markDirty(p);
    } finally {
      this.unpin(parent);
    }
  }

  /** Recovery, once the counts are rebuilt: places every page replay dirtied (ENOSPC if the data region is full). */
  async placeAll(): Promise<void> {
    for (const p of [...this.cache.values()]) {
      if (!p.dirty || p.pbn !== 0 || p.level === ROOT_LEVEL) continue;
      p.pins++;
      try {
        await this.place(p);
      } finally {
        p.pins--;
      }
    }
    this.replayedUnder.clear();
  }

  private markDirty(p: Page): void {
    if (p.dirty) return;
    p.dirty = true;
    this.dirtyCount++;
    if (p.pbn !== 0) return;
    // Only recovery changes an unplaced page: its ancestors, cached or not, lead to it until placeAll().
    for (let level = p.level + 1; level < ROOT_LEVEL; level++) this.replayedUnder.add(pageId(level, Math.floor(p.index / leavesUnder(level - p.level))));
  }

  /** Whether page (level, index) is unplaced with changes in or under it (recovery replayed into it): it exists though no parent names it yet. */
  private unplacedChanges(level: number, index: number): boolean {
    if (level > 0) return this.replayedUnder.has(pageId(level, index));
    const p = this.cache.get(pageId(level, index));
    return p !== undefined && p.pbn === 0 && p.dirty;
  }

  /** Evicts clean, unpinned pages past the cache bound (least recently used first). */
  private makeRoom(): void {
    if (this.cache.size < this.cachePages) return;
    for (const [id, p] of this.cache) {
      if (this.cache.size < this.cachePages) return;
      if (p.dirty || p.loading !== null || p.pins > 0 || p.writing !== null) continue;
      this.cache.delete(id);
      this.pool.free(p.desc);
    }
    // Everything cached is dirty, pinned or loading: the cache grows past its bound until the next checkpoint.
  }

  /** The mapping of `lba` from a loaded leaf. */
  get(page: Page, lba: number): number {
    const e = lba - page.index * MAP_ENTRIES_PER_PAGE;
    const s = Math.floor(e / MAP_ENTRIES_PER_SECTOR);
    if ((page.corrupt & (1 << s)) !== 0) {
      throw corrupt(`block map: page ${page.index} sector ${s} (LBAs ${page.index * MAP_ENTRIES_PER_PAGE + s * MAP_ENTRIES_PER_SECTOR}..) fails its checksum`);
    }
    const at = this.pool.bufferOf(page.desc) + mapEntryAt(e);
    const b = this.bytesTo(at + MAP_ENTRY_BYTES);
    const pbn = u32le(b, at);
    // A clean open takes saved counts without scanning the map, so an entry is vouched for here, where it is used.
    if (pbn !== 0 && !this.isDataBlock(pbn)) {
      throw corrupt(`block map: LBA ${lba} maps to PBN ${pbn}, outside the data region [${this.dataStart}, ${this.dataEnd})`);
    }
    return mappingOf(pbn, b[at + 4] & 15);
  }

  /**
   * The data check recorded with `lba`'s mapping (see encodings.ts): for a
   * caller that has just read the mapping with get(), which vouched for the sector.
   */
  checkOf(page: Page, lba: number): number {
    const at = this.pool.bufferOf(page.desc) + mapEntryAt(lba - page.index * MAP_ENTRIES_PER_PAGE);
    return u32le(this.bytesTo(at + MAP_ENTRY_BYTES), at + 5);
  }

  /**
   * Sets the mapping of `lba` and the data check of the logical block it
   * holds (recorded as 0 for unmapped and the zero block) in a loaded leaf;
   * the caller has placed the leaf (recovery: will place it) and journaled the change.
   */
  set(page: Page, lba: number, mapping: number, dataCheck: number): void {
    const e = lba - page.index * MAP_ENTRIES_PER_PAGE;
    const s = Math.floor(e / MAP_ENTRIES_PER_SECTOR);
    if ((page.corrupt & (1 << s)) !== 0) throw corrupt(`block map: page ${page.index} sector ${s} fails its checksum; cannot update LBA ${lba}`);
    const b = this.bytes();
    const at = this.pool.bufferOf(page.desc) + mapEntryAt(e);
    const pbn = pbnOf(mapping);
    b[at] = pbn & 0xff;
    b[at + 1] = (pbn >>> 8) & 0xff;
    b[at + 2] = (pbn >>> 16) & 0xff;
    b[at + 3] = (pbn >>> 24) & 0xff;
    b[at + 4] = stateOf(mapping);
    const check = recordedCheck(pbn, stateOf(mapping), dataCheck);
    b[at + 5] = check & 0xff;
    b[at + 6] = (check >>> 8) & 0xff;
    b[at + 7] = (check >>> 16) & 0xff;
    b[at + 8] = (check >>> 24) & 0xff;
    this.markDirty(page);
  }

  /**
   * Writes every dirty page (checkpoint step: the journal covering them is
   * durable), a level at a time from the leaves up, flushing before each
   * level of interior pages: a parent never names a child the media lacks.
   * Each page goes out from a sealed copy, so mappings set while the write is
   * in flight never tear a sector on the media; the page stays cached until
   * its write lands, and a page dirtied again meanwhile is written after it.
   */
  async writeDirty(): Promise<void> {
    for (let level = 0; level <= ROOT_LEVEL; level++) {
      const dirty: Page[] = [];
      for (const p of this.cache.values()) if (p.dirty && p.level === level) dirty.push(p);
      if (dirty.length === 0) continue;
      if (level > 0) await this.dev.flush();
      const writes: Promise<void>[] = [];
      for (const p of dirty) {
        if (p.pbn === 0) throw assertionFailed(`block map: ${pageName(p.level, p.index)} is dirty but was never placed`);
        p.dirty = false;
        this.dirtyCount--;
        this.stats.pagesWritten++;
        p.writesInFlight++;
        const w = this.writePage(p, p.writing).finally(() => {
          if (--p.writesInFlight === 0) p.writing = null;
        });
        p.writing = w;
        writes.push(w);
      }
      const results = await Promise.allSettled(writes);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
    }
    this.makeRoom();
  }

  private async writePage(p: Page, before: Promise<void> | null): Promise<void> {
    const copy = await this.pool.allocAsync(4096);
    try {
      if (before !== null) await before.catch(() => {});
      // Copied now, after any earlier write of the page landed: the newest mappings.
      const b = this.bytes();
      const from = this.pool.bufferOf(p.desc);
      const to = this.pool.bufferOf(copy);
      b.copyWithin(to, from, from + 4096);
      const page = b.subarray(to, to + 4096);
      for (let s = 0; s < SECTORS_PER_BLOCK; s++) sealSector(page, s, MAP_MAGIC, this.nonce, { index: s, count: 0, key: p.index, aux: p.level });
      await this.dev.write(p.pbn, copy);
    } catch (err) {
      // The media may still hold the old page: keep the change for the next checkpoint.
      this.markDirty(p);
      throw err;
    } finally {
      this.pool.free(copy);
    }
  }

  /**
   * The first LBA at or after `lba` in a leaf that exists (placed, or
   * unplaced with replayed changes), or logicalBlocks: everything between is unmapped. Skips
   * whole subtrees no page was ever placed under (scrub, extents). An
   * interior sector that fails validation is ECORRUPT, or, given `onBad`,
   * reported there with the LBAs under it [first, end) and skipped.
   */
  async nextStored(lba: number, onBad?: (first: number, end: number, why: string) => void): Promise<number> {
    if (lba >= this.logicalBlocks) return this.logicalBlocks;
    const leaf = await this.nextLeaf(ROOT_LEVEL, 0, leafOf(lba), onBad);
    return leaf < 0 ? this.logicalBlocks : Math.max(lba, leaf * MAP_ENTRIES_PER_PAGE);
  }

  /** The first leaf ≥ `from` under page (level, index) that exists, or −1. */
  private async nextLeaf(level: number, index: number, from: number, onBad?: (first: number, end: number, why: string) => void): Promise<number> {
    const p = await this.pageAt(level, index);
    try {
      const span = leavesUnder(level - 1);
      const first = index * CHILDREN_PER_PAGE;
      const end = Math.min(first + CHILDREN_PER_PAGE, pagesAt(this.logicalBlocks, level - 1));
      for (let child = Math.max(first, Math.floor(from / span)); child < end; child++) {
        const s = Math.floor((child - first) / CHILDREN_PER_SECTOR);
        if ((p.corrupt & (1 << s)) !== 0 && onBad !== undefined) {
          const last = Math.min(end, first + (s + 1) * CHILDREN_PER_SECTOR);
          const lbas = (c: number): number => Math.min(this.logicalBlocks, c * span * MAP_ENTRIES_PER_PAGE);
          onBad(Math.max(lbas(child), from * MAP_ENTRIES_PER_PAGE), lbas(last), `${pageName(level, index)} sector ${s} fails its checksum`);
          child = last - 1;
          continue;
        }
        if (this.childOf(p, child - first) === 0 && !this.unplacedChanges(level - 1, child)) continue;
        if (level === 1) return child;
        const r = await this.nextLeaf(level - 1, child, Math.max(from, child * span), onBad);
        if (r >= 0) return r;
      }
      return -1;
    } finally {
      this.unpin(p);
    }
  }

  /**
   * Every mapping of the volume, and every tree page's PBN (refcount rebuild
   * at open), walking the tree from the root. A cached page is read from the
   * cache (replay leaves its pages dirty there, placed or not); the other
   * leaves under an interior page are read SCAN_RUN_PAGES at a time where
   * their blocks are consecutive, bypassing the cache. A sector that fails
   * validation is ECORRUPT, as get() makes it.
   */
  async forEach(visit: (lba: number, mapping: number) => void, visitPage: (pbn: number) => void = () => {}): Promise<void> {
    const run = await this.pool.allocAsync(SCAN_RUN_PAGES * 4096);
    try {
      await this.walk(ROOT_LEVEL, 0, run, visit, visitPage);
    } finally {
      this.pool.free(run);
    }
  }

  private async walk(level: number, index: number, run: number, visit: (lba: number, mapping: number) => void, visitPage: (pbn: number) => void): Promise<void> {
    const p = await this.pageAt(level, index);
    try {
      const first = index * CHILDREN_PER_PAGE;
      const end = Math.min(first + CHILDREN_PER_PAGE, pagesAt(this.logicalBlocks, level - 1));
      const b = this.bytes();
      const at = this.pool.bufferOf(p.desc);
      for (let slot = end - first; slot < CHILDREN_PER_PAGE; slot++) {
        if ((p.corrupt & (1 << Math.floor(slot / CHILDREN_PER_SECTOR))) === 0 && readChild(b, at, slot) !== 0) {
          throw corrupt(`${pageName(level, index)} names a child past the logical size (slot ${slot})`);
        }
      }
      // Leaves not cached, by block: [leaf index, pbn] runs of consecutive blocks.
      let runFirst = -1;
      let runPbn = 0;
      let runLen = 0;
      const flushRun = async (): Promise<void> => {
        if (runLen > 0) await this.scanLeaves(runFirst, runPbn, runLen, run, visit);
        runLen = 0;
      };
      for (let child = first; child < end; child++) {
        const pbn = this.childOf(p, child - first);
        if (pbn === 0 && !this.unplacedChanges(level - 1, child)) continue;
        const cached = this.cache.has(pageId(level - 1, child));
        if (pbn !== 0) visitPage(pbn);
        if (level > 1) {
          await this.walk(level - 1, child, run, visit, visitPage);
          continue;
        }
        if (!cached) {
          if (runLen > 0 && runLen < SCAN_RUN_PAGES && runFirst + runLen === child && runPbn + runLen === pbn) runLen++;
          else {
            await flushRun();
            runFirst = child;
            runPbn = pbn;
            runLen = 1;
          }
          continue;
        }
        const leaf = await this.pageAt(0, child);
        try {
          const lbaEnd = Math.min(this.logicalBlocks, (child + 1) * MAP_ENTRIES_PER_PAGE);
          for (let lba = child * MAP_ENTRIES_PER_PAGE; lba < lbaEnd; lba++) {
            const m = this.get(leaf, lba);
            if (m !== 0) visit(lba, m);
          }
        } finally {
          this.unpin(leaf);
        }
      }
      await flushRun();
    } finally {
      this.unpin(p);
    }
  }

  /** Visits the mappings of `n` leaves from `firstLeaf`, stored in consecutive blocks from `pbn`, in one read. */
  private async scanLeaves(firstLeaf: number, pbn: number, n: number, run: number, visit: (lba: number, mapping: number) => void): Promise<void> {
    await this.dev.read(pbn, run, n);
    const base = this.pool.bufferOf(run);
    const b = this.bytes();
    for (let i = 0; i < n; i++) {
      const leaf = firstLeaf + i;
      const at = base + i * 4096;
      const bad = this.validate(b.subarray(at, at + 4096), 0, leaf);
      const end = Math.min(this.logicalBlocks, (leaf + 1) * MAP_ENTRIES_PER_PAGE);
      for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
        const from = leaf * MAP_ENTRIES_PER_PAGE + s * MAP_ENTRIES_PER_SECTOR;
        if (from >= end) break;
        if ((bad & (1 << s)) !== 0) throw corrupt(`block map: page ${leaf} sector ${s} (LBAs ${from}..) fails its checksum`);
        const to = Math.min(end, from + MAP_ENTRIES_PER_SECTOR);
        for (let lba = from; lba < to; lba++) {
          const e = at + mapEntryAt(lba - leaf * MAP_ENTRIES_PER_PAGE);
          const pbnE = u32le(b, e);
          const m = mappingOf(pbnE, b[e + 4] & 15);
          if (m !== 0) visit(lba, m);
        }
      }
    }
  }

  /** Drops every cached page (close). */
  release(): void {
    for (const p of this.cache.values()) if (p.loading === null) this.pool.free(p.desc);
    this.cache.clear();
    this.dirtyCount = 0;
  }
}

export type { Page };

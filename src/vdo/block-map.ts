/**
 * The block map: logical block → (PBN, mapping state, data check), stored as a
 * flat array of 4 KiB pages (8 self-validating sectors × 53 entries) behind a bounded
 * LRU page cache whose pages are slab buffers (read and written in place).
 *
 * Write-ahead rule: a dirty page reaches the device only in a checkpoint,
 * after the journal entries that changed it are durable (the volume runs
 * checkpoints). A sector that fails validation makes every read of its
 * entries ECORRUPT; it is never taken as "unmapped".
 */
import { corrupt } from '../errors.js';
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice } from './block-device.js';
import { STAGING_BYTES } from './data-writer.js';
import {
  MAP_ENTRIES_PER_PAGE, MAP_ENTRIES_PER_SECTOR, MAP_MAGIC, SECTORS_PER_BLOCK, SECTOR_ABSENT, SECTOR_CORRUPT,
  mapEntryAt, openSector, recordedCheck, sealSector, type SectorHeader,
} from './encodings.js';

/** Map pages one device read covers when forEach() scans the map: a staging buffer's worth. */
const SCAN_RUN_PAGES = STAGING_BYTES / 4096;

/** The little-endian u32 at b[at]. */
const u32le = (b: Uint8Array, at: number): number => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;

/** A mapping as one number: pbn * 16 + state. */
export const mappingOf = (pbn: number, state: number): number => pbn * 16 + state;
export const pbnOf = (m: number): number => Math.floor(m / 16);
export const stateOf = (m: number): number => m % 16;

interface Page {
  index: number;
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

export class BlockMap {
  readonly logicalBlocks: number;
  readonly pages: number;
  readonly cachePages: number;
  readonly stats: BlockMapStats = { cacheHits: 0, cacheMisses: 0, pagesWritten: 0 };
  private readonly dev: BlockDevice;
  private readonly pool: SlabPool;
  private readonly start: number;
  private readonly nonce: number;
  private readonly cache = new Map<number, Page>();
  /** The page last moved to the most recently used end of `cache`. */
  private newest: Page | null = null;
  private dirtyCount = 0;
  private mem: Uint8Array;

  /** [dataStart, physicalBlocks): where a mapping may point (besides PBN 0, the zero block). */
  private readonly dataStart: number;
  private readonly physicalBlocks: number;

  constructor(dev: BlockDevice, pool: SlabPool, start: number, logicalBlocks: number, nonce: number, cachePages: number, dataStart = 1, physicalBlocks = 2 ** 32) {
    this.dataStart = dataStart;
    this.physicalBlocks = physicalBlocks;
    this.dev = dev;
    this.pool = pool;
    this.start = start;
    this.logicalBlocks = logicalBlocks;
    this.pages = Math.ceil(logicalBlocks / MAP_ENTRIES_PER_PAGE);
    this.nonce = nonce;
    this.cachePages = cachePages;
    this.mem = new Uint8Array(pool.memory.buffer);
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
   * The page holding `lba` if it is cached and loaded (a hit), else null: for a
   * caller that uses it before its next await, so it takes no pin.
   */
  cachedPage(lba: number): Page | null {
    const index = Math.floor(lba / MAP_ENTRIES_PER_PAGE);
    const p = this.cache.get(index);
    if (p === undefined || p.loading !== null) return null;
    if (p !== this.newest) {
      // Most recently used last (a run of LBAs in one page moves it once).
      this.cache.delete(index);
      this.cache.set(index, p);
      this.newest = p;
    }
    this.stats.cacheHits++;
    return p;
  }

  /** The page holding `lba`, loaded and pinned: release it with unpin() (pinned pages stay cached). */
  async page(lba: number): Promise<Page> {
    const index = Math.floor(lba / MAP_ENTRIES_PER_PAGE);
    let p = this.cache.get(index);
    if (p !== undefined) {
      this.cache.delete(index);
      this.cache.set(index, p);
      this.newest = p;
      if (p.loading === null) this.stats.cacheHits++;
    } else {
      this.stats.cacheMisses++;
      this.makeRoom();
      const desc = await this.pool.allocAsync(4096);
      p = this.cache.get(index);
      if (p === undefined) {
        p = { index, desc, dirty: false, corrupt: 0, pins: 0, loading: null, writing: null, writesInFlight: 0 };
        p.loading = this.load(p);
        this.cache.set(index, p);
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

  private async load(page: Page): Promise<Page> {
    try {
      await this.dev.read(this.start + page.index, page.desc);
    } catch (err) {
      this.cache.delete(page.index);
      this.pool.free(page.desc);
      page.loading = null;
      throw err;
    }
    const at = this.pool.bufferOf(page.desc);
    const b = this.bytes().subarray(at, at + 4096);
    const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
    for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
      const r = openSector(b, s, MAP_MAGIC, this.nonce, h);
      if (r === SECTOR_CORRUPT || (r !== SECTOR_ABSENT && h.key !== page.index)) page.corrupt |= 1 << s;
    }
    page.loading = null;
    return page;
  }

  /** Evicts clean, unpinned pages past the cache bound (least recently used first). */
  private makeRoom(): void {
    if (this.cache.size < this.cachePages) return;
    for (const [index, p] of this.cache) {
      if (this.cache.size < this.cachePages) return;
      if (p.dirty || p.loading !== null || p.pins > 0 || p.writing !== null) continue;
      this.cache.delete(index);
      this.pool.free(p.desc);
    }
    // Everything cached is dirty or loading: the cache grows past its bound until the next checkpoint.
  }

  /** The mapping of `lba` from a loaded page. */
  get(page: Page, lba: number): number {
    const e = lba - page.index * MAP_ENTRIES_PER_PAGE;
    const s = Math.floor(e / MAP_ENTRIES_PER_SECTOR);
    if ((page.corrupt & (1 << s)) !== 0) {
      throw corrupt(`block map: page ${page.index} sector ${s} (LBAs ${page.index * MAP_ENTRIES_PER_PAGE + s * MAP_ENTRIES_PER_SECTOR}..) fails its checksum`);
    }
    const b = this.bytes();
    const at = this.pool.bufferOf(page.desc) + mapEntryAt(e);
    const pbn = u32le(b, at);
    // A clean open takes saved counts without scanning the map, so an entry is vouched for here, where it is used.
    if (pbn !== 0 && (pbn < this.dataStart || pbn >= this.physicalBlocks)) {
      throw corrupt(`block map: LBA ${lba} maps to PBN ${pbn}, outside the data region [${this.dataStart}, ${this.physicalBlocks})`);
    }
    return mappingOf(pbn, b[at + 4] & 15);
  }

  /**
   * The data check recorded with `lba`'s mapping (see encodings.ts): for a
   * caller that has just read the mapping with get(), which vouched for the sector.
   */
  checkOf(page: Page, lba: number): number {
    const b = this.bytes();
    return u32le(b, this.pool.bufferOf(page.desc) + mapEntryAt(lba - page.index * MAP_ENTRIES_PER_PAGE) + 5);
  }

  /**
   * Sets the mapping of `lba` and the data check of the logical block it
   * holds (recorded as 0 for unmapped and the zero block) in a loaded page;
   * the caller has journaled the change.
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
    if (!page.dirty) {
      page.dirty = true;
      this.dirtyCount++;
    }
  }

  /**
   * Writes every dirty page (checkpoint step: the journal covering them is
   * durable). Each page goes out from a sealed copy, so mappings set while the
   * write is in flight never tear a sector on the media; the page stays cached
   * until its write lands, and a page dirtied again meanwhile is written after it.
   */
  async writeDirty(): Promise<void> {
    const writes: Promise<void>[] = [];
    for (const p of [...this.cache.values()]) {
      if (!p.dirty) continue;
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
    this.makeRoom();
    for (const r of results) if (r.status === 'rejected') throw r.reason;
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
      for (let s = 0; s < SECTORS_PER_BLOCK; s++) sealSector(page, s, MAP_MAGIC, this.nonce, { index: s, count: 0, key: p.index, aux: 0 });
      await this.dev.write(this.start + p.index, copy);
    } catch (err) {
      // The media may still hold the old page: keep the change for the next checkpoint.
      if (!p.dirty) {
        p.dirty = true;
        this.dirtyCount++;
      }
      throw err;
    } finally {
      this.pool.free(copy);
    }
  }

  /**
   * Every mapping of the volume in page order (refcount rebuild at open). A
   * cached page is read from the cache (replay leaves its pages dirty there);
   * the others are read SCAN_RUN_PAGES at a time into one staging buffer,
   * bypassing the cache, and a page or sector never written is skipped
   * whole. A sector that fails validation is ECORRUPT, as get() makes it.
   */
  async forEach(visit: (lba: number, mapping: number) => void): Promise<void> {
    const run = await this.pool.allocAsync(SCAN_RUN_PAGES * 4096);
    const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
    try {
      for (let first = 0; first < this.pages; first += SCAN_RUN_PAGES) {
        const n = Math.min(SCAN_RUN_PAGES, this.pages - first);
        let uncached = false;
        for (let pi = first; pi < first + n && !uncached; pi++) uncached = !this.cache.has(pi);
        if (uncached) await this.dev.read(this.start + first, run, n);
        const base = this.pool.bufferOf(run);
        const words = new Int32Array(this.pool.memory.buffer, base, n * 1024);
        const b = this.bytes();
        for (let pi = first; pi < first + n; pi++) {
          const end = Math.min(this.logicalBlocks, (pi + 1) * MAP_ENTRIES_PER_PAGE);
          if (this.cache.has(pi)) {
            const p = await this.page(pi * MAP_ENTRIES_PER_PAGE);
            try {
              for (let lba = pi * MAP_ENTRIES_PER_PAGE; lba < end; lba++) {
                const m = this.get(p, lba);
                if (m !== 0) visit(lba, m);
              }
            } finally {
              this.unpin(p);
            }
            continue;
          }
          let w = (pi - first) * 1024;
          const wEnd = w + 1024;
          while (w < wEnd && words[w] === 0) w++;
          if (w === wEnd) continue; // never written: every entry unmapped
          const at = base + (pi - first) * 4096;
          const page = b.subarray(at, at + 4096);
          for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
            const from = pi * MAP_ENTRIES_PER_PAGE + s * MAP_ENTRIES_PER_SECTOR;
            if (from >= end) break;
            const r = openSector(page, s, MAP_MAGIC, this.nonce, h);
            if (r === SECTOR_ABSENT) continue;
            if (r === SECTOR_CORRUPT || h.key !== pi) throw corrupt(`block map: page ${pi} sector ${s} (LBAs ${from}..) fails its checksum`);
            const to = Math.min(end, from + MAP_ENTRIES_PER_SECTOR);
            for (let lba = from; lba < to; lba++) {
              const e = at + mapEntryAt(lba - pi * MAP_ENTRIES_PER_PAGE);
              const m = mappingOf(u32le(b, e), b[e + 4] & 15);
              if (m !== 0) visit(lba, m);
            }
          }
        }
      }
    } finally {
      this.pool.free(run);
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

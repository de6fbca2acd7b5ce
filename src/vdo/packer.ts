/**
 * The packer: bins of compressed fragments, each bin one 4 KiB block holding up
 * to 14 fragments behind a header of slot sizes.
 *
 * Policy 'dm-vdo' is dm-vdo's packer.c: 16 bins kept in order of free space;
 * a fragment goes to the bin with the least free space that fits it (best
 * fit); when none fits, the fullest bin is written out to make room, unless the
 * fragment is at least as large as everything in that bin (then the fragment
 * is stored raw); a bin is written when it holds 14 fragments; a bin holding
 * one fragment is written uncompressed. Flush writes every bin as it stands.
 *
 * Policy 'flashpack' (the default) is the same online rule with 1,024 bins,
 * and on flush it repacks everything still waiting first-fit-decreasing before
 * writing, so the flush tail takes as few blocks as it can. So many bins are
 * affordable because a waiting fragment holds only its compressed bytes (the
 * volume's fragment arena, fragment-arena.ts), not a pipeline slot: with them
 * the packer waits for a flush, a bound on waiting fragments, or an overwrite,
 * and then packs nearly as well as an offline best-fit-decreasing.
 *
 * Pages: with a PageSource, every bin holding fragments owns a page of it, and
 * each fragment is placed at the next free byte of its bin's page
 * (Fragment.page, Fragment.offset); an emptied bin gives its page up (the
 * source frees it once the fragments written from it are done with it). A
 * fragment for an empty bin when no page is free is refused (stored raw).
 */
import { CB_CAPACITY, MAX_COMPRESSION_SLOTS } from './encodings.js';
import { assert, assertionFailed } from '../assert.js';

export type PackerPolicy = 'dm-vdo' | 'flashpack';

export interface Fragment<T> {
  size: number;
  item: T;
  /** Set by add(): the page of its bin (−1 without a PageSource) and its byte offset there. */
  page?: number;
  offset?: number;
  /** Set by add(): the bin holding it while it waits (evict()). */
  bin?: unknown;
}

/** Pages for bins' bytes (the volume's fragment arena). */
export interface PageSource {
  /** A free page, or −1 if none. */
  take(): number;
  /** A fragment was placed in `page` (before its bin can be emptied). */
  hold(page: number): void;
  /** A bin emptied: the page is no longer filled (its fragments may still be read). */
  disown(page: number): void;
}

/** A bin to write: one fragment → store it raw; more → one packed block. */
export type Batch<T> = Fragment<T>[];

interface Bin<T> {
  free: number;
  fragments: Fragment<T>[];
  page: number;
  /** Its index in `bins`. */
  at: number;
}

export const DM_VDO_BINS = 16;
export const FLASHPACK_BINS = 1024;
/** Fragments waiting at most (policy 'flashpack'): past it, the fullest bin goes out. */
export const FLASHPACK_WAITING_MAX = 4096;

/** The policy's number of bins. */
export function binsFor(policy: PackerPolicy): number {
  return policy === 'dm-vdo' ? DM_VDO_BINS : FLASHPACK_BINS;
}

export interface PackerOptions {
  bins?: number;
  /** Fragments waiting at most; past it the fullest bin is written. Default: no bound for 'dm-vdo' (16 bins bound it), FLASHPACK_WAITING_MAX for 'flashpack'. */
  waitingMax?: number;
  capacity?: number;
  pages?: PageSource;
}

export class Packer<T> {
  readonly policy: PackerPolicy;
  private readonly bins: Bin<T>[];
  private readonly capacity: number;
  /** Fragments waiting at most. */
  readonly waitingMax: number;
  private readonly pages: PageSource | null;
  private count = 0;

  constructor(policy: PackerPolicy = 'flashpack', o: PackerOptions = {}) {
    this.policy = policy;
    const capacity = (this.capacity = o.capacity ?? CB_CAPACITY);
    const bins = o.bins ?? binsFor(policy);
    this.waitingMax = o.waitingMax ?? (policy === 'dm-vdo' ? bins * MAX_COMPRESSION_SLOTS : FLASHPACK_WAITING_MAX);
    this.pages = o.pages ?? null;
    this.bins = Array.from({ length: bins }, (_, at) => ({ free: capacity, fragments: [], page: -1, at }));
  }

  /** Fragments waiting in bins. */
  get waiting(): number {
    return this.count;
  }

  /** Whether a compressed size can ever be packed. */
  fits(size: number): boolean {
    return size > 0 && size < this.capacity;
  }

  /**
   * Adds a fragment. Returns the batches to write now (a full bin, or the bin
   * written to make room), and whether the fragment itself was refused (store
   * it raw; it is not in the packer then).
   */
  add(fragment: Fragment<T>, out: Batch<T>[]): boolean {
    if (!this.fits(fragment.size)) return false;
    const bins = this.bins;
    // Bins stay sorted by free space, least first: the first that fits is the best fit.
    let bin = this.count < this.waitingMax ? this.bestFit(fragment.size) : undefined;
    if (bin === undefined) {
      // No room, or as many waiting as allowed: the fullest bin goes out (dm-vdo), unless
      // the fragment is at least as large as all of it (then the fragment is stored raw).
      const fullest = bins[0];
      if (fragment.size >= this.capacity - fullest.free) return false;
      out.push(this.empty(fullest));
      this.reposition(fullest);
      bin = this.bestFit(fragment.size);
      assert(bin !== undefined, 'packer: no bin fits a fragment after one was emptied');
    }
    if (bin.fragments.length === 0 && this.pages !== null) {
      bin.page = this.pages.take();
      if (bin.page < 0) return false;
    }
    fragment.page = bin.page;
    fragment.offset = this.capacity - bin.free;
    if (bin.page >= 0) this.pages?.hold(bin.page);
    fragment.bin = bin;
    bin.fragments.push(fragment);
    bin.free -= fragment.size;
    this.count++;
    if (bin.fragments.length === MAX_COMPRESSION_SLOTS) out.push(this.empty(bin));
    this.reposition(bin);
    this.checkAround(bin);
    return true;
  }

  /** The bin with the least free space that holds `size` (binary search: bins are sorted by free space). */
  private bestFit(size: number): Bin<T> | undefined {
    const bins = this.bins;
    let lo = 0;
    let hi = bins.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (bins[mid].free >= size) hi = mid;
      else lo = mid + 1;
    }
    return bins[lo];
  }

  /** Writes out the bin holding `item` (an overwrite of a waiting block), or null if none holds it. */
  evict(item: T): Batch<T> | null {
    for (const b of this.bins) {
      const f = b.fragments.find((x) => x.item === item);
      if (f !== undefined) return this.evictFragment(f);
    }
    return null;
  }

  /** Writes out the bin holding `f` (as returned by add()), or null if it no longer waits. */
  evictFragment(f: Fragment<T>): Batch<T> | null {
    const b = f.bin as Bin<T> | undefined;
    if (b === undefined || !b.fragments.includes(f)) return null;
    const batch = this.empty(b);
    this.reposition(b);
    this.checkBins();
    return batch;
  }

  /** Everything waiting, as batches to write (flush, close). */
  flush(): Batch<T>[] {
    const all: Fragment<T>[] = [];
    const out: Batch<T>[] = [];
    for (const b of this.bins) {
      if (b.fragments.length === 0) continue;
      if (this.policy === 'dm-vdo') out.push(this.empty(b));
      else all.push(...this.empty(b));
    }
    if (all.length > 0) out.push(...firstFitDecreasing(all, this.capacity));
    this.bins.sort((a, b) => a.free - b.free);
    this.bins.forEach((b, at) => (b.at = at));
    this.checkBins();
    return out;
  }

  private empty(b: Bin<T>): Batch<T> {
    const batch = b.fragments;
    this.count -= batch.length;
    for (const f of batch) f.bin = undefined;
    b.fragments = [];
    b.free = this.capacity;
    if (b.page >= 0) this.pages?.disown(b.page);
    b.page = -1;
    return batch;
  }

  /**
   * The invariants add() relies on: bins sorted by free space, least first (so
   * the first that fits is the best fit), none overfull or past the slot count.
   */
  private checkBins(): void {
    const bins = this.bins;
    for (let i = 0; i < bins.length; i++) {
      const b = bins[i];
      if (b.at !== i || (i > 0 && bins[i - 1].free > b.free) || b.free < 0 || b.fragments.length > MAX_COMPRESSION_SLOTS) {
        throw assertionFailed(`packer: bin ${i} of ${bins.length} has ${b.free} bytes free and ${b.fragments.length} fragments${i > 0 ? `, after one with ${bins[i - 1].free} free` : ''}`);
      }
    }
  }

  /** The order around one bin (add()'s check: the whole order is checked by evict and flush). */
  private checkAround(b: Bin<T>): void {
    const bins = this.bins;
    const i = b.at;
    if (bins[i] !== b || (i > 0 && bins[i - 1].free > b.free) || (i < bins.length - 1 && bins[i + 1].free < b.free) || b.free < 0 || b.fragments.length > MAX_COMPRESSION_SLOTS) {
      throw assertionFailed(`packer: bin at ${i} of ${bins.length} (${b.free} bytes free, ${b.fragments.length} fragments) is out of order or overfull`);
    }
  }

  /** Restores the order after one bin's free space changed (insertion step, not a full sort). */
  private reposition(bin: Bin<T>): void {
    const bins = this.bins;
    let i = bin.at;
    while (i > 0 && bins[i - 1].free > bin.free) {
      bins[i] = bins[i - 1];
      bins[i].at = i;
      i--;
    }
    while (i < bins.length - 1 && bins[i + 1].free < bin.free) {
      bins[i] = bins[i + 1];
      bins[i].at = i;
      i++;
    }
    bins[i] = bin;
    bin.at = i;
  }
}

function firstFitDecreasing<T>(frags: Fragment<T>[], capacity: number): Batch<T>[] {
  frags.sort((a, b) => b.size - a.size);
  const bins: { free: number; batch: Batch<T> }[] = [];
  for (const f of frags) {
    let bin = bins.find((b) => b.free >= f.size && b.batch.length < MAX_COMPRESSION_SLOTS);
    if (bin === undefined) bins.push((bin = { free: capacity, batch: [] }));
    bin.batch.push(f);
    bin.free -= f.size;
  }
  return bins.map((b) => b.batch);
}

export interface PackingResult {
  /** Physical blocks written for the fragments (packed blocks + fragments stored raw). */
  blocks: number;
  packedBlocks: number;
  rawBlocks: number;
  fragmentsPacked: number;
}

/**
 * Runs a stream of compressed sizes (0 or ≥ capacity = incompressible) through
 * a packer and counts the blocks it writes, flushing at the end. The same code
 * the volume runs; with policy 'dm-vdo' it is the simulation of dm-vdo's packer.
 */
export function simulatePacking(sizes: Iterable<number>, policy: PackerPolicy, flushEvery = Infinity, options: PackerOptions = {}): PackingResult {
  const p = new Packer<number>(policy, options);
  const r: PackingResult = { blocks: 0, packedBlocks: 0, rawBlocks: 0, fragmentsPacked: 0 };
  const write = (batches: Batch<number>[]): void => {
    for (const b of batches) {
      r.blocks++;
      if (b.length === 1) r.rawBlocks++;
      else {
        r.packedBlocks++;
        r.fragmentsPacked += b.length;
      }
    }
  };
  let n = 0;
  for (const size of sizes) {
    const out: Batch<number>[] = [];
    if (!p.add({ size, item: n }, out)) {
      r.blocks++;
      r.rawBlocks++;
    }
    write(out);
    if (++n % flushEvery === 0) write(p.flush());
  }
  write(p.flush());
  return r;
}

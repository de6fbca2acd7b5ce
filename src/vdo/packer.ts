/**
 * The packer: bins of compressed fragments, each bin one volume block holding up
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
 * and on flush it repacks everything still waiting best-fit-decreasing before
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
import { BLOCK_BYTES, MAX_COMPRESSION_SLOTS, cbCapacity } from './encodings.js';
import { assert, assertionFailed } from '../assert.js';
import { BinIndex } from './bin-index.js';

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
  /** Its place in its bucket of the BinIndex. */
  slot: number;
}

export const DM_VDO_BINS = 16;
export const FLASHPACK_BINS = 1024;
/** Fragments waiting at most (policy 'flashpack'): past it, the fullest bin goes out. */
export const FLASHPACK_WAITING_MAX = 4096;

/** The policy's number of bins: flashpack's holds as many bytes of bins at any block size (1,024 of 4 KiB, 64 of 64 KiB). */
export function binsFor(policy: PackerPolicy, blockBytes = BLOCK_BYTES): number {
  return policy === 'dm-vdo' ? DM_VDO_BINS : Math.max(DM_VDO_BINS, (FLASHPACK_BINS * BLOCK_BYTES) / blockBytes);
}

export interface PackerOptions {
  bins?: number;
  /** Fragments waiting at most; past it the fullest bin is written. Default: no bound for 'dm-vdo' (16 bins bound it), FLASHPACK_WAITING_MAX for 'flashpack'. */
  waitingMax?: number;
  /** Bytes of fragments a bin holds (default: a packed block's of `blockBytes`, cbCapacity). */
  capacity?: number;
  /** The volume block the bins are packed blocks of (default 4 KiB): sets the defaults of bins, waitingMax and capacity. */
  blockBytes?: number;
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
  /** The bins by free space (best fit: the first bin at or above a fragment's size). */
  private readonly index: BinIndex<Bin<T>>;

  constructor(policy: PackerPolicy = 'flashpack', o: PackerOptions = {}) {
    this.policy = policy;
    const blockBytes = o.blockBytes ?? BLOCK_BYTES;
    const capacity = (this.capacity = o.capacity ?? cbCapacity(blockBytes));
    const bins = o.bins ?? binsFor(policy, blockBytes);
    // flashpack's bound holds as many bytes at any block size (4,096 of 4 KiB, 256 of 64 KiB).
    this.waitingMax = o.waitingMax ?? (policy === 'dm-vdo' ? bins * MAX_COMPRESSION_SLOTS : Math.max(256, (FLASHPACK_WAITING_MAX * BLOCK_BYTES) / blockBytes));
    this.pages = o.pages ?? null;
    this.index = new BinIndex<Bin<T>>(capacity);
    this.bins = Array.from({ length: bins }, () => ({ free: capacity, fragments: [], page: -1, slot: 0 }));
    for (const b of this.bins) this.index.add(b);
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
    // The first bin at or above the fragment's size has the least free space that fits: the best fit.
    let bin = this.count < this.waitingMax ? this.index.atLeast(fragment.size) : undefined;
    if (bin === undefined) {
      // No room, or as many waiting as allowed: the fullest bin goes out (dm-vdo), unless
      // the fragment is at least as large as all of it (then the fragment is stored raw).
      const fullest = this.index.atLeast(0)!;
      if (fragment.size >= this.capacity - fullest.free) return false;
      out.push(this.empty(fullest));
      bin = this.index.atLeast(fragment.size);
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
    this.count++;
    this.index.move(bin, bin.free - fragment.size);
    if (bin.fragments.length === MAX_COMPRESSION_SLOTS) out.push(this.empty(bin));
    this.checkBin(bin);
    return true;
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
    this.checkBin(b);
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
    if (all.length > 0) out.push(...bestFitDecreasing(all, this.capacity));
    this.checkBins();
    return out;
  }

  private empty(b: Bin<T>): Batch<T> {
    const batch = b.fragments;
    this.count -= batch.length;
    for (const f of batch) f.bin = undefined;
    b.fragments = [];
    this.index.move(b, this.capacity);
    if (b.page >= 0) this.pages?.disown(b.page);
    b.page = -1;
    return batch;
  }

  /** One bin's invariants: filed under its free space, which its fragments account for; not past the slot count. */
  private checkBin(b: Bin<T>): void {
    let held = 0;
    for (const f of b.fragments) held += f.size;
    if (!this.index.holds(b) || b.free !== this.capacity - held || b.fragments.length > MAX_COMPRESSION_SLOTS) {
      throw assertionFailed(`packer: a bin with ${b.free} bytes free and ${b.fragments.length} fragments (${held} bytes) is misfiled or overfull`);
    }
  }

  /** Every bin's invariants, the index's, and the count of waiting fragments. */
  private checkBins(): void {
    let waiting = 0;
    for (const b of this.bins) {
      this.checkBin(b);
      waiting += b.fragments.length;
    }
    this.index.check(this.bins.length);
    if (waiting !== this.count) throw assertionFailed(`packer: ${waiting} fragments waiting, counted ${this.count}`);
  }
}

/** Offline best-fit-decreasing of the fragments a flush writes: largest first, each into the fullest open bin it fits. */
function bestFitDecreasing<T>(frags: Fragment<T>[], capacity: number): Batch<T>[] {
  frags.sort((a, b) => b.size - a.size);
  const open = new BinIndex<{ free: number; slot: number; batch: Batch<T> }>(capacity);
  const out: Batch<T>[] = [];
  for (const f of frags) {
    let bin = open.atLeast(f.size);
    if (bin === undefined) {
      bin = { free: capacity, slot: 0, batch: [] };
      out.push(bin.batch);
      open.add(bin);
    }
    bin.batch.push(f);
    if (bin.batch.length === MAX_COMPRESSION_SLOTS) open.remove(bin);
    else open.move(bin, bin.free - f.size);
  }
  return out;
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

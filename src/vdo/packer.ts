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
 * Policy 'flashpack' (the default) is the same online rule with 32 bins, and
 * on flush it repacks everything still waiting first-fit-decreasing before
 * writing, so the flush tail takes as few blocks as it can.
 */
import { CB_CAPACITY, MAX_COMPRESSION_SLOTS } from './encodings.js';
import { assertionFailed } from '../assert.js';

export type PackerPolicy = 'dm-vdo' | 'flashpack';

export interface Fragment<T> {
  size: number;
  item: T;
}

/** A bin to write: one fragment → store it raw; more → one packed block. */
export type Batch<T> = Fragment<T>[];

interface Bin<T> {
  free: number;
  fragments: Fragment<T>[];
}

export const DM_VDO_BINS = 16;
export const FLASHPACK_BINS = 32;

export class Packer<T> {
  readonly policy: PackerPolicy;
  private readonly bins: Bin<T>[];
  private readonly capacity: number;
  private count = 0;

  constructor(policy: PackerPolicy = 'flashpack', bins = policy === 'dm-vdo' ? DM_VDO_BINS : FLASHPACK_BINS, capacity = CB_CAPACITY) {
    this.policy = policy;
    this.capacity = capacity;
    this.bins = Array.from({ length: bins }, () => ({ free: capacity, fragments: [] }));
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
    let bin = bins.find((b) => b.free >= fragment.size);
    if (bin === undefined) {
      const fullest = bins[0];
      if (fragment.size >= this.capacity - fullest.free) return false;
      out.push(this.empty(fullest));
      bin = fullest;
    }
    bin.fragments.push(fragment);
    bin.free -= fragment.size;
    this.count++;
    if (bin.fragments.length === MAX_COMPRESSION_SLOTS) out.push(this.empty(bin));
    this.reposition(bin);
    this.checkBins();
    return true;
  }

  /** Writes out the bin holding `item` (an overwrite of a waiting block), or null if none holds it. */
  evict(item: T): Batch<T> | null {
    for (const b of this.bins) {
      if (b.fragments.some((f) => f.item === item)) {
        const batch = this.empty(b);
        this.sort();
        this.checkBins();
        return batch;
      }
    }
    return null;
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
    this.sort();
    this.checkBins();
    return out;
  }

  private empty(b: Bin<T>): Batch<T> {
    const batch = b.fragments;
    this.count -= batch.length;
    b.fragments = [];
    b.free = this.capacity;
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
      if ((i > 0 && bins[i - 1].free > b.free) || b.free < 0 || b.fragments.length > MAX_COMPRESSION_SLOTS) {
        throw assertionFailed(`packer: bin ${i} of ${bins.length} has ${b.free} bytes free and ${b.fragments.length} fragments${i > 0 ? `, after one with ${bins[i - 1].free} free` : ''}`);
      }
    }
  }

  private sort(): void {
    this.bins.sort((a, b) => a.free - b.free);
  }

  /** Restores the order after one bin's free space changed (insertion step, not a full sort). */
  private reposition(bin: Bin<T>): void {
    const bins = this.bins;
    let i = bins.indexOf(bin);
    while (i > 0 && bins[i - 1].free > bin.free) {
      bins[i] = bins[i - 1];
      i--;
    }
    while (i < bins.length - 1 && bins[i + 1].free < bin.free) {
      bins[i] = bins[i + 1];
      i++;
    }
    bins[i] = bin;
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
export function simulatePacking(sizes: Iterable<number>, policy: PackerPolicy, flushEvery = Infinity): PackingResult {
  const p = new Packer<number>(policy);
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

/**
 * Bins filed by free space, for best-fit packing (packer.ts): byFree[f]
 * holds the bins with f bytes free, in no order, and bit f of a bitmap is set
 * exactly when that bucket holds any. The best fit for a fragment of s bytes
 * is a bin of the first non-empty bucket at or above s, found by scanning
 * the bitmap (at most capacity / 32 words), and a bin whose free space
 * changes moves between two buckets. A sorted array instead moved the bin
 * past every bin with free space in between: a few hundred of 1,024 for each
 * fragment.
 *
 * Invariants (check()): each filed bin sits at its `slot` in the bucket of its
 * `free`; a bit is set exactly when its bucket is non-empty.
 */
import { assertionFailed } from '../assert.js';

/** What the index files: the bin's free bytes (0..capacity) and its place in its bucket (the index's to set). */
export interface Fileable {
  free: number;
  slot: number;
}

export class BinIndex<B extends Fileable> {
  private readonly byFree: B[][];
  private readonly used: Uint32Array;
  private filed = 0;

  constructor(readonly capacity: number) {
    this.byFree = Array.from({ length: capacity + 1 }, () => []);
    this.used = new Uint32Array((capacity >>> 5) + 1);
  }

  /** Files a bin under its free space. */
  add(b: B): void {
    const q = this.byFree[b.free];
    b.slot = q.length;
    q.push(b);
    this.used[b.free >>> 5] |= 1 << (b.free & 31);
    this.filed++;
  }

  /** Takes a filed bin out. */
  remove(b: B): void {
    const q = this.byFree[b.free];
    const last = q.pop()!;
    if (last !== b) {
      q[b.slot] = last;
      last.slot = b.slot;
    }
    if (q.length === 0) this.used[b.free >>> 5] &= ~(1 << (b.free & 31));
    this.filed--;
  }

  /** Refiles a filed bin whose free space becomes `free`. */
  move(b: B, free: number): void {
    this.remove(b);
    b.free = free;
    this.add(b);
  }

  /** A bin with the least free space that is at least `free` bytes, or undefined. */
  atLeast(free: number): B | undefined {
    const used = this.used;
    let w = free >>> 5;
    if (w >= used.length) return undefined;
    let bits = used[w] & (-1 << (free & 31));
    while (bits === 0) {
      if (++w === used.length) return undefined;
      bits = used[w];
    }
    const q = this.byFree[(w << 5) + 31 - Math.clz32(bits & -bits)];
    return q[q.length - 1];
  }

  /** Whether `b` is filed where its free space says. */
  holds(b: B): boolean {
    return this.byFree[b.free]?.[b.slot] === b && (this.used[b.free >>> 5] & (1 << (b.free & 31))) !== 0;
  }

  /** Every bucket holds only bins of its free space, the bitmap marks exactly the non-empty ones, and `expected` bins are filed. */
  check(expected: number): void {
    let filed = 0;
    for (let f = 0; f < this.byFree.length; f++) {
      const q = this.byFree[f];
      filed += q.length;
      if (q.length > 0 !== ((this.used[f >>> 5] & (1 << (f & 31))) !== 0) || q.some((b, i) => b.free !== f || b.slot !== i)) {
        throw assertionFailed(`bin index: bucket ${f} (${q.length} bins) disagrees with its bins or the bitmap`);
      }
    }
    if (filed !== expected || filed !== this.filed) throw assertionFailed(`bin index: ${filed} bins filed, counted ${this.filed}, expected ${expected}`);
  }
}

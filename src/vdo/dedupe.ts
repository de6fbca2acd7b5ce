/**
 * The dedupe index: fingerprint → where that data was last written, in bounded
 * memory (`indexMemory` bytes: 16 bytes an entry, 4-way buckets, the oldest
 * entry of a full bucket replaced). Like dm-vdo's UDS, its answer is advice:
 * the volume reads the block and compares bytes before it shares anything, so
 * a stale or colliding entry costs a read, never correctness.
 *
 * The volume saves the index at close() and loads it at open (save/load: one
 * flat image of its arrays); after a crash it opens with the index of the last
 * close, whose stale entries cost only reads.
 */
import { invalid } from '../errors.js';

export const INDEX_ENTRY_BYTES = 16;
const WAYS = 4;
export const DEFAULT_INDEX_MEMORY = 16 << 20;
export const MIN_INDEX_MEMORY = INDEX_ENTRY_BYTES * WAYS;

export class DedupeIndex {
  readonly entries: number;
  private readonly keyLo: Uint32Array;
  private readonly keyHi: Uint32Array;
  private readonly pbn: Uint32Array;
  private readonly state: Uint8Array;
  private readonly used: Uint8Array;
  private readonly clock: Uint8Array;
  private readonly bucketMask: number;
  private size = 0;

  /** EINVAL unless `memoryBytes` is a size an index can have. */
  static check(memoryBytes: number): void {
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < MIN_INDEX_MEMORY || memoryBytes > 2 ** 31) {
      throw invalid(`dedupe index: indexMemory ${memoryBytes} bytes (${MIN_INDEX_MEMORY} to 2 GiB)`);
    }
  }

  constructor(memoryBytes = DEFAULT_INDEX_MEMORY) {
    DedupeIndex.check(memoryBytes);
    const buckets = bucketsFor(memoryBytes);
    this.entries = buckets * WAYS;
    this.bucketMask = buckets - 1;
    this.keyLo = new Uint32Array(this.entries);
    this.keyHi = new Uint32Array(this.entries);
    this.pbn = new Uint32Array(this.entries);
    this.state = new Uint8Array(this.entries);
    this.used = new Uint8Array(this.entries);
    this.clock = new Uint8Array(buckets);
  }

  get count(): number {
    return this.size;
  }

  /** Bytes of save()'s image for an index of `memoryBytes` (its arrays, back to back). */
  static imageBytes(memoryBytes: number): number {
    const buckets = bucketsFor(memoryBytes);
    return buckets * WAYS * (4 + 4 + 4 + 1 + 1) + buckets;
  }

  /** Writes the index's arrays into `out` (imageBytes long). */
  save(out: Uint8Array): void {
    let at = 0;
    for (const a of this.arrays()) {
      out.set(a, at);
      at += a.length;
    }
  }

  /** Replaces the contents with an image save() wrote for an index of the same size. */
  load(image: Uint8Array): void {
    let at = 0;
    for (const a of this.arrays()) {
      a.set(image.subarray(at, at + a.length));
      at += a.length;
    }
    let n = 0;
    for (let i = 0; i < this.used.length; i++) if (this.used[i] === 1) n++;
    this.size = n;
  }

  /** The arrays as bytes, in image order. */
  private arrays(): Uint8Array[] {
    const bytes = (a: Uint32Array | Uint8Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    return [bytes(this.keyLo), bytes(this.keyHi), bytes(this.pbn), this.state, this.used, this.clock];
  }

  /**
   * Advice for a fingerprint, keyed by its first 8 bytes as two little-endian
   * words: [pbn, state] or null.
   */
  lookup(lo: number, hi: number): [number, number] | null {
    const base = (lo & this.bucketMask) * WAYS;
    for (let i = base; i < base + WAYS; i++) {
      if (this.used[i] === 1 && this.keyLo[i] === lo && this.keyHi[i] === hi) return [this.pbn[i], this.state[i]];
    }
    return null;
  }

  /** Records where data with this fingerprint now lives (replacing older advice). */
  update(lo: number, hi: number, pbn: number, state: number): void {
    const bucket = lo & this.bucketMask;
    const base = bucket * WAYS;
    let slot = -1;
    for (let i = base; i < base + WAYS; i++) {
      if (this.used[i] === 1 && this.keyLo[i] === lo && this.keyHi[i] === hi) {
        slot = i;
        break;
      }
      if (slot < 0 && this.used[i] === 0) slot = i;
    }
    if (slot < 0) {
      slot = base + this.clock[bucket];
      this.clock[bucket] = (this.clock[bucket] + 1) % WAYS;
    } else if (this.used[slot] === 0) this.size++;
    this.used[slot] = 1;
    this.keyLo[slot] = lo;
    this.keyHi[slot] = hi;
    this.pbn[slot] = pbn;
    this.state[slot] = state;
  }
}

function bucketsFor(memoryBytes: number): number {
  let buckets = 1;
  while (buckets * 2 * WAYS * INDEX_ENTRY_BYTES <= memoryBytes) buckets *= 2;
  return buckets;
}

/**
 * The dedupe index: fingerprint → where that data was last written, in bounded
 * memory (`indexMemory` bytes: 16 bytes an entry, 4-way buckets, the oldest
 * entry of a full bucket replaced). Like dm-vdo's UDS, its answer is advice:
 * the volume reads the block and compares bytes before it shares anything, so
 * a stale or colliding entry costs a read, never correctness.
 *
 * The index lives in memory only; a reopened volume starts with an empty one
 * (it still reads everything it stored, it just finds fewer duplicates of
 * data written before the reopen).
 */
import { invalid } from '../errors.js';

export const INDEX_ENTRY_BYTES = 16;
const WAYS = 4;
export const DEFAULT_INDEX_MEMORY = 16 << 20;

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

  constructor(memoryBytes = DEFAULT_INDEX_MEMORY) {
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < INDEX_ENTRY_BYTES * WAYS || memoryBytes > 2 ** 31) {
      throw invalid(`dedupe index: indexMemory ${memoryBytes} bytes (${INDEX_ENTRY_BYTES * WAYS} to 2 GiB)`);
    }
    let buckets = 1;
    while (buckets * 2 * WAYS * INDEX_ENTRY_BYTES <= memoryBytes) buckets *= 2;
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

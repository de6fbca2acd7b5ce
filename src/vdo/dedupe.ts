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
 *
 * Its arrays are the known table (known-table.ts owns the layout), which the
 * engine's prepare job reads to skip compressing blocks the index lists.
 */
import { invalid } from '../errors.js';
import { CLOCK_AT, KEY_HI_AT, KEY_LO_AT, KNOWN_WAYS as WAYS, PBN_AT, STATE_AT, USED_AT, knownTableBytes } from './known-table.js';

/** Memory an entry costs, for sizing (its columns, and a share of the clock and of the rounding to a power of two). */
export const INDEX_ENTRY_BYTES = 16;
export const DEFAULT_INDEX_MEMORY = 16 << 20;
/** Updates kept while a saved image loads, at most (more are advice lost, not data). */
const KEPT_DURING_LOAD = 1 << 16;
export const MIN_INDEX_MEMORY = INDEX_ENTRY_BYTES * WAYS;
/** The volume keeps its index in its shared memory (2 GiB at most, with its buffer pools). */
export const MAX_INDEX_MEMORY = 1 << 30;

export class DedupeIndex {
  readonly entries: number;
  private readonly keyLo: Uint32Array;
  private readonly keyHi: Uint32Array;
  private readonly pbn: Uint32Array;
  private readonly state: Uint8Array;
  private readonly used: Uint8Array;
  private readonly clock: Uint8Array;
  private readonly bucketMask: number;
  /** The arrays, back to back (save()'s image). */
  private readonly image: Uint8Array;
  private size = 0;
  /** Updates since beginLoad() (lo, hi, pbn, state each), while a saved image is read; else null. */
  private sinceLoad: number[] | null = null;

  /** EINVAL unless `memoryBytes` is a size an index can have. */
  static check(memoryBytes: number): void {
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < MIN_INDEX_MEMORY || memoryBytes > MAX_INDEX_MEMORY) {
      throw invalid(`dedupe index: indexMemory ${memoryBytes} bytes (${MIN_INDEX_MEMORY} to 1 GiB)`);
    }
  }

  /**
   * An empty index of `memoryBytes`, in `region` (imageBytes zero bytes at a
   * 4-aligned offset, e.g. carved from the engine's shared memory so its
   * workers can read it) or in memory of its own.
   */
  constructor(memoryBytes = DEFAULT_INDEX_MEMORY, region?: { buffer: ArrayBufferLike; at: number }) {
    DedupeIndex.check(memoryBytes);
    const buckets = bucketsFor(memoryBytes);
    const n = (this.entries = buckets * WAYS);
    this.bucketMask = buckets - 1;
    const bytes = DedupeIndex.imageBytes(memoryBytes);
    const buffer = region?.buffer ?? new ArrayBuffer(bytes);
    const at = region?.at ?? 0;
    if (at % 4 !== 0 || at + bytes > buffer.byteLength) throw invalid(`dedupe index: region at ${at} cannot hold ${bytes} bytes`);
    this.image = new Uint8Array(buffer, at, bytes);
    this.keyLo = new Uint32Array(buffer, at + KEY_LO_AT * n, n);
    this.keyHi = new Uint32Array(buffer, at + KEY_HI_AT * n, n);
    this.pbn = new Uint32Array(buffer, at + PBN_AT * n, n);
    this.state = new Uint8Array(buffer, at + STATE_AT * n, n);
    this.used = new Uint8Array(buffer, at + USED_AT * n, n);
    this.clock = new Uint8Array(buffer, at + CLOCK_AT * n, buckets);
  }

  get count(): number {
    return this.size;
  }

  /** log2 of the bucket count (the prepare job's argument names it). */
  get log2Buckets(): number {
    return 31 - Math.clz32(this.bucketMask + 1);
  }

  /** Bytes of an index of `memoryBytes` (its arrays, back to back; save()'s image). */
  static imageBytes(memoryBytes: number): number {
    return knownTableBytes(31 - Math.clz32(bucketsFor(memoryBytes)));
  }

  /** Writes the index into `out` (imageBytes long). */
  save(out: Uint8Array): void {
    out.set(this.image);
  }

  /** A saved image is being read (loadIndex): updates are kept from now until finishLoad(), to apply again over it. */
  beginLoad(): void {
    this.sinceLoad = [];
  }

  /** Takes the image read (null: none usable), then the updates made since beginLoad() again. */
  finishLoad(image: Uint8Array | null): void {
    const kept = this.sinceLoad;
    this.sinceLoad = null;
    if (image === null || kept === null) return;
    this.load(image);
    for (let i = 0; i < kept.length; i += 4) this.update(kept[i], kept[i + 1], kept[i + 2], kept[i + 3]);
  }

  /** Replaces the contents with an image save() wrote for an index of the same size. */
  load(image: Uint8Array): void {
    this.image.set(image.subarray(0, this.image.length));
    let n = 0;
    for (let i = 0; i < this.used.length; i++) if (this.used[i] === 1) n++;
    this.size = n;
  }

  /**
   * Advice for a fingerprint, keyed by its first 8 bytes as two little-endian
   * words: the entry holding it (read it with pbnAt/stateAt before the next
   * update), or −1.
   */
  lookup(lo: number, hi: number): number {
    const base = (lo & this.bucketMask) * WAYS;
    for (let i = base; i < base + WAYS; i++) {
      if (this.used[i] === 1 && this.keyLo[i] === lo && this.keyHi[i] === hi) return i;
    }
    return -1;
  }

  pbnAt(entry: number): number {
    return this.pbn[entry];
  }

  stateAt(entry: number): number {
    return this.state[entry];
  }

  /** Records where data with this fingerprint now lives (replacing older advice). */
  update(lo: number, hi: number, pbn: number, state: number): void {
    if (this.sinceLoad !== null && this.sinceLoad.length < KEPT_DURING_LOAD * 4) this.sinceLoad.push(lo, hi, pbn, state);
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

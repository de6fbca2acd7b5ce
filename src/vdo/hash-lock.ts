/**
 * Deduplication of a hashed write (dm-vdo's hash lock and dedupe advice,
 * hash-lock.c and dedupe.c): identical data in flight shares one lookup and
 * one write, and the index's advice is verified against the stored bytes
 * before anything is shared.
 *
 * - Hash lock: 48 bits of the fingerprint key it; the newest write of the
 *   data holds it and the next one to arrive waits on it (HASH_WAIT). While
 *   the holder's fragment waits in a packer bin (which may be until a flush),
 *   its waiter compares its data with the holder's arena bytes at once and,
 *   if they are the same, parks too: it keeps a reference to those bytes,
 *   gives its buffers and pipeline slot back, and later shares the holder's
 *   home without comparing again. Otherwise, when the holder has a home, its
 *   waiter compares bytes with the holder's (its buffer, or its arena bytes)
 *   and shares that home. A waiter stores its own copy when the home is full
 *   (254 references), failed, or the data differs (a key collision); a parked
 *   one decodes the arena bytes for it and stores them raw.
 * - Advice: the index names where the data was last written; the block is
 *   read (ADVICE) and compared — a packed slot by its compressed bytes when
 *   the write has its own compressed form, else decoded — and shared only if
 *   it still holds the data and can take a reference.
 *
 * Invariants: a write holds at most one lock and a holder has at most one
 * waiter (asserted); a block being written, unreferenced or full is never
 * shared; an advice read is counted in the read path's `inFlight`, so the
 * block cannot be freed and reused under it.
 */
import { FlashpackError } from '../errors.js';
import { assertionFailed } from '../assert.js';
import type { SlabPool } from '../shm/slab.js';
import type { WasmExports } from '../wasm/runtime.js';
import type { BlockDevice } from './block-device.js';
import { mappingOf, pbnOf, stateOf } from './block-map.js';
import type { DedupeIndex } from './dedupe.js';
import type { SlabDepot } from './slab-depot.js';
import { FROM_PREPARING, Stage, STAGE_NAMES, type DataVio } from './data-vio.js';
import { RecordTable } from './record-table.js';
import { BLOCK_BYTES, STATE_COMPRESSED_BASE, STATE_UNCOMPRESSED, STATE_UNMAPPED, packedFragment } from './encodings.js';


export interface DedupeCounters {
  adviceValid: number;
  adviceStale: number;
  concurrentShared: number;
}

/** What the stage hands writes on to, and borrows, from the volume. */
export interface DedupeWiring {
  /** New data after all: compress (if not yet) and store it. */
  store(job: DataVio): void;
  /** The write has a home holding one reference for it. */
  placed(job: DataVio, mapping: number): void;
  failJob(job: DataVio, err: Error): void;
  /** The write stops (leave) or starts again (enter) counting as a packer feeder. */
  leave(job: DataVio): void;
  enter(job: DataVio): void;
  /** Decodes `slot` of the packed block in buffer `buf` into buffer `into`: null, or why not. */
  decodeSlot(buf: number, slot: number, into: number): string | null;
  /** Decodes `size` compressed bytes at byte address `from` into the block at `to`: null, or why not. */
  decodeFragment(from: number, size: number, to: number): string | null;
  /** Sends out the packer bin the write waits in. */
  evict(job: DataVio): void;
  /** Stores a parked write raw, its data decoded from the arena. */
  writeUnpacked(job: DataVio): void;
  /** The write gives its pipeline slot back (it waits without data). */
  parkSlot(job: DataVio): void;
  /** Another write reads the fragment in arena page `page` until it finishes. */
  holdFragment(page: number): void;
  /** Frees the write's compressed form, if it still has one. */
  releaseOut(job: DataVio): void;
  /** The read path's count of device reads in flight (blocks are not reused under one). */
  reads: { inFlight: number };
}

export class DedupeStage {
  private readonly pool: SlabPool;
  private readonly mem: Uint8Array;
  /** Hash key → the newest write of that data in flight, which holds its lock. */
  private readonly locks = new RecordTable<DataVio>();
  /** Waiters of released locks to place: (job, mapping, holder's data descriptor, arena address, size) tuples, run in order. */
  private readonly shares: (DataVio | number)[] = [];
  private sharing = false;

  constructor(
    pool: SlabPool,
    /** The module's kernels: block comparisons in SIMD. */
    private readonly wasm: WasmExports,
    private readonly index: DedupeIndex,
    private readonly depot: SlabDepot,
    private readonly dev: BlockDevice,
    private readonly counters: DedupeCounters,
    /** The volume block: what a fingerprint covers, and what a dedupe check reads and compares. */
    private readonly blockBytes: number,
    private readonly w: DedupeWiring,
  ) {
    this.pool = pool;
    this.mem = new Uint8Array(pool.memory.buffer);
  }

  /** A write whose fingerprint (fpLo, fpHi) is known: wait on identical data in flight, follow advice, or store. */
  hashed(job: DataVio): void {
    job.hashed = true;
    // A collision of the 48-bit key only makes one writer wait for another and then
    // compare bytes, never share different data.
    job.key = job.fpLo + (job.fpHi & 0xffff) * 2 ** 32;
    const prev = this.locks.set(job);
    job.holdsLock = true;
    if (prev !== undefined) {
      // Identical data is in flight ahead: wait for that writer's home (it may be in the
      // packer, so this write no longer counts as feeding it). Each later writer takes
      // the lock over, so a holder has at most one waiter.
      if (prev.hashNext !== null) throw assertionFailed(`hash lock of data_vio ${prev.id} has two waiters`);
      job.move(Stage.HASH_WAIT, FROM_PREPARING);
      this.w.leave(job);
      prev.hashNext = job;
      if (prev.parked && prev.arenaAt >= 0) this.parked(prev);
      return;
    }
    const advice = this.index.lookup(job.fpLo, job.fpHi);
    if (advice >= 0) this.followAdvice(job, mappingOf(this.index.pbnAt(advice), this.index.stateAt(advice)));
    else this.w.store(job);
  }

  /**
   * The write has its home (or failed: mapping −1): the write waiting on its
   * lock shares that home or stores a copy. Waiters run from a queue, so a long
   * chain of identical writes does not nest calls.
   */
  release(job: DataVio, mapping: number): void {
    if (!job.holdsLock) return;
    job.holdsLock = false;
    this.locks.deleteRecord(job);
    const next = job.hashNext;
    if (next === null) return;
    job.hashNext = null;
    this.shares.push(next, mapping, job.desc, job.arenaAt, job.size);
    if (this.sharing) return;
    this.sharing = true;
    try {
      for (let i = 0; i < this.shares.length; i += 5) {
        const waiter = this.shares[i] as DataVio;
        try {
          const sh = this.shares;
          this.shareWith(waiter, sh[i + 1] as number, sh[i + 2] as number, sh[i + 3] as number, sh[i + 4] as number);
        } catch (err) {
          this.w.failJob(waiter, err as Error);
        }
      }
    } finally {
      this.shares.length = 0;
      this.sharing = false;
    }
  }

  /** The index says this data is stored at `mapping`: read that block (adviceRead), then share it or store a copy. */
  private followAdvice(job: DataVio, mapping: number): void {
    if (!this.canShare(mapping)) {
      this.counters.adviceStale++;
      this.w.store(job);
      return;
    }
    job.move(Stage.ADVICE, FROM_PREPARING);
    job.adviceMapping = mapping;
    const buf = this.pool.tryAlloc(this.blockBytes);
    if (buf >= 0) this.readAdvice(job, buf);
    else this.pool.allocAsync(this.blockBytes).then((b) => this.readAdvice(job, b), (err: Error) => this.w.failJob(job, err));
  }

  /** Reads the advised block, checked again as the read is issued, under the read path's inFlight. */
  private readAdvice(job: DataVio, buf: number): void {
    const reads = this.w.reads;
    reads.inFlight++;
    if (!this.canShare(job.adviceMapping)) {
      reads.inFlight--;
      this.pool.free(buf);
      this.counters.adviceStale++;
      this.w.store(job);
      return;
    }
    job.adviceBuf = buf;
    this.dev.readThen(pbnOf(job.adviceMapping), buf, this.adviceRead, job, this.blockBytes / BLOCK_BYTES);
  }

  /**
   * Whether `mapping` is a data block (or slot) that can take one more
   * reference: referenced, below the bound, and not being written (a block
   * allocated for new data whose write is still in flight reads, on the
   * device, as what it held before it was freed — which may be this very data).
   */
  private canShare(mapping: number): boolean {
    const pbn = pbnOf(mapping);
    return mapping >= 0 && stateOf(mapping) !== STATE_UNMAPPED && this.depot.isData(pbn) && this.depot.references(pbn) > 0 &&
      this.depot.canShare(pbn) && !this.depot.beingWritten(pbn);
  }

  /** The advised block is read: share it when it holds the write's data and can still take a reference. */
  private readonly adviceRead = (err: FlashpackError | null, job: DataVio): void => {
    this.w.reads.inFlight--;
    if (job.stage !== Stage.ADVICE) throw assertionFailed(`data_vio ${job.id}: advice read back in ${STAGE_NAMES[job.stage]}`);
    const mapping = job.adviceMapping;
    const buf = job.adviceBuf;
    job.adviceBuf = -1;
    const same = err === null && this.holdsData(mapping, buf, job);
    this.pool.free(buf);
    if (err !== null) {
      this.w.failJob(job, err);
      return;
    }
    try {
      if (same && this.canShare(mapping)) {
        this.depot.increment(pbnOf(mapping));
        this.counters.adviceValid++;
        this.w.placed(job, mapping);
        return;
      }
      this.counters.adviceStale++;
      this.w.store(job);
    } catch (e) {
      this.w.failJob(job, e as Error);
    }
  };

  /**
   * Whether the block read into `buf` holds the write's data at `mapping`. A
   * packed slot whose compressed bytes equal the write's own compressed form
   * holds the same data (decompression is a function of its input); otherwise
   * the slot is decompressed and compared.
   */
  private holdsData(mapping: number, buf: number, job: DataVio): boolean {
    const state = stateOf(mapping);
    if (state === STATE_UNCOMPRESSED) return this.sameData(buf, job.desc);
    const at = this.pool.bufferOf(buf);
    const range = packedFragment(this.mem.subarray(at, at + this.blockBytes), state - STATE_COMPRESSED_BASE);
    if (typeof range === 'string') return false;
    if (job.out >= 0 && job.size === range[1] - range[0] && this.sameBytes(at + range[0], this.pool.bufferOf(job.out), job.size)) return true;
    // No compressed form (the engine skipped it: STATUS_KNOWN), or another one: decode
    // the slot. With no buffer free the advice counts as stale (a copy is stored).
    const scratch = this.pool.tryAlloc(this.blockBytes);
    if (scratch < 0) return false;
    const same = this.w.decodeSlot(buf, state - STATE_COMPRESSED_BASE, scratch) === null && this.sameData(scratch, job.desc);
    this.pool.free(scratch);
    return same;
  }

  /**
   * Shares the holder's home (`mapping`; its data in buffer `holderDesc`, or
   * its `holderSize` compressed bytes at arena address `holderAt`) when the
   * bytes match and it can take a reference; else stores.
   */
  private shareWith(job: DataVio, mapping: number, holderDesc: number, holderAt: number, holderSize: number): void {
    if (job.stage !== Stage.HASH_WAIT) throw assertionFailed(`data_vio ${job.id} shares a home in ${STAGE_NAMES[job.stage]}`);
    this.w.enter(job);
    if (job.verified && !this.canShare(mapping)) {
      this.w.writeUnpacked(job); // its data is only in the arena now: decoded and stored raw
      return;
    }
    if (this.canShare(mapping) && (job.verified || this.sameAsHolder(job, holderDesc, holderAt, holderSize))) {
      this.depot.increment(pbnOf(mapping));
      this.counters.concurrentShared++;
      this.w.placed(job, mapping);
      return;
    }
    this.w.store(job);
  }

  /**
   * `holder` is parked with its compressed bytes in the arena: the writes
   * waiting on its lock, one after another down the chain, compare their data
   * with those bytes and park as well when it is the same (see the header).
   */
  parked(holder: DataVio): void {
    for (let h = holder; h.hashNext !== null; h = h.hashNext) {
      const w = h.hashNext;
      if (w.parked) continue;
      if (w.stage !== Stage.HASH_WAIT) return;
      if (h.arenaAt < 0 || h.size <= 0) return; // h is being stored raw: its waiters wait for its home
      if (!this.sameAsHolder(w, -1, h.arenaAt, h.size)) {
        // Not the same data after all (a key collision): it keeps its slot, so it should not wait for a flush.
        if (h.stage === Stage.PACKING) this.w.evict(h);
        return;
      }
      this.w.holdFragment(h.arenaPage);
      w.arenaPage = h.arenaPage;
      w.arenaAt = h.arenaAt;
      w.size = h.size;
      w.uncompressed = false;
      w.verified = true;
      this.w.releaseOut(w);
      this.pool.free(w.desc);
      w.desc = -1;
      this.w.parkSlot(w);
    }
  }

  /** Whether the waiter's data is the holder's (see shareWith); false when that cannot be told (no scratch buffer). */
  private sameAsHolder(job: DataVio, holderDesc: number, holderAt: number, holderSize: number): boolean {
    if (holderDesc >= 0) return this.sameData(holderDesc, job.desc);
    if (holderAt < 0 || holderSize <= 0) return false;
    // The same compressed bytes are the same data (decompression is a function of its input).
    if (job.out >= 0 && job.size === holderSize && this.sameBytes(holderAt, this.pool.bufferOf(job.out), holderSize)) return true;
    const scratch = this.pool.tryAlloc(this.blockBytes);
    if (scratch < 0) return false;
    const same = this.w.decodeFragment(holderAt, holderSize, this.pool.bufferOf(scratch)) === null && this.sameData(scratch, job.desc);
    this.pool.free(scratch);
    return same;
  }

  /** Whether two block buffers hold the same bytes. */
  private sameData(a: number, b: number): boolean {
    return this.wasm.bytesEqual(this.pool.bufferOf(a), this.pool.bufferOf(b), this.blockBytes) === 1;
  }

  /** Whether `n` bytes at byte addresses a and b are equal. */
  private sameBytes(a: number, b: number, n: number): boolean {
    return this.wasm.bytesEqual(a, b, n) === 1;
  }

}

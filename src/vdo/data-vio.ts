/**
 * One logical block's write from admission to its mapping (dm-vdo's
 * data_vio): a record taken from a pool the volume preallocates at open, one
 * per pipeline slot (`maxInflight`), and given back when the write is over.
 * The common path — admit, engine trip, index miss, packer or raw write,
 * batched mapping — allocates no object per block: the record carries the
 * write's state, its place in the hash-lock chain and its advice check.
 *
 * Invariants (asserted; a failure is a bug, EINTERNAL):
 * - a record moves only along the stage graph below (move() names the stages
 *   each step may come from);
 * - it is released exactly once per acquire, holding no hash lock, no waiter
 *   and no compressed-form buffer;
 * - no more records are in use than the pool holds, and no more hold a
 *   pipeline slot than `slots` (maxInflight): a write whose fragment waits in
 *   the packer is parked — its compressed bytes are in the fragment arena, its
 *   compressed-form buffer is back (its data buffer too, unless it is big
 *   enough to go out alone: StoreStage.keepsData), and it holds no slot until
 *   it finishes.
 *
 *   ACCEPTED → PREPARING → (HASH_WAIT | ADVICE)* → (PACKING →) WRITING → MAPPING
 *   ACCEPTED → MAPPING (a zero block);  HASH_WAIT | ADVICE → MAPPING (shared)
 *   HASH_WAIT | ADVICE → PREPARING (stored after all, compressed first)
 *   any stage → FREE (finished: mapped, obsolete or failed)
 */
import { assert, assertionFailed } from '../assert.js';
import type { Fragment } from './packer.js';

export const enum Stage {
  FREE = 0,
  /** Taken by admission: the block is copied in, nothing sent yet. */
  ACCEPTED = 1,
  /** Queued for, or on, the engine (the first trip, or back for compression). */
  PREPARING = 2,
  /** Identical data is in flight ahead: waits for that write's home. */
  HASH_WAIT = 3,
  /** Reading the block the dedupe index advised, to compare. */
  ADVICE = 4,
  /** A fragment waiting in a packer bin. */
  PACKING = 5,
  /** Its raw or packed block is being written. */
  WRITING = 6,
  /** Has a home holding one reference; waits for, or is in, a mapping batch. */
  MAPPING = 7,
}

export const STAGE_NAMES = ['FREE', 'ACCEPTED', 'PREPARING', 'HASH_WAIT', 'ADVICE', 'PACKING', 'WRITING', 'MAPPING'] as const;

/** A set of stages, for move()'s `from`. */
export const from = (...stages: Stage[]): number => stages.reduce((m, s) => m | (1 << s), 0);

// The graph above, as the sets each step may come from (made once: move() is on the hot path).
export const FROM_FREE = from(Stage.FREE);
export const FROM_ACCEPTED = from(Stage.ACCEPTED);
export const FROM_PREPARING = from(Stage.PREPARING);
/** Where store() is called: after the engine, a stale advice, or a hash lock whose home could not be shared. */
export const FROM_DEDUPING = from(Stage.PREPARING, Stage.ADVICE, Stage.HASH_WAIT);
/** A raw write: as store(), or a bin of one. */
export const FROM_STORING = from(Stage.PREPARING, Stage.ADVICE, Stage.HASH_WAIT, Stage.PACKING);
export const FROM_PACKING = from(Stage.PACKING);
/** A home found: a zero block, a written block, verified advice, or the holder's home shared. */
export const FROM_PLACING = from(Stage.ACCEPTED, Stage.WRITING, Stage.ADVICE, Stage.HASH_WAIT);

/** Ordering state of a logical block with writes in flight (generations are taken at call time). */
export interface LbaState {
  /** The LBA (its key in the logical zone's table). */
  key: number;
  /** Newest write or discard issued for it. */
  latest: number;
  /** Newest write or discard mapped; an older write that gets here later is dropped. */
  applied: number;
  /** Newest discard issued over it. */
  discarded: number;
  /** Writes (issued, not yet over) holding this state. */
  inflight: number;
  /** The newest admitted write not yet mapped: reads see its bytes. */
  pending: DataVio | null;
}

/** A write() call of the sync policy waiting for its blocks to be durable. */
export interface WriteCall {
  remaining: number;
  error: Error | null;
  wake: (() => void) | null;
}

/** A free record's LBA state: none (the write's own is dropped at release). */
const NO_LBA_STATE: LbaState = Object.freeze({ key: -1, latest: 0, applied: 0, discarded: 0, inflight: 0, pending: null });

export class DataVio {
  /** Index in the pool (for messages). */
  readonly id: number;
  stage = Stage.FREE;
  lba = 0;
  gen = 0;
  st: LbaState = NO_LBA_STATE;
  /** Slab descriptor holding the data, or −1 for a zero block. */
  desc = -1;
  /** Descriptor of the compressed form, or −1 (codec none, or released). */
  out = -1;
  /** Compressed bytes in `out`; 0 = incompressible or not compressed. */
  size = 0;
  /** The data check the journal records (bits 64–95 of the fingerprint): recovery checks the data arrived. */
  check = 0;
  /** The home found, holding one reference; −1 until placed. */
  mapping = -1;
  /** The fingerprint's first 8 bytes as two little-endian words (the index key); set with dedupe only. */
  fpLo = 0;
  fpHi = 0;
  hashed = false;
  /**
   * The engine did not compress it: the index knew its fingerprint
   * (STATUS_KNOWN). If it is stored after all, it goes back for compression
   * first (`recompressing` while it is there).
   */
  uncompressed = false;
  recompressing = false;
  /**
   * This write holds the hash lock of its data's key (48 bits of the
   * fingerprint): the newest write of that data in flight holds it, and the
   * one that arrives next waits on it (`hashNext`), so a chain of identical
   * writes shares one home after another.
   */
  holdsLock = false;
  key = 0;
  hashNext: DataVio | null = null;
  /** The advised home being read and the buffer it is read into (ADVICE). */
  adviceMapping = -1;
  adviceBuf = -1;
  /** Blocks of room reserved at acceptance (async policy; admission.ts). */
  reserved = 0;
  /** flush() epoch it was admitted in (flush.ts); −1 until then. */
  epoch = -1;
  call: WriteCall | null = null;
  /** Its place among the writes that may still bring the packer a fragment (StoreStage.feeders), or −1. */
  feederAt = -1;
  /** A flush in progress waits for it to stop feeding the packer. */
  flushWatched = false;
  /** Its fragment waits, or waited, in the packer — or it waits on the hash lock of one that does — and it holds no pipeline slot (DataVioPool.park). */
  parked = false;
  /** Parked on a hash lock: its data was compared with the holder's arena bytes and is the same (it shares the holder's home without comparing again). */
  verified = false;
  /** Its compressed bytes in the fragment arena (page and byte address), or −1: reads decode them from there. */
  arenaPage = -1;
  arenaAt = -1;
  /** Its packer entry, made once with the record (no object per packed block). */
  readonly fragment: Fragment<DataVio>;

  constructor(id: number) {
    this.id = id;
    this.fragment = { size: 0, item: this, page: -1, offset: 0, bin: undefined };
  }

  /** Moves to `to` from one of the stages in `fromMask` (from()). */
  move(to: Stage, fromMask: number): void {
    if ((fromMask & (1 << this.stage)) === 0) throw assertionFailed(`data_vio ${this.id} (LBA ${this.lba}): ${STAGE_NAMES[this.stage]} → ${STAGE_NAMES[to]}`);
    this.stage = to;
  }
}

/** The volume's records, all made at open. */
export class DataVioPool {
  readonly all: readonly DataVio[];
  /** Writes in the pipeline at most, parked ones not counted (maxInflight). */
  readonly slots: number;
  private readonly free: DataVio[];
  private parkedCount = 0;

  /** `slots` records for writes in the pipeline, and `parkable` more for writes parked in the packer. */
  constructor(slots: number, parkable = 0) {
    this.slots = slots;
    this.all = Array.from({ length: slots + parkable }, (_, i) => new DataVio(i));
    this.free = [...this.all].reverse();
  }

  /** Records a new write can take now: a free one, and a free pipeline slot. */
  get freeSlots(): number {
    return Math.min(this.free.length, this.slots - (this.all.length - this.free.length - this.parkedCount));
  }

  /** Parked records (their fragments waiting in the packer, or written and not yet mapped). */
  get parked(): number {
    return this.parkedCount;
  }

  /** The write's fragment is in the packer: its slot is free for another write. */
  park(v: DataVio): void {
    assert(!v.parked && (v.stage === Stage.PACKING || v.stage === Stage.HASH_WAIT), `data_vio ${v.id} parked twice or outside PACKING and HASH_WAIT`);
    v.parked = true;
    this.parkedCount++;
  }

  /** The most records holding a pipeline slot at once since open (parked ones not counted). */
  peak = 0;

  /** Records not in use. */
  get available(): number {
    return this.free.length;
  }

  /** Records holding a pipeline slot (in use and not parked). */
  get active(): number {
    return this.all.length - this.free.length - this.parkedCount;
  }

  get inUse(): number {
    return this.all.length - this.free.length;
  }

  /** A free record, reset, in stage ACCEPTED. The caller has checked `available`. */
  acquire(lba: number, gen: number, st: LbaState, desc: number, reserved: number, call: WriteCall | null): DataVio {
    const v = this.free.pop();
    assert(v !== undefined, 'data_vio pool: acquire() with none free');
    if (this.active > this.peak) this.peak = this.active;
    v.move(Stage.ACCEPTED, FROM_FREE);
    v.lba = lba;
    v.gen = gen;
    v.st = st;
    v.desc = desc;
    v.out = -1;
    v.size = 0;
    v.check = 0;
    v.mapping = -1;
    v.fpLo = 0;
    v.fpHi = 0;
    v.hashed = false;
    v.uncompressed = false;
    v.recompressing = false;
    v.key = 0;
    v.adviceMapping = -1;
    v.adviceBuf = -1;
    v.reserved = reserved;
    v.epoch = -1;
    v.call = call;
    v.arenaPage = -1;
    v.arenaAt = -1;
    v.verified = false;
    return v;
  }

  /** Gives a finished record back: exactly once, with nothing of the write still attached. */
  release(v: DataVio): void {
    if (v.stage === Stage.FREE) throw assertionFailed(`data_vio ${v.id} (LBA ${v.lba}) finished twice`);
    if (v.holdsLock || v.hashNext !== null || v.out >= 0 || v.desc >= 0 || v.feederAt >= 0 || v.flushWatched || v.arenaPage >= 0 || v.fragment.bin !== undefined) {
      const held = v.holdsLock ? 'its hash lock' : v.hashNext !== null ? 'a waiter' : v.out >= 0 ? 'its compressed form' : v.desc >= 0 ? 'its data'
        : v.arenaPage >= 0 ? 'a fragment arena page' : v.fragment.bin !== undefined ? 'a place in a packer bin' : 'a packer watch';
      throw assertionFailed(`data_vio ${v.id} (LBA ${v.lba}) released in ${STAGE_NAMES[v.stage]} still holding ${held}`);
    }
    v.stage = Stage.FREE;
    if (v.parked) {
      v.parked = false;
      this.parkedCount--;
    }
    v.st = NO_LBA_STATE;
    v.call = null;
    this.free.push(v);
  }
}

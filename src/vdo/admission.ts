/**
 * Admission and completion of writes (dm-vdo's data-vio.c launch and
 * cleanup): write() cuts a call into blocks, takes each block's generation
 * and place in line, copies it into a slab buffer and hands it a data_vio
 * record (data-vio.ts); every stage ends a write through finish().
 *
 * Invariants (asserted where relied on; a failure is a bug, EINTERNAL):
 * - writes holding a slot (records in use, parked ones not counted) + slots
 *   promised to waiting acceptBlock() calls (`slotsHeld`) never exceed
 *   maxInflight, nor records in use the pool: a write that waited for room is
 *   not overtaken by one admitted on the fast path meanwhile;
 * - async policy: every admitted write holds the room it may take
 *   (`reserved`) until it finishes — a block for its data unless it is
 *   zeroes, and ROOT_LEVEL more for block map tree pages unless its leaf is
 *   known placed — so an acknowledged write cannot fail for space later;
 * - a write finishes exactly once; its buffer, its reservation, its LBA
 *   state and its flush epoch are given back there and nowhere else;
 * - `inFlight` counts admitted writes not yet finished, `busy` those of them
 *   holding a pipeline slot (not parked); the device workers stop spinning
 *   while `busy` is at least SPIN_OFF_WRITES and spin again when it is 0. A
 *   parked write takes no CPU, and under the async policy it may stay parked
 *   until a flush: counting it kept the workers parked on their doorbell
 *   through whole QD 1 workloads, a wake-up per device command.
 */
import { FlashpackError } from '../errors.js';
import type { Engine } from '../engine/engine.js';
import type { Controller } from '../nvme/controller.js';
import { STATUS_OK, STATUS_INCOMPRESSIBLE } from '../engine/jobs.js';
import { assert, assertionFailed } from '../assert.js';
import { DataVioPool, FROM_ACCEPTED, FROM_PLACING, FROM_PREPARING, Stage, type DataVio, type LbaState, type WriteCall } from './data-vio.js';
import { STATUS_KNOWN } from './prepare-job.js';
import { ROOT_LEVEL } from './map-tree.js';
import type { PrepareStage } from './prepare.js';
import type { DedupeStage } from './hash-lock.js';
import type { StoreStage } from './store.js';
import type { MappingStage } from './mapping.js';
import type { SlabDepot } from './slab-depot.js';
import type { FlushEpochs } from './flush.js';
import type { LbaTicket, LogicalZone } from './logical-zone.js';
import { mappingOf } from './block-map.js';
import { STATE_UNCOMPRESSED, ZERO_PBN } from './encodings.js';

/** Flushes a write waits through for a free block before it gives up with ENOSPC. */
const SPACE_WAIT_FLUSHES = 64;

/**
 * Writes in the pipeline at which device workers stop spinning (when the
 * volume's threads outnumber the cores): a stream of writes, not the odd write
 * among reads at low queue depth. They spin again once the pipeline is empty.
 */
const SPIN_OFF_WRITES = 16;

/** What write() returns for a call whose blocks were all accepted on the spot (async policy): settled, shared. */
const ACCEPTED: Promise<void> = Promise.resolve();

/** A block of a write() call that waits its turn in acceptSlow(). */
interface SlowPiece {
  lba: number;
  within: number;
  pos: number;
  n: number;
  gen: number;
  st: LbaState;
  ticket: LbaTicket;
  taken: boolean;
}

export interface AdmissionCounters {
  writeIn: number;
  blocksWrittenIn: number;
  zeroBlocks: number;
}

export interface AdmissionOptions {
  engine: Engine;
  ctrlr: Controller;
  /** Device-worker spin while writes are not streaming; 0 = leave the controller's setting alone. */
  idleSpin: number;
  /** The shared memory's bytes (the copy in). */
  mem: Uint8Array;
  zone: LogicalZone;
  depot: SlabDepot;
  flushes: FlushEpochs;
  maxInflight: number;
  /** The volume block: writes are cut at its boundaries, and pieces of one are read-modify-write. */
  blockBytes: number;
  /** Records beyond maxInflight, for writes parked in the packer (StoreStage.parkable). */
  parkable: number;
  sync: boolean;
  dedupe: boolean;
  counters: AdmissionCounters;
  prep: PrepareStage;
  dedupeStage: DedupeStage;
  stores: StoreStage;
  mapping: MappingStage;
  /** The volume's flush(): frees blocks that overwrites released (reserveSpace). */
  flush: () => Promise<void>;
  /** A whole block as it reads now (read-modify-write of a partial block). */
  readWhole: (lba: number) => Promise<Uint8Array>;
  /** Whether the block map leaf of `lba` is cached and placed (mapping it takes no tree page). */
  leafPlaced: (lba: number) => boolean;
}

export class Admission {
  /** Every write's record, made at open: no more writes are in the pipeline than it holds. */
  readonly vios: DataVioPool;
  /** Generation of the newest write or discard issued (discards take theirs with nextGen()). */
  gen = 0;
  /** The first error that failed the volume: every later call throws it. */
  failure: Error | null = null;
  /** Admitted writes not yet finished (mapped, or failed). */
  private inFlight = 0;
  /** Of those, the ones holding a pipeline slot (not parked): the device workers' spin follows it. */
  private busy = 0;
  /** write() calls waiting for room in the pipeline (a free record). */
  private readonly slotWaiters: (() => void)[] = [];
  /** Records promised to acceptBlock() calls still waiting for a buffer or room. */
  private slotsHeld = 0;
  /** Blocks of room held by admitted async writes (async policy). */
  private reserved = 0;

  constructor(private readonly o: AdmissionOptions) {
    this.vios = new DataVioPool(o.maxInflight, o.parkable);
  }

  nextGen(): number {
    return ++this.gen;
  }

  /**
   * See Volume.write (the caller has checked the range and the volume's
   * state). An async-policy write whose blocks were all accepted on the spot
   * is done when this returns: it gets one shared settled promise, so the
   * common case allocates no promise and no async frame.
   */
  write(offset: number, data: Uint8Array): Promise<void> {
    const { zone, blockBytes: bb } = this.o;
    this.o.counters.writeIn++;
    const call: WriteCall | null = this.o.sync ? { remaining: 0, error: null, wake: null } : null;
    let slow: SlowPiece[] | null = null;
    try {
      for (let pos = 0; pos < data.length;) {
        const at = offset + pos;
        const lba = Math.floor(at / bb);
        const within = at % bb;
        const n = Math.min(bb - within, data.length - pos);
        const gen = ++this.gen;
        const st = zone.hold(lba);
        st.latest = gen;
        if (slow !== null || n !== bb || zone.queued(lba) || !this.tryAccept(lba, pos === 0 && n === data.length ? data : data.subarray(pos, pos + n), gen, st, call)) {
          (slow ??= []).push({ lba, within, pos, n, gen, st, ticket: zone.enqueue(lba), taken: false });
        }
        pos += n;
      }
    } catch (err) {
      return Promise.reject(err);
    }
    if (slow === null && call === null) return ACCEPTED;
    if (call === null) return this.acceptSlow(data, slow as SlowPiece[], null);
    return this.settle(data, slow, call);
  }

  /** The rest of a sync-policy write() call: its pieces that must wait, then its blocks becoming durable. */
  private async settle(data: Uint8Array, slow: SlowPiece[] | null, call: WriteCall): Promise<void> {
    if (slow !== null) await this.acceptSlow(data, slow, call);
    if (call.remaining > 0) await new Promise<void>((r) => (call.wake = r));
    if (call.error !== null) throw call.error;
  }

  /** Pieces that wait for a writer ahead of them, a read (unaligned), room, or a buffer. */
  private async acceptSlow(data: Uint8Array, pieces: SlowPiece[], call: WriteCall | null): Promise<void> {
    try {
      for (const p of pieces) {
        await p.ticket.prev;
        try {
          let block = data.subarray(p.pos, p.pos + p.n);
          if (p.n !== this.o.blockBytes) {
            const whole = await this.o.readWhole(p.lba);
            whole.set(block, p.within);
            block = whole;
          }
          p.taken = true;
          await this.acceptBlock(p.lba, block, p.gen, p.st, call);
        } finally {
          p.ticket.release();
        }
      }
    } finally {
      for (const p of pieces) {
        if (p.taken) continue;
        p.ticket.release();
        this.o.zone.drop(p.lba, p.st);
      }
    }
  }

  /** The fast path: accepts a whole block now, or returns false (nothing changed) if it would have to wait. */
  private tryAccept(lba: number, data: Uint8Array, gen: number, st: LbaState, call: WriteCall | null): boolean {
    if (this.vios.freeSlots - this.slotsHeld <= 0 || this.slotWaiters.length > 0) return false;
    const pool = this.o.engine.pool;
    let desc = pool.tryAlloc(this.o.blockBytes);
    if (desc < 0) return false;
    // Copied first and checked for zeroes in place: one pass over the caller's bytes.
    const at = pool.bufferOf(desc);
    this.o.mem.set(data, at);
    const zero = this.zeroAt(at);
    if (zero) {
      pool.free(desc);
      desc = -1;
    }
    const reserved = this.roomFor(lba, zero);
    if (reserved > 0) {
      if (this.o.depot.freeBlocks - this.reserved < reserved) {
        if (desc >= 0) pool.free(desc);
        return false; // acceptBlock flushes or reports ENOSPC
      }
      this.reserved += reserved;
    }
    this.admit(this.vios.acquire(lba, gen, st, desc, reserved, call));
    return true;
  }

  /** Blocks of room an async write of `lba` reserves (see the invariants); a sync write finds out when it allocates. */
  private roomFor(lba: number, zero: boolean): number {
    if (this.o.sync) return 0;
    return (zero ? 0 : 1) + (this.o.leafPlaced(lba) ? 0 : ROOT_LEVEL);
  }

  /** Whether the block at byte address `at` is all zero (the module's SIMD check). */
  private zeroAt(at: number): boolean {
    return this.o.engine.runtime.exports.allZero(at, this.o.blockBytes) === 1;
  }

  /** Accepts one whole block (its generation and LBA state taken by write()), waiting for room and a buffer. */
  private async acceptBlock(lba: number, data: Uint8Array, gen: number, st: LbaState, call: WriteCall | null): Promise<void> {
    let reserved = 0;
    let desc = -1;
    let slot = false;
    try {
      while (this.vios.freeSlots - this.slotsHeld <= 0) {
        // Every record taken, parked writes among them: only the packer's bins going out frees those.
        if (this.vios.available - this.slotsHeld <= 0 && this.vios.parked > 0) this.o.stores.drain();
        await new Promise<void>((r) => this.slotWaiters.push(r));
      }
      // The slot is this write's from here: nothing admitted meanwhile can take it.
      this.slotsHeld++;
      slot = true;
      // Copied first and checked for zeroes in place, in the pool's aligned buffer (the
      // caller's bytes may sit at any offset of their buffer).
      const pool = this.o.engine.pool;
      desc = pool.tryAlloc(this.o.blockBytes);
      if (desc < 0) desc = await pool.allocAsync(this.o.blockBytes);
      const at = pool.bufferOf(desc);
      this.o.mem.set(data, at);
      const zero = this.zeroAt(at);
      if (zero) {
        pool.free(desc);
        desc = -1;
      }
      // Async writes are acknowledged now, so room for them is reserved now (dm-vdo's async mode
      // allocates before it acknowledges).
      const need = this.roomFor(lba, zero);
      if (need > 0) {
        if (this.o.depot.freeBlocks - this.reserved >= need) this.reserved += need;
        else await this.reserveSpace(need);
        reserved = need;
      }
    } catch (err) {
      if (desc >= 0) this.o.engine.pool.free(desc);
      this.reserved -= reserved;
      this.o.zone.drop(lba, st);
      if (slot) {
        this.slotsHeld--;
        this.slotWaiters.shift()?.();
      }
      throw err;
    }
    this.slotsHeld--;
    assert(this.slotsHeld >= 0 && this.vios.freeSlots > this.slotsHeld, 'admission: a held slot went to another write');
    this.admit(this.vios.acquire(lba, gen, st, desc, reserved, call));
  }

  /**
   * One free block for a write. Blocks that overwrites freed come back at the
   * next flush (once the journal entries freeing them are durable), and writes
   * in flight may free more: while any are coming, wait for them rather than
   * fail. Many writers can be waiting at once, and one flush may free fewer
   * blocks than they need, so each waits through flushes until one is left
   * for it (bounded: a volume whose space never comes back still says ENOSPC).
   */
  private async reserveSpace(need: number): Promise<void> {
    const { depot } = this.o;
    for (let round = 0; depot.freeBlocks - this.reserved < need; round++) {
      if ((depot.pendingBlocks === 0 && this.reserved === 0) || round === SPACE_WAIT_FLUSHES) {
        throw new FlashpackError('ENOSPC', `volume: no free physical block (${depot.dataBlocks} data blocks, all in use)`);
      }
      await this.o.flush();
    }
    this.reserved += need;
  }

  /** The block is the volume's now: reads see it, and it starts down the pipeline. */
  private admit(job: DataVio): void {
    const { lba, gen, st, desc } = job;
    if (gen < st.applied || gen < st.discarded) {
      // A newer discard (or write) of this block was issued after this write: nothing to do.
      this.reserved -= job.reserved;
      if (desc >= 0) this.o.engine.pool.free(desc);
      job.desc = -1;
      this.o.zone.drop(lba, st);
      this.vios.release(job);
      this.slotWaiters.shift()?.();
      return;
    }
    // The write reads see for this LBA until now: only it can be waiting in a bin (each overwrite sends the one before out).
    const before = st.pending;
    this.o.zone.admitted(job);
    this.o.counters.blocksWrittenIn++;
    this.inFlight++;
    if (++this.busy === Math.min(SPIN_OFF_WRITES, this.o.maxInflight) && this.o.idleSpin > 0) this.o.ctrlr.spinIterations = 0;
    job.epoch = this.o.flushes.enter();
    if (job.call !== null) job.call.remaining++;
    // An overwrite of a block waiting in the packer writes that bin out now.
    if (before !== null) this.o.stores.evict(before);
    if (desc < 0) {
      this.o.counters.zeroBlocks++;
      this.placed(job, mappingOf(ZERO_PBN, STATE_UNCOMPRESSED));
      return;
    }
    job.move(Stage.PREPARING, FROM_ACCEPTED);
    this.o.stores.enter(job);
    this.o.prep.add(job);
  }

  /** The engine has hashed (and compressed) the block: dedupe, else store. */
  prepared(job: DataVio, status: number): void {
    job.move(Stage.PREPARING, FROM_PREPARING);
    if (status !== STATUS_OK && status !== STATUS_INCOMPRESSIBLE && (status !== STATUS_KNOWN || job.recompressing)) {
      this.failJob(job, new FlashpackError('EINTERNAL', `volume: block preparation failed with engine status ${status}`));
      return;
    }
    const { engine, stores } = this.o;
    job.size = job.out >= 0 && status === STATUS_OK ? engine.pool.lengthOf(job.out) : 0;
    if (job.recompressing) {
      // Back from compression: the data was new after all.
      job.recompressing = false;
      stores.store(job);
      return;
    }
    job.uncompressed = status === STATUS_KNOWN;
    job.check = engine.resultWord(job.desc, 2);
    if (!this.o.dedupe) {
      stores.store(job);
      return;
    }
    job.fpLo = engine.resultWord(job.desc, 0);
    job.fpHi = engine.resultWord(job.desc, 1);
    this.o.dedupeStage.hashed(job);
  }

  /** The job has a home holding one reference: writers of the same data behind it may share it; mapping is next. */
  placed(job: DataVio, mapping: number): void {
    job.move(Stage.MAPPING, FROM_PLACING);
    job.mapping = mapping;
    this.o.stores.leave(job);
    this.o.stores.releaseOut(job);
    this.o.dedupeStage.release(job, mapping);
    this.o.mapping.add(job);
  }

  /** The write's fragment waits in the packer's arena: its slot goes to a waiting write, and so do those of writes waiting on its hash lock. */
  park(job: DataVio): void {
    this.parkSlot(job);
    this.o.dedupeStage.parked(job);
  }

  /** The write holds no data and waits for the packer (or a write that does): its slot goes to a waiting write. */
  parkSlot(job: DataVio): void {
    this.vios.park(job);
    this.idle();
    this.slotWaiters.shift()?.();
  }

  /** A write gave its pipeline slot up (parked or finished): the device workers spin again once none holds one. */
  private idle(): void {
    if (--this.busy === 0 && this.o.idleSpin > 0) this.o.ctrlr.spinIterations = this.o.idleSpin;
  }

  failJob(job: DataVio, err: Error): void {
    this.o.dedupeStage.release(job, -1);
    this.finish(job, err);
  }

  /** The job is over (mapped, dropped as obsolete, or failed): its resources go back, and whoever waits for it hears. */
  finish(job: DataVio, err: Error | null): void {
    if (job.stage === Stage.FREE) throw assertionFailed(`data_vio ${job.id} (LBA ${job.lba}) finished twice`);
    const { stores, zone } = this.o;
    stores.leave(job);
    stores.releaseOut(job);
    stores.finished(job);
    this.reserved -= job.reserved;
    zone.finished(job);
    if (job.desc >= 0) this.o.engine.pool.free(job.desc);
    job.desc = -1;
    zone.drop(job.lba, job.st);
    const epoch = job.epoch;
    const call = job.call;
    const parked = job.parked;
    this.vios.release(job);
    this.inFlight--;
    if (!parked) this.idle();
    assert(this.inFlight >= 0 && this.busy >= 0 && this.busy <= this.inFlight && this.reserved >= 0, 'admission: more writes finished than were admitted');
    this.o.flushes.leave(epoch);
    if (err !== null) {
      // Out of space on a sync write is that write's error; anything else fails the volume.
      if (!((err as FlashpackError).code === 'ENOSPC' && this.o.sync) && this.failure === null) {
        this.failure = err instanceof FlashpackError ? err : new FlashpackError('EINTERNAL', `volume: write failed: ${err.message}`);
      }
    }
    if (call !== null) {
      if (err !== null) call.error ??= err;
      if (--call.remaining === 0 && call.wake !== null) call.wake();
    }
    this.slotWaiters.shift()?.();
  }
}

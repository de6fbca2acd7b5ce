/**
 * Storing new data (dm-vdo's compression and packing, packer.c, and the data
 * write): a write whose data is not shared goes into a packer bin when it
 * compressed small enough (PACKING), else is written raw; a bin that fills,
 * or is flushed, becomes one packed block (a bin of one is written raw, as
 * dm-vdo does). Blocks written in one wave go out together (data-writer.ts).
 * When the block is on the device the index learns where, and the write is
 * placed (the volume maps it next).
 *
 * A fragment that enters a bin is copied into the fragment arena
 * (fragment-arena.ts) and the write is parked: its compressed-form buffer
 * goes back, and so does its data buffer unless the fragment is big enough to
 * go out alone (keepsData), and its pipeline slot is free for another write,
 * so bins can wait by the thousand. Reads of a parked block copy its data or
 * decode its arena bytes (the arena keeps them until the write finishes); a
 * bin of one is written raw from its data, decoded back into a buffer if it
 * kept none.
 *
 * Bins go out when a flush starts, once the writes that could still bring a
 * fragment (the "feeders", counted with enter/leave) have left; at once when
 * a waiting block is overwritten; the fullest when 4,096 fragments wait; all
 * of them when a new write finds every record taken by parked writes
 * (drain); and, under the sync policy, whose writes resolve only when
 * durable, when no feeder is left, after one turn of the event loop so a
 * caller writing in a loop keeps them filling. Under the async policy a
 * fragment may wait until the next flush (or close, or a clean exit): it was
 * acknowledged, and an unflushed async write may be lost only to a crash.
 *
 * Invariants: a block is allocated with one reference and marked being
 * written until its write completes (then each further fragment of a packed
 * block adds one); a failed write drops the reference and fails every write
 * in it; a write's compressed form is freed exactly once (releaseOut), and
 * its arena page reference once (finished).
 */
import { FlashpackError } from '../errors.js';
import { assertionFailed } from '../assert.js';
import { nextTurn } from '../next-turn.js';
import type { SlabPool } from '../shm/slab.js';
import type { WasmExports } from '../wasm/runtime.js';
import type { BlockDevice } from './block-device.js';
import { mappingOf, pbnOf, stateOf } from './block-map.js';
import type { DataWriter } from './data-writer.js';
import type { DedupeIndex } from './dedupe.js';
import type { SlabDepot } from './slab-depot.js';
import { FROM_DEDUPING, FROM_PACKING, FROM_STORING, Stage, type DataVio } from './data-vio.js';
import { Packer, binsFor, type Batch, type PackerPolicy } from './packer.js';
import { FragmentArena } from './fragment-arena.js';
import { CB_HEADER_BYTES, STATE_COMPRESSED_BASE, STATE_UNCOMPRESSED, blockPbns, cbCapacity, encodePackedHeader, type Codec } from './encodings.js';


export interface StoreCounters {
  fragments: number;
  packedBlocks: number;
}

export interface StoreWiring {
  /** Send the write back to the engine to be compressed (it was skipped: the index knew it). */
  recompress(job: DataVio): void;
  /** The write has a home holding one reference for it. */
  placed(job: DataVio, mapping: number): void;
  failJob(job: DataVio, err: Error): void;
  /** The write's fragment is in the arena: it gives its pipeline slot back. */
  park(job: DataVio): void;
  /** Decodes `size` compressed bytes at byte address `from` into the block at `to`: null, or why not. */
  decodeFragment(from: number, size: number, to: number): string | null;
}

export interface StoreOptions {
  pool: SlabPool;
  mem: Uint8Array;
  wasm: WasmExports;
  dev: BlockDevice;
  depot: SlabDepot;
  index: DedupeIndex;
  writer: DataWriter;
  codec: Codec;
  /** Data writes are FUA (the sync policy). */
  fua: boolean;
  packer: PackerPolicy;
  /** Byte address of the fragment arena's region (FragmentArena.bytesFor(StoreStage.arenaPages(policy, blockBytes), blockBytes)). */
  arenaAt: number;
  /** The volume block: a raw data block, a packed block and an arena page. */
  blockBytes: number;
  /**
   * Block buffers the pool keeps free for everything but parked writes (the
   * pipeline's, the block map cache's, reads'): a parked write keeps its data
   * only while more than this many are free (keepsData).
   */
  retainFloor: number;
  counters: StoreCounters;
  wiring: StoreWiring;
}

export class StoreStage {
  private readonly o: StoreOptions;
  private readonly packer: Packer<DataVio>;
  /**
   * Writes that may still bring a fragment (each knows its place: feederAt);
   * when none is left, nothing can fill the bins. A flush looks at these, not
   * at every record (parked ones are thousands).
   */
  private readonly feeders: DataVio[] = [];
  /** Of those, the ones a flush in progress waits for (flushWatched); when none is left, the bins go out. */
  private watched = 0;
  private flushing = 0;
  private flushQueued = false;

  private readonly arena: FragmentArena;

  /** Pages of fragment arena the policy uses: one per bin, as many again and 256 more for bins written but not yet mapped (none free: a fragment is stored raw). */
  static arenaPages(policy: PackerPolicy, blockBytes: number): number {
    return 2 * binsFor(policy, blockBytes) + Math.max(16, (256 * 4096) / blockBytes);
  }

  /** Every bin goes out now (a new write found every record taken by parked writes). */
  drain(): void {
    if (this.packer.waiting > 0) this.writeBatches(this.packer.flush());
  }

  constructor(o: StoreOptions) {
    this.o = o;
    this.arena = new FragmentArena(o.arenaAt, StoreStage.arenaPages(o.packer, o.blockBytes), o.blockBytes);
    this.packer = new Packer<DataVio>(o.packer, { pages: this.arena, blockBytes: o.blockBytes });
  }

  /**
   * Records the volume makes beyond its pipeline slots, for parked writes:
   * the fragments waiting in bins, and four times as many again for writes of
   * the same data parked on their hash locks (a disk image holds many copies
   * of a block). When they run out, the bins go out (drain).
   */
  get parkable(): number {
    return 4 * this.packer.waitingMax;
  }

  /** Fragments waiting in bins. */
  get fragmentsWaiting(): number {
    return this.packer.waiting;
  }

  /** New data: compressed into the packer when it shrinks enough, else written raw. */
  store(job: DataVio): void {
    if (job.uncompressed) {
      // The index knew it, but the copy is gone or full: compress it now.
      job.move(Stage.PREPARING, FROM_DEDUPING);
      job.uncompressed = false;
      job.recompressing = true;
      this.o.wiring.recompress(job);
      return;
    }
    if (job.size === 0 || !this.packer.fits(job.size)) {
      this.writeRaw(job);
      return;
    }
    const batches: Batch<DataVio>[] = [];
    job.move(Stage.PACKING, FROM_DEDUPING);
    const f = job.fragment;
    f.size = job.size;
    if (!this.packer.add(f, batches)) {
      this.writeBatches(batches); // the fullest bin may have gone out before the fragment was refused
      this.writeRaw(job);
      return;
    }
    // The compressed bytes wait in the arena, and the write's slot goes back (its data buffer too, unless keepsData).
    const { pool, wasm } = this.o;
    const page = f.page as number; // held for this write by the packer (released when it finishes)
    job.arenaPage = page;
    job.arenaAt = this.arena.address(page, f.offset as number);
    wasm.copyBytes(job.arenaAt, pool.bufferOf(job.out), job.size);
    this.releaseOut(job);
    if (!this.keepsData(job.size)) {
      pool.free(job.desc);
      job.desc = -1;
    }
    this.o.wiring.park(job);
    this.writeBatches(batches);
    this.leave(job);
  }

  /**
   * Whether a parked fragment of `size` bytes keeps its block of data. One
   * bigger than half a packed block shares its block with no fragment of its
   * own size, so it is the one that ends a flush alone in a bin, to be
   * written raw: with its data kept, it is not decoded back on the main
   * thread (a block's LZ4 decode per bin of one made a flush after a pass of
   * writes ~1.4x longer). It keeps it only while the pool has buffers to
   * spare beyond retainFloor, so parked writes never take the buffers the
   * pipeline and reads need (the default pool has room for every waiting
   * fragment).
   */
  private keepsData(size: number): boolean {
    return 2 * size > cbCapacity(this.o.blockBytes) && this.o.pool.available(this.o.blockBytes) > this.o.retainFloor;
  }

  /** The bin holding `job` (if it waits in the packer) goes out now: a newer write of its LBA was admitted, or a write waits on its hash lock. */
  evict(job: DataVio): void {
    const batch = this.packer.evictFragment(job.fragment);
    if (batch !== null) this.writeBatch(batch);
  }

  /** Another write reads the fragment in `page` until it finishes (a hash-lock waiter of the same data). */
  holdFragment(page: number): void {
    this.arena.hold(page);
  }

  /** The write is over: its arena bytes are no longer read. */
  finished(job: DataVio): void {
    if (job.arenaPage < 0) return;
    this.arena.release(job.arenaPage);
    job.arenaPage = -1;
    job.arenaAt = -1;
  }

  /** The write may bring the packer a fragment. */
  enter(job: DataVio): void {
    if (job.feederAt >= 0) return;
    job.feederAt = this.feeders.length;
    this.feeders.push(job);
    if (this.flushing > 0) {
      job.flushWatched = true;
      this.watched++;
    }
  }

  /**
   * The write can no longer feed the packer. If no write can, the bins go out
   * after one turn of the event loop: a caller writing in a loop has issued its
   * next write by then, and the bins keep filling.
   */
  leave(job: DataVio): void {
    const at = job.feederAt;
    if (at < 0) return;
    if (this.feeders[at] !== job) throw assertionFailed(`data_vio ${job.id} is not at its place among the packer's feeders`);
    const last = this.feeders.pop() as DataVio;
    if (last !== job) {
      this.feeders[at] = last;
      last.feederAt = at;
    }
    job.feederAt = -1;
    if (job.flushWatched) {
      job.flushWatched = false;
      if (--this.watched === 0 && this.packer.waiting > 0) this.writeBatches(this.packer.flush());
    }
    if (this.o.fua && this.feeders.length === 0 && this.packer.waiting > 0 && !this.flushQueued) {
      this.flushQueued = true;
      nextTurn(() => {
        this.flushQueued = false;
        if (this.feeders.length === 0 && this.packer.waiting > 0) this.writeBatches(this.packer.flush());
      });
    }
  }

  /** A flush starts: the bins go out once the writes feeding the packer now have left (at once if there are none). */
  flushStarted(): void {
    this.flushing++;
    for (const job of this.feeders) {
      if (job.flushWatched) continue;
      job.flushWatched = true;
      this.watched++;
    }
    if (this.watched === 0) this.writeBatches(this.packer.flush());
  }

  /** A flush is over: with none left, no feeder is watched (a watched write stops being one when it stops feeding). */
  flushEnded(): void {
    if (--this.flushing > 0 || this.watched === 0) return;
    for (const job of this.feeders) job.flushWatched = false;
    this.watched = 0;
  }

  /** Frees the write's compressed form, if it still has one. */
  releaseOut(job: DataVio): void {
    if (job.out < 0) return;
    this.o.pool.free(job.out);
    job.out = -1;
  }

  private writeRaw(job: DataVio): void {
    job.move(Stage.WRITING, FROM_STORING);
    this.leave(job);
    this.releaseOut(job);
    let pbn: number;
    try {
      pbn = this.o.depot.allocate();
    } catch (err) {
      this.o.wiring.failJob(job, err as Error);
      return;
    }
    job.mapping = mappingOf(pbn, STATE_UNCOMPRESSED);
    const at = this.o.writer.slot(pbn);
    if (at < 0) {
      this.o.dev.writeThen(pbn, job.desc, this.o.fua, this.rawWritten, job, blockPbns(this.o));
      return;
    }
    const src = this.o.pool.bufferOf(job.desc);
    this.o.mem.copyWithin(at, src, src + this.o.blockBytes);
    this.o.writer.added(this.rawWritten, job);
  }

  /**
   * A parked write stored raw after all (a bin of one, or a hash-lock waiter
   * that cannot share its holder's home): from the data it kept (keepsData),
   * else decoded from the arena into a buffer again.
   */
  writeUnpacked(job: DataVio): void {
    const { pool } = this.o;
    if (job.desc >= 0) {
      this.unparked(job);
      this.writeRaw(job);
      return;
    }
    const decode = (buf: number): void => {
      const why = this.o.wiring.decodeFragment(job.arenaAt, job.size, pool.bufferOf(buf));
      if (why !== null) {
        pool.free(buf);
        this.o.wiring.failJob(job, new FlashpackError('EINTERNAL', `volume: a fragment waiting in the packer (LBA ${job.lba}) does not decode: ${why}`));
        return;
      }
      job.desc = buf;
      this.unparked(job);
      this.writeRaw(job);
    };
    const buf = pool.tryAlloc(this.o.blockBytes);
    if (buf >= 0) decode(buf);
    else pool.allocAsync(this.o.blockBytes).then(decode, (err: Error) => this.o.wiring.failJob(job, err));
  }

  /**
   * A parked write's data is in its buffer again, to be stored raw: it stops
   * offering its arena bytes (no compressed form: size 0), so a later
   * identical write waits for its home rather than parking on bytes it no
   * longer describes, and reads copy the buffer.
   */
  private unparked(job: DataVio): void {
    this.finished(job);
    job.size = 0;
  }

  private readonly rawWritten = (err: FlashpackError | null, job: DataVio): void => {
    this.o.depot.written(pbnOf(job.mapping));
    if (err !== null) {
      this.o.depot.decrement(pbnOf(job.mapping));
      this.o.wiring.failJob(job, err);
    } else this.stored(job, job.mapping);
  };

  private writeBatches(batches: Batch<DataVio>[]): void {
    for (const b of batches) this.writeBatch(b);
  }

  /** One bin: a single fragment is stored raw (dm-vdo); more become one packed block. */
  private writeBatch(batch: Batch<DataVio>): void {
    if (batch.length === 1) {
      this.writeUnpacked(batch[0].item);
      return;
    }
    const { depot, writer, pool, dev } = this.o;
    let pbn: number;
    try {
      pbn = depot.allocate();
    } catch (err) {
      for (const f of batch) this.o.wiring.failJob(f.item, err as Error);
      return;
    }
    for (const f of batch) f.item.move(Stage.WRITING, FROM_PACKING);
    const at = writer.slot(pbn);
    if (at >= 0) {
      this.packInto(batch, at);
      writer.added((err) => this.packedWritten(batch, pbn, err), null);
      return;
    }
    // No staging buffer free: the block goes on its own, from a buffer of its own.
    const single = (block: number): void => {
      this.packInto(batch, pool.bufferOf(block));
      dev.writeThen(pbn, block, this.o.fua, (err) => {
        pool.free(block);
        this.packedWritten(batch, pbn, err);
      }, null, blockPbns(this.o));
    };
    const block = pool.tryAlloc(this.o.blockBytes);
    if (block >= 0) single(block);
    else {
      pool.allocAsync(this.o.blockBytes).then(single, (err: Error) => {
        depot.written(pbn);
        depot.decrement(pbn);
        for (const f of batch) this.o.wiring.failJob(f.item, err);
      });
    }
  }

  /** Lays out a packed block at byte address `at`: header, fragments, zero tail. */
  private packInto(batch: Batch<DataVio>, at: number): void {
    const { wasm } = this.o;
    encodePackedHeader(this.o.mem, this.o.codec, batch.length, (i) => batch[i].size, at);
    let to = at + CB_HEADER_BYTES;
    for (const f of batch) {
      wasm.copyBytes(to, f.item.arenaAt, f.size);
      to += f.size;
    }
    wasm.zeroBytes(to, at + this.o.blockBytes - to);
  }

  private packedWritten(batch: Batch<DataVio>, pbn: number, err: FlashpackError | null): void {
    const depot = this.o.depot;
    depot.written(pbn);
    if (err !== null) {
      depot.decrement(pbn);
      for (const f of batch) this.o.wiring.failJob(f.item, err);
      return;
    }
    for (let i = 1; i < batch.length; i++) depot.increment(pbn);
    this.o.counters.fragments += batch.length;
    this.o.counters.packedBlocks++;
    for (let i = 0; i < batch.length; i++) this.stored(batch[i].item, mappingOf(pbn, STATE_COMPRESSED_BASE + i));
  }

  /** New data is on the device: the index learns where, and the write is placed. */
  private stored(job: DataVio, mapping: number): void {
    if (job.hashed) this.o.index.update(job.fpLo, job.fpHi, pbnOf(mapping), stateOf(mapping));
    this.o.wiring.placed(job, mapping);
  }
}

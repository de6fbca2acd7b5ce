/**
 * Storing new data (dm-vdo's compression and packing, packer.c, and the data
 * write): a write whose data is not shared goes into a packer bin when it
 * compressed small enough (PACKING), else is written raw; a bin that fills,
 * or is flushed, becomes one packed block (a bin of one is written raw, as
 * dm-vdo does). Blocks written in one wave go out together (data-writer.ts).
 * When the block is on the device the index learns where, and the write is
 * placed (the volume maps it next).
 *
 * Bins go out when no write that could still bring a fragment is left (the
 * "feeders", counted with enter/leave), after one turn of the event loop so a
 * caller writing in a loop keeps them filling; when a flush starts, once the
 * feeders it saw have left; and at once when a waiting block is overwritten.
 *
 * Invariants: a block is allocated with one reference and marked being
 * written until its write completes (then each further fragment of a packed
 * block adds one); a failed write drops the reference and fails every write
 * in it; a write's compressed form is freed exactly once (releaseOut).
 */
import type { FlashpackError } from '../errors.js';
import { nextTurn } from '../next-turn.js';
import type { SlabPool } from '../shm/slab.js';
import type { WasmExports } from '../wasm/runtime.js';
import type { BlockDevice } from './block-device.js';
import { mappingOf, pbnOf, stateOf } from './block-map.js';
import type { DataWriter } from './data-writer.js';
import type { DedupeIndex } from './dedupe.js';
import type { SlabDepot } from './slab-depot.js';
import { FROM_DEDUPING, FROM_PACKING, FROM_STORING, Stage, type DataVio } from './data-vio.js';
import { Packer, type Batch, type PackerPolicy } from './packer.js';
import { BLOCK_BYTES, CB_HEADER_BYTES, STATE_COMPRESSED_BASE, STATE_UNCOMPRESSED, encodePackedHeader, type Codec } from './encodings.js';


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
  counters: StoreCounters;
  wiring: StoreWiring;
}

export class StoreStage {
  private readonly o: StoreOptions;
  private readonly packer: Packer<DataVio>;
  /** LBA → its write waiting in a bin (an overwrite sends that bin out). */
  private readonly waiting = new Map<number, DataVio>();
  /** Writes that may still bring a fragment (feedsPacker); when none is left, nothing can fill the bins. */
  private feeding = 0;
  /** Of those, the ones a flush in progress waits for (flushWatched); when none is left, the bins go out. */
  private watched = 0;
  private flushing = 0;
  private flushQueued = false;

  constructor(o: StoreOptions) {
    this.o = o;
    this.packer = new Packer<DataVio>(o.packer);
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
    if (!this.packer.add({ size: job.size, item: job }, batches)) {
      this.writeRaw(job);
      return;
    }
    this.waiting.set(job.lba, job);
    this.writeBatches(batches);
    this.leave(job);
  }

  /** A new write of `lba` was admitted: a block of it waiting in a bin goes out now. */
  overwritten(lba: number): void {
    const waiting = this.waiting.get(lba);
    if (waiting === undefined) return;
    const batch = this.packer.evict(waiting);
    if (batch !== null) this.writeBatch(batch);
  }

  /** The write may bring the packer a fragment. */
  enter(job: DataVio): void {
    if (job.feedsPacker) return;
    job.feedsPacker = true;
    this.feeding++;
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
    if (!job.feedsPacker) return;
    job.feedsPacker = false;
    this.feeding--;
    if (job.flushWatched) {
      job.flushWatched = false;
      if (--this.watched === 0 && this.packer.waiting > 0) this.writeBatches(this.packer.flush());
    }
    if (this.feeding === 0 && this.packer.waiting > 0 && !this.flushQueued) {
      this.flushQueued = true;
      nextTurn(() => {
        this.flushQueued = false;
        if (this.feeding === 0 && this.packer.waiting > 0) this.writeBatches(this.packer.flush());
      });
    }
  }

  /** A flush starts: the bins go out once the feeders among `all` have left (at once if there are none). */
  flushStarted(all: readonly DataVio[]): void {
    this.flushing++;
    for (const job of all) {
      if (!job.feedsPacker || job.flushWatched) continue;
      job.flushWatched = true;
      this.watched++;
    }
    if (this.watched === 0) this.writeBatches(this.packer.flush());
  }

  flushEnded(all: readonly DataVio[]): void {
    if (--this.flushing > 0 || this.watched === 0) return;
    for (const job of all) job.flushWatched = false;
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
      this.o.dev.writeThen(pbn, job.desc, this.o.fua, this.rawWritten, job);
      return;
    }
    const src = this.o.pool.bufferOf(job.desc);
    this.o.mem.copyWithin(at, src, src + BLOCK_BYTES);
    this.o.writer.added(this.rawWritten, job);
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
    for (const f of batch) if (this.waiting.get(f.item.lba) === f.item) this.waiting.delete(f.item.lba);
    if (batch.length === 1) {
      this.writeRaw(batch[0].item);
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
      }, null);
    };
    const block = pool.tryAlloc(BLOCK_BYTES);
    if (block >= 0) single(block);
    else {
      pool.allocAsync(BLOCK_BYTES).then(single, (err: Error) => {
        depot.written(pbn);
        depot.decrement(pbn);
        for (const f of batch) this.o.wiring.failJob(f.item, err);
      });
    }
  }

  /** Lays out a packed block at byte address `at`: header, fragments, zero tail. */
  private packInto(batch: Batch<DataVio>, at: number): void {
    const { wasm, pool } = this.o;
    encodePackedHeader(this.o.mem, this.o.codec, batch.length, (i) => batch[i].size, at);
    let to = at + CB_HEADER_BYTES;
    for (const f of batch) {
      wasm.copyBytes(to, pool.bufferOf(f.item.out), f.size);
      to += f.size;
      this.releaseOut(f.item);
    }
    wasm.zeroBytes(to, at + BLOCK_BYTES - to);
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

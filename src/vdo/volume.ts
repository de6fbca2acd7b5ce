/**
 * A VDO volume: logical blocks (4 KiB to 64 KiB, chosen at create) stored reduced the way dm-vdo does —
 * zero blocks elided, duplicates shared (fingerprint → advice → byte compare),
 * the rest compressed and packed up to 14 to a block — over an NVMe-style
 * controller, with a recovery journal in front of the block map. This file is
 * the public shell (create, open, read, write, discard, flush, stats, close)
 * and the wiring of the stages; attaching the engine and controller and the
 * superblock copies are attach.ts, the counters stats.ts.
 *
 * Write path: one data_vio record per logical block (data-vio.ts), moved on
 * by callbacks through asserted stages; each stage handles what its microtask
 * wave brought as one batch:
 *   accept   copy the block into a slab buffer (admission.ts, which also
 *            ends every write); reads see it at once
 *            (async policy: acknowledged here, as dm-vdo's async mode);
 *            per-LBA order from generations (logical-zone.ts)
 *   zero     all-zero data maps to the zero block, nothing allocated
 *   prepare  XXH3-128 and compression in the engine's workers, one burst per
 *            wave (prepare.ts, prepare-job.ts)
 *   dedupe   concurrent identical writes share one lookup and one write (hash
 *            lock); index advice is verified against the stored bytes; a block
 *            at 254 references is not shared further (hash-lock.ts)
 *   store    bins of up to 14 fragments; a bin of one, or a fragment the
 *            packer cannot place, is stored raw; blocks written in one wave go
 *            out together (store.ts, packer.ts, data-writer.ts)
 *   map      under the metadata lock, every placed write in one pass: journal
 *            (LBA, old, new, data check), then the block map, then reference
 *            counts; an older write that lost the race to a newer one for the
 *            same LBA is dropped here (mapping.ts)
 *
 * Durability: flush() waits for every write of its epoch (flush.ts) to be
 * mapped, writes the journal, and flushes the device. Blocks freed by
 * remapping are reused only after a flush. Recovery (repair.ts) replays the
 * journal, keeping an entry only when the block (or packed slot) it points to
 * reads back as the data whose check (XXH3 bits, from the fingerprint) it
 * journaled, so a write whose data never reached the media reverts to its
 * previous mapping; rebuilds reference counts from the block map; and
 * checkpoints.
 */
import { FlashpackError, checkFunction, checkInteger, checkOptions } from '../errors.js';
import * as fs from 'node:fs';
import { Engine } from '../engine/engine.js';
import { PrepareStage } from './prepare.js';
import { DedupeStage } from './hash-lock.js';
import { StoreStage } from './store.js';
import { MappingStage, Mutex } from './mapping.js';
import { Controller } from '../nvme/controller.js';
import type { Backend } from '../nvme/backend.js';
import { FileBackend } from '../nvme/file-backend.js';
import { BlockDevice } from './block-device.js';
import { ReadPath } from './read-path.js';
import { DataWriter } from './data-writer.js';
import { BlockMap } from './block-map.js';
import { RecoveryJournal } from './recovery-journal.js';
import { SlabDepot } from './slab-depot.js';
import { DedupeIndex, MIN_INDEX_MEMORY } from './dedupe.js';
import { loadDeferred, recoverMetadata, type RepairContext } from './repair.js';
import { CountsGate } from './counts-gate.js';
import { loadIndex, saveIndex } from './index-store.js';
import { CountSnapshots } from './count-snapshots.js';
import { FlushEpochs } from './flush.js';
import { LogicalZone } from './logical-zone.js';
import { Admission } from './admission.js';
import { FragmentArena } from './fragment-arena.js';
import { volumeStats, type VolumeCounters, type VolumeStats } from './stats.js';
import { scrubVolume, type ScrubOptions, type ScrubReport } from './scrub.js';
import { growTo, resizeTarget, type ResizeOptions } from './resize.js';
import { extentsOf, type VolumeExtent } from './extents.js';
import { detach, formatImage, holdAndAttach, readSuperblock, writeSuperblocks, type BufferPlan, type Hold } from './attach.js';
import { flushAtExit, forgetAtExit } from './exit-flush.js';
import { inspect, refuseUnlessEmpty } from './image-file.js';
import {
  DEFAULT_CACHE_PAGES, bytesOf, checkCreateOptions, checkOpenOptions, checkRange, checkTarget, isThin, layoutFor,
  type OpenOptions, type VolumeOptions,
} from './volume-options.js';
import {
  BLOCK_BYTES, SUPERBLOCK_COPIES, blockPbns, dataEndOf, type Codec, type Superblock,
} from './encodings.js';

export type { VolumeOptions, OpenOptions } from './volume-options.js';
export type { VolumeStats } from './stats.js';
export type { ScrubOptions, ScrubReport } from './scrub.js';
export type { ResizeOptions } from './resize.js';
export type { BadBlock } from './read-path.js';

export type { VolumeExtent } from './extents.js';

export class Volume {
  readonly sb: Superblock;
  readonly engine: Engine;
  readonly ctrlr: Controller;
  private readonly dev: BlockDevice;
  private readonly map: BlockMap;
  private readonly reads: ReadPath;
  private readonly journal: RecoveryJournal;
  private readonly depot: SlabDepot;
  private readonly snapshots: CountSnapshots;
  private readonly index: DedupeIndex;
  /** The index is loaded at open and saved at close (its size is the saved one's). */
  private readonly indexSaved: boolean;
  /**
   * Settles (never rejects) once what an open leaves to the background is
   * done: after a clean close, the reference counts (counts-gate.ts: writes
   * wait for them, reads do not; a read-only open never loads them); loading
   * the dedupe index the last clean close saved (an open does not wait for
   * it, as dm-vdo comes online before its index: until then writes dedupe
   * only against data written since the open; read-only opens load none);
   * and reading the count snapshot slot the open did not take, to know what
   * the next checkpoint writes there (count-snapshots.ts).
   */
  loaded: Promise<void> = Promise.resolve();
  /** A clean open's reference counts loading behind it: writes, discards and flushes wait (counts-gate.ts). */
  private readonly counts = new CountsGate();
  /** Open found the volume closed cleanly: it read no journal, replayed nothing, and wrote only a superblock. */
  openedClean = false;
  /** Open took the reference counts from a snapshot (no map scan); after a clean close, known once `loaded` settles. */
  referencesLoaded = false;
  /** Journal entries the open replayed. */
  entriesReplayed = 0;
  /** Packing and writing new data (store.ts). */
  private readonly stores: StoreStage;
  private readonly meta = new Mutex();
  /** Hash locks and dedupe advice (hash-lock.ts). */
  private readonly dedupe: DedupeStage;
  /** Writes in flight per flush() epoch, and the flush() calls waiting for theirs (flush.ts). */
  private readonly flushes = new FlushEpochs();
  /** Ordering by LBA: generations, writer queues, pending writes and discards (logical-zone.ts). */
  private readonly zone = new LogicalZone();
  /** The engine trip: fingerprint and compression, a burst per wave (prepare.ts). */
  private readonly prep: PrepareStage;
  /** Journal, block map and reference counts for placed writes and discards (mapping.ts). */
  private readonly mapping: MappingStage;
  /** Admission and completion of writes, with their records (admission.ts). */
  private readonly writes: Admission;
  private closed = false;
  /** The lock on the image (released at close or abandon). */
  private readonly hold: Hold;
  /** Opened with readOnly: nothing is ever written to the image. */
  readonly readOnly: boolean;
  /** The volume block in bytes, chosen at create (VolumeOptions.blockBytes): writes of less are read-modify-write. */
  readonly blockBytes: number;
  /** Every write or discard issued up to this generation is durable (a flush completed after it was issued). */
  private flushedGen = 0;
  private readonly mem: Uint8Array;
  /** A block of shared memory a read decodes a fragment waiting in the packer into (used and done with synchronously). */
  private readonly scratchAt: number;
  private readonly counters: VolumeCounters = {
    adviceValid: 0, adviceStale: 0, concurrentShared: 0, zeroBlocks: 0, fragments: 0, packedBlocks: 0,
    readIn: 0, writeIn: 0, discardIn: 0, flushIn: 0, blocksWrittenIn: 0,
  };

  private constructor(sb: Superblock, engine: Engine, ctrlr: Controller, dev: BlockDevice, idleSpin: number, plan: BufferPlan, opts: OpenOptions, hold: Hold, created = false) {
    if (plan.blockBytes !== sb.blockBytes) throw new FlashpackError('ECORRUPT', `volume: the superblock's block size ${sb.blockBytes} is not the ${plan.blockBytes} it read before the open`);
    this.sb = sb;
    const bb = (this.blockBytes = sb.blockBytes);
    this.engine = engine;
    this.ctrlr = ctrlr;
    this.dev = dev;
    this.hold = hold;
    this.readOnly = opts.readOnly === true;
    const pool = engine.pool;
    this.map = new BlockMap(dev, pool, sb.mapStart, sb.logicalBlocks, sb.nonce, opts.cachePages ?? DEFAULT_CACHE_PAGES, sb.dataStart, dataEndOf(sb), blockPbns(sb));
    this.journal = new RecoveryJournal(dev, pool, sb.journalStart, sb.journalBlocks, sb.nonce, sb.writePolicy === 'sync');
    this.depot = new SlabDepot(sb.dataStart, dataEndOf(sb), sb.slabBlocks, created, blockPbns(sb));
    // Recovery places no tree page before the depot's counts are whole (repair.ts).
    this.map.setAllocator(this.depot);
    this.snapshots = new CountSnapshots(sb, dev, pool, this.depot, engine.runtime.exports);
    this.mapping = new MappingStage({
      map: this.map, journal: this.journal, depot: this.depot, dev, zone: this.zone, meta: this.meta, snapshots: this.snapshots, sync: sb.writePolicy === 'sync',
      finish: (job, err) => this.writes.finish(job, err),
    });
    const indexMemory = opts.indexMemory ?? (sb.dedupe ? sb.indexMemory : MIN_INDEX_MEMORY);
    // In the shared memory: the engine's workers read it as their known table and
    // do not compress a block the index knows (OP_PREPARE_BLOCK, STATUS_KNOWN).
    const indexAt = engine.runtime.reserve(DedupeIndex.imageBytes(indexMemory), 64);
    this.index = new DedupeIndex(indexMemory, { buffer: pool.memory.buffer, at: indexAt });
    // Where fragments wait in the packer (fragment-arena.ts); reserved before any view of the memory is made.
    const packer = opts.packer ?? 'flashpack';
    const arenaAt = engine.runtime.reserve(FragmentArena.bytesFor(StoreStage.arenaPages(packer, bb), bb), 64);
    this.scratchAt = engine.runtime.reserve(bb, 64);
    this.prep = new PrepareStage(engine, bb, sb.codec, sb.dedupe ? indexAt : 0, this.index.log2Buckets,
      (job, status) => this.writes.prepared(job, status), (job, err) => this.writes.failJob(job, err));
    // An index of another size than the saved one starts empty and is not saved.
    this.indexSaved = sb.indexBlocks > 0 && DedupeIndex.imageBytes(indexMemory) === DedupeIndex.imageBytes(sb.indexMemory);
    this.mem = new Uint8Array(pool.memory.buffer);
    this.reads = new ReadPath({
      map: this.map, pool, dev, runtime: engine.runtime, codec: sb.codec, mem: this.mem, blockBytes: bb,
      zone: this.zone, scratchAt: this.scratchAt,
    });
    this.stores = new StoreStage({
      pool, mem: this.mem, wasm: engine.runtime.exports, dev, depot: this.depot, index: this.index,
      writer: new DataWriter(dev, pool, sb.writePolicy === 'sync', bb), codec: sb.codec, fua: sb.writePolicy === 'sync',
      packer, arenaAt, counters: this.counters, blockBytes: bb, retainFloor: plan.retainFloor,
      wiring: {
        recompress: (job) => this.prep.add(job), placed: (job, m) => this.writes.placed(job, m), failJob: (job, err) => this.writes.failJob(job, err),
        park: (job) => this.writes.park(job), decodeFragment: (from, size, to) => this.reads.decodeFragmentAt(from, size, to),
      },
    });
    this.dedupe = new DedupeStage(pool, engine.runtime.exports, this.index, this.depot, dev, this.counters, bb, {
      store: (job) => this.stores.store(job), placed: (job, m) => this.writes.placed(job, m), failJob: (job, err) => this.writes.failJob(job, err),
      leave: (job) => this.stores.leave(job), enter: (job) => this.stores.enter(job),
      decodeSlot: (buf, slot, into) => this.decodeSlot(buf, slot, into), reads: this.reads,
      decodeFragment: (from, size, to) => this.reads.decodeFragmentAt(from, size, to),
      evict: (job) => this.stores.evict(job), writeUnpacked: (job) => this.stores.writeUnpacked(job), parkSlot: (job) => this.writes.parkSlot(job), holdFragment: (page) => this.stores.holdFragment(page), releaseOut: (job) => this.stores.releaseOut(job),
    });
    this.writes = new Admission({
      engine, ctrlr, idleSpin, mem: this.mem, zone: this.zone, depot: this.depot, flushes: this.flushes,
      maxInflight: plan.inflight, blockBytes: bb, parkable: this.stores.parkable, sync: sb.writePolicy === 'sync', dedupe: sb.dedupe, counters: this.counters,
      prep: this.prep, dedupeStage: this.dedupe, stores: this.stores, mapping: this.mapping,
      flush: () => this.flush(), readWhole: (lba) => this.readWhole(lba), leafPlaced: (lba) => this.map.leafPlaced(lba),
    });
  }

  // ---- lifecycle ---------------------------------------------------------------

  /**
   * Formats a new volume on a file path or a backend. A path must be absent
   * or empty (a zero-length file, or a block device whose first 64 KiB are
   * zero), and so must a backend, unless `overwrite`. A new image file is
   * sized to hold the whole logical size with nothing reduced (see
   * VolumeOptions.physicalSize). Everything is validated before the file is
   * created or touched. The volume is locked for writing until close().
   *
   * Errors: EINVAL (an option, named with its type and value), EEXIST (the
   * path or backend holds data), EBUSY (open elsewhere), ENOSPC (the physical
   * size cannot hold the metadata and a data block), ENOENT/EACCES (the path;
   * the OS error is the cause), EIO/ENXIO (the device).
   */
  static async create(target: string | Backend, options: VolumeOptions & OpenOptions): Promise<Volume> {
    checkTarget('Volume.create', target);
    const opts = checkCreateOptions(options);
    const overwrite = opts.overwrite === true;
    let fileBlocks: number | undefined;
    if (typeof target === 'string') {
      const found = inspect(target);
      refuseUnlessEmpty(target, found, overwrite);
      // The layout of a new image is checked before the file exists; a device's comes from its size.
      fileBlocks = found.kind === 'device' ? undefined : opts.physicalSize !== undefined ? opts.physicalSize / BLOCK_BYTES : layoutFor(opts).physicalBlocks;
      if (fileBlocks !== undefined) layoutFor(opts, fileBlocks);
    }
    const { engine, engineReady, ctrlr, dev, idleSpin, plan, hold } = await holdAndAttach(target, 'write', opts, (path) => {
      // Under the lock, look again: another process may have made something there meanwhile.
      const found = inspect(path);
      refuseUnlessEmpty(path, found, overwrite);
      if (found.kind === 'file') fs.truncateSync(path, 0); // overwrite: nothing of the old image lingers
      return new FileBackend(path, { blockSize: opts.blockSize ?? 4096, size: fileBlocks === undefined ? undefined : fileBlocks * BLOCK_BYTES });
    }, opts.blockBytes ?? BLOCK_BYTES);
    try {
      await engineReady;
      // A new image file was made empty and grown under the lock: one hole, zeroes already.
      const sb = await formatImage(engine, dev, opts, typeof target === 'string' && fileBlocks !== undefined, typeof target !== 'string' && !overwrite);
      return new Volume(sb, engine, ctrlr, dev, idleSpin, plan, opts, hold, true).started();
    } catch (err) {
      await detach(engine, ctrlr, engineReady);
      hold.release();
      throw err;
    }
  }

  /**
   * The bytes a new image file gets by default for these options: the whole
   * logical size with nothing reduced, a spare for overwrites between flushes
   * (up to 1,024 blocks), and the metadata. EINVAL for bad options.
   */
  static sizeFor(options: VolumeOptions): number {
    return layoutFor(checkCreateOptions(options)).physicalBlocks * BLOCK_BYTES;
  }

  /**
   * Opens a volume, recovering from the journal if it was not closed cleanly.
   * The volume is locked until close(): for writing (no other opener), or with
   * `readOnly` shared with other read-only openers; a read-only open never
   * writes the image (a recovery it needs happens in memory only).
   *
   * Errors: EINVAL (an option), ENOENT/EACCES (the path; the OS error is the
   * cause), EBUSY (open elsewhere: the message names the holder), ECORRUPT
   * (not a flashpack volume, or damaged metadata), EIO/ENXIO (the device).
   */
  static async open(target: string | Backend, options: OpenOptions = {}): Promise<Volume> {
    checkTarget('Volume.open', target);
    const opts = checkOpenOptions('Volume.open', options);
    const mode = opts.readOnly === true ? 'read' : 'write';
    // The engine's workers finish starting while the metadata is read (they are needed only for writes).
    const { engine, engineReady, ctrlr, dev, idleSpin, plan, hold } = await holdAndAttach(target, mode, opts, (path) =>
      new FileBackend(path, { blockSize: opts.blockSize ?? 4096, readOnly: mode === 'read' }));
    try {
      const sb = await readSuperblock(engine, dev);
      if (sb.physicalBlocks > dev.blocks) {
        throw new FlashpackError('ECORRUPT', `volume: superblock says ${sb.physicalBlocks} physical blocks; the backend has ${dev.blocks}`);
      }
      const v = new Volume(sb, engine, ctrlr, dev, idleSpin, plan, opts, hold);
      // The index saved by the last clean close names that close's superblock: this one
      // when it is clean, else the one before the open that marked it dirty.
      const closedGeneration = sb.cleanSeq > 0 ? sb.generation : sb.generation - 1;
      await v.recover(engineReady);
      await engineReady;
      const index = v.indexSaved && !v.readOnly ? loadIndex(v.index, v.sb, v.dev, v.engine.pool, closedGeneration) : undefined;
      v.loaded = Promise.all([index, v.counts.settled.then(() => v.snapshots.comparing)]).then(() => {});
      return v.started();
    } catch (err) {
      await detach(engine, ctrlr, engineReady);
      hold.release();
      throw err;
    }
  }

  /** Open for business: flushed before a clean exit from now on. */
  private started(): this {
    if (!this.readOnly) flushAtExit(this);
    return this;
  }

  // ---- recovery -------------------------------------------------------------------

  /**
   * Takes the newest usable reference count snapshot and replays the journal
   * on it, or replays and rebuilds the counts from the map (repair.ts,
   * count-snapshots.ts); then checkpoints. After a clean close there is
   * nothing to replay or checkpoint: a writable open marks the superblock
   * dirty (the next generation, durable before any journal write), so a
   * crash from here on reads the journal again.
   */
  private async recover(engineReady: Promise<void>): Promise<void> {
    const ctx: RepairContext = {
      sb: this.sb, readOnly: this.readOnly, journal: this.journal, map: this.map, depot: this.depot, snapshots: this.snapshots, dev: this.dev, pool: this.engine.pool,
      decodeSlot: (buf, slot, into) => this.decodeSlot(buf, slot, into),
    };
    const r = await recoverMetadata(ctx);
    this.referencesLoaded = r.referencesLoaded;
    this.entriesReplayed = r.replayed;
    this.openedClean = r.clean;
    this.mapping.logicalUsed = r.logicalUsed;
    // Read-only: the replayed mappings stay in the block map cache (dirty pages are
    // never evicted) and the image is left as it was.
    // A read-only volume never needs the counts (stats() has the snapshot's usage).
    if (this.readOnly) return;
    if (r.deferred !== null) {
      const { snapshot, headers } = r.deferred;
      // Once the engine's workers are up, so its reads and decoding do not compete with their start (2 cores here).
      const load = engineReady.then(() => loadDeferred(ctx, snapshot, headers)).then((taken) => {
        this.referencesLoaded = taken;
      });
      this.counts.start(load, (err) => (this.writes.failure ??= err));
    }
    if (this.sb.cleanSeq > 0) {
      this.sb.generation++;
      this.sb.cleanSeq = 0;
      await writeSuperblocks(this.engine, this.dev, this.sb, [this.sb.generation % SUPERBLOCK_COPIES]);
    }
    if (!(r.clean && r.referencesLoaded)) await this.mapping.checkpoint();
  }

  // ---- public API -------------------------------------------------------------------

  get logicalSize(): number {
    return this.sb.logicalBlocks * this.blockBytes;
  }

  /** The image's size in bytes: metadata and data region (resize() grows it). */
  get physicalSize(): number {
    return this.sb.physicalBlocks * BLOCK_BYTES;
  }

  get codec(): Codec {
    return this.sb.codec;
  }

  /** The data region is smaller than the logical size: the volume relies on data reduction and can fill up before it is logically full. */
  get thin(): boolean {
    return isThin(this.sb);
  }

  /** The image path, or "a volume" (for messages). */
  get name(): string {
    return this.hold.name;
  }

  /** Writes or discards were acknowledged since the last completed flush (a clean exit flushes them). */
  get unflushed(): boolean {
    return !this.closed && !this.readOnly && this.writes.gen > this.flushedGen;
  }

  private check(offset: number, length: number, what: 'read' | 'write' | 'discard'): void {
    if (this.closed) throw new FlashpackError('ENXIO', `volume.${what}: the volume is closed (${what} after close())`);
    if (this.writes.failure !== null) throw this.writes.failure;
    checkRange(`volume.${what}`, offset, length, this.logicalSize);
    if (this.readOnly && what !== 'read') throw new FlashpackError('EROFS', `volume.${what}: ${this.hold.name} is open read-only`);
  }

  /**
   * Writes `data` at byte `offset`; unaligned edges are read-modify-write.
   * Every block's generation and place in line are taken when write() is
   * called, so overlapping writes and discards take effect in call order. A
   * whole block with no writer ahead of it and room in the pipeline is
   * accepted on the spot; the rest wait their turn (acceptSlow). `data` is
   * any ArrayBufferView or ArrayBuffer; it is copied before write() returns
   * its promise only for whole blocks accepted on the spot, so keep it
   * unchanged until the promise settles.
   *
   * Errors: EINVAL (offset, or data, named with its type; a range past the
   * end), EROFS (read-only), ENXIO (closed), ENOSPC (full: nothing written
   * is lost), EIO (device).
   */
  write(offset: number, bytes: ArrayBufferView | ArrayBuffer): Promise<void> {
    let data: Uint8Array;
    try {
      data = bytesOf('volume.write: data', bytes);
      this.check(offset, data.length, 'write');
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this.counts.idle) return this.counts.after(() => this.writes.write(offset, data));
    return this.writes.write(offset, data);
  }


  /**
   * Reads `length` bytes at `offset`: zeroes where unmapped, the newest
   * accepted write everywhere else. Errors: EINVAL (offset or length, named
   * with its type; a range past the end), ENXIO (closed), ECORRUPT (stored
   * data or metadata that fails its checks), EIO (device).
   */
  read(offset: number, length: number): Promise<Uint8Array> {
    try {
      this.check(offset, length, 'read');
    } catch (err) {
      return Promise.reject(err);
    }
    this.counters.readIn++;
    if (this.counts.holding) return this.counts.behind(() => this.reads.read(offset, length));
    return this.reads.read(offset, length);
  }

  /** A whole block as it reads now (read-modify-write of a partial block). */
  private async readWhole(lba: number): Promise<Uint8Array> {
    const whole = new Uint8Array(this.blockBytes);
    await this.reads.into(lba, whole, 0, 0, this.blockBytes);
    return whole;
  }

  /**
   * Decodes slot `slot` of the packed block in buffer `buf` into buffer `into`
   * (pool descriptors), in place in the shared memory: null, or why it does
   * not decode to a whole block.
   */
  private decodeSlot(buf: number, slot: number, into: number): string | null {
    return this.reads.decodeSlotAt(this.engine.pool.bufferOf(buf), slot, into);
  }

  /**
   * How [offset, offset + length) is stored, as runs of whole blocks from the
   * block containing `offset` (NBD's base:allocation, SEEK_DATA/SEEK_HOLE):
   * `hole` never written or discarded, `zero` written as zeroes, `data` anything
   * else or with a write or discard still in flight. Reads at most
   * EXTENTS_SCAN_BLOCKS_MAX map entries (a subtree never written is one hole,
   * whatever its size) and returns at most `maxExtents` runs, so they may
   * cover less than asked (at least one block). Errors: as read().
   */
  async extents(offset: number, length: number, maxExtents = 1024): Promise<VolumeExtent[]> {
    this.check(offset, length, 'read');
    checkInteger('volume.extents: maxExtents', maxExtents, 1, 2 ** 31);
    if (this.counts.holding) return this.counts.behind(() => extentsOf(this.map, this.zone, offset, length, maxExtents, this.blockBytes));
    return extentsOf(this.map, this.zone, offset, length, maxExtents, this.blockBytes);
  }

  /**
   * Unmaps whole blocks (one journal entry per run of mapped blocks in a block
   * map page, not one per block); unaligned edges are zeroed by writes. Takes
   * effect in call order with writes, like a write. Errors: as write().
   */
  async discard(offset: number, length: number): Promise<void> {
    this.check(offset, length, 'discard');
    if (!this.counts.idle) return this.counts.after(() => this.discard(offset, length));
    this.counters.discardIn++;
    const end = offset + length;
    const bb = this.blockBytes;
    const first = Math.ceil(offset / bb);
    const last = Math.floor(end / bb); // exclusive
    const parts: Promise<void>[] = [];
    if (first > last) parts.push(this.write(offset, new Uint8Array(length)));
    else {
      if (offset < first * bb) parts.push(this.write(offset, new Uint8Array(first * bb - offset)));
      if (last * bb < end) parts.push(this.write(last * bb, new Uint8Array(end - last * bb)));
    }
    if (first < last) parts.push(this.mapping.discard(first, last, this.writes.nextGen()));
    await Promise.all(parts);
  }

  /**
   * Makes every write accepted before the call durable. Writes accepted while
   * it runs are not waited for (a steady stream cannot starve a flush); while
   * a flush waits, fragments go out of the packer as they arrive. On a
   * read-only volume it does nothing. Errors: ENXIO (closed), EIO (device).
   */
  async flush(): Promise<void> {
    if (this.closed) throw new FlashpackError('ENXIO', 'volume.flush: the volume is closed (flush after close())');
    if (this.readOnly) return; // nothing was written, so nothing to make durable
    if (!this.counts.idle) return this.counts.after(() => this.flush());
    this.counters.flushIn++;
    const gen = this.writes.gen;
    const epoch = this.flushes.close();
    this.stores.flushStarted();
    try {
      await this.flushes.drained(epoch);
    } finally {
      this.stores.flushEnded();
    }
    if (this.writes.failure !== null) throw this.writes.failure;
    await this.meta.run(async () => {
      const freed = this.depot.pendingBlocks;
      await this.journal.commit();
      await this.dev.flush();
      if (this.reads.inFlight === 0) this.depot.releasePending(freed);
    });
    if (gen > this.flushedGen) this.flushedGen = gen;
  }

  /**
   * Reads every stored block and verifies it against the data check its block
   * map entry records (scrub.ts), while I/O goes on; reports every LBA that
   * fails (each also counts in stats().checksumErrors). Errors: ENXIO
   * (closed), EIO (device), EINVAL (options).
   */
  async scrub(options: ScrubOptions = {}): Promise<ScrubReport> {
    if (this.closed) throw new FlashpackError('ENXIO', 'volume.scrub: the volume is closed (scrub after close())');
    const opts = checkOptions<ScrubOptions>('volume.scrub: options', options);
    if (opts.onProgress !== undefined) checkFunction('volume.scrub: options.onProgress', opts.onProgress);
    return scrubVolume(this.reads, this.map, opts);
  }

  /**
   * Grows the logical size, the physical size, or both, while I/O goes on
   * (resize.ts): the physical size grows the device first (an image file is
   * extended). Errors: EINVAL (not a multiple of 4096, smaller than now, past
   * the bounds, a physical growth too small to move the reference count
   * region), ENOSPC (a block device not grown yet), ENOTSUP (a backend that
   * cannot grow), EROFS, ENXIO, EIO.
   */
  async resize(options: ResizeOptions): Promise<void> {
    if (this.closed) throw new FlashpackError('ENXIO', 'volume.resize: the volume is closed (resize after close())');
    const target = resizeTarget(this.sb, options);
    if (this.readOnly) throw new FlashpackError('EROFS', `volume.resize: ${this.hold.name} is open read-only`);
    if (!this.counts.idle) return this.counts.after(() => this.resize(options));
    const { sb, map, meta, engine, dev, ctrlr, depot, snapshots } = this;
    await growTo({ sb, map, meta, engine, dev, ctrlr, depot, snapshots, checkpoint: () => this.mapping.checkpoint() }, target);
  }

  stats(): VolumeStats {
    return volumeStats({
      sb: this.sb, counters: this.counters, depot: this.depot, io: this.dev.counts, logicalUsed: this.mapping.logicalUsed,
      fragmentsWaiting: this.stores.fragmentsWaiting, journal: this.journal.stats, map: this.map.stats, vios: this.writes.vios, readOnly: this.readOnly,
      checkFailures: this.reads.checkFailures,
    });
  }

  /**
   * Flushes, checkpoints, marks the superblock (next generation, the other
   * copy), detaches and releases the lock; a read-only volume only detaches.
   * A second close() does nothing. Errors: those of flush() (the volume is
   * closed and unlocked all the same).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.readOnly) {
        await this.flush();
        await this.loaded;
        await this.meta.run(() => this.mapping.checkpoint());
        const sb = { ...this.sb, generation: this.sb.generation + 1, cleanSeq: this.journal.closedAt };
        if (this.indexSaved) await saveIndex(this.index, this.sb, this.dev, this.engine.pool, sb.generation);
        await writeSuperblocks(this.engine, this.dev, sb, [sb.generation % SUPERBLOCK_COPIES]);
        await this.dev.flush();
      }
    } finally {
      this.closed = true;
      forgetAtExit(this);
      this.map.release();
      this.journal.release();
      try {
        await detach(this.engine, this.ctrlr);
      } finally {
        this.hold.release();
      }
    }
  }

  /** `await using v = await Volume.open(path)`: close() at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Detaches without flushing (tests: what a crash leaves behind is on the backend); releases the lock. */
  async abandon(): Promise<void> {
    await this.loaded;
    this.closed = true;
    forgetAtExit(this);
    await detach(this.engine, this.ctrlr).catch(() => {});
    this.hold.release();
  }
}

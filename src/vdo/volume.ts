/**
 * A VDO volume: logical 4 KiB blocks stored reduced the way dm-vdo does —
 * zero blocks elided, duplicates shared (fingerprint → advice → byte compare),
 * the rest compressed and packed up to 14 to a block — over an NVMe-style
 * controller, with a recovery journal in front of the block map. This file is
 * the public shell (create, open, read, write, discard, flush, stats, close),
 * admission and completion of writes, and the wiring of the stages.
 *
 * Write path: one data_vio record per logical block (data-vio.ts), moved on
 * by callbacks through asserted stages; each stage handles what its microtask
 * wave brought as one batch:
 *   accept   copy the block into a slab buffer; reads see it at once
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
import { FlashpackError, checkInteger, invalid } from '../errors.js';
import * as fs from 'node:fs';
import { Engine } from '../engine/engine.js';
import { STATUS_OK, STATUS_INCOMPRESSIBLE } from '../engine/jobs.js';
import { DataVio, DataVioPool, FROM_ACCEPTED, FROM_PLACING, FROM_PREPARING, Stage, type LbaState, type WriteCall } from './data-vio.js';
import { assertionFailed } from '../assert.js';
import { PREPARE_JOB_MODULE, STATUS_KNOWN } from './prepare-job.js';
import { PrepareStage } from './prepare.js';
import { DedupeStage } from './hash-lock.js';
import { StoreStage } from './store.js';
import { MappingStage, Mutex } from './mapping.js';
import { Controller } from '../nvme/controller.js';
import type { Backend } from '../nvme/backend.js';
import { FileBackend } from '../nvme/file-backend.js';
import { Runtime } from '../wasm/runtime.js';
import { availableCores } from '../wasm/spawn.js';
import { BlockDevice } from './block-device.js';
import { ReadPath } from './read-path.js';
import { DataWriter, STAGING_BYTES } from './data-writer.js';
import { BlockMap, mappingOf, pbnOf, stateOf } from './block-map.js';
import { RecoveryJournal } from './recovery-journal.js';
import { SlabDepot } from './slab-depot.js';
import { DedupeIndex, MIN_INDEX_MEMORY } from './dedupe.js';
import { rebuildReferences, replayJournal } from './repair.js';
import { loadIndex, saveIndex } from './index-store.js';
import { FlushEpochs } from './flush.js';
import { LogicalZone, type LbaTicket } from './logical-zone.js';
import { VolumeLock, takeBackend, type LockMode } from './volume-lock.js';
import { flushAtExit, forgetAtExit } from './exit-flush.js';
import { EMPTY_PROBE_BYTES, describeHead, inspect, refuseUnlessEmpty } from './image-file.js';
import {
  DEFAULT_CACHE_PAGES, DEFAULT_MAX_INFLIGHT, bytesOf, checkCreateOptions, checkOpenOptions, checkRange, checkTarget, isThin, layoutFor,
  type OpenOptions, type VolumeOptions,
} from './volume-options.js';
import {
  BLOCK_BYTES, MAP_ENTRIES_PER_PAGE, STATE_UNCOMPRESSED, STATE_UNMAPPED, SUPERBLOCK_COPIES,
  ZERO_PBN, decodeSuperblock, encodeSuperblock, type Codec, type Superblock,
} from './encodings.js';

export type { VolumeOptions, OpenOptions } from './volume-options.js';

/** A run of whole blocks and how it is stored (Volume.extents). */
export interface VolumeExtent {
  offset: number;
  length: number;
  type: 'data' | 'zero' | 'hole';
}

export interface VolumeStats {
  logicalBlocks: number;
  physicalBlocks: number;
  /** Physical blocks holding data. */
  dataBlocksUsed: number;
  /** Physical blocks of metadata (superblocks, journal, block map). */
  overheadBlocksUsed: number;
  /** Logical blocks mapped (including those mapped to the zero block). */
  logicalBlocksUsed: number;
  /** (logical blocks used − data blocks used) / logical blocks used, in percent. */
  savingPercent: number;
  dedupeAdviceValid: number;
  dedupeAdviceStale: number;
  dedupeConcurrentShared: number;
  zeroBlocksWritten: number;
  compressedFragmentsWritten: number;
  compressedBlocksWritten: number;
  compressedFragmentsInPacker: number;
  journalEntriesWritten: number;
  journalBlocksWritten: number;
  blockMapCacheHits: number;
  blockMapCacheMisses: number;
  blockMapPagesWritten: number;
  /** Writes in the pipeline now, each holding a data_vio (vdostats' current VDO IO requests in progress). */
  currentViosInProgress: number;
  /** The most at once since open; never above maxInflight. */
  maxViosInProgress: number;
  biosIn: { read: number; write: number; discard: number; flush: number };
  biosOut: { read: number; write: number; flush: number };
  /** Blocks written to the device per logical block written. */
  writeAmplification: number;
  /** The data region is smaller than the logical size: the volume relies on zero elision, dedupe and compression, and can fill up before it is logically full. */
  thin: boolean;
  /** Opened read-only. */
  readOnly: boolean;
}
/** Flushes a write waits through for a free block before it gives up with ENOSPC. */
const SPACE_WAIT_FLUSHES = 64;

/**
 * Writes in the pipeline at which device workers stop spinning (when the
 * volume's threads outnumber the cores): a stream of writes, not the odd write
 * among reads at low queue depth. They spin again once the pipeline is empty.
 */
const SPIN_OFF_WRITES = 16;
/** Staging buffers for gathered data writes (data-writer.ts). */
const STAGING_BUFFERS = 16;
/** 4 KiB buffers kept for reuse beyond the pipeline's two per write: reads, dedupe checks, journal and map I/O. */
const KEPT_SPARE_BUFFERS = 256;
/** Blocks one extents() call looks at (4 GiB): a client asking about a whole large volume gets an answer in parts. */
const EXTENTS_SCAN_BLOCKS_MAX = 1 << 20;

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

/** What an open volume holds on its image: the lock, released at close. */
interface Hold {
  release(): void;
  /** The image path, or "a volume" for a backend object (for messages). */
  name: string;
}

interface Attached {
  engine: Engine;
  ctrlr: Controller;
  dev: BlockDevice;
  idleSpin: number;
}

export class Volume {
  readonly sb: Superblock;
  readonly engine: Engine;
  readonly ctrlr: Controller;
  private readonly dev: BlockDevice;
  private readonly map: BlockMap;
  private readonly reads: ReadPath;
  private readonly journal: RecoveryJournal;
  private readonly depot: SlabDepot;
  private readonly index: DedupeIndex;
  /** The index is loaded at open and saved at close (its size is the saved one's). */
  private readonly indexSaved: boolean;
  /** Packing and writing new data (store.ts). */
  private readonly stores: StoreStage;
  private readonly meta = new Mutex();
  /** Hash locks and dedupe advice (hash-lock.ts). */
  private readonly dedupe: DedupeStage;
  /** Accepted writes not yet finished (mapped, or failed). */
  private jobsInFlight = 0;
  /** Writes in flight per flush() epoch, and the flush() calls waiting for theirs (flush.ts). */
  private readonly flushes = new FlushEpochs();
  /** write() calls waiting for room in the pipeline (a free record). */
  private readonly slotWaiters: (() => void)[] = [];
  /** Records promised to acceptBlock() calls still waiting for a buffer or room. */
  private slotsHeld = 0;
  /** Ordering by LBA: generations, writer queues, pending writes and discards (logical-zone.ts). */
  private readonly zone = new LogicalZone();
  private readonly maxInflight: number;
  /** Device-worker spin while writes are not streaming; 0 = leave the controller's setting alone (a core is free). */
  private readonly idleSpin: number;
  private gen = 0;
  /** The engine trip: fingerprint and compression, a burst per wave (prepare.ts). */
  private readonly prep: PrepareStage;
  /** Journal, block map and reference counts for placed writes and discards (mapping.ts). */
  private readonly mapping: MappingStage;
  /** Every write's record, made at open: no more writes are in the pipeline than it holds. */
  private readonly vios: DataVioPool;
  private reserved = 0;
  private failure: Error | null = null;
  private closed = false;
  /** The lock on the image (released at close or abandon). */
  private readonly hold: Hold;
  /** Opened with readOnly: nothing is ever written to the image. */
  readonly readOnly: boolean;
  /** Every write or discard issued up to this generation is durable (a flush completed after it was issued). */
  private flushedGen = 0;
  private readonly mem: Uint8Array;
  private readonly mem32: Int32Array;
  private readonly counters = {
    adviceValid: 0, adviceStale: 0, concurrentShared: 0, zeroBlocks: 0, fragments: 0, packedBlocks: 0,
    readIn: 0, writeIn: 0, discardIn: 0, flushIn: 0, blocksWrittenIn: 0,
  };

  private constructor(sb: Superblock, engine: Engine, ctrlr: Controller, dev: BlockDevice, idleSpin: number, opts: OpenOptions, hold: Hold) {
    this.sb = sb;
    this.idleSpin = idleSpin;
    this.engine = engine;
    this.ctrlr = ctrlr;
    this.dev = dev;
    this.hold = hold;
    this.readOnly = opts.readOnly === true;
    const pool = engine.pool;
    this.map = new BlockMap(dev, pool, sb.mapStart, sb.logicalBlocks, sb.nonce, opts.cachePages ?? DEFAULT_CACHE_PAGES);
    this.journal = new RecoveryJournal(dev, pool, sb.journalStart, sb.journalBlocks, sb.nonce, sb.writePolicy === 'sync');
    this.depot = new SlabDepot(sb.dataStart, sb.physicalBlocks, sb.slabBlocks);
    this.mapping = new MappingStage({
      map: this.map, journal: this.journal, depot: this.depot, dev, zone: this.zone, meta: this.meta, sync: sb.writePolicy === 'sync',
      finish: (job, err) => this.finishJob(job, err),
    });
    const indexMemory = opts.indexMemory ?? (sb.dedupe ? sb.indexMemory : MIN_INDEX_MEMORY);
    // In the shared memory: the engine's workers read it as their known table and
    // do not compress a block the index knows (OP_PREPARE_BLOCK, STATUS_KNOWN).
    const indexAt = engine.runtime.reserve(DedupeIndex.imageBytes(indexMemory), 64);
    this.index = new DedupeIndex(indexMemory, { buffer: pool.memory.buffer, at: indexAt });
    this.prep = new PrepareStage(engine, sb.codec, sb.dedupe ? indexAt : 0, this.index.log2Buckets,
      (job, status) => this.prepared(job, status), (job, err) => this.failJob(job, err));
    // An index of another size than the saved one starts empty and is not saved.
    this.indexSaved = sb.indexBlocks > 0 && DedupeIndex.imageBytes(indexMemory) === DedupeIndex.imageBytes(sb.indexMemory);
    this.maxInflight = opts.maxInflight ?? DEFAULT_MAX_INFLIGHT;
    this.vios = new DataVioPool(this.maxInflight);
    this.mem = new Uint8Array(pool.memory.buffer);
    this.mem32 = new Int32Array(pool.memory.buffer);
    this.reads = new ReadPath({
      map: this.map, pool, dev, runtime: engine.runtime, codec: sb.codec, mem: this.mem,
      pendingInto: (lba, out, dst, within, n) => this.pendingInto(lba, out, dst, within, n),
    });
    this.stores = new StoreStage({
      pool, mem: this.mem, wasm: engine.runtime.exports, dev, depot: this.depot, index: this.index,
      writer: new DataWriter(dev, pool, sb.writePolicy === 'sync'), codec: sb.codec, fua: sb.writePolicy === 'sync',
      packer: opts.packer ?? 'flashpack', counters: this.counters,
      wiring: { recompress: (job) => this.prep.add(job), placed: (job, m) => this.placed(job, m), failJob: (job, err) => this.failJob(job, err) },
    });
    this.dedupe = new DedupeStage(pool, this.index, this.depot, dev, this.counters, {
      store: (job) => this.stores.store(job), placed: (job, m) => this.placed(job, m), failJob: (job, err) => this.failJob(job, err),
      leave: (job) => this.stores.leave(job), enter: (job) => this.stores.enter(job),
      decodeSlot: (buf, slot, into) => this.decodeSlot(buf, slot, into), reads: this.reads,
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
    const { engine, ctrlr, dev, idleSpin, hold } = await Volume.holdAndAttach(target, 'write', opts, (path) => {
      // Under the lock, look again: another process may have made something there meanwhile.
      const found = inspect(path);
      refuseUnlessEmpty(path, found, overwrite);
      if (found.kind === 'file') fs.truncateSync(path, 0); // overwrite: nothing of the old image lingers
      return new FileBackend(path, { blockSize: opts.blockSize ?? 4096, size: fileBlocks === undefined ? undefined : fileBlocks * BLOCK_BYTES });
    });
    try {
      if (opts.physicalSize !== undefined && opts.physicalSize / BLOCK_BYTES > dev.blocks) {
        throw invalid(`Volume.create: physicalSize ${opts.physicalSize} is more than the backend's ${dev.blocks * BLOCK_BYTES} bytes`);
      }
      if (typeof target !== 'string' && !overwrite) await Volume.refuseUnlessBlank(engine, dev);
      const l = layoutFor(opts, opts.physicalSize !== undefined ? opts.physicalSize / BLOCK_BYTES : dev.blocks);
      const sb: Superblock = {
        generation: 1,
        nonce: (crypto.getRandomValues(new Uint32Array(1))[0] | 1) >>> 0,
        logicalBlocks: l.logicalBlocks, physicalBlocks: l.physicalBlocks, journalStart: SUPERBLOCK_COPIES, journalBlocks: l.journalBlocks,
        mapStart: SUPERBLOCK_COPIES + l.journalBlocks, mapPages: l.mapPages, indexStart: l.indexStart, indexBlocks: l.indexBlocks,
        indexMemory: l.indexMemory, dataStart: l.dataStart, slabBlocks: l.slabBlocks, codec: l.codec, dedupe: l.dedupe, writePolicy: l.writePolicy,
      };
      // Zero the journal, the block map and the index header: an all-zero sector means "never written".
      await dev.writeZeroes(SUPERBLOCK_COPIES, sb.dataStart - SUPERBLOCK_COPIES);
      await Volume.writeSuperblocks(engine, dev, sb, [0, 1]);
      await dev.flush();
      return new Volume(sb, engine, ctrlr, dev, idleSpin, opts, hold).started();
    } catch (err) {
      await Volume.detach(engine, ctrlr);
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

  /** A backend must read as zeroes at its start (EEXIST otherwise, naming what it holds). */
  private static async refuseUnlessBlank(engine: Engine, dev: BlockDevice): Promise<void> {
    const blocks = Math.min(dev.blocks, EMPTY_PROBE_BYTES / BLOCK_BYTES);
    const d = await engine.pool.allocAsync(STAGING_BYTES);
    try {
      await dev.read(0, d, blocks);
      const head = engine.pool.bytes(d, true).slice(0, blocks * BLOCK_BYTES);
      if (!head.every((b) => b === 0)) {
        throw new FlashpackError('EEXIST', `Volume.create: the backend already holds ${describeHead(head)}; pass { overwrite: true } to format over it`);
      }
    } finally {
      engine.pool.free(d);
    }
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
    const { engine, ctrlr, dev, idleSpin, hold } = await Volume.holdAndAttach(target, mode, opts, (path) =>
      new FileBackend(path, { blockSize: opts.blockSize ?? 4096, readOnly: mode === 'read' }));
    try {
      const sb = await Volume.readSuperblock(engine, dev);
      if (sb.physicalBlocks > dev.blocks) {
        throw new FlashpackError('ECORRUPT', `volume: superblock says ${sb.physicalBlocks} physical blocks; the backend has ${dev.blocks}`);
      }
      const v = new Volume(sb, engine, ctrlr, dev, idleSpin, opts, hold);
      await v.recover();
      if (v.indexSaved) await loadIndex(v.index, v.sb, v.dev, v.engine.pool);
      return v.started();
    } catch (err) {
      await Volume.detach(engine, ctrlr);
      hold.release();
      throw err;
    }
  }

  /**
   * Locks the target for `mode`, makes a path's backend under the lock, and
   * attaches the engine and controller; the lock is released again if any
   * step fails.
   */
  private static async holdAndAttach(target: string | Backend, mode: LockMode, opts: OpenOptions, fileBackend: (path: string) => Backend): Promise<Attached & { hold: Hold }> {
    let hold: Hold;
    if (typeof target === 'string') {
      const lock = VolumeLock.take(target, mode);
      hold = { release: () => lock.release(), name: target };
    } else {
      hold = { release: takeBackend(target, mode), name: 'a volume' };
    }
    try {
      const backend = typeof target === 'string' ? fileBackend(target) : target;
      return { hold, ...(await Volume.attach(backend, opts)) };
    } catch (err) {
      hold.release();
      throw err;
    }
  }

  /** Open for business: flushed before a clean exit from now on. */
  private started(): this {
    if (!this.readOnly) flushAtExit(this);
    return this;
  }

  private static async attach(backend: Backend, opts: OpenOptions): Promise<Attached> {
    // A volume's pools and queues are carved from a runtime's memory for good; a
    // fresh runtime per volume gives all of it back when the volume is closed.
    const inflight = opts.maxInflight ?? DEFAULT_MAX_INFLIGHT;
    const cachePages = opts.cachePages ?? DEFAULT_CACHE_PAGES;
    // 4 KiB buffers: two per write in the pipeline (its data and its compressed form), the
    // block map cache, and room for reads, dedupe checks and journal blocks. Sized from the
    // options, so a deep pipeline cannot take the buffers its own writes need to finish.
    const buffers = Math.max(8192, 2 * inflight + cachePages + 2048);
    // The main thread, the engine workers and the device workers are all busy during
    // a write stream: with no core to spare, an idle worker that spins only takes
    // time from the thread it waits for (on 2 cores, ingest ran 10–20% faster
    // with workers that park at once). Engine workers only work for writes, so they
    // park at once; device workers park at once while writes stream through the
    // pipeline (SPIN_OFF_WRITES) and spin otherwise, so a read at low queue depth
    // costs no wake-up.
    const cores = await availableCores();
    const workers = opts.workers ?? Math.max(1, cores - 1);
    const ioWorkers = opts.ioWorkers ?? Math.min(4, Math.max(1, cores - 1));
    const oversubscribed = 1 + workers + ioWorkers > cores;
    const rt = opts.runtime ?? new Runtime();
    const engine = await Engine.start({ runtime: rt, workers, spinIterations: oversubscribed ? 0 : undefined, jobs: [PREPARE_JOB_MODULE], classes: [{ size: 4096, count: buffers }, { size: STAGING_BYTES, count: STAGING_BUFFERS }] });
    // The main thread allocates and frees every buffer: it reuses the ones it freed
    // last (in the CPU cache, and in pages already faulted in) instead of cycling
    // through the whole pool. Enough for the pipeline's working set, faulted in
    // now rather than by the first writes.
    engine.pool.keepFreed(4096, Math.min(buffers, 2 * inflight + KEPT_SPARE_BUFFERS), true);
    engine.pool.keepFreed(STAGING_BYTES, STAGING_BUFFERS, true);
    let ctrlr: Controller;
    try {
      ctrlr = await Controller.open(backend, { runtime: rt, pool: engine.pool, ioWorkers });
    } catch (err) {
      await engine.close();
      throw err;
    }
    return { engine, ctrlr, dev: new BlockDevice(ctrlr), idleSpin: oversubscribed ? ctrlr.spinIterations : 0 };
  }

  private static async detach(engine: Engine, ctrlr: Controller): Promise<void> {
    await ctrlr.close();
    await engine.close();
  }

  private static async writeSuperblocks(engine: Engine, dev: BlockDevice, sb: Superblock, copies: number[]): Promise<void> {
    const d = engine.pool.alloc(4096);
    try {
      encodeSuperblock(sb, engine.pool.bytes(d, true));
      for (const c of copies) await dev.write(c, d, true);
    } finally {
      engine.pool.free(d);
    }
  }

  /** Both copies; the valid one with the higher generation. Neither valid: ECORRUPT naming both reasons. */
  private static async readSuperblock(engine: Engine, dev: BlockDevice): Promise<Superblock> {
    const d = engine.pool.alloc(4096);
    const found: (Superblock | string)[] = [];
    try {
      for (let c = 0; c < SUPERBLOCK_COPIES; c++) {
        await dev.read(c, d);
        found.push(decodeSuperblock(engine.pool.bytes(d, true)));
      }
    } finally {
      engine.pool.free(d);
    }
    const valid = found.filter((f): f is Superblock => typeof f !== 'string');
    if (valid.length === 0) throw new FlashpackError('ECORRUPT', `volume: no valid superblock (copy A: ${found[0]}; copy B: ${found[1]})`);
    valid.sort((a, b) => b.generation - a.generation);
    return valid[0];
  }

  // ---- recovery -------------------------------------------------------------------

  /** Replays the journal and rebuilds reference counts (repair.ts), then checkpoints. */
  private async recover(): Promise<void> {
    await replayJournal({
      logicalBlocks: this.sb.logicalBlocks, journal: this.journal, map: this.map, depot: this.depot, dev: this.dev, pool: this.engine.pool,
      decodeSlot: (buf, slot, into) => this.decodeSlot(buf, slot, into),
    });
    this.mapping.logicalUsed = await rebuildReferences(this.map, this.depot);
    // Read-only: the replayed mappings stay in the block map cache (dirty pages are
    // never evicted) and the image is left as it was.
    if (!this.readOnly) await this.mapping.checkpoint();
  }

  // ---- public API -------------------------------------------------------------------

  get logicalSize(): number {
    return this.sb.logicalBlocks * BLOCK_BYTES;
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
    return !this.closed && !this.readOnly && this.gen > this.flushedGen;
  }

  private check(offset: number, length: number, what: 'read' | 'write' | 'discard'): void {
    if (this.closed) throw new FlashpackError('ENXIO', `volume.${what}: the volume is closed (${what} after close())`);
    if (this.failure !== null) throw this.failure;
    checkRange(`volume.${what}`, offset, length, this.logicalSize);
    if (this.readOnly && what !== 'read') throw new FlashpackError('EROFS', `volume.${what}: ${this.hold.name} is open read-only`);
  }

  /**
   * Views of the shared memory as it was when the volume started. Shared memory
   * is never detached when it grows, and the pool was carved before the volume,
   * so these views cover every buffer the volume touches.
   */
  private bytes(): Uint8Array {
    return this.mem;
  }

  private words(): Int32Array {
    return this.mem32;
  }

  private descBytes(d: number): Uint8Array {
    const at = this.engine.pool.bufferOf(d);
    return this.bytes().subarray(at, at + BLOCK_BYTES);
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
  async write(offset: number, bytes: ArrayBufferView | ArrayBuffer): Promise<void> {
    const data = bytesOf('volume.write: data', bytes);
    this.check(offset, data.length, 'write');
    this.counters.writeIn++;
    const call: WriteCall | null = this.sb.writePolicy === 'sync' ? { remaining: 0, error: null, wake: null } : null;
    let slow: SlowPiece[] | null = null;
    for (let pos = 0; pos < data.length;) {
      const at = offset + pos;
      const lba = Math.floor(at / BLOCK_BYTES);
      const within = at % BLOCK_BYTES;
      const n = Math.min(BLOCK_BYTES - within, data.length - pos);
      const gen = ++this.gen;
      const st = this.zone.hold(lba);
      st.latest = gen;
      if (slow !== null || n !== BLOCK_BYTES || this.zone.queued(lba) || !this.tryAccept(lba, pos === 0 && n === data.length ? data : data.subarray(pos, pos + n), gen, st, call)) {
        (slow ??= []).push({ lba, within, pos, n, gen, st, ticket: this.zone.enqueue(lba), taken: false });
      }
      pos += n;
    }
    if (slow !== null) await this.acceptSlow(data, slow, call);
    if (call !== null) {
      if (call.remaining > 0) await new Promise<void>((r) => (call.wake = r));
      if (call.error !== null) throw call.error;
    }
  }

  /** Pieces that wait for a writer ahead of them, a read (unaligned), room, or a buffer. */
  private async acceptSlow(data: Uint8Array, pieces: SlowPiece[], call: WriteCall | null): Promise<void> {
    try {
      for (const p of pieces) {
        await p.ticket.prev;
        try {
          let block = data.subarray(p.pos, p.pos + p.n);
          if (p.n !== BLOCK_BYTES) {
            const whole = await this.readWhole(p.lba);
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
        this.zone.drop(p.lba, p.st);
      }
    }
  }

  /** The fast path: accepts a whole block now, or returns false (nothing changed) if it would have to wait. */
  private tryAccept(lba: number, data: Uint8Array, gen: number, st: LbaState, call: WriteCall | null): boolean {
    if (this.vios.available - this.slotsHeld === 0 || this.slotWaiters.length > 0) return false;
    const pool = this.engine.pool;
    let desc = pool.tryAlloc(BLOCK_BYTES);
    if (desc < 0) return false;
    // Copied first and checked for zeroes in place: one pass over the caller's bytes.
    const at = pool.bufferOf(desc);
    this.bytes().set(data, at);
    let reserved = false;
    if (this.zeroAt(at)) {
      pool.free(desc);
      desc = -1;
    } else if (this.sb.writePolicy === 'async') {
      if (this.depot.freeBlocks - this.reserved <= 0) {
        pool.free(desc);
        return false; // acceptBlock flushes or reports ENOSPC
      }
      this.reserved++;
      reserved = true;
    }
    this.admit(this.vios.acquire(lba, gen, st, desc, reserved, call));
    return true;
  }

  /** Whether the 4 KiB at byte address `at` (4-aligned) are all zero. */
  private zeroAt(at: number): boolean {
    const w = this.words();
    for (let i = at >> 2, end = (at + BLOCK_BYTES) >> 2; i < end; i++) if (w[i] !== 0) return false;
    return true;
  }

  /** Accepts one whole block (its generation and LBA state taken by write()), waiting for room and a buffer. */
  private async acceptBlock(lba: number, data: Uint8Array, gen: number, st: LbaState, call: WriteCall | null): Promise<void> {
    let reserved = false;
    let desc = -1;
    let slot = false;
    try {
      while (this.vios.available - this.slotsHeld === 0) await new Promise<void>((r) => this.slotWaiters.push(r));
      // The slot is this write's from here: nothing admitted meanwhile can take it.
      this.slotsHeld++;
      slot = true;
      // Copied first and checked for zeroes in place, a word at a time (the caller's
      // bytes may sit at any offset of their buffer).
      const pool = this.engine.pool;
      desc = pool.tryAlloc(BLOCK_BYTES);
      if (desc < 0) desc = await pool.allocAsync(BLOCK_BYTES);
      const at = pool.bufferOf(desc);
      this.bytes().set(data, at);
      if (this.zeroAt(at)) {
        pool.free(desc);
        desc = -1;
      } else if (this.sb.writePolicy === 'async') {
        // Async writes are acknowledged now, so room for them is reserved now (dm-vdo's async mode
        // allocates before it acknowledges); a zero block needs none, a sync write finds out when it allocates.
        if (this.depot.freeBlocks - this.reserved > 0) this.reserved++;
        else await this.reserveSpace();
        reserved = true;
      }
    } catch (err) {
      if (desc >= 0) this.engine.pool.free(desc);
      if (reserved) this.reserved--;
      this.zone.drop(lba, st);
      if (slot) {
        this.slotsHeld--;
        this.slotWaiters.shift()?.();
      }
      throw err;
    }
    this.slotsHeld--;
    this.admit(this.vios.acquire(lba, gen, st, desc, reserved, call));
  }

  /** One block of room per write in the pipeline; frees pending blocks with a flush when short. ENOSPC when full. */
  /**
   * One free block for a write. Blocks that overwrites freed come back at the
   * next flush (once the journal entries freeing them are durable), and writes
   * in flight may free more: while any are coming, wait for them rather than
   * fail. Many writers can be waiting at once, and one flush may free fewer
   * blocks than they need, so each waits through flushes until one is left
   * for it (bounded: a volume whose space never comes back still says ENOSPC).
   */
  private async reserveSpace(): Promise<void> {
    for (let round = 0; this.depot.freeBlocks - this.reserved <= 0; round++) {
      if ((this.depot.pendingBlocks === 0 && this.reserved === 0) || round === SPACE_WAIT_FLUSHES) {
        throw new FlashpackError('ENOSPC', `volume: no free physical block (${this.depot.dataBlocks} data blocks, all in use)`);
      }
      await this.flush();
    }
    this.reserved++;
  }

  /** The block is the volume's now: reads see it, and it starts down the pipeline. */
  private admit(job: DataVio): void {
    const { lba, gen, st, desc } = job;
    if (gen < st.applied || gen < st.discarded) {
      // A newer discard (or write) of this block was issued after this write: nothing to do.
      if (job.reserved) this.reserved--;
      if (desc >= 0) this.engine.pool.free(desc);
      job.desc = -1;
      this.zone.drop(lba, st);
      this.vios.release(job);
      this.slotWaiters.shift()?.();
      return;
    }
    this.zone.admitted(job);
    this.counters.blocksWrittenIn++;
    if (++this.jobsInFlight === Math.min(SPIN_OFF_WRITES, this.maxInflight) && this.idleSpin > 0) this.ctrlr.spinIterations = 0;
    job.epoch = this.flushes.enter();
    if (job.call !== null) job.call.remaining++;
    // An overwrite of a block waiting in the packer writes that bin out now.
    this.stores.overwritten(lba);
    if (desc < 0) {
      this.counters.zeroBlocks++;
      this.placed(job, mappingOf(ZERO_PBN, STATE_UNCOMPRESSED));
      return;
    }
    job.move(Stage.PREPARING, FROM_ACCEPTED);
    this.stores.enter(job);
    this.prep.add(job);
  }

  /** The engine has hashed (and compressed) the block: dedupe, else store. */
  private prepared(job: DataVio, status: number): void {
    job.move(Stage.PREPARING, FROM_PREPARING);
    if (status !== STATUS_OK && status !== STATUS_INCOMPRESSIBLE && (status !== STATUS_KNOWN || job.recompressing)) {
      this.failJob(job, new FlashpackError('EINTERNAL', `volume: block preparation failed with engine status ${status}`));
      return;
    }
    job.size = job.out >= 0 && status === STATUS_OK ? this.engine.pool.lengthOf(job.out) : 0;
    if (job.recompressing) {
      // Back from compression: the data was new after all.
      job.recompressing = false;
      this.stores.store(job);
      return;
    }
    job.uncompressed = status === STATUS_KNOWN;
    job.check = this.engine.resultWord(job.desc, 2);
    if (!this.sb.dedupe) {
      this.stores.store(job);
      return;
    }
    job.fpLo = this.engine.resultWord(job.desc, 0);
    job.fpHi = this.engine.resultWord(job.desc, 1);
    this.dedupe.hashed(job);
  }

  /** The job has a home holding one reference: writers of the same data behind it may share it; mapping is next. */
  private placed(job: DataVio, mapping: number): void {
    job.move(Stage.MAPPING, FROM_PLACING);
    job.mapping = mapping;
    this.stores.leave(job);
    this.stores.releaseOut(job);
    this.dedupe.release(job, mapping);
    this.mapping.add(job);
  }

  private failJob(job: DataVio, err: Error): void {
    this.dedupe.release(job, -1);
    this.finishJob(job, err);
  }

  /** The job is over (mapped, dropped as obsolete, or failed): its resources go back, and whoever waits for it hears. */
  private finishJob(job: DataVio, err: Error | null): void {
    if (job.stage === Stage.FREE) throw assertionFailed(`data_vio ${job.id} (LBA ${job.lba}) finished twice`);
    this.stores.leave(job);
    this.stores.releaseOut(job);
    if (job.reserved) this.reserved--;
    this.zone.finished(job);
    if (job.desc >= 0) this.engine.pool.free(job.desc);
    job.desc = -1;
    this.zone.drop(job.lba, job.st);
    const epoch = job.epoch;
    const call = job.call;
    this.vios.release(job);
    if (--this.jobsInFlight === 0 && this.idleSpin > 0) this.ctrlr.spinIterations = this.idleSpin;
    this.flushes.leave(epoch);
    if (err !== null) {
      // Out of space on a sync write is that write's error; anything else fails the volume.
      if (!((err as FlashpackError).code === 'ENOSPC' && this.sb.writePolicy === 'sync') && this.failure === null) {
        this.failure = err instanceof FlashpackError ? err : new FlashpackError('EINTERNAL', `volume: write failed: ${err.message}`);
      }
    }
    if (call !== null) {
      if (err !== null) call.error ??= err;
      if (--call.remaining === 0 && call.wake !== null) call.wake();
    }
    this.slotWaiters.shift()?.();
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
    return this.reads.read(offset, length);
  }

  /**
   * Copies what block `lba` reads as before its mapping is consulted — a
   * pending write's data, or zeroes of a pending discard (`out` starts zeroed)
   * — into out[dst …] (its bytes [within, within + n)); false if neither.
   */
  private pendingInto(lba: number, out: Uint8Array, dst: number, within: number, n: number): boolean {
    const p = this.zone.pendingAt(lba);
    if (p === null) return false;
    if (p !== 'zero' && p.desc >= 0) out.set(this.descBytes(p.desc).subarray(within, within + n), dst);
    return true;
  }

  /** A whole block as it reads now (read-modify-write of a partial block). */
  private async readWhole(lba: number): Promise<Uint8Array> {
    const whole = new Uint8Array(BLOCK_BYTES);
    await this.reads.into(lba, whole, 0, 0, BLOCK_BYTES);
    return whole;
  }

  /**
   * Decodes slot `slot` of the packed block in buffer `buf` into buffer `into`
   * (pool descriptors), in place in the shared memory: null, or why it does
   * not decode to 4 KiB.
   */
  private decodeSlot(buf: number, slot: number, into: number): string | null {
    return this.reads.decodeSlotAt(this.engine.pool.bufferOf(buf), slot, into);
  }

  /**
   * How [offset, offset + length) is stored, as runs of whole blocks from the
   * block containing `offset` (NBD's base:allocation, SEEK_DATA/SEEK_HOLE):
   * `hole` never written or discarded (reads zeroes, stores nothing), `zero`
   * written as zeroes (mapped to the zero block), `data` anything else. A block
   * with a write or discard still in flight is `data`: never claimed zero
   * before it is. Scans at most EXTENTS_SCAN_BLOCKS_MAX blocks and returns at
   * most `maxExtents` runs, so the runs may cover less than asked (at least
   * one block). Errors: as read().
   */
  async extents(offset: number, length: number, maxExtents = 1024): Promise<VolumeExtent[]> {
    this.check(offset, length, 'read');
    checkInteger('volume.extents: maxExtents', maxExtents, 1, 2 ** 31);
    const out: VolumeExtent[] = [];
    const first = Math.floor(offset / BLOCK_BYTES);
    const end = Math.min(Math.ceil((offset + Math.max(length, 1)) / BLOCK_BYTES), first + EXTENTS_SCAN_BLOCKS_MAX);
    let lba = first;
    while (lba < end) {
      const pageEnd = Math.min(end, (Math.floor(lba / MAP_ENTRIES_PER_PAGE) + 1) * MAP_ENTRIES_PER_PAGE);
      const page = await this.map.page(lba);
      try {
        for (; lba < pageEnd; lba++) {
          const m = this.map.get(page, lba);
          const type: VolumeExtent['type'] = this.zone.busy(lba) ? 'data'
            : stateOf(m) === STATE_UNMAPPED ? 'hole' : pbnOf(m) === ZERO_PBN ? 'zero' : 'data';
          const last = out[out.length - 1];
          if (last !== undefined && last.type === type) last.length += BLOCK_BYTES;
          else if (out.length === maxExtents) return out;
          else out.push({ offset: lba * BLOCK_BYTES, length: BLOCK_BYTES, type });
        }
      } finally {
        this.map.unpin(page);
      }
    }
    return out;
  }

  /**
   * Unmaps whole blocks (one journal entry per run of mapped blocks in a block
   * map page, not one per block); unaligned edges are zeroed by writes. Takes
   * effect in call order with writes, like a write. Errors: as write().
   */
  async discard(offset: number, length: number): Promise<void> {
    this.check(offset, length, 'discard');
    this.counters.discardIn++;
    const end = offset + length;
    const first = Math.ceil(offset / BLOCK_BYTES);
    const last = Math.floor(end / BLOCK_BYTES); // exclusive
    const parts: Promise<void>[] = [];
    if (first > last) parts.push(this.write(offset, new Uint8Array(length)));
    else {
      if (offset < first * BLOCK_BYTES) parts.push(this.write(offset, new Uint8Array(first * BLOCK_BYTES - offset)));
      if (last * BLOCK_BYTES < end) parts.push(this.write(last * BLOCK_BYTES, new Uint8Array(end - last * BLOCK_BYTES)));
    }
    if (first < last) {
      const gen = ++this.gen;
      // Writes issued before this discard are superseded; reads see zeroes from now on.
      const pd = this.zone.discardIssued(first, last, gen);
      // Queued on the metadata lock now, so every write issued later maps after it
      // (mapBatch holds back writes newer than a discard not yet applied).
      parts.push(
        this.meta
          .run(async () => {
            try {
              await this.mapping.applyDiscard(first, last, gen);
            } finally {
              pd.applied = true;
            }
            if (this.sb.writePolicy === 'sync') await this.journal.commit();
          })
          .finally(() => this.zone.discardDone(pd)),
      );
    }
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
    this.counters.flushIn++;
    const gen = this.gen;
    const epoch = this.flushes.close();
    this.stores.flushStarted(this.vios.all);
    try {
      await this.flushes.drained(epoch);
    } finally {
      this.stores.flushEnded(this.vios.all);
    }
    if (this.failure !== null) throw this.failure;
    await this.meta.run(async () => {
      const freed = this.depot.pendingBlocks;
      await this.journal.commit();
      await this.dev.flush();
      if (this.reads.inFlight === 0) this.depot.releasePending(freed);
    });
    if (gen > this.flushedGen) this.flushedGen = gen;
  }

  stats(): VolumeStats {
    const c = this.counters;
    const dataUsed = this.depot.usedBlocks;
    const io = this.dev.counts;
    return {
      logicalBlocks: this.sb.logicalBlocks,
      physicalBlocks: this.sb.physicalBlocks,
      dataBlocksUsed: dataUsed,
      overheadBlocksUsed: this.sb.dataStart,
      logicalBlocksUsed: this.mapping.logicalUsed,
      savingPercent: this.mapping.logicalUsed === 0 ? 0 : Math.round(((this.mapping.logicalUsed - dataUsed) / this.mapping.logicalUsed) * 1000) / 10,
      dedupeAdviceValid: c.adviceValid,
      dedupeAdviceStale: c.adviceStale,
      dedupeConcurrentShared: c.concurrentShared,
      zeroBlocksWritten: c.zeroBlocks,
      compressedFragmentsWritten: c.fragments,
      compressedBlocksWritten: c.packedBlocks,
      compressedFragmentsInPacker: this.stores.fragmentsWaiting,
      journalEntriesWritten: this.journal.stats.entriesWritten,
      journalBlocksWritten: this.journal.stats.blocksWritten,
      blockMapCacheHits: this.map.stats.cacheHits,
      blockMapCacheMisses: this.map.stats.cacheMisses,
      blockMapPagesWritten: this.map.stats.pagesWritten,
      currentViosInProgress: this.vios.inUse,
      maxViosInProgress: this.vios.peak,
      biosIn: { read: c.readIn, write: c.writeIn, discard: c.discardIn, flush: c.flushIn },
      biosOut: { read: io.reads, write: io.writes, flush: io.flushes },
      writeAmplification: c.blocksWrittenIn === 0 ? 0 : Math.round((io.blocksWritten / c.blocksWrittenIn) * 1000) / 1000,
      thin: this.thin,
      readOnly: this.readOnly,
    };
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
        await this.meta.run(() => this.mapping.checkpoint());
        const sb = { ...this.sb, generation: this.sb.generation + 1 };
        if (this.indexSaved) await saveIndex(this.index, this.sb, this.dev, this.engine.pool, sb.generation);
        await Volume.writeSuperblocks(this.engine, this.dev, sb, [sb.generation % SUPERBLOCK_COPIES]);
        await this.dev.flush();
      }
    } finally {
      this.closed = true;
      forgetAtExit(this);
      this.map.release();
      this.journal.release();
      try {
        await Volume.detach(this.engine, this.ctrlr);
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
    this.closed = true;
    forgetAtExit(this);
    await Volume.detach(this.engine, this.ctrlr).catch(() => {});
    this.hold.release();
  }
}
